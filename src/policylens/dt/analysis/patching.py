"""Activation patching between two inputs: which activations carry the difference between them.

Run the *corrupt* input, overwrite one activation (a position, a head at a position, or all of it) with its
value on the *clean* input, and measure how much of the clean-vs-corrupt preference comes back:
``restored = (patched - corrupt) / (clean - corrupt)`` of the logit difference ``logit(a) - logit(b)`` at
one prediction position. Patching the whole residual stream entering a block restores 100%, patching
nothing 0%. The natural decision-transformer experiment: the same state at RTG 0.9 (clean) and -1
(corrupt) — which heads move the RTG into the decision.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .ablation import _head_dim, _pos_dims
from .attribution import _position, action_index, source_labels
from .inputs import as_inputs


@dataclass
class Patching:
    """``restored`` (P,) or (P, H): share restored by patching each position (and head) alone; ``restored_all``:
    patching every position and head of the hook together. ``positions``: labels of the patched axis."""

    hook: str
    preference: tuple
    clean: float
    corrupt: float
    restored: np.ndarray
    restored_all: float
    positions: list
    heads: Optional[list]

    def to_dict(self) -> dict:
        return {"hook": self.hook, "preference": list(self.preference), "clean": self.clean, "corrupt": self.corrupt,
                "restored": self.restored.tolist(), "restored_all": self.restored_all,
                "positions": self.positions, "heads": self.heads}


def _metric(logits: torch.Tensor, t: int, a: int, b: int) -> float:
    """Mean over the batch of logit(a) - logit(b) at timestep t."""
    return float((logits[:, t, a] - logits[:, t, b]).mean())


def _check_pair(clean, corrupt) -> None:
    for name in ("states", "actions", "rtgs", "timesteps"):
        x, y = getattr(clean, name), getattr(corrupt, name)
        if x.shape != y.shape:
            raise ValueError(f"clean and corrupt inputs differ in {name} shape {tuple(x.shape)} vs {tuple(y.shape)}; "
                             "patching needs windows of the same length")


def _preference(model, logits_clean, logits_corrupt, t: int, preference) -> tuple:
    """Explicit (a, b), or: the clean input's top action against the corrupt input's (runner-up if the same)."""
    if preference is not None:
        return action_index(model, preference[0]), action_index(model, preference[1])
    clean = logits_clean[:, t].mean(0)  # (A,)
    a, b = int(clean.argmax()), int(logits_corrupt[:, t].mean(0).argmax())
    return (a, b) if a != b else (a, int(clean.topk(2).indices[1]))


@torch.no_grad()
def patched_share(model, clean_inputs, corrupt_inputs, hook_name: str, positions=None, heads=None, *,
                  preference=None, position: int = -1) -> float:
    """Share of the preference restored by patching ``hook_name`` at ``positions`` (indices of its position
    axis; None = all) and ``heads`` (None = all) from the clean run into the corrupt run."""
    return _run(model, as_inputs(clean_inputs), as_inputs(corrupt_inputs), hook_name, preference, position,
                [(positions, heads)])[2][0]


def _axis_mask(shape, dim: int, keep) -> torch.Tensor:
    """Bool mask broadcastable to ``shape``: True at the indices ``keep`` of axis ``dim`` (None: all)."""
    sub = torch.zeros(shape[dim], dtype=torch.bool)
    sub[slice(None) if keep is None else torch.as_tensor(keep, dtype=torch.long)] = True
    view = [1] * len(shape)
    view[dim] = -1
    return sub.reshape(view)


def _run(model, clean, corrupt, hook_name, preference, position, selections) -> tuple:
    """(clean metric, corrupt metric, [restored share per selection], (a, b), activation shape); ``selections``:
    ``[(positions, heads)]`` or a function of the activation's shape giving them."""
    if hook_name not in model.hook_dict:
        raise KeyError(f"unknown hook {hook_name!r}; the model's hooks: {', '.join(model.hook_dict)}")
    _check_pair(clean, corrupt)
    t, _ = _position(model, clean, position)
    logits_clean, cache = model.run_with_cache(*clean.args(), names_filter=lambda n: n == hook_name)
    logits_corrupt = model(*corrupt.args())
    a, b = _preference(model, logits_clean, logits_corrupt, t, preference)
    m_clean, m_corrupt = _metric(logits_clean, t, a, b), _metric(logits_corrupt, t, a, b)
    if abs(m_clean - m_corrupt) < 1e-6:
        raise ValueError(f"the clean and corrupt inputs give the same preference {model.action_names[a]} - "
                         f"{model.action_names[b]} ({m_clean:.4g}); there is nothing to restore")
    saved = cache[hook_name]
    pos_dim, head_dim = _pos_dims(hook_name)[0], _head_dim(hook_name)
    shares = []
    for positions, heads in (selections(saved.shape) if callable(selections) else selections):
        mask = _axis_mask(saved.shape, pos_dim, positions)
        if head_dim is not None:
            mask = mask & _axis_mask(saved.shape, head_dim, heads)

        def put(act, hook, mask=mask):
            return torch.where(mask.to(act.device), saved.to(act.device), act)

        patched = model.run_with_hooks(*corrupt.args(), fwd_hooks=[(hook_name, put)])
        shares.append((_metric(patched, t, a, b) - m_corrupt) / (m_clean - m_corrupt))
    return m_clean, m_corrupt, shares, (a, b), tuple(saved.shape)


@torch.no_grad()
def patch(model, clean_inputs, corrupt_inputs, hook_name: str, *, preference=None, position: int = -1) -> Patching:
    """Patch ``hook_name`` from clean into corrupt at each position alone (and each head alone for per-head hooks
    such as ``blocks.0.attn.hook_z``), and everything at once. ``preference`` ``(a, b)``: the logit difference
    measured (default: the clean top action against the corrupt one) at the state token of ``position``."""
    clean, corrupt = as_inputs(clean_inputs), as_inputs(corrupt_inputs)
    pos_dim, head_dim = _pos_dims(hook_name)[0], _head_dim(hook_name)

    def each_alone(shape) -> list:
        heads = range(shape[head_dim]) if head_dim is not None else [None]
        return [([p], None if h is None else [h]) for p in range(shape[pos_dim]) for h in heads] + [(None, None)]

    m_clean, m_corrupt, shares, (a, b), shape = _run(model, clean, corrupt, hook_name, preference, position,
                                                      each_alone)
    n_pos, n_heads = shape[pos_dim], (shape[head_dim] if head_dim is not None else None)
    restored = np.array(shares[:-1]).reshape(n_pos, n_heads) if n_heads else np.array(shares[:-1])
    labels = source_labels(clean.context) if n_pos == clean.seq_len else [f"t{k}" for k in range(n_pos)]
    return Patching(hook=hook_name, preference=(model.action_names[a], model.action_names[b]), clean=m_clean,
                    corrupt=m_corrupt, restored=restored, restored_all=float(shares[-1]), positions=labels,
                    heads=[f"head{h}" for h in range(n_heads)] if n_heads else None)
