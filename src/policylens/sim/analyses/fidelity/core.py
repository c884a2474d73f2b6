"""Fidelity of an environment model, step by step after its context, scored the same way for any model.

A model is scored through one small protocol, an *unroll*: ``unroll(windows, context) -> Prediction`` takes
held-out windows of ``context + H`` recorded frames (:class:`~policylens.sim.data.Windows`) and returns, for the
H frames after the context, the decoder's output (categorical logits or pixels, the simulator's format), the
reward and the episode-end logit of the recorded action there. It may read the context frames, the agent's
state at the first frame and the recorded actions, never a frame after the context. Adapters:
:func:`simulator_unroll` (the simulator's open loop: z from the context, the recorded actions driving the
prior, latent means; or with the context frames through the posterior first), :func:`baseline_unroll` (:class:`~policylens.sim.baseline.VaeLstm`) and
:func:`repeat_unroll` (the last context frame forever, no reward, no end: the score of a model that predicts
nothing, so readers see what a good score is).

Per step h = 1..H after the context (:data:`METRICS`): the observation score (:func:`~policylens.sim.obs.
obs_score`), and the real agent read twice from the recorded state it received at the first frame after the
context, carrying its own state forward: once on the predicted frames (as it sees them,
:func:`~policylens.sim.obs.agent_view`) and once on the recorded frames; the agreement of its argmax actions
and the absolute difference of its values. Reward absolute error and episode-end accuracy against the record.
Steps past an episode's end are masked; every mean comes with its count and a bootstrap 95% interval over
held-out episodes (whole episodes resampled with their windows; the same resamples for every model, so intervals
of differences are paired).

For categorical (MiniGrid) views, :func:`object_recall` says which objects a model loses: per step and recorded
object type (wall, goal, ball...), the share of its cells drawn exactly. The cell accuracy is dominated by walls
and empty floor; the agent's action often hangs on the one goal or obstacle cell.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import torch

from ...baseline import Prediction, VaeLstm
from ...config import SimConfig
from ...data import SimData, Windows
from ...obs import agent_view, categorical_targets, decoded_categories, network_input, obs_score

METRICS = {
    "obs_score": "observation score of the predicted frame (cell accuracy for MiniGrid codes, higher is better; "
                 "mean squared error on [0, 1] for pixels, lower is better)",
    "action_agreement": "share of windows where the agent's argmax action on the predicted frames equals its "
                        "argmax on the recorded frames (both runs from the recorded state, carrying their own)",
    "value_error": "absolute difference of the agent's value on predicted and on recorded frames",
    "reward_error": "absolute error of the predicted reward of the recorded action",
    "done_accuracy": "share of steps where the predicted episode end (logit > 0) equals the recorded one",
}
HORIZONS = (1, 10, 32)

Unroll = Callable[[Windows, int], Prediction]


def as_decoded(obs: torch.Tensor, cfg: SimConfig, confidence: float = 50.0) -> torch.Tensor:
    """Recorded frames (..., H, W, C) in the decoder's format, decoding exactly to them: categorical logits
    ``confidence`` on the recorded category and 0 elsewhere (symbolic, onehot), the pixels themselves (pixels)."""
    if cfg.obs_kind == "pixels":
        return obs.float()
    return network_input(obs, cfg) * confidence  # (..., H, W, channels)


def simulator_unroll(sim, agent, filtered: bool = False) -> Unroll:
    """The simulator's open loop with the recorded actions and latent means, scored on the frames after the
    context: z alone carries the context (how it is trained to unroll, and how ``sim sample`` and the other
    commands imagine from an encoded start). ``filtered``: the context frames also reach the posterior (s_1 ..
    s_{K-1} given them, as the baseline's LSTM reads them), the prior alone after (what ``sim train``'s prior-step
    term trains, on by default; a simulator trained without it scored lower this way than from z alone)."""
    from ...loop import rollout
    from ...objective import context_posterior

    def unroll(windows: Windows, context: int) -> Prediction:
        if context != sim.config.context_frames:
            raise ValueError(f"the simulator reads {sim.config.context_frames} context frames, not {context}")
        steps = windows.obs.shape[1]
        seen = context_posterior(windows, context) if filtered else {}  # the posterior on the context, then the prior
        with torch.no_grad():
            r = rollout(sim, agent, windows.context(context), steps, actions=windows.action, latent="mean", **seen)
        return Prediction(r.decoded[:, context:], r.reward[:, context:], r.done_logit[:, context:])

    return unroll


def baseline_unroll(model: VaeLstm) -> Unroll:
    """The VAE+LSTM's open loop from the context frames with the recorded actions."""

    def unroll(windows: Windows, context: int) -> Prediction:
        return model.unroll(windows.obs[:, :context], windows.action)

    return unroll


def repeat_unroll(cfg: SimConfig, never_done: float = -20.0) -> Unroll:
    """The reference that predicts nothing: the last context frame repeated, reward 0, episode never ending."""

    def unroll(windows: Windows, context: int) -> Prediction:
        b, t = windows.action.shape
        last = windows.obs[:, context - 1:context].expand(-1, t - context, *windows.obs.shape[2:])  # (B, H, h, w, C)
        flat = torch.zeros(b, t - context)  # (B, H)
        return Prediction(as_decoded(last, cfg), flat, flat + never_done)

    return unroll


@torch.no_grad()
def agent_trace(agent, frames: torch.Tensor, hx: torch.Tensor) -> tuple:
    """The agent over ``frames`` (B, H, h, w, C) (uint8 or float) from state ``hx`` (B, hidden), carrying its own
    state: ``(argmax action (B, H) long, value (B, H))``."""
    actions, values = [], []
    for t in range(frames.shape[1]):
        out = agent(frames[:, t], hx)
        actions.append(out.logits.argmax(-1))
        values.append(out.value.float())
        hx = out.state
    return torch.stack(actions, 1), torch.stack(values, 1)


def step_scores(pred: Prediction, windows: Windows, context: int, cfg: SimConfig, agent, real: tuple) -> dict:
    """Each metric per window and step after the context, ``{name: (B, H)}``; ``real`` is :func:`agent_trace` on
    the recorded frames."""
    after = slice(context, None)
    h = windows.obs.shape[1] - context
    if tuple(pred.decoded.shape[:2]) != (windows.obs.shape[0], h):
        raise ValueError(f"a model predicted {tuple(pred.decoded.shape[:2])} (windows, steps); expected "
                         f"({windows.obs.shape[0]}, {h}): the frames after the {context} context frames")
    seen = agent_view(pred.decoded, cfg)  # (B, H, h, w, C)
    action, value = agent_trace(agent, seen, windows.agent_state[:, context])
    return {"obs_score": obs_score(pred.decoded, windows.obs[:, after], cfg).float(),
            "action_agreement": (action == real[0]).float(),
            "value_error": (value - real[1]).abs(),
            "reward_error": (pred.reward.float() - windows.reward[:, after]).abs(),
            "done_accuracy": ((pred.done_logit > 0).float() == windows.done[:, after]).float()}


def object_cells(decoded: torch.Tensor, recorded: torch.Tensor, cfg: SimConfig) -> tuple:
    """Per window, step and recorded object type (a categorical view's first plane): the cells drawn exactly
    (every plane right) and the cells there, ``(hits (B, H, M), cells (B, H, M))`` for the M object types."""
    target = categorical_targets(recorded, cfg)  # (B, H, h, w, planes)
    exact = (decoded_categories(decoded, cfg) == target).all(-1)  # (B, H, h, w)
    kind = torch.nn.functional.one_hot(target[..., 0], cfg.planes[0]).float()  # (B, H, h, w, M)
    return (kind * exact[..., None]).sum((2, 3)), kind.sum((2, 3))


def object_recall(objects: dict, mask: np.ndarray, names: "dict | None" = None) -> dict:
    """``{model: {object name: {"recall": [per step], "cells": [per step]}}}`` from :func:`score_models`' object
    counts: recall pools the cells of every window in its episode at that step (None where there are none);
    object types never recorded are left out. ``names``: object index -> name (MiniGrid's by default)."""
    if names is None:
        from minigrid.core.constants import IDX_TO_OBJECT

        names = IDX_TO_OBJECT
    keep = mask.astype(np.float64)[..., None]  # (N, H, 1)
    out = {}
    for model, (hits, cells) in objects.items():
        hit, seen = (hits * keep).sum(0), (cells * keep).sum(0)  # (H, M)
        out[model] = {names.get(m, f"object {m}"): {
            "recall": [float(a / c) if c else None for a, c in zip(hit[:, m], seen[:, m])],
            "cells": [int(c) for c in seen[:, m]]} for m in np.flatnonzero(seen.sum(0))}
    return out


def score_models(models: dict, windows: Windows, context: int, cfg: SimConfig, agent, batch_size: int = 128,
                 progress: bool = False) -> tuple:
    """Every model on every window: ``({model: {metric: (N, H) array}}, mask (N, H) bool, objects)``, where
    ``objects`` is ``{model: (hits, cells)}`` of :func:`object_cells`, each (N, H, M), for categorical views
    (empty for pixels)."""
    from tqdm.auto import tqdm

    if windows.agent_state.numel() == 0:
        raise ValueError("fidelity needs the agent's recorded state at every frame (a store of a recurrent agent)")
    if windows.obs.shape[1] <= context:
        raise ValueError(f"windows of {windows.obs.shape[1]} frames leave no step after {context} context frames")
    n = windows.obs.shape[0]
    parts: dict[str, dict[str, list]] = {name: {k: [] for k in METRICS} for name in models}
    counts: dict[str, tuple[list, list]] = {name: ([], []) for name in models} if cfg.obs_kind != "pixels" else {}
    chunks = range(0, n, batch_size)
    for a in tqdm(chunks, desc="fidelity", unit="batch", disable=not progress):
        part = windows.rows(slice(a, a + batch_size))
        real = agent_trace(agent, part.obs[:, context:], part.agent_state[:, context])
        for name, unroll in models.items():
            pred = unroll(part, context)
            for k, v in step_scores(pred, part, context, cfg, agent, real).items():
                parts[name][k].append(v.detach().cpu().numpy())
            if name in counts:  # categorical views only
                for into, v in zip(counts[name], object_cells(pred.decoded, part.obs[:, context:], cfg)):
                    into.append(v.cpu().numpy())
    values = {name: {k: np.concatenate(v) for k, v in metrics.items()} for name, metrics in parts.items()}
    objects = {name: tuple(np.concatenate(v) for v in pair) for name, pair in counts.items()}
    return values, windows.mask[:, context:].cpu().numpy(), objects


def resample_weights(windows: int, samples: int, seed: int, groups: "np.ndarray | None" = None) -> np.ndarray:
    """Bootstrap resamples of the windows as counts, (samples, windows). With ``groups`` (windows,) (each window's
    episode) whole groups are resampled and a window counts as often as its group: windows of one episode overlap
    and share its level, so they are not independent draws, and resampling them one by one narrows the intervals
    more than the data allow."""
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.multinomial(windows, np.full(windows, 1.0 / windows), size=samples).astype(np.float64)
    if len(groups) != windows:
        raise ValueError(f"groups name {len(groups)} windows, not {windows}")
    ids, index = np.unique(groups, return_inverse=True)
    counts = rng.multinomial(len(ids), np.full(len(ids), 1.0 / len(ids)), size=samples)  # (S, G)
    return counts[:, index].astype(np.float64)  # (S, N)


def curve(values: np.ndarray, mask: np.ndarray, weights: np.ndarray) -> dict:
    """Masked per-step mean of ``values`` (N, H) with its count and the bootstrap 95% interval from ``weights``
    (S, N); steps no window reaches get None."""
    keep = mask.astype(np.float64)  # (N, H)
    count = keep.sum(0)  # (H,)
    mean = (values * keep).sum(0) / np.maximum(count, 1)  # (H,)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a step no resample reaches: NaN, reported as None
        boot = (weights @ (values * keep)) / (weights @ keep)  # (S, H)
        low, high = np.nanpercentile(boot, 2.5, axis=0), np.nanpercentile(boot, 97.5, axis=0)  # (H,)

    def listed(x):
        return [float(v) if c > 0 else None for v, c in zip(x, count)]

    return {"mean": listed(mean), "low": listed(low), "high": listed(high), "count": [int(c) for c in count]}


def at_horizons(curves: dict, horizons) -> dict:
    """``{str(h): {metric: {mean, low, high, count}}}`` read off per-step curves."""
    return {str(h): {k: {f: c[f][h - 1] for f in ("mean", "low", "high", "count")} for k, c in curves.items()}
            for h in horizons}


def report_horizons(steps: int) -> list:
    """The summary's horizons: 1, 10, 32 where the windows reach them, and the last step."""
    return sorted({h for h in HORIZONS if h <= steps} | {steps})


def summarize(values: dict, mask: np.ndarray, bootstrap: int = 1000, seed: int = 0, reference: str = "",
              groups: "np.ndarray | None" = None) -> dict:
    """Per-model per-step curves, the summary at :func:`report_horizons`, and (with ``reference``) each other
    model's paired difference ``reference - model`` per metric at those horizons; ``groups``: resample whole
    episodes (:func:`resample_weights`)."""
    n, steps = mask.shape
    weights = resample_weights(n, bootstrap, seed, groups)
    horizons = report_horizons(steps)
    out = {}
    for name, metrics in values.items():
        curves = {k: curve(v, mask, weights) for k, v in metrics.items()}
        out[name] = {"per_step": curves, "summary": at_horizons(curves, horizons)}
        if reference and name != reference and reference in values:
            diff = {k: curve(values[reference][k] - v, mask, weights) for k, v in metrics.items()}
            out[name][f"{reference}_minus_this"] = at_horizons(diff, horizons)
    return out


def held_out_windows(data: SimData, val_fraction: float, split_seed: int, context: int, horizon: int, count: int,
                     seed: int = 0, reach: int = 1) -> tuple:
    """Up to ``count`` windows of ``context + horizon`` frames from the held-out episodes of the seeded split
    (:func:`scored_windows`). Returns ``(Windows, split info)``."""
    _, held_out = data.split(val_fraction, split_seed)
    where = f"held-out episode (of {len(held_out)} held out by val_fraction {val_fraction}, seed {split_seed})"
    windows, info = scored_windows(data, held_out, context, horizon, count, seed, where, reach)
    return windows, {"val_fraction": val_fraction, "seed": split_seed, "store_episodes": data.num_episodes,
                     "held_out_episodes": len(held_out), **info}


def scored_windows(data: SimData, episodes, context: int, horizon: int, count: int, seed: int = 0,
                   where: str = "episode", reach: int = 1) -> tuple:
    """Up to ``count`` windows of ``context + horizon`` frames from ``episodes``: a seeded sorted subsample of every
    start with at least ``reach`` frames after the context in its episode (a window running past the episode's end
    is padded, so late steps are scored on fewer windows: see the counts; ``reach=horizon``: only windows whose
    every step lies in their episode, the few long episodes where a far horizon exists). Returns
    ``(Windows, info)``."""
    if not 1 <= reach <= horizon or count < 1:
        raise ValueError(f"horizon and windows must be >= 1 and reach in 1 .. horizon, got horizon {horizon}, "
                         f"windows {count}, reach {reach}")
    usable = np.array([e for e in episodes if data.length[e] >= context + reach], np.int64)
    starts = np.concatenate([np.arange(data.start[e], data.start[e] + data.length[e] - context - reach + 1)
                             for e in usable] or [np.zeros(0, np.int64)]).astype(np.int64)
    if len(starts) == 0:
        raise ValueError(f"rollouts store {data.path}: no {where} is longer than the {context} context frames"
                         f"{f' plus the {reach} steps of --reach' if reach > 1 else ''}; record more episodes")
    if len(starts) > count:
        starts = np.sort(np.random.default_rng(seed).choice(starts, count, replace=False))
    return data.windows(starts, context + horizon), {"scored_episodes": usable.tolist(), "windows": len(starts)}
