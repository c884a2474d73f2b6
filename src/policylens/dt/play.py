"""Playing a decision transformer in its environment, conditioned on a target return-to-go.

Episode ``k`` plays level ``start_level + k`` (a MiniGrid reset seed) with env randomness and action sampling
seeded from ``(seed, k)``, so two targets (or two models, or a model and its ablation) face the same levels
and the same obstacle moves while their actions agree (common random numbers). The RTG fed at step t is the
target minus the rewards received so far, as in the decision-transformer paper.

Each record also says from which side the agent entered the cell its last step walked into (``entered_from``:
``left``, ``top``, ``right`` or ``bottom`` of that cell, from the way it faced): Decision Transformer
Interpretability tells goal entries "from the top" and "from the left" apart.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from ..agents.policy import POLICIES
from ..envs import CAUSES, make_minigrid, parse_spec
from ..evaluate.run import episode_seed, pick_actions
from ..evaluate.stats import wilson_interval
from .data import symbolic_env

# MiniGrid's agent_dir (0 east, 1 south, 2 west, 3 north) -> the side of the cell ahead the agent enters it from
ENTERED_FROM = ("left", "top", "right", "bottom")


def check_target(model, target_rtg: float) -> None:
    """Warn (and go on) when the target lies outside the RTGs the model saw in training."""
    lo_hi = getattr(model, "rtg_range", None)
    if lo_hi is not None and not lo_hi[0] - 1e-6 <= target_rtg <= lo_hi[1] + 1e-6:
        warnings.warn(f"target RTG {target_rtg:g} lies outside the RTGs the model was trained on "
                      f"[{lo_hi[0]:.3g}, {lo_hi[1]:.3g}]; answering anyway", stacklevel=2)


@torch.no_grad()
def play(model, env: str, target_rtg: float, episodes: int, start_level: int = 1_000_000, seed: int = 0,
         policy: str = "sample", temperature: float = 1.0, batch: int = 64) -> list:
    """Play ``episodes`` episodes; returns per episode ``{"level", "return", "length", "cause", "success",
    "entered_from"}`` (``entered_from``: the side of the cell ahead the last step faced, see :data:`ENTERED_FROM`)."""
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r}; expected one of {POLICIES}")
    if episodes < 1 or batch < 1:
        raise ValueError(f"episodes and batch must be >= 1, got {episodes} and {batch}")
    check_target(model, target_rtg)
    spec = parse_spec(symbolic_env(env))
    records = []
    for lo in range(0, episodes, batch):
        records += _play_together(model, spec, float(target_rtg), range(lo, min(lo + batch, episodes)),
                                  start_level, seed, policy, temperature)
    return records


def _play_together(model, spec, target_rtg, ks, start_level, seed, policy, temperature) -> list:
    """Episodes ``ks`` side by side. They all start at t = 0 and step in lockstep (finished ones drop out), so
    every window has the same length and needs no padding."""
    device = next(model.parameters()).device
    seeds = [episode_seed(seed, k) for k in ks]
    envs = [make_minigrid(spec.replace(start_level=start_level + k, num_levels=1), 1, seed=s) for k, s in zip(ks, seeds)]
    rngs = [np.random.default_rng(s) for s in seeds]
    horizon = envs[0].envs[0].max_steps + 1
    n, context = len(envs), model.config.context
    states = np.zeros((n, horizon, *envs[0].observation_space.shape), np.uint8)  # (n, T, H, W, 3)
    actions = np.zeros((n, horizon), np.int64)  # (n, T)
    rtgs = np.zeros((n, horizon), np.float32)  # (n, T)
    for i, (e, s) in enumerate(zip(envs, seeds)):
        states[i, 0] = e.reset(s)[0]
    rtgs[:, 0] = target_rtg
    records: list[dict | None] = [None] * n
    active, t = np.ones(n, bool), 0
    while active.any():
        rows = np.flatnonzero(active)  # (b,)
        w = slice(max(0, t - context + 1), t + 1)  # the window's steps
        k = w.stop - w.start
        logits = model(torch.as_tensor(states[rows, w], device=device), torch.as_tensor(actions[rows, w], device=device),
                       torch.as_tensor(rtgs[rows, w], device=device),
                       torch.arange(w.start, w.stop, device=device).expand(len(rows), k))[:, -1]  # (b, A)
        picked = pick_actions(logits.float().cpu(), policy, temperature, [rngs[i] for i in rows])  # (b,)
        for i, a in zip(rows, picked):
            facing = int(envs[i].envs[0].agent_dir)  # before the step: a finished env resets
            obs, reward, done, info = envs[i].step(np.array([a]))
            actions[i, t] = a
            if done[0]:
                ep = info[0]["episode"]
                records[i] = {"level": start_level + ks[i], "return": ep["return"], "length": ep["length"],
                              "cause": ep["cause"], "success": ep["success"], "entered_from": ENTERED_FROM[facing]}
                active[i] = False
            else:
                states[i, t + 1], rtgs[i, t + 1] = obs[0], rtgs[i, t] - reward[0]
        t += 1
    return records


def summarize(records: list, target_rtg: float) -> dict:
    """Per target: mean return with a 95% normal interval, success rate with a Wilson interval, causes."""
    n = len(records)
    returns = np.array([r["return"] for r in records], np.float64)  # (n,)
    wins = sum(bool(r["success"]) for r in records)
    half = 1.96 * returns.std(ddof=1) / math.sqrt(n) if n > 1 else 0.0
    causes = {c: 0 for c in CAUSES}
    for r in records:
        causes[r["cause"]] = causes.get(r["cause"], 0) + 1
    return {"target_rtg": float(target_rtg), "episodes": n, "mean_return": float(returns.mean()),
            "ci95": [float(returns.mean() - half), float(returns.mean() + half)],
            "success_rate": wins / n, "success_ci95": list(wilson_interval(wins, n)),
            "mean_length": float(np.mean([r["length"] for r in records])),
            "causes": {c: m for c, m in causes.items() if m}}
