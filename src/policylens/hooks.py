"""The one way to capture named layers' activations: a ``run_with_cache`` for any agent.

``with capture(agent, ["block2", "hx"]) as cache: agent(obs)`` fills ``cache`` (a :class:`Cache`, a dict
``{layer name: output of the latest forward pass}``) while the block runs, and removes its hooks when the
block exits, also after an exception (as Captum's hooks are). ``run_with_cache(agent, obs, layers)`` is the
one-call form, after TransformerLens' method of that name: ``(agent output, cache)``. A layer whose output is
a tuple (``nn.GRU``: ``(output, state)``) is cached as the tuple's first tensor.

``layer_shapes`` / ``spatial_layers`` (also exported by :mod:`policylens.agents`) read the shapes of an
agent's layers from one dummy forward pass with these hooks; ``agent_device`` is where an agent's weights live.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from .agents.base import get_layer, layer_names


class LayerReached(Exception):
    """Raised by a ``stop=True`` capture's hook to end the forward pass once every layer asked for has run."""


class Cache(dict):
    """``{layer name: its output in the latest forward pass}``, in the order the pass first reached the layers;
    ``calls`` counts how often each layer ran while the hooks were in place."""

    def __init__(self, names):
        super().__init__()
        self.calls = dict.fromkeys(names, 0)


def agent_device(agent: nn.Module) -> torch.device:
    """The device of the agent's first parameter (the CPU for an agent without parameters)."""
    return next((p.device for p in agent.parameters()), torch.device("cpu"))


def first_tensor(out):
    """A layer's output as cached: the first tensor of a tuple / list output (None if it holds none)."""
    if isinstance(out, (tuple, list)):  # e.g. nn.GRU / nn.LSTM: (output, state)
        return next((o for o in out if isinstance(o, torch.Tensor)), None)
    return out


def _names(layers) -> list:
    return [layers] if isinstance(layers, str) else list(layers)


@contextmanager
def capture(agent: nn.Module, layers, *, stop: bool = False, whole: bool = False):
    """Context manager yielding a :class:`Cache` of ``layers`` (a name or a list of names, each checked with
    :func:`~policylens.agents.get_layer`: a KeyError lists the valid ones) filled by the forward passes run
    inside the block. ``stop=True`` ends a pass with :class:`LayerReached` once every layer has run (catch it,
    or use :func:`run_with_cache`); ``whole=True`` caches a tuple output as it is, not its first tensor. The
    hooks are removed when the block exits, also on an exception."""
    names = _names(layers)
    modules = [(name, get_layer(agent, name)) for name in names]
    cache = Cache(names)

    def hook(name):
        def record(_module, _inputs, out):
            cache[name] = out if whole else first_tensor(out)
            cache.calls[name] += 1
            if stop and all(n in cache for n in names):
                raise LayerReached
        return record

    handles = []
    try:
        for name, module in modules:
            handles.append(module.register_forward_hook(hook(name)))
        yield cache
    finally:
        for handle in handles:
            handle.remove()


def run_agent(agent: nn.Module, obs: torch.Tensor, state=None, first=None):
    """``agent(obs)``, passing ``state`` / ``first`` only when given (so any agent-like module works)."""
    if state is None and first is None:
        return agent(obs)
    return agent(obs, state=state, first=first)


def run_with_cache(agent: nn.Module, obs: torch.Tensor, layers, *, state=None, first=None, stop: bool = False):
    """One forward pass of ``obs`` -> ``(output, cache)``: the agent's output (an ``AgentOutput``; None with
    ``stop=True``, which ends the pass once every layer in ``layers`` has run) and the :class:`Cache` of
    ``layers``. Gradients flow through the cached tensors as far as the caller's grad mode allows."""
    with capture(agent, layers, stop=stop) as cache:
        try:
            out = run_agent(agent, obs, state, first)
        except LayerReached:
            out = None
    return out, cache


@torch.no_grad()
def layer_shapes(agent: nn.Module, obs_shape=None, names=None) -> dict:
    """``{layer name: activation shape without the batch}`` from one dummy forward pass, over ``names``
    (default :func:`~policylens.agents.layer_names`); a module the pass does not reach is left out."""
    obs_shape = obs_shape or getattr(agent, "obs_shape", None)
    if obs_shape is None:
        raise ValueError(f"{type(agent).__name__} has no obs_shape attribute; pass obs_shape=(H, W, C)")
    names = layer_names(agent) if names is None else names
    _, cache = run_with_cache(agent, torch.zeros((2, *tuple(obs_shape)), dtype=torch.uint8), names)
    return {n: tuple(out.shape[1:]) for n, out in cache.items() if isinstance(out, torch.Tensor)}


def spatial_layers(agent: nn.Module, names=None) -> dict:
    """``{name: (C, h, w)}`` of the layers among ``names`` (default :func:`~policylens.agents.layer_names`) with
    spatial activations, in the order the forward pass reaches them."""
    return {n: s for n, s in layer_shapes(agent, names=names).items() if len(s) == 3}
