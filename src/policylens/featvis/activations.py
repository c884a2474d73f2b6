"""A layer's activations for a batch of observations, read with :mod:`policylens.hooks` (hooks always removed).

``layer_activations(agent, layer, obs)`` runs the agent only as far as ``layer`` (the forward pass is cut
right after the layer's hook fires) and returns its output, keeping the autograd graph when ``obs`` needs
gradients. ``iter_activations`` walks a large set of observations in batches under ``no_grad``; recurrent
agents get the recorded input ``state`` of each frame (a rollouts store's ``agent_state``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..hooks import agent_device, run_with_cache


def layer_activations(agent: nn.Module, layer: str, obs: torch.Tensor, state=None, first=None) -> torch.Tensor:
    """Output of ``layer`` for ``obs`` (B, H, W, C): ``(B, C')`` or ``(B, C', h, w)``; differentiable."""
    _, cache = run_with_cache(agent, obs, layer, state=state, first=first, stop=True)
    acts = cache.get(layer)
    if not isinstance(acts, torch.Tensor):
        raise ValueError(f"layer {layer!r} gave no tensor output in the agent's forward pass "
                         "(the layer is not used for these inputs)")
    return acts


def check_obs(obs, what: str = "obs") -> None:
    """Observations must be a batch of images ``(N, H, W, C)`` or of vectors ``(N, D)``."""
    if getattr(obs, "ndim", None) not in (2, 4):
        raise ValueError(f"{what} must be a batch of observations (N, H, W, C) or (N, D); got shape "
                         f"{tuple(getattr(obs, 'shape', ()))}")


def check_state(state, n: int) -> None:
    if state is not None and len(state) != n:
        raise ValueError(f"state must give one recorded agent state per observation: {len(state)} states for {n} obs")


def iter_activations(agent: nn.Module, layer: str, obs, state=None, batch_size: int = 256, progress: bool = False):
    """Yield ``(start, acts)`` over ``obs`` (N, H, W, C) in batches: ``acts`` is the layer output (B, ...) of
    frames ``[start, start + B)``, float32 on the CPU. ``state`` (N, hidden): each frame's recorded input state."""
    check_obs(obs)
    check_state(state, len(obs))
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = agent_device(agent)
    starts = range(0, len(obs), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"activations {layer}", unit="batch")
    with torch.no_grad():
        for start in starts:
            batch = torch.as_tensor(np.asarray(obs[start:start + batch_size])).to(device)  # (B, H, W, C)
            hx = None if state is None else torch.as_tensor(np.asarray(state[start:start + batch_size])).to(device)
            yield start, layer_activations(agent, layer, batch, hx).float().cpu()  # (B, ...)


def collect_activations(agent: nn.Module, layer: str, obs, state=None, batch_size: int = 256,
                        progress: bool = False) -> torch.Tensor:
    """All of ``layer``'s activations for ``obs`` (N, H, W, C): ``(N, C')`` or ``(N, C', h, w)`` float32.

    Arguments in the order ``(agent, layer, obs)``, kept for this module's callers; the same activations come
    from ``policylens.factors.collect_activations(agent, obs, layer)``, in :func:`policylens.hooks.run_with_cache`'s
    order, which also takes ``first``."""
    return torch.cat([acts for _, acts in iter_activations(agent, layer, obs, state, batch_size, progress)])
