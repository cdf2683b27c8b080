"""Keras building blocks: the standalone builder and (later) the supernet layers."""
