"""Directions in a layer's space: NMF / PCA / ICA, projections, the ``Directions`` object.

>>> from policylens import factors
>>> frames, acts = factors.store_activations(agent, "runs/x/rollouts.zarr", "conv2", max_frames=2048)
>>> dirs = factors.nmf(acts, 8, layer="conv2")          # (8, C) directions, dirs.meta["residual"]
>>> coef = factors.coefficients(acts, dirs)              # (N, 8, H, W)
>>> rest = factors.residual(acts, dirs)                  # (N, C, H, W), outside the directions

From the shell: ``policylens factorize RUN --layer L --method nmf --k 8 [--on attributions]``.
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .collect import (
        choose_frames,
        collect_activations,
        is_recurrent,
        iter_store,
        store_activations,
        stream_activations,
    )
    from .decompose import METHODS, ica, nmf, nmf_attributions, pca
    from .directions import Directions
    from .project import coefficients, reconstruct, residual

__all__ = ["Directions", "nmf", "nmf_attributions", "pca", "ica", "METHODS", "coefficients", "reconstruct",
           "residual", "collect_activations", "is_recurrent", "iter_store", "stream_activations",
           "store_activations", "choose_frames"]

lazy_exports(__name__)
