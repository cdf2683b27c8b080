"""Standalone (re)training of a searched architecture, Keras core only: the recipe's settings
and TensorFlow-free checks (`config.py`) and the training itself (`recipe.py`).

Kept free of imports so that `python -m tfnas.train` controls when TensorFlow loads.
"""
