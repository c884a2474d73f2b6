"""Which units a saliency-tree node digs into: the ``k`` largest |attribution| (``topk``), or rl-attention's peak
detection (``peaks``): "we switched to using a peak detection algorithm to select which neurons to dig down into".

``peaks`` on a spatial map ``(..., h, w)`` (a conv layer's ``(C, h, w)``, the input's pixels ``(H, W)``
summed over colours or a frame stack) takes each channel on its own: a peak is a unit whose |attribution| is
strictly greater than that of each of its 8 neighbours in the same channel (fewer at the border: outside the map
counts as lower), and at least ``threshold`` times the largest |attribution| anywhere in the layer (and not zero).
On a flat layer ``(D,)`` every unit with |attribution| at least ``threshold`` times the largest (and not zero)
counts. The peaks are ranked by |attribution|, ties by flat index (the lower first), and at most ``k`` are kept:
a node may get fewer than ``k`` children, or none (an attribution of zero everywhere, or a plateau with no
strict maximum).

    >>> select_units(torch.tensor([[[0., 2, 0], [0, 0, 0], [3, 0, 1]]]), k=5, select="peaks")   # (P=1, 3, 3)
    [[6, 1]]
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SELECT = ("topk", "peaks")


def check_select(select: str, threshold: float) -> None:
    if select not in SELECT:
        raise ValueError(f"unknown select {select!r}; expected one of {', '.join(SELECT)}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"peak_threshold must be in [0, 1] (a fraction of the layer's largest |attribution|), "
                         f"got {threshold!r}")


def local_maxima(mag: torch.Tensor) -> torch.Tensor:
    """``mag`` (N, h, w) -> bool (N, h, w): strictly greater than each of its 8 neighbours (outside the map: lower)."""
    n, h, w = mag.shape
    padded = F.pad(mag[:, None], (1, 1, 1, 1), value=float("-inf"))  # (N, 1, h + 2, w + 2)
    around = F.unfold(padded, 3).reshape(n, 9, h, w)  # (N, 9, h, w) the 3x3 neighbourhood of each unit
    around[:, 4] = float("-inf")  # not the unit itself
    return mag > around.max(1).values


def peak_mask(attr: torch.Tensor, threshold: float) -> torch.Tensor:
    """``attr`` (P, ...) -> bool (P, ...): each parent's peaks before the cap (see the module doc); a map with two
    or more trailing axes is spatial (the last two), a flat one ``(P, D)`` is not."""
    mag = attr.abs().float()  # (P, ...)
    p = mag.shape[0]
    top = mag.reshape(p, -1).max(1).values.reshape(p, *[1] * (mag.ndim - 1))  # (P, 1, ...)
    strong = (mag >= threshold * top) & (mag > 0)
    if mag.ndim < 3:
        return strong  # flat: every strong unit
    h, w = mag.shape[-2:]
    return strong & local_maxima(mag.reshape(-1, h, w)).reshape(mag.shape)


def select_units(attr: torch.Tensor, k: int, select: str = "topk", threshold: float = 0.5) -> list:
    """Flat indices (into ``attr[i]``) of the children of each parent ``i`` of ``attr`` (P, ...), ranked by
    |attribution|: ``topk`` the ``k`` largest, ``peaks`` at most ``k`` peaks (module doc)."""
    flat = attr.reshape(attr.shape[0], -1).abs()  # (P, units)
    if select == "topk":
        return flat.topk(min(k, flat.shape[1]), dim=1).indices.tolist()
    mask = peak_mask(attr, threshold).reshape(flat.shape)  # (P, units)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices  # (P, units) ties: the lower index first
    keep = mask.gather(1, order)  # (P, units) in that order
    return [order[i][keep[i]][:k].tolist() for i in range(flat.shape[0])]
