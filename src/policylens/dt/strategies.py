"""Sampling strategies that turn a PPO agent's logits into actions of varied quality, and mixtures of them.

A strategy is written ``NAME`` or ``NAME:PARAM``:

- ``greedy``: the argmax;
- ``sampled``: a sample from softmax(logits);
- ``temperature:T``: a sample from softmax(logits / T);
- ``topk:K``: a sample from softmax over the K most likely actions only;
- ``bottomk:K``: a sample from softmax over the K *least* likely actions only (deliberately bad play);
- ``random``: uniform over all actions, ignoring the logits.

A mixture gives each strategy a share of the episodes; :func:`allocate` turns shares into exact counts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NAMES = ("greedy", "sampled", "temperature", "topk", "bottomk", "random")
_PARAM = {"temperature": float, "topk": int, "bottomk": int}


@dataclass(frozen=True)
class Strategy:
    name: str
    param: "float | None" = None

    @classmethod
    def parse(cls, text: str) -> "Strategy":
        name, _, param = str(text).strip().partition(":")
        if name not in NAMES:
            raise ValueError(f"unknown sampling strategy {text!r}; expected one of {', '.join(NAMES)} "
                             "(temperature:T, topk:K and bottomk:K take a parameter)")
        if name not in _PARAM:
            if param:
                raise ValueError(f"strategy {name!r} takes no parameter, got {text!r}")
            return cls(name)
        try:
            value = _PARAM[name](param)
        except ValueError:
            raise ValueError(f"strategy {text!r}: {name} needs a {_PARAM[name].__name__} parameter, "
                             f"e.g. {name}:2") from None
        if value <= 0:
            raise ValueError(f"strategy {text!r}: the parameter must be > 0")
        return cls(name, value)

    def __str__(self) -> str:
        if self.param is None:
            return self.name
        return f"{self.name}:{self.param:g}" if isinstance(self.param, float) else f"{self.name}:{self.param}"

    def choose(self, logits: torch.Tensor, generator: "torch.Generator | None" = None) -> torch.Tensor:
        """``(B, A)`` logits -> ``(B,)`` actions."""
        logits = logits.float()
        if self.name == "greedy":
            return logits.argmax(-1)
        if self.name == "random":
            probs = torch.ones_like(logits)  # (B, A) uniform
        else:
            if self.name == "temperature":
                assert self.param is not None  # parse() gives these strategies their parameter
                logits = logits / self.param
            elif self.name in ("topk", "bottomk"):
                assert self.param is not None
                k = min(int(self.param), logits.shape[-1])
                keep = logits.topk(k, -1, largest=self.name == "topk").indices  # (B, k)
                logits = torch.full_like(logits, float("-inf")).scatter(-1, keep, logits.gather(-1, keep))
            probs = torch.softmax(logits, -1)  # (B, A)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def parse_strategies(texts) -> list:
    """``"greedy,sampled"`` or ``["greedy", "sampled"]`` -> ``[Strategy, ...]`` (no duplicates)."""
    items = texts.split(",") if isinstance(texts, str) else list(texts)
    strategies = [Strategy.parse(t) for t in items if str(t).strip()]
    if not strategies:
        raise ValueError("no sampling strategy given; e.g. --strategies greedy,sampled,random")
    names = [str(s) for s in strategies]
    if len(set(names)) != len(names):
        raise ValueError(f"strategies listed twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    return strategies


def parse_shares(texts, n: int) -> np.ndarray:
    """Shares per strategy, normalised to sum 1; empty -> equal shares."""
    items = texts.split(",") if isinstance(texts, str) else list(texts)
    items = [t for t in items if str(t).strip()]
    if not items:
        return np.full(n, 1.0 / n)
    try:
        shares = np.array([float(t) for t in items])
    except ValueError:
        raise ValueError(f"shares {items} are not numbers") from None
    if len(shares) != n or (shares < 0).any() or shares.sum() <= 0:
        raise ValueError(f"shares {items}: expected {n} non-negative numbers (one per strategy), not all zero")
    return shares / shares.sum()


def allocate(shares: np.ndarray, total: int) -> np.ndarray:
    """Exact integer counts summing to ``total`` in proportion to ``shares`` (largest remainder)."""
    raw = np.asarray(shares, np.float64) * total / np.sum(shares)  # (S,)
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")  # largest remainders first, ties by position
    counts[order[: total - counts.sum()]] += 1
    return counts


def episode_plan(shares: np.ndarray, total: int, stored: np.ndarray, seed: int) -> np.ndarray:
    """Strategy index of each episode still to record, so that the store ends with the counts
    ``allocate(shares, total)``: what is missing per strategy, in a seeded random order, (total - stored,)."""
    need = total - int(stored.sum())
    missing = np.maximum(allocate(shares, total) - stored, 0)  # (S,)
    if missing.sum() != need:  # the store holds more of some strategy than the target (other settings before)
        missing = allocate(missing if missing.sum() else shares, need)
    plan = np.repeat(np.arange(len(shares)), missing)  # (need,)
    return np.random.default_rng(seed).permutation(plan)
