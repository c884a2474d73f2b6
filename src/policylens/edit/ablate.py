"""Temporary interventions on one layer's output, as context managers that always remove their hook.

``with ablate(agent, "conv2", channels=[3]): agent(obs)`` zeroes channel 3 of ``conv2``'s output;
``mode="mean"`` puts ``mean[c]`` there instead; ``directions=...`` removes (or mean-replaces) the component of
the output in the directions' span, at every spatial position. The agent's weights are never touched.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from ..agents import get_layer
from ..factors import Directions
from ..factors.project import channel_matmul

MODES = ("zero", "mean")


def as_directions(directions, layer: str) -> Directions:
    """A :class:`Directions` in ``layer`` from a ``Directions`` (checked to be of that layer) or a tensor
    ``(C,)`` / ``(K, C)``."""
    if isinstance(directions, Directions):
        if directions.layer != layer:
            raise ValueError(f"directions are of layer {directions.layer!r}, not {layer!r}")
        return directions
    return Directions(torch.as_tensor(directions, dtype=torch.float32), layer)


class Ablation:
    """A forward hook replacing part of a layer's output ``(B, C, ...)``: some ``channels`` or the span of
    ``basis`` ``(r, C)`` (orthonormal rows), by zero or by the same part of ``mean`` (``(C,)`` or ``(C, ...)``)."""

    def __init__(self, layer: str, channels=None, basis=None, mean=None):
        self.layer, self.channels, self.basis = layer, channels, basis
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32)

    def _mean_like(self, m: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The mean ``m`` broadcast to one frame of the output, ``(1, C, ...)``."""
        per_frame = tuple(out.shape[1:])
        if tuple(m.shape) == per_frame:
            return m.to(out.device, out.dtype).unsqueeze(0)
        if tuple(m.shape) == per_frame[:1]:
            return m.to(out.device, out.dtype).reshape(1, -1, *([1] * (out.ndim - 2)))
        raise ValueError(f"mean for layer {self.layer!r} must be ({per_frame[0]},) or {per_frame}; "
                         f"got {tuple(m.shape)}")

    def __call__(self, module: nn.Module, inputs, out):
        if not isinstance(out, torch.Tensor) or out.ndim < 2:
            raise ValueError(f"layer {self.layer!r} does not output a (B, C, ...) tensor; cannot ablate it")
        num_channels = out.shape[1]
        fill = None if self.mean is None else self._mean_like(self.mean, out)  # (1, C, ...)
        if self.channels is not None:
            bad = [c for c in self.channels if not -num_channels <= c < num_channels]
            if bad:
                raise ValueError(f"channels {bad} out of range: layer {self.layer!r} has {num_channels} channels")
            new = out.clone()
            new[:, self.channels] = 0 if fill is None else fill[:, self.channels]
            return new
        if self.basis.shape[1] != num_channels:
            raise ValueError(f"directions have {self.basis.shape[1]} channels; layer {self.layer!r} has {num_channels}")
        span = self.basis.T @ self.basis  # (C, C) projector onto the span
        new = out - channel_matmul(out, span)  # (B, C, ...)
        return new if fill is None else new + channel_matmul(fill, span)


@contextmanager
def ablate(agent: nn.Module, layer: str, channels=None, directions=None, mode: str = "zero", mean=None):
    """Within the block, ``layer``'s output has ``channels`` (a list of ints) or the component along
    ``directions`` (``Directions`` or a ``(C,)`` / ``(K, C)`` tensor; their span) replaced: by zero
    (``mode="zero"``) or by that part of ``mean`` (``mode="mean"``; ``mean`` ``(C,)`` or ``(C, H, W)``, e.g. the
    layer's average activation). Yields the agent; the hook is removed on exit, also after an exception."""
    if (channels is None) == (directions is None):
        raise ValueError("ablate needs exactly one of channels=[...] or directions=...")
    if mode not in MODES:
        raise ValueError(f"ablation mode {mode!r}; expected one of {', '.join(MODES)}")
    if (mode == "mean") != (mean is not None):
        raise ValueError("mode='mean' needs mean=... (the layer's mean activation) and mode='zero' takes none")
    module = get_layer(agent, layer)
    if channels is not None:
        channels = [int(c) for c in ([channels] if isinstance(channels, int) else channels)]
        hook = Ablation(layer, channels=channels, mean=mean)
    else:
        hook = Ablation(layer, basis=as_directions(directions, layer).basis(), mean=mean)
    handle = module.register_forward_hook(hook)
    try:
        yield agent
    finally:
        handle.remove()
