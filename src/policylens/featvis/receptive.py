"""Receptive field of a spatial layer, measured by a gradient probe, and the image patch of a position.

Position ``(y, x)`` of a layer with spatial shape ``(h, w)`` sees the pixel rows
``[y * stride_y + offset_y, y * stride_y + offset_y + size_y)`` (and likewise for columns); ``offset`` is
negative when the layer pads. Nothing is hard-coded per architecture: for positions along the middle
column (and middle row) the gradient of the summed channels at that one position is taken with respect to a
few random observations, and the rows (columns) where it is non-zero are that position's field. Positions
whose field is cut by the observation's edge give only one of its ends; the formula is solved from the ends
that are not cut. A field larger than the observation on both sides cannot be measured: the whole
observation is then taken as every position's field (``exact=False``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..hooks import agent_device
from .activations import layer_activations

CHECKER = (192, 255)  # grey and white: pixels outside the observation (the "edge of the screen")


@dataclass(frozen=True)
class ReceptiveField:
    size: tuple  # (size_y, size_x) pixels seen by one position
    stride: tuple  # (stride_y, stride_x) pixels between neighbouring positions
    offset: tuple  # (offset_y, offset_x) top-left pixel of position (0, 0)'s field (negative with padding)
    grid: tuple  # (h, w) the layer's spatial shape
    obs_size: tuple  # (H, W) the observation's size
    exact: bool = True  # False: the field exceeds the observation on both sides, the whole obs is used

    def box(self, y: int, x: int) -> tuple:
        """``(top, left, bottom, right)`` pixel bounds (bottom/right exclusive; may lie outside the obs)."""
        top, left = y * self.stride[0] + self.offset[0], x * self.stride[1] + self.offset[1]
        return top, left, top + self.size[0], left + self.size[1]

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _axis_field(lo: np.ndarray, hi: np.ndarray, extent: int) -> "tuple[int, int, int] | None":
    """``(size, stride, offset)`` along one axis from each position's support ``[lo, hi]`` (-1: none), or None
    when the field is cut on both sides everywhere."""
    n = len(lo)
    seen = lo >= 0
    lo_ok, hi_ok = seen & (lo > 0), seen & (hi < extent - 1)  # ends not cut by the observation's edge
    diffs = [lo[i + 1] - lo[i] for i in range(n - 1) if lo_ok[i] and lo_ok[i + 1]]
    diffs += [hi[i + 1] - hi[i] for i in range(n - 1) if hi_ok[i] and hi_ok[i + 1]]
    if diffs:
        stride = int(np.median(diffs))
    elif n == 1:
        stride = extent
    else:
        return None
    offsets = [lo[i] - i * stride for i in range(n) if lo_ok[i]]
    ends = [hi[i] - i * stride for i in range(n) if hi_ok[i]]  # last pixel of the field, minus i * stride
    if not offsets or not ends:
        return None
    offset = int(min(offsets))
    return int(max(ends)) - offset + 1, stride, offset


def probe_positions(n: int) -> list:
    """Positions 0..2, the middle three and the last three of an axis of ``n`` positions."""
    return sorted({i for i in (0, 1, 2, n // 2 - 1, n // 2, n // 2 + 1, n - 3, n - 2, n - 1) if 0 <= i < n})


def receptive_field(agent: nn.Module, layer: str, obs_shape=None, samples: int = 4, seed: int = 0,
                    batch_size: int = 64) -> ReceptiveField:
    """The receptive field of spatial ``layer`` (activations ``(B, C, h, w)``), measured by gradient probes.

    ``obs_shape`` (H, W, C) defaults to ``agent.obs_shape``. ``samples`` random observations per probed
    position; the union of their gradient supports is the field (one sample can miss pixels behind a dead ReLU).
    """
    obs_shape = tuple(obs_shape or getattr(agent, "obs_shape", None) or ())
    if len(obs_shape) != 3:
        raise ValueError(f"receptive_field needs obs_shape (H, W, C); {type(agent).__name__} has no obs_shape")
    H, W, _ = obs_shape
    device = agent_device(agent)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        shape = layer_activations(agent, layer, torch.zeros((1, *obs_shape), device=device)).shape
    if len(shape) != 4:
        raise ValueError(f"layer {layer!r} is not spatial: activations {tuple(shape)}, expected (B, C, h, w)")
    h, w = shape[2], shape[3]
    # probes: runs of 3 positions at both ends and the middle of the middle column (rows) and middle row
    # (columns); a field cut by the edge at one end of the axis is whole at the other end
    rows, cols = probe_positions(h), probe_positions(w)
    probes = [(y, w // 2) for y in rows] + [(h // 2, x) for x in cols]
    support = torch.zeros(len(probes), H, W, dtype=torch.bool)  # (P, H, W)
    items = [(p, s) for p in range(len(probes)) for s in range(samples)]
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        obs = (torch.rand((len(chunk), *obs_shape), generator=gen) * 255).to(device).requires_grad_(True)
        acts = layer_activations(agent, layer, obs)  # (B, C, h, w)
        ys = torch.tensor([probes[p][0] for p, _ in chunk], device=device)
        xs = torch.tensor([probes[p][1] for p, _ in chunk], device=device)
        picked = acts[torch.arange(len(chunk), device=device), :, ys, xs]  # (B, C)
        (grad,) = torch.autograd.grad(picked.sum(), obs)  # (B, H, W, C)
        nonzero = (grad.abs().sum(-1) > 0).cpu()  # (B, H, W)
        for b, (p, _) in enumerate(chunk):
            support[p] |= nonzero[b]
    axes = []
    for lines, positions, n, extent, reduce_dim in ((support[:len(rows)], rows, h, H, 2),
                                                    (support[len(rows):], cols, w, W, 1)):
        hit = lines.any(dim=reduce_dim).numpy()  # (probes, extent) pixels of that axis in each field
        lo, hi = np.full(n, -1), np.full(n, -1)  # -1: position not probed (or no gradient)
        for i, r in zip(positions, hit):
            if r.any():
                lo[i], hi[i] = np.flatnonzero(r)[[0, -1]]
        axes.append(_axis_field(lo, hi, extent))
    along_y, along_x = axes
    if along_y is None or along_x is None:  # larger than the observation: every position sees all of it
        return ReceptiveField((H, W), (0, 0), (0, 0), (h, w), (H, W), exact=False)
    (sy, jy, oy), (sx, jx, ox) = along_y, along_x
    return ReceptiveField((sy, sx), (jy, jx), (oy, ox), (h, w), (H, W))


def checkerboard(height: int, width: int, channels: int, check: int) -> np.ndarray:
    """A grey-white checkerboard (height, width, channels) uint8 with squares of ``check`` pixels."""
    yy, xx = np.meshgrid(np.arange(height) // check, np.arange(width) // check, indexing="ij")
    board = np.where((yy + xx) % 2 == 0, CHECKER[0], CHECKER[1]).astype(np.uint8)  # (h, w)
    return np.repeat(board[:, :, None], channels, axis=2)


def crop(obs: np.ndarray, rf: ReceptiveField, y: int, x: int) -> np.ndarray:
    """The patch of ``obs`` (H, W, C) that position ``(y, x)`` sees, ``(size_y, size_x, C)`` uint8; pixels
    beyond the observation's edge are a grey-white checkerboard."""
    top, left, bottom, right = rf.box(y, x)
    H, W, C = obs.shape
    patch = checkerboard(rf.size[0], rf.size[1], C, max(1, min(rf.size) // 8))
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(bottom, H), min(right, W)
    if y0 < y1 and x0 < x1:
        patch[y0 - top:y1 - top, x0 - left:x1 - left] = obs[y0:y1, x0:x1]
    return patch
