"""Attribution over a dataset, grouped by situation: what is in front of the agent, at which target RTG.

Decision Transformer Interpretability's behaviours are trigrams (RTG, what is in front, action): at RTG 0.9
with an obstacle in front the model must not go forward, at RTG -1 with the goal in front neither. Recorded
states are replayed with their RTG set to each target, and each component's mean contribution to a preference (and each head's attention
from the state to the RTG token) is averaged per front-cell entity: the component that pushes against
forward only in the situation of a behaviour is its candidate carrier, for the ablation table to confirm.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from .attribution import logit_contributions
from .circuits import ENTITIES, front_cell
from .inputs import as_inputs

OBJECTS = {code[0]: name for name, code in ENTITIES.items()}  # MiniGrid object index -> entity name


def front_entities(model, states: torch.Tensor) -> list:
    """The entity in front of the agent in the last view of each window, ``states`` (B, K, H, W, 3)."""
    x, y = front_cell(model)
    objects = states[:, -1, x, y, 0].tolist()  # (B,)
    return [OBJECTS.get(int(o), "other") for o in objects]


@torch.no_grad()
def attention_to_rtg(model, inputs) -> np.ndarray:
    """(B, L*H): each head's attention from the last state token to the RTG token of the same step."""
    inputs = as_inputs(inputs)
    p = inputs.seq_len - 1
    _, cache = model.run_with_cache(*inputs.args(), names_filter=lambda n: n.endswith("hook_pattern"))
    heads = [cache[f"blocks.{layer}.attn.hook_pattern"][:, :, p, p - 1] for layer in range(model.config.n_layers)]
    return torch.cat(heads, 1).numpy()  # (B, L*H)


@torch.no_grad()
def by_situation(model, inputs, rtgs=(-1.0, 0.0, 0.9), preference=("forward", "right")) -> dict:
    """Mean contribution of every component to ``preference`` per (target RTG, front entity), the mean
    preference itself, each head's attention to the RTG, and the share of windows whose top action is
    ``preference[0]``; and per target RTG the effect of putting an obstacle, the goal or a wall ahead
    (:func:`edit_ahead`). Every window's RTGs are shifted so its last step's RTG is the target."""
    inputs = as_inputs(inputs)
    groups = front_entities(model, inputs.states)
    names = [n for n in ENTITIES if n in groups] + (["other"] if "other" in groups else [])
    rows: dict = {}
    for rtg in [float(r) for r in rtgs]:
        shifted = replace(inputs, rtgs=inputs.rtgs.float() - inputs.rtgs.float()[:, -1:] + rtg)
        contrib = logit_contributions(model, shifted)
        values = contrib.preference(*preference)  # (C, B) or (C,)
        values = values[:, None] if values.dim() == 1 else values
        logits = contrib.logits.reshape(-1, len(contrib.action_names))  # (B, A)
        pref = (logits[:, contrib.action_index(preference[0])] - logits[:, contrib.action_index(preference[1])]).numpy()
        top = (logits.argmax(-1) == contrib.action_index(preference[0])).numpy()
        attn = attention_to_rtg(model, shifted)  # (B, L*H)
        rows[f"{rtg:g}"] = {}
        for name in names:
            pick = np.array([g == name for g in groups])
            rows[f"{rtg:g}"][name] = {
                "windows": int(pick.sum()), "preference": float(pref[pick].mean()),
                "top_is_" + str(preference[0]): float(top[pick].mean()),
                "components": dict(zip(contrib.components, values[:, torch.as_tensor(pick)].mean(1).tolist())),
                "attention_to_rtg": dict(zip(contrib.heads, attn[pick].mean(0).tolist()))}
    edits = {f"{r:g}": {e: edit_ahead(model, inputs, e, r, preference) for e in ("obstacle", "goal", "wall")}
             for r in [float(r) for r in rtgs]}
    return {"preference": f"{preference[0]} - {preference[1]}", "rtgs": [float(r) for r in rtgs],
            "entities": names, "counts": {n: int(sum(g == n for g in groups)) for n in names}, "rows": rows,
            "edits": edits}


@torch.no_grad()
def edit_ahead(model, inputs, entity: str, rtg: float, preference=("forward", "right")) -> dict:
    """The causal version of the QK/OV reading: in the windows with an empty cell ahead, put ``entity`` there
    (its MiniGrid codes) at target ``rtg`` and measure the mean change of each head's attention to the RTG, of
    each component's contribution to ``preference`` and of the preference itself."""
    inputs = as_inputs(inputs)
    rows = [i for i, g in enumerate(front_entities(model, inputs.states)) if g == "empty"]
    if not rows:
        return {"windows": 0}
    before = inputs.select(rows)
    before = replace(before, rtgs=before.rtgs.float() - before.rtgs.float()[:, -1:] + float(rtg))
    states = before.states.clone()
    x, y = front_cell(model)
    states[:, -1, x, y] = torch.tensor(ENTITIES[entity], dtype=states.dtype)
    after = replace(before, states=states)
    c0, c1 = logit_contributions(model, before), logit_contributions(model, after)
    d_attn = (attention_to_rtg(model, after) - attention_to_rtg(model, before)).mean(0)  # (L*H,)
    d_comp = (c1.preference(*preference) - c0.preference(*preference)).reshape(len(c0.components), -1).mean(1)
    return {"windows": len(rows), "entity": entity, "rtg": float(rtg),
            "attention_to_rtg": dict(zip(c0.heads, d_attn.tolist())),
            "components": dict(zip(c0.components, d_comp.tolist())), "preference": float(d_comp.sum())}
