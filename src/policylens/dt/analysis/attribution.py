"""Direct logit attribution of a decision transformer (Decision Transformer
Interpretability's logit and preference attribution).

The residual stream at the state token that predicts an action is a sum of components: the token embedding
(the state token's own; RTG and action tokens sit at other positions, so their direct share here is 0), the
time embedding, each attention head's output, each attention output bias, each MLP's output. The unembedding
is linear once LayerNorm's scale is frozen at its cached value (as TransformerLens's ``logit_attrs`` does), so
each component's contribution to each action logit is exact and they sum to the logits, with the LayerNorm
bias and ``b_U`` as the component ``unembed.bias``. A head's contribution further splits over the tokens it
attends to (``Contributions.sources``): its share through the RTG token is how the RTG reaches the decision.

A preference (logit of one action minus another) is the first-class target: softmax ignores a shared shift
of the logits, differences do not. :func:`state_contribution_map` splits the state token's contribution over
the cells of the 7x7 view (exact for the linear ``grid`` and ``raw`` state embeddings).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .inputs import as_inputs

TOKEN_TYPES = ("rtg", "state", "action")  # the token at sequence position p is TOKEN_TYPES[p % 3]
PLANES = ("object", "colour", "state")  # the three channels of MiniGrid's symbolic encoding


def head_name(layer: int, head: int) -> str:
    return f"blocks.{layer}.attn.head{head}"


def mlp_name(layer: int) -> str:
    return f"blocks.{layer}.mlp"


def component_names(model) -> list:
    """Names of the direct contributions, in order: embeddings, then per layer its heads, ``b_O`` and MLP."""
    names = [f"embed.{t}" for t in TOKEN_TYPES] + ["embed.time"]
    for layer, block in enumerate(model.blocks):
        names += [head_name(layer, h) for h in range(model.config.n_heads)] + [f"blocks.{layer}.attn.b_O"]
        if not block.attn_only:
            names.append(mlp_name(layer))
    return names + ["unembed.bias"]


def source_labels(k: int) -> list:
    """Token labels of a K-step window: ``R0, s0, a0, ..., R{K-1}, s{K-1}``."""
    return [f"{'Rsa'[p % 3]}{p // 3}" for p in range(3 * k - 1)]


def action_index(model, action) -> int:
    """An action name or index -> index, with a clear error naming the actions."""
    if isinstance(action, str):
        if action not in model.action_names:
            raise KeyError(f"unknown action {action!r}; the model's actions: {', '.join(model.action_names)}")
        return model.action_names.index(action)
    a = int(action)
    if not 0 <= a < model.config.num_actions:
        raise KeyError(f"action index {a} out of range; the model has {model.config.num_actions} actions "
                       f"({', '.join(model.action_names)})")
    return a


def preference_direction(model, action, other) -> torch.Tensor:
    """(d_model,) the residual direction whose dot product is logit(action) - logit(other).

    With LayerNorm the final LayerNorm's weight is folded in; the residual is centred and divided by its
    scale before this direction applies (what :func:`readout` does per position).
    """
    u = model.W_U[:, action_index(model, action)] - model.W_U[:, action_index(model, other)]  # (d,)
    return (u * model.ln_final.w if model.config.layer_norm else u).detach()


def readout(model, cache, p: int) -> tuple:
    """The map from residual vectors at sequence position ``p`` to logits, LayerNorm scale frozen:
    ``(R (B, d, A), bias (B, A))``; logits = resid @ R + bias and any component c contributes c @ R."""
    w_u = model.W_U.detach()  # (d, A)
    batch = cache["hook_embed"].shape[0]
    if not model.config.layer_norm:
        return w_u.expand(batch, *w_u.shape), model.b_U.detach().expand(batch, -1)
    g = model.ln_final.w.detach()[:, None] * w_u  # (d, A)
    scale = cache["ln_final.hook_scale"][:, p]  # (B, 1)
    r = (g - g.mean(0, keepdim=True))[None] / scale[:, :, None]  # (B, d, A): centring folded in
    return r, (model.ln_final.b.detach() @ w_u + model.b_U.detach()).expand(batch, -1)


def _position(model, inputs, position: int) -> tuple:
    k = inputs.context
    t = position + k if position < 0 else position
    if not 0 <= t < k:
        raise ValueError(f"position {position} is outside the window of {k} timestep(s)")
    return t, 3 * t + 1


def _residual_components(model, cache, p: int) -> torch.Tensor:
    """(C, B, d): the residual stream at position ``p`` split into :func:`component_names` (bias excluded)."""
    embed, time = cache["hook_embed"][:, p], cache["hook_pos_embed"][:, p]  # (B, d)
    zero = torch.zeros_like(embed)
    parts = [embed if p % 3 == i else zero for i in range(3)] + [time]
    for layer, block in enumerate(model.blocks):
        z = cache[f"blocks.{layer}.attn.hook_z"][:, p]  # (B, H, dh)
        parts += list(torch.einsum("bhe,hed->hbd", z, block.attn.W_O.detach()))  # H x (B, d)
        parts.append(block.attn.b_O.detach().expand_as(embed))
        if not block.attn_only:
            parts.append(cache[f"blocks.{layer}.hook_mlp_out"][:, p])
    return torch.stack(parts)  # (C - 1, B, d)


def _head_sources(model, cache, p: int) -> torch.Tensor:
    """(L*H, B, S, d): each head's output at ``p`` split over the tokens it attends to (pattern x value)."""
    out = []
    for layer, block in enumerate(model.blocks):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][:, :, p]  # (B, H, S)
        v = cache[f"blocks.{layer}.attn.hook_v"]  # (B, S, H, dh)
        out.append(torch.einsum("bhs,bshe,hed->hbsd", pattern, v, block.attn.W_O.detach()))
    return torch.cat(out)  # (L*H, B, S, d)


@dataclass
class Contributions:
    """Direct contributions to each action logit at one prediction position.

    ``values`` (C, A) for one window, (C, B, A) for a batch; they sum over C to ``logits`` ((A,) or (B, A)).
    ``sources`` (L*H, S, A) (or (L*H, B, S, A)): each head's contribution through each token it attends to
    (``source_labels``); summed over S it is that head's row of ``values``.
    """

    components: list
    values: torch.Tensor
    logits: torch.Tensor
    action_names: list
    sources: torch.Tensor
    source_labels: list
    position: int = -1
    heads: list = field(default_factory=list)

    def index(self, name: str) -> int:
        if name not in self.components:
            raise KeyError(f"unknown component {name!r}; components: {', '.join(self.components)}")
        return self.components.index(name)

    def __getitem__(self, name: str) -> torch.Tensor:
        """One component's contributions, (A,) (or (B, A))."""
        return self.values[self.index(name)]

    def action_index(self, a) -> int:
        if isinstance(a, str):
            if a not in self.action_names:
                raise KeyError(f"unknown action {a!r}; actions: {', '.join(self.action_names)}")
            return self.action_names.index(a)
        return int(a)

    def preference(self, a, b) -> torch.Tensor:
        """(C,) (or (C, B)): each component's contribution to logit(a) - logit(b)."""
        return self.values[..., self.action_index(a)] - self.values[..., self.action_index(b)]

    def to_dict(self) -> dict:
        return {"components": list(self.components), "action_names": list(self.action_names),
                "values": self.values.tolist(), "logits": self.logits.tolist(), "position": self.position,
                "heads": list(self.heads), "source_labels": list(self.source_labels),
                "sources": self.sources.tolist()}


@torch.no_grad()
def logit_contributions(model, inputs, *, position: int = -1) -> Contributions:
    """Decompose the action logits at the state token of timestep ``position`` of the window(s)."""
    inputs = as_inputs(inputs)
    t, p = _position(model, inputs, position)
    logits, cache = model.run_with_cache(*inputs.args())  # (B, K, A)
    r, bias = readout(model, cache, p)  # (B, d, A), (B, A)
    vectors = _residual_components(model, cache, p)  # (C-1, B, d)
    values = torch.cat([torch.einsum("cbd,bda->cba", vectors, r), bias[None]])  # (C, B, A)
    sources = torch.einsum("nbsd,bda->nbsa", _head_sources(model, cache, p), r)  # (L*H, B, S, A)
    single = inputs.batch_size == 1
    heads = [head_name(layer, h) for layer in range(model.config.n_layers) for h in range(model.config.n_heads)]
    return Contributions(components=component_names(model), values=values[:, 0] if single else values,
                         logits=logits[0, t] if single else logits[:, t], action_names=list(model.action_names),
                         sources=sources[:, 0, :p + 1] if single else sources[:, :, :p + 1],
                         source_labels=source_labels(inputs.context)[:p + 1], position=t, heads=heads)


# ------------------------------------------------------------------------------------------ the 7x7 view
def feature_planes(model) -> list:
    """Slices of the state embedding's feature axis belonging to each plane (object, colour, state)."""
    from ...envs.minigrid import ONEHOT_SIZES

    if model.config.state_embedding == "raw":
        return [slice(i, i + 1) for i in range(3)]
    edges = np.cumsum((0,) + ONEHOT_SIZES)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def state_weights(model) -> torch.Tensor:
    """(H, W, F, d): the vector each cell's feature writes into the state token (``grid``/``raw`` only)."""
    emb = model.embed_state
    if model.config.state_embedding not in ("grid", "raw"):
        raise ValueError(f"a per-cell split needs a linear state embedding (grid or raw); this model's is "
                         f"{model.config.state_embedding!r}, whose convolutions mix neighbouring cells")
    h, w = model.config.obs_shape[:2]
    return emb.linear.weight.detach().T.reshape(h, w, emb.num_features, -1)  # (H, W, F, d)


def target_direction(model, target) -> tuple:
    """``"forward"`` -> (A,) one-hot weights over logits; ``("forward", "right")`` -> +1/-1; with a label."""
    weights = torch.zeros(model.config.num_actions)
    if isinstance(target, (tuple, list)):
        a, b = target
        weights[action_index(model, a)] += 1
        weights[action_index(model, b)] -= 1
        return weights, f"{model.action_names[action_index(model, a)]} - {model.action_names[action_index(model, b)]}"
    weights[action_index(model, target)] = 1
    return weights, f"logit {model.action_names[action_index(model, target)]}"


@dataclass
class StateMap:
    """The state token's direct contribution to a target split over the view, laid out as the observation
    (``[x, y]``; the agent sits at x = W // 2, y = H - 1 facing -y). ``planes`` (3, H, W): object, colour,
    state channel; ``cells`` (H, W) their sum; ``bias``: the embedding's bias. ``cells.sum() + bias`` is the
    ``embed.state`` contribution."""

    planes: np.ndarray
    cells: np.ndarray
    bias: float
    target: str
    obs: np.ndarray

    @property
    def total(self) -> float:
        return float(self.cells.sum() + self.bias)

    def to_dict(self) -> dict:
        return {"target": self.target, "planes": self.planes.tolist(), "plane_names": list(PLANES),
                "cells": self.cells.tolist(), "bias": self.bias, "total": self.total, "obs": self.obs.tolist()}


@torch.no_grad()
def state_contribution_map(model, inputs, target=("forward", "right"), *, position: int = -1) -> StateMap:
    """Per-cell (and per-channel) direct contributions of the state token to ``target`` (an action, or a
    pair ``(a, b)`` for the preference a - b), for one window, LayerNorm frozen as in :func:`logit_contributions`."""
    inputs = as_inputs(inputs)
    if inputs.batch_size != 1:
        raise ValueError(f"state_contribution_map reads one window; got a batch of {inputs.batch_size}")
    weights_sf = state_weights(model)  # (H, W, F, d)
    t, p = _position(model, inputs, position)
    _, cache = model.run_with_cache(*inputs.args())
    r, _ = readout(model, cache, p)  # (1, d, A)
    weights, label = target_direction(model, target)
    direction = r[0] @ weights  # (d,)
    features = cache["embed_state.hook_features"][0, t]  # (H, W, F)
    per_feature = features * (weights_sf @ direction)  # (H, W, F)
    planes = np.stack([per_feature[..., s].sum(-1).numpy() for s in feature_planes(model)])  # (3, H, W)
    bias = float(model.embed_state.linear.bias.detach() @ direction)
    return StateMap(planes=planes, cells=planes.sum(0), bias=bias, target=label,
                    obs=inputs.states[0, t].cpu().numpy())
