"""The Agent interface and the actor-critic head every architecture here shares.

``agent(obs, state=None, first=None) -> AgentOutput(logits, value, state)``; ``obs`` is uint8 NHWC as the
env gives it and the agent scales it itself. A recurrent agent takes its GRU state ``(B, hidden)`` and a
``first`` flag ``(B,)`` that resets the state to the learned initial state where an episode begins.
Any ``nn.Module`` with this ``forward`` (and, if recurrent, ``initial_state(batch)``) works downstream.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class AgentOutput(NamedTuple):
    logits: torch.Tensor  # (B, A)
    value: torch.Tensor  # (B,)
    state: "torch.Tensor | None"  # (B, hidden) for recurrent agents, else None


class ScaleObs(nn.Module):
    """uint8 NHWC -> float NCHW, times ``scale`` (1/255 for pixels)."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.permute(0, 3, 1, 2).float() * self.scale  # (B, C, H, W)


class ActorCritic(nn.Module):
    """Trunk (subclass's :meth:`features`) -> [GRU] -> policy and value heads.

    Named layers added here: ``hx`` (B, hidden) the GRU state when recurrent; ``pi`` (B, A) logits;
    ``v`` (B, 1) value. Subclasses list their own layers in ``LAYERS`` (name -> shape doc).
    """

    LAYERS: dict = {}

    def __init__(self, obs_shape, num_actions: int, feature_dim: int, recurrent: bool = False, hidden: int = 64):
        super().__init__()
        self.obs_shape, self.num_actions, self.recurrent = tuple(obs_shape), int(num_actions), bool(recurrent)
        head_in = feature_dim
        if recurrent:
            self.gru = nn.GRUCell(feature_dim, hidden)
            self.h0 = nn.Parameter(torch.zeros(hidden))  # learned initial state
            self.hx = nn.Identity()  # hook point for the hidden state, (B, hidden)
            head_in = hidden
        self.pi = nn.Linear(head_in, num_actions)
        self.v = nn.Linear(head_in, 1)

    def features(self, obs: torch.Tensor) -> torch.Tensor:  # (B, H, W, C) uint8 -> (B, F)
        raise NotImplementedError

    def initial_state(self, batch_size: int) -> "torch.Tensor | None":
        if not self.recurrent:
            return None
        return self.h0.unsqueeze(0).expand(batch_size, -1)  # (B, hidden)

    def check_obs(self, obs: torch.Tensor) -> None:
        if tuple(obs.shape[1:]) != self.obs_shape:
            raise ValueError(
                f"observation shape {tuple(obs.shape[1:])} does not match the agent's {self.obs_shape} "
                f"(obs must be (B, H, W, C) as the env gives it)"
            )

    def forward(self, obs, state=None, first=None) -> AgentOutput:
        self.check_obs(obs)
        x = self.features(obs)  # (B, F)
        if self.recurrent:
            h0 = self.initial_state(obs.shape[0])
            if state is None:
                state = h0
            elif first is not None:
                keep = (~first.bool()).float().unsqueeze(-1)  # (B, 1)
                state = keep * state + (1 - keep) * h0
            x = self.hx(self.gru(x, state))  # (B, hidden)
        return AgentOutput(self.pi(x), self.v(x).squeeze(-1), x if self.recurrent else None)

    def forward_sequence(self, obs, state=None, first=None) -> AgentOutput:
        """``L`` steps at once: ``obs`` (L, B, H, W, C), ``state`` (B, hidden) before the first, ``first`` (L, B).
        The same outputs as ``L`` calls of :meth:`forward` (time-major, (L*B, ...)), with the trunk run once over
        all ``L*B`` observations and only the GRU stepped in a loop; ``state`` holds every step's GRU state."""
        L, B = obs.shape[:2]
        self.check_obs(obs[0])
        x = self.features(obs.reshape(L * B, *obs.shape[2:]))  # (L*B, F)
        if self.recurrent:
            h0 = self.initial_state(B)
            h = h0 if state is None else state  # (B, hidden)
            x, states = x.reshape(L, B, -1), []
            for k in range(L):
                if first is not None:
                    keep = (~first[k].bool()).float().unsqueeze(-1)  # (B, 1)
                    h = keep * h + (1 - keep) * h0
                h = self.hx(self.gru(x[k], h))
                states.append(h)
            x = torch.cat(states)  # (L*B, hidden)
        return AgentOutput(self.pi(x), self.v(x).squeeze(-1), x if self.recurrent else None)


def layer_names(agent: nn.Module) -> list:
    """Names of the layers worth analysing: the agent's documented ones, else every named submodule."""
    documented = list(getattr(agent, "LAYERS", {}) or {})
    if documented:
        extra = ["hx"] if getattr(agent, "recurrent", False) else []
        return documented + extra + ["pi", "v"]
    return [n for n, _ in agent.named_modules() if n]


def get_layer(agent: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``, or a clear error listing the valid names."""
    modules = dict(agent.named_modules())
    if name not in modules or not name:
        raise KeyError(f"agent has no layer {name!r}; layers: {', '.join(layer_names(agent))}")
    return modules[name]


@torch.no_grad()
def layer_shapes(agent: nn.Module, obs_shape=None, names=None) -> dict:
    """``{layer name: activation shape without the batch}`` from one dummy forward pass, over ``names``
    (default :func:`layer_names`); a module the pass does not reach is left out."""
    obs_shape = obs_shape or getattr(agent, "obs_shape", None)
    if obs_shape is None:
        raise ValueError(f"{type(agent).__name__} has no obs_shape attribute; pass obs_shape=(H, W, C)")
    obs_shape = tuple(obs_shape)
    shapes, handles = {}, []

    def record(name, out):
        if isinstance(out, (tuple, list)):  # e.g. nn.GRU / nn.LSTM: (output, state) -> the first tensor
            out = next((o for o in out if isinstance(o, torch.Tensor)), None)
        if isinstance(out, torch.Tensor):
            shapes[name] = tuple(out.shape[1:])

    for name in (layer_names(agent) if names is None else names):
        mod = get_layer(agent, name)
        handles.append(mod.register_forward_hook(lambda m, i, o, name=name: record(name, o)))
    try:
        agent(torch.zeros((2, *obs_shape), dtype=torch.uint8))
    finally:
        for h in handles:
            h.remove()
    return shapes


def spatial_layers(agent: nn.Module, names=None) -> dict:
    """``{name: (C, h, w)}`` of the layers among ``names`` (default :func:`layer_names`) with spatial
    activations, in the order listed (input side first for documented layers)."""
    return {n: s for n, s in layer_shapes(agent, names=names).items() if len(s) == 3}
