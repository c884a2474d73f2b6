"""A layer's activations: for given observations, or streamed over every (chosen) frame of a rollouts store.

Recurrent agents are fed the state they received when the frame was recorded (the store's ``agent_state``,
already reset to ``h0`` on an episode's first frame), so the activations are the ones the agent had while
playing. The layer is read with :func:`policylens.hooks.capture` (its hook is removed whatever happens).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..hooks import agent_device, capture


def is_recurrent(agent: nn.Module) -> bool:
    """Whether the agent carries a state between steps (``initial_state(1)`` is not None)."""
    init = getattr(agent, "initial_state", None)
    return callable(init) and init(1) is not None


def _batch_arg(value, n: int, name: str, device):
    if value is None:
        return None
    t = torch.as_tensor(value).to(device)
    if t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} rows but there are {n} observations")
    return t


@torch.no_grad()
def collect_activations(agent: nn.Module, obs, layer: str, *, state=None, first=None,
                        batch_size: int = 256) -> torch.Tensor:
    """The output of ``layer`` for every observation: ``obs`` ``(N, H, W, C)`` -> ``(N, *layer shape)``
    on the CPU. ``state`` ``(N, hidden)`` and ``first`` ``(N,)`` go to a recurrent agent row by row.

    Arguments in the order ``(agent, obs, layer)``, as :func:`policylens.hooks.run_with_cache` takes them
    (``policylens.featvis.collect_activations`` keeps its older ``(agent, layer, obs)``)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = agent_device(agent)
    obs = torch.as_tensor(obs)
    n = obs.shape[0]
    state, first = _batch_arg(state, n, "state", device), _batch_arg(first, n, "first", device)
    chunks = []
    with capture(agent, layer) as cache:
        for a in range(0, n, batch_size):
            b = min(a + batch_size, n)
            cache.clear()
            agent(obs[a:b].to(device), None if state is None else state[a:b], None if first is None else first[a:b])
            if not isinstance(cache.get(layer), torch.Tensor):
                raise ValueError(f"layer {layer!r} gave no tensor in the forward pass (not reached, or not a tensor)")
            chunks.append(cache[layer].detach().float().cpu())
    if not chunks:
        raise ValueError("no observations given (obs has 0 rows)")
    return torch.cat(chunks)  # (N, ...)


def open_store(store):
    """A rollouts store from its path (or an already opened one)."""
    from .. import rollouts

    return store if isinstance(store, rollouts.Rollouts) else rollouts.open(store)


def choose_frames(num_frames: int, max_frames: "int | None" = None, every: int = 1) -> np.ndarray:
    """Global frame indices: every ``every``-th frame, then at most ``max_frames`` of them spread evenly
    over the store (the paper samples observations "infrequently" from play)."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    frames = np.arange(0, num_frames, every, dtype=np.int64)  # (F',)
    if max_frames is not None and 0 < max_frames < len(frames):
        frames = frames[np.unique(np.linspace(0, len(frames) - 1, max_frames).round().astype(np.int64))]
    return frames


def iter_store(agent: nn.Module, store, frames=None, batch_size: int = 256):
    """Yield ``{"frame": (B,), "obs": (B, H, W, C) uint8 tensor, "state": (B, hidden) tensor or None}`` over
    the chosen global ``frames`` (default: all) of a store, in frame order, reading it block by block."""
    store = open_store(store)
    recurrent = is_recurrent(agent)
    fields = ("obs", "agent_state") if recurrent else ("obs",)
    if recurrent and "agent_state" not in store.fields:
        raise ValueError(f"the agent is recurrent but rollouts store {store.path} has no 'agent_state' field "
                         f"(recorded with a feed-forward agent?)")
    wanted = np.ones(store.num_frames, bool) if frames is None else np.zeros(store.num_frames, bool)
    if frames is not None:
        frames = np.asarray(frames, np.int64)
        if len(frames) and (frames.min() < 0 or frames.max() >= store.num_frames):
            raise IndexError(f"frames out of range: {store.path} holds {store.num_frames} frames")
        wanted[frames] = True
    for batch in store.batches(fields, batch_size=batch_size):
        keep = wanted[batch["frame"]]  # (B,)
        if keep.any():
            yield {"frame": batch["frame"][keep], "obs": torch.as_tensor(batch["obs"][keep]),
                   "state": torch.as_tensor(batch["agent_state"][keep]) if recurrent else None}


def stream_activations(agent: nn.Module, store, layer: str, *, frames=None, batch_size: int = 256):
    """Yield ``(frame (B,), activations (B, *layer shape))`` for the chosen frames of a store."""
    for batch in iter_store(agent, store, frames, batch_size):
        yield batch["frame"], collect_activations(agent, batch["obs"], layer, state=batch["state"],
                                                  batch_size=batch_size)


def store_activations(agent: nn.Module, store, layer: str, *, max_frames: "int | None" = None, every: int = 1,
                      batch_size: int = 256):
    """``(frames (N,), activations (N, *layer shape))`` for :func:`choose_frames` of a store, in memory."""
    store = open_store(store)
    chosen = choose_frames(store.num_frames, max_frames, every)
    parts = list(stream_activations(agent, store, layer, frames=chosen, batch_size=batch_size))
    if not parts:
        raise ValueError(f"rollouts store {store.path} has no frames to read")
    return np.concatenate([f for f, _ in parts]), torch.cat([a for _, a in parts])
