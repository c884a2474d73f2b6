"""The Agent interface and the actor-critic head every architecture here shares.

``agent(obs, state=None, first=None) -> AgentOutput(logits, value, state)``; ``obs`` is as the env gives it,
uint8 NHWC images or float ``(B, D)`` vectors, and the agent scales it itself. A recurrent agent takes its GRU state ``(B, hidden)`` and a
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


#: Activation modules by name (``activation=`` of the MLP layers: the ``mlp`` trunk and the head towers).
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def activation_module(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class ScaleObs(nn.Module):
    """uint8 NHWC -> float NCHW, times ``scale`` (1/255 for pixels); a vector ``(B, D)`` stays ``(B, D)``."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float() * self.scale
        return x.permute(0, 3, 1, 2) if x.dim() == 4 else x  # (B, C, H, W) | (B, D)


class MaxQ(nn.Module):
    """A Q-network's value: ``max_a Q(s, a)`` over its ``(B, A)`` outputs, as ``(B, 1)`` (the ``v`` layer of an
    agent built with ``q_values=True``: its ``pi`` outputs are Q-values, read as logits of the greedy policy)."""

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return q.max(dim=-1, keepdim=True).values  # (B, 1)


def dense_stack(prefix: str, widths, width_in: int, activation: str) -> tuple:
    """``[(name, Sequential(Linear, activation))]`` for ``prefix1, prefix2, ...`` and the last width."""
    layers = []
    for k, width in enumerate(widths):
        layers.append((f"{prefix}{k + 1}", nn.Sequential(nn.Linear(width_in, int(width)), activation_module(activation))))
        width_in = int(width)
    return layers, width_in


class ActorCritic(nn.Module):
    """Trunk (subclass's :meth:`features`) -> [GRU] -> [head towers] -> policy and value heads.

    Named layers added here: ``hx`` (B, hidden) the GRU state when recurrent; ``pi_fc1, pi_fc2, ...`` and
    ``v_fc1, ...`` the dense layers of the policy and value towers (``pi_hidden`` / ``v_hidden`` widths, each
    post-``activation``; none by default); ``pi`` (B, A) logits; ``v`` (B, 1) value. Subclasses list their own
    layers in ``LAYERS`` (name -> shape doc). Options for agents trained elsewhere (Stable-Baselines3's
    ``net_arch``, CleanRL's separate actor and critic): ``q_values=True`` makes ``pi`` a Q-network's output and
    ``v`` its maximum (:class:`MaxQ`); :meth:`attach_value_trunk` gives the value its own trunk.
    """

    LAYERS: dict = {}
    action_names: list[str]  # the env's names for the logits, where the checkpoint has them (load_agent sets it)
    policylens_edits: list[dict]  # what out-of-place edits record (edit.swap, edit.project); saved as "edits"
    # recurrent agents only:
    gru: nn.GRUCell
    h0: nn.Parameter  # (hidden,)
    hx: nn.Module

    def __init__(self, obs_shape, num_actions: int, feature_dim: int, recurrent: bool = False, hidden: int = 64,
                 pi_hidden=(), v_hidden=None, activation: str = "relu", q_values: bool = False):
        super().__init__()
        self.obs_shape, self.num_actions, self.recurrent = tuple(obs_shape), int(num_actions), bool(recurrent)
        self.q_values = bool(q_values)
        self.head_layers = {}  # tower layer name -> shape doc
        self.value_trunk: ActorCritic | None = None
        head_in = feature_dim
        if recurrent:
            self.gru = nn.GRUCell(feature_dim, hidden)
            self.h0 = nn.Parameter(torch.zeros(hidden))  # learned initial state
            self.hx = nn.Identity()  # hook point for the hidden state, (B, hidden)
            head_in = hidden
        if q_values and v_hidden is not None:
            raise ValueError("q_values=True: the value is the largest Q-value, so there is no value tower (v_hidden)")
        v_hidden = tuple(pi_hidden if v_hidden is None else v_hidden)
        self.towers, widths = {}, {}  # "pi" | "v" -> its layers' names; the width each tower ends with
        for tower, sizes in {"pi": tuple(pi_hidden), "v": () if q_values else v_hidden}.items():
            layers, widths[tower] = dense_stack(f"{tower}_fc", sizes, head_in, activation)
            self.towers[tower] = [name for name, _ in layers]
            for name, layer in layers:
                self.add_module(name, layer)
                self.head_layers[name] = f"(B, {layer[0].out_features}) post-{activation}, {tower} tower"
        self.pi = nn.Linear(widths["pi"], num_actions)
        self.v = MaxQ() if q_values else nn.Linear(widths["v"], 1)

    def attach_value_trunk(self, trunk: "ActorCritic") -> None:
        """Give the value its own trunk (``trunk.features``; its heads and towers are dropped), as a
        Stable-Baselines3 policy with ``share_features_extractor=False`` has: its layers are ``value_trunk.NAME``."""
        if self.recurrent or self.q_values:
            raise ValueError("a separate value trunk is for feed-forward actor-critics (not recurrent, not q_values)")
        for name in ["pi", "v", *trunk.head_layers]:
            if hasattr(trunk, name):
                delattr(trunk, name)
        trunk.head_layers, trunk.towers = {}, {"pi": [], "v": []}
        self.value_trunk = trunk

    def _tower(self, tower: str, x: torch.Tensor) -> torch.Tensor:
        for name in self.towers[tower]:
            x = getattr(self, name)(x)
        return x

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
                "(obs must be (B, H, W, C) images or (B, D) vectors, as the env gives them)"
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
        return self._heads(x, obs)

    def _heads(self, x: torch.Tensor, obs: torch.Tensor) -> AgentOutput:
        """Policy and value from the trunk's (or GRU's) output ``x`` (B, F); ``obs`` (B, ...) for a value trunk."""
        logits = self.pi(self._tower("pi", x))  # (B, A)
        if self.q_values:
            value = self.v(logits)  # (B, 1) the largest Q-value
        else:
            xv = x if self.value_trunk is None else self.value_trunk.features(obs)  # (B, F)
            value = self.v(self._tower("v", xv))  # (B, 1)
        return AgentOutput(logits, value.squeeze(-1), x if self.recurrent else None)

    def forward_sequence(self, obs, state=None, first=None) -> AgentOutput:
        """``L`` steps at once: ``obs`` (L, B, H, W, C), ``state`` (B, hidden) before the first, ``first`` (L, B).
        The same outputs as ``L`` calls of :meth:`forward` (time-major, (L*B, ...)), with the trunk run once over
        all ``L*B`` observations and only the GRU stepped in a loop; ``state`` holds every step's GRU state."""
        L, B = obs.shape[:2]
        self.check_obs(obs[0])
        flat = obs.reshape(L * B, *obs.shape[2:])  # (L*B, H, W, C)
        x = self.features(flat)  # (L*B, F)
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
        return self._heads(x, flat)


def layer_names(agent: nn.Module) -> list:
    """Names of the layers worth analysing: the agent's documented ones, else every named submodule. An agent
    built on another's conv trunk (``trunk``, as the attention agent) lists that trunk's documented layers
    first (``trunk.conv3``), those it still has."""
    documented = list(getattr(agent, "LAYERS", {}) or {})
    if documented or isinstance(agent, ActorCritic):
        inner = getattr(agent, "trunk", None)
        if isinstance(inner, nn.Module):
            kept = dict(inner.named_modules())
            documented = [f"trunk.{n}" for n in (getattr(inner, "LAYERS", None) or {}) if n in kept] + documented
        extra = ["hx"] if getattr(agent, "recurrent", False) else []
        trunk = getattr(agent, "value_trunk", None)
        extra += [f"value_trunk.{n}" for n in (getattr(trunk, "LAYERS", None) or {})] if trunk is not None else []
        return documented + extra + list(getattr(agent, "head_layers", {}) or {}) + ["pi", "v"]
    return [n for n, _ in agent.named_modules() if n]


def get_layer(agent: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``, or a clear error listing the valid names."""
    modules = dict(agent.named_modules())
    if name not in modules or not name:
        raise KeyError(f"agent has no layer {name!r}; layers: {', '.join(layer_names(agent))}")
    return modules[name]
