"""Everything the app shows about one decision, computed in one go: the model's logits and action preferences
(ablated and, beside them, unablated), each head's attention pattern, every component's direct contribution to
the logits and to the chosen preference, each head's contribution through each token, and the state token's
contribution over the 7x7 view.

:func:`step_analysis` is the whole per-step answer; its pieces are the analysis API's
(:func:`~policylens.dt.analysis.logit_contributions`, :func:`~policylens.dt.analysis.state_contribution_map`,
:func:`~policylens.dt.analysis.ablate`), so the app shows exactly what the reports compute.
"""
from __future__ import annotations

import time
from contextlib import nullcontext

import numpy as np
import torch

from ..analysis.ablation import ablate, component_list
from ..analysis.attribution import logit_contributions, state_contribution_map
from ..analysis.scan import preference_pairs


def _round(x, digits: int = 4):
    """Nested lists of floats rounded for the wire."""
    if isinstance(x, (torch.Tensor, np.ndarray)):
        x = x.tolist()
    if isinstance(x, list):
        return [_round(v, digits) for v in x]
    return round(float(x), digits)


def _policy(logits: torch.Tensor, names: list) -> dict:
    """Logits, probabilities and every preference pair of one decision."""
    probs = torch.softmax(logits.float(), -1)  # (A,)
    pairs = preference_pairs(names)
    return {"logits": _round(logits), "probs": _round(probs), "preferred": int(logits.argmax()),
            "preferences": [{"pair": [a, b], "value": round(float(logits[names.index(a)] - logits[names.index(b)]), 4)}
                            for a, b in pairs]}


def _patterns(model, window) -> list:
    """Per layer and head, the attention pattern ``(S, S)`` of the window (under whatever hooks are active)."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.config.n_layers)]
    _, cache = model.run_with_cache(*window.args(), names_filter=lambda n: n in names)
    return [{"layer": layer, "head": h, "pattern": _round(cache[name][0, h], 3)}
            for layer, name in enumerate(names) for h in range(model.config.n_heads)]


@torch.no_grad()
def step_analysis(model, window, *, ablation=(), mode: str = "zero", means=None, preference=None) -> dict:
    """The app's analysis of one window (batch of one, the current step last).

    ``ablation``: components to ablate (TransformerLens names, as :func:`~policylens.dt.analysis.ablate`);
    ``preference``: the pair ``(a, b)`` whose logit difference the contributions and the state map split
    (default: the model's two most likely actions). Returns a JSON-ready dict with the time it took (ms).
    """
    start = time.perf_counter()
    names = list(model.action_names)
    unablated = model(*window.args())[0, -1]  # (A,)
    with ablate(model, list(ablation), mode=mode, means=means) if ablation else nullcontext():
        contributions = logit_contributions(model, window)
        logits = contributions.logits  # (A,)
        if preference is None:
            top = logits.argsort(descending=True)[:2].tolist()
            preference = (names[top[0]], names[top[1]])
        pref = contributions.preference(*preference)  # (C,)
        state_map = None
        if model.config.state_embedding in ("grid", "raw"):
            state_map = state_contribution_map(model, window, tuple(preference))
        patterns = _patterns(model, window)
    return {
        "policy": _policy(logits, names),
        "unablated": _policy(unablated, names) if ablation else None,
        "attention": patterns,
        "tokens": contributions.source_labels,
        "contributions": {"components": contributions.components, "values": _round(contributions.values),
                          "preference": list(preference), "on_preference": _round(pref),
                          "heads": contributions.heads,
                          "through_tokens": _round(contributions.sources[..., names.index(preference[0])]
                                                   - contributions.sources[..., names.index(preference[1])])},
        "state_map": None if state_map is None else {"cells": _round(state_map.cells), "bias": round(state_map.bias, 4),
                                                     "target": state_map.target},
        "ablation": {"components": list(ablation), "mode": mode, "available": component_list(model)},
        "ms": round(1000 * (time.perf_counter() - start), 2),
    }

