"""A layer's activations for a batch of observations, with the hook always removed.

``layer_activations(agent, layer, obs)`` runs the agent only as far as ``layer`` (the forward pass is cut
right after the layer's hook fires) and returns its output, keeping the autograd graph when ``obs`` needs
gradients. ``iter_activations`` walks a large set of observations in batches under ``no_grad``; recurrent
agents get the recorded input ``state`` of each frame (a rollouts store's ``agent_state``).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..agents import get_layer


class _LayerReached(Exception):
    """Raised by the capture hook to stop the forward pass once the layer's output is known."""


def _first_tensor(out):
    if isinstance(out, (tuple, list)):  # e.g. nn.GRU: (output, state)
        return next((o for o in out if isinstance(o, torch.Tensor)), None)
    return out


@contextmanager
def capture(agent: nn.Module, layer: str, stop: bool = False):
    """Context manager: a dict whose ``"acts"`` is the output of ``layer`` in the next forward pass.

    ``stop=True`` ends that pass right after the layer (callers catch it through :func:`layer_activations`).
    The hook is removed when the block exits, also on an exception.
    """
    module = get_layer(agent, layer)  # KeyError listing the layers
    got = {}

    def hook(_module, _inputs, out):
        got["acts"] = _first_tensor(out)
        if stop:
            raise _LayerReached

    handle = module.register_forward_hook(hook)
    try:
        yield got
    finally:
        handle.remove()


def run_agent(agent: nn.Module, obs: torch.Tensor, state=None, first=None):
    """``agent(obs)``, passing ``state``/``first`` only when given (so any agent-like module works)."""
    if state is None and first is None:
        return agent(obs)
    return agent(obs, state=state, first=first)


def layer_activations(agent: nn.Module, layer: str, obs: torch.Tensor, state=None, first=None) -> torch.Tensor:
    """Output of ``layer`` for ``obs`` (B, H, W, C): ``(B, C')`` or ``(B, C', h, w)``; differentiable."""
    with capture(agent, layer, stop=True) as got:
        try:
            run_agent(agent, obs, state, first)
        except _LayerReached:
            pass
    acts = got.get("acts")
    if not isinstance(acts, torch.Tensor):
        raise ValueError(f"layer {layer!r} gave no tensor output in the agent's forward pass "
                         "(the layer is not used for these inputs)")
    return acts


def agent_device(agent: nn.Module) -> torch.device:
    param = next(agent.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


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
    """All of ``layer``'s activations for ``obs`` (N, H, W, C): ``(N, C')`` or ``(N, C', h, w)`` float32."""
    return torch.cat([acts for _, acts in iter_activations(agent, layer, obs, state, batch_size, progress)])
