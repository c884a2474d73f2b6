"""What to explain or optimise in a simulated rollout: a target maps a :class:`~policylens.sim.loop.Rollout` to one
differentiable number per sample, ``(B,)``. Saliency through time (:mod:`policylens.sim.analyses.saliency.core`)
takes its gradient; generative visualisation (:mod:`policylens.sim.analyses.optimize.core`) maximises or minimises
it.

Steps index the rollout (0 = the first simulated step); a window ``[start, stop)`` averages over steps, ``stop``
None meaning "to the end". Targets by name, :func:`make_target`::

    value       mean value over the window
    value_drop  value(start) - value(stop - 1): how far the agent's expectation falls
    action      mean log-probability of one action over the window (index or name)
    actions     log-probability of a whole action sequence from ``start`` (indices or names, comma-separated)
    neuron      mean of hidden-state unit k over the window (the state the agent produced at each step)
    direction   mean coefficient of the hidden state on one saved direction (``policylens sim hx``'s PCA/ICA/NMF)

The hidden state a target reads at step t is the one the agent *produced* there (what its heads read): the state
received at t + 1, ``hx_last`` for the last step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

TARGETS = ("value", "action", "actions", "value_drop", "neuron", "direction")


def produced_hx(r) -> torch.Tensor:
    """The state the agent produced at every step, ``(B, T, hidden)``."""
    return torch.cat([r.hx[:, 1:], r.hx_last[:, None]], 1)


def direction_readout(directions, index: int) -> tuple:
    """``(mean (D,), std (D,), z_offset (D,), w (D,))`` with coefficient = ``(((x - mean) / std) - z_offset) @ w``:
    the linear map from raw hidden states to one direction's coefficient, for directions in z-space (``sim hx``;
    without ``meta["std"]`` the states are taken as they are). PCA: the projection; ICA: the unmixing row; NMF and
    others: the least-squares coefficient on the span (NMF's own non-negative fit is not differentiable)."""
    v = directions.vectors.double()  # (K, D)
    d = v.shape[1]
    meta = directions.meta or {}
    mean = torch.as_tensor(meta.get("zscore_mean", [0.0] * d), dtype=torch.float64)  # (D,)
    std = torch.as_tensor(meta.get("std", [1.0] * d), dtype=torch.float64)  # (D,)
    offset = torch.as_tensor(meta["mean"], dtype=torch.float64) if meta.get("mean") is not None else torch.zeros(d)
    if "unmixing" in meta:
        w = torch.as_tensor(meta["unmixing"], dtype=torch.float64)[index]  # (D,)
    elif directions.method == "pca":
        w = v[index]
    else:
        w = torch.linalg.pinv(v)[:, index]  # (D,)
    return mean.float(), std.float(), offset.reshape(-1).float(), w.float()


@dataclass
class Target:
    """``kind`` over steps ``[start, stop)``; ``index`` is the action, unit or direction; ``sequence`` the actions."""

    kind: str
    start: int = 0
    stop: "int | None" = None
    index: int = 0
    sequence: tuple = ()
    readout: "tuple | None" = None  # from direction_readout, for kind "direction"
    label: str = ""

    def window(self, steps: int) -> slice:
        stop = steps if self.stop is None else self.stop
        if not 0 <= self.start < stop <= steps:
            raise ValueError(f"target window [{self.start}, {stop}) does not fit a rollout of {steps} steps")
        return slice(self.start, stop)

    def __call__(self, r) -> torch.Tensor:
        steps = r.value.shape[1]
        span = self.window(steps)
        if self.kind == "value":
            return r.value[:, span].mean(1)  # (B,)
        if self.kind == "value_drop":
            return r.value[:, span.start] - r.value[:, span.stop - 1]
        logp = torch.log_softmax(r.logits, -1)  # (B, T, A)
        if self.kind == "action":
            return logp[:, span, self.index].mean(1)
        if self.kind == "actions":
            if span.start + len(self.sequence) > steps:
                raise ValueError(f"an action sequence of {len(self.sequence)} from step {span.start} does not fit "
                                 f"a rollout of {steps} steps")
            picks = torch.as_tensor(self.sequence, device=logp.device)  # (L,)
            part = logp[:, span.start:span.start + len(picks)]  # (B, L, A)
            return part.gather(-1, picks.expand(part.shape[0], -1)[..., None])[..., 0].sum(1)
        hx = produced_hx(r)[:, span]  # (B, W, hidden)
        if self.kind == "neuron":
            return hx[..., self.index].mean(1)
        assert self.readout is not None  # made for every "direction" target
        mean, std, offset, w = (x.to(hx) for x in self.readout)
        return ((((hx - mean) / std) - offset) @ w).mean(1)  # (B,)


def _action_index(key, names, count: int) -> int:
    if isinstance(key, str) and not key.lstrip("-").isdigit():
        if key not in names:
            raise KeyError(f"no action named {key!r}; actions: {', '.join(names) or '(unnamed)'}")
        return list(names).index(key)
    k = int(key)
    if not 0 <= k < count:
        raise KeyError(f"action {k} does not exist: the agent has {count} (0-{count - 1})")
    return k


def make_target(kind: str, *, start: int = 0, stop: "int | None" = None, index=0, sequence=(), directions=None,
                action_names=(), num_actions: int = 0, hidden: int = 0) -> Target:
    """A :class:`Target` by name, its arguments checked (unknown kinds, actions, units and directions refused
    naming what exists). ``directions``: a :class:`~policylens.factors.Directions` of layer ``hx`` (``direction``)."""
    if kind not in TARGETS:
        raise ValueError(f"target {kind!r}; expected one of {', '.join(TARGETS)}")
    if start < 0 or (stop is not None and stop <= start):
        raise ValueError(f"target window [{start}, {stop}) is empty or negative")
    if kind == "action":
        a = _action_index(index, action_names, num_actions)
        return Target(kind, start, stop, a, label=f"log p({(list(action_names) + [str(a)] * (a + 1))[a]})")
    if kind == "actions":
        items = sequence.split(",") if isinstance(sequence, str) else list(sequence)
        picks = tuple(_action_index(k.strip() if isinstance(k, str) else k, action_names, num_actions) for k in items
                      if str(k).strip())
        if not picks:
            raise ValueError("target actions needs a sequence of actions, e.g. --sequence forward,forward,left")
        return Target(kind, start, stop, sequence=picks, label=f"log p(actions {','.join(map(str, picks))})")
    if kind == "neuron":
        k = int(index)
        if not 0 <= k < hidden:
            raise KeyError(f"hidden unit {k} does not exist: the agent's state has {hidden} units (0-{hidden - 1})")
        return Target(kind, start, stop, k, label=f"hx[{k}]")
    if kind == "direction":
        if directions is None:
            raise ValueError("target direction needs directions (e.g. RUN/analysis/hx/ica from `policylens sim hx`)")
        from ..edit.swap import direction_index

        if directions.vectors.shape[1] != hidden:
            raise ValueError(f"directions of {directions.vectors.shape[1]} units; the agent's state has {hidden}")
        d = direction_index(directions, index)
        if d is None:
            raise ValueError("target direction needs the index or label of one of the directions (--index)")
        label = directions.labels[d] if d < len(directions.labels) else str(d)
        return Target(kind, start, stop, d, readout=direction_readout(directions, d),
                      label=f"{directions.method} {label}")
    return Target(kind, start, stop, label=kind.replace("_", " "))
