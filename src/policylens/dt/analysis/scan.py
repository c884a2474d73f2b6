"""RTG scan: fix a state, sweep the return-to-go, and watch the logits, the preferences and every component's
contribution change (Decision Transformer Interpretability's RTG scan). Where a behaviour switches on with the
RTG, the component whose contribution switches with it is the one to ablate."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch

from .attribution import logit_contributions
from .inputs import as_inputs


@dataclass
class RTGScan:
    """``rtgs`` (R,); ``logits``/``probs`` (R, A); ``preferences`` {"a - b": (R,)}; ``contributions`` (C, R, A)
    with ``components``; ``rtg_range`` the training data's RTGs (None if unknown)."""

    rtgs: np.ndarray
    logits: np.ndarray
    probs: np.ndarray
    preferences: dict
    components: list
    contributions: np.ndarray
    action_names: list
    rtg_range: "tuple | None" = None

    def preference_contributions(self, a: str, b: str) -> np.ndarray:
        """(C, R): each component's contribution to logit(a) - logit(b) along the scan."""
        ia, ib = self.action_names.index(a), self.action_names.index(b)
        return self.contributions[..., ia] - self.contributions[..., ib]

    def to_dict(self) -> dict:
        return {"rtgs": self.rtgs.tolist(), "logits": self.logits.tolist(), "probs": self.probs.tolist(),
                "preferences": {k: v.tolist() for k, v in self.preferences.items()},
                "components": list(self.components), "contributions": self.contributions.tolist(),
                "action_names": list(self.action_names),
                "rtg_range": list(self.rtg_range) if self.rtg_range else None}


def preference_pairs(action_names: list) -> list:
    """Every pair of actions ``(a, b)`` in a fixed order (forward first when there is one)."""
    order = sorted(action_names, key=lambda n: (n != "forward", action_names.index(n)))
    return list(combinations(order, 2))


@torch.no_grad()
def rtg_scan(model, inputs, rtgs=np.linspace(-1, 1, 41), *, position: int = -1) -> RTGScan:
    """Scan one window (batch of one) over ``rtgs`` (R,): the last step's RTG takes each value, earlier steps
    keep their differences to it. Out-of-training RTGs are answered (the range is recorded for the plot)."""
    window = as_inputs(inputs)
    rtgs = np.asarray(rtgs, np.float32).reshape(-1)  # (R,)
    if len(rtgs) == 0:
        raise ValueError("rtg_scan needs at least one RTG")
    contrib = logit_contributions(model, window.with_rtg(rtgs), position=position)
    values = contrib.values if len(rtgs) > 1 else contrib.values[:, None]  # (C, R, A)
    logits = contrib.logits if len(rtgs) > 1 else contrib.logits[None]  # (R, A)
    names = list(model.action_names)
    prefs = {f"{a} - {b}": (logits[:, names.index(a)] - logits[:, names.index(b)]).numpy()
             for a, b in preference_pairs(names)}
    return RTGScan(rtgs=rtgs, logits=logits.numpy(), probs=torch.softmax(logits, -1).numpy(), preferences=prefs,
                   components=contrib.components, contributions=values.numpy(), action_names=names,
                   rtg_range=getattr(model, "rtg_range", None))
