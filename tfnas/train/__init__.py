"""Standalone (re)training of a searched architecture, Keras core only (`recipe.py`).

Kept free of imports so that `python -m tfnas.train` controls when TensorFlow loads.
"""
