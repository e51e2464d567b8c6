"""lrsearch: find the learning-rate schedule that trains a Keras model best.

The package is importable without TensorFlow: Keras is imported only by the modules that train or
build schedules, and only when they are used.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
