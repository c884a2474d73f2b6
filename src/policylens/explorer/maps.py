"""Attribution maps per feature, as the explorer draws them, and their compact uint8 form.

A hidden layer's attribution ``A`` ``(N, C, h, w)`` is split over ``K`` NMF directions plus a residual, per
spatial position and per sign (Understanding RL Vision's interface): ``maps[:, 0]`` is the good news (positive
part), ``maps[:, 1]`` the bad news (negative part), each ``(N, K + 1, h, w)`` and non-negative. Direction ``k``'s
map is the attribution mass it carries: its coefficient times ``sum_c v_k`` (the amount a unit of the
direction adds to the output). The residual takes what the directions miss, so at every position

    sum_f (maps[:, 0, f] - maps[:, 1, f]) == A.sum(channels)

exactly, and with integrated gradients the maps of a frame sum to ``F(x) - F(baseline)`` (completeness).
Attention layers need no decomposition: their maps are the attention heads themselves (one sign).
Wide layers may be stored summed over blocks of positions (:func:`pool_sum`), which keeps every total.
"""
from __future__ import annotations

import numpy as np
import torch

from ..factors import Directions

SIGNS = ("positive", "negative")  # good news, bad news


def check_finite(x: torch.Tensor, what: str) -> None:
    """Raise a clear ValueError when ``x`` holds NaN or inf (never draw them silently)."""
    bad = ~torch.isfinite(x)
    if bad.any():
        frames = torch.nonzero(bad.reshape(bad.shape[0], -1).any(1)).flatten()[:10].tolist()
        raise ValueError(f"{what} contain NaN or infinite values (frames {frames}); nothing is drawn from them")


def feature_maps(attr, directions: Directions) -> torch.Tensor:
    """Attributions ``(N, C, h, w)`` -> maps ``(N, 2, K + 1, h, w)``: per sign, each direction's attribution
    mass at each position, then the residual (last feature). See the module doc for the invariant."""
    from ..factors.project import coefficients

    attr = torch.as_tensor(attr).float()
    if attr.ndim != 4:
        raise ValueError(f"attributions must be (N, C, h, w) from a spatial layer, got shape {tuple(attr.shape)}")
    check_finite(attr, f"attributions of layer {directions.layer!r}")
    mass = directions.vectors.sum(1)  # (K,) output change per unit of each direction
    if directions.method == "nmf":
        good, bad = coefficients(attr, directions, split_sign=True)  # (N, K, h, w) each, >= 0
        good, bad = good * mass[:, None, None], bad * mass[:, None, None]
    else:  # signed coefficients (PCA, ICA, a probe): the sign of each direction's contribution decides
        share = coefficients(attr, directions) * mass[:, None, None]  # (N, K, h, w)
        good, bad = share.clamp_min(0), (-share).clamp_min(0)
    rest = attr.sum(1) - (good - bad).sum(1)  # (N, h, w) signed mass outside the directions
    maps = torch.cat([torch.stack([good, bad], 1),  # (N, 2, K, h, w)
                      torch.stack([rest.clamp_min(0), (-rest).clamp_min(0)], 1)[:, :, None]], 2)  # (N, 2, K + 1, h, w)
    return maps


def attention_maps(attention) -> torch.Tensor:
    """Attention maps ``(N, heads, h, w)`` -> ``(N, 1, heads, h, w)`` (one sign, one feature per head)."""
    attention = torch.as_tensor(attention).float()
    if attention.ndim != 4:
        raise ValueError(f"attention maps must be (N, heads, h, w), got shape {tuple(attention.shape)}")
    check_finite(attention, "attention maps")
    if (attention < 0).any():
        raise ValueError("attention maps must be non-negative (softmax outputs)")
    return attention[:, None]


def pool_factor(grid, map_size: int) -> int:
    """The integer factor that brings a ``(h, w)`` grid to at most ``map_size`` cells a side (0: keep it)."""
    if map_size < 0:
        raise ValueError(f"map_size must be >= 0 (0 keeps the layer's resolution), got {map_size}")
    return 1 if map_size == 0 else max(1, -(-max(grid) // map_size))


def pool_sum(maps, factor: int) -> np.ndarray:
    """Sum ``factor`` x ``factor`` blocks of the last two axes (zero-padded at the far edges):
    ``(..., h, w)`` -> ``(..., ceil(h / factor), ceil(w / factor))``. Totals are kept exactly."""
    maps = np.asarray(maps)
    if factor == 1:
        return maps
    h, w = maps.shape[-2:]
    ph, pw = -(-h // factor), -(-w // factor)
    padded = np.zeros((*maps.shape[:-2], ph * factor, pw * factor), maps.dtype)
    padded[..., :h, :w] = maps
    return padded.reshape(*maps.shape[:-2], ph, factor, pw, factor).sum((-3, -1))


def quantise(maps) -> tuple:
    """Non-negative maps (any shape) -> ``(uint8 array, scale)`` with ``maps ~ q / 255 * scale``; ``scale`` is the
    largest value (one scale per trajectory and output keeps features comparable). Error <= scale / 510."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.size and (not np.isfinite(maps).all() or maps.min() < 0):
        raise ValueError("maps to quantise must be finite and non-negative")
    scale = float(maps.max()) if maps.size else 0.0
    if scale == 0.0:
        return np.zeros(maps.shape, np.uint8), 0.0
    return np.rint(maps * (255.0 / scale)).clip(0, 255).astype(np.uint8), scale


def dequantise(q, scale: float) -> np.ndarray:
    """Inverse of :func:`quantise` (up to its rounding)."""
    return np.asarray(q, np.float32) * np.float32(scale / 255.0)
