"""Directions in a layer's space: NMF / PCA / ICA, projections, the ``Directions`` object."""
from .directions import Directions

__all__ = ["Directions"]
