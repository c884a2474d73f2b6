"""Hidden-state analysis (Saliency as causality, "Analysis of agent's hidden state"): what a recurrent agent is "thinking".

The core, :func:`analyze`, takes any ``(N, D)`` array of states (the agent's ``hx`` on real rollouts, or the
simulator's own state) and returns an :class:`HxAnalysis`:

- z-scoring per unit: ``z = (x - mean) / std`` over the frames, ``std`` floored at ``std_floor`` (a unit that
  never moves gets ``z = 0``, not a division by zero);
- PCA of ``z`` (:func:`policylens.factors.pca`), with every component's share of the variance (the curve) and
  ``k`` directions kept;
- ICA (:func:`policylens.factors.ica`) on ``z``: FastICA whitens to the top ``k`` principal components first,
  so this is ICA of the top-k PCs with the directions mapped back to the ``D`` units;
- NMF (:func:`policylens.factors.nmf`) on ``z - min(z)`` (per unit, over the frames). The shift is affine, so
  ``z = shift + sum_k c_k v_k``: the NMF vectors are directions in z-space like the PCA/ICA ones and the sign
  of every unit is kept. ``|z|`` would fold a unit's +2 and -2 (often opposite meanings) onto one value;
- k-means (scikit-learn, seeded) on ``z``: labels, centres, per-cluster size and mean value / entropy;
- t-SNE (scikit-learn, seeded) of ``z`` on a subsample of at most ``tsne_frames`` frames.

All directions are saved as :class:`~policylens.factors.Directions` of ``z``: ``meta["std"]`` / ``meta["zscore_mean"]``
are the per-unit std and mean of the raw states (``meta["std"]`` is what :func:`policylens.edit.swap_matrix`
reads: these directions live in z-space), and ``meta["mean"]`` is the *z-space* offset that
:func:`policylens.factors.coefficients` subtracts (about 0 for PCA/ICA, the shift for NMF), so
``coefficients(zscore(x), directions)`` is right for every method. :func:`project` maps other states (e.g.
simulated ones) onto the real components with the real z-scoring.

Which hidden state: a store's ``agent_state`` is the state the agent *received* at each frame; the analysis
uses the state it *produced* there (its ``hx`` after the GRU, the one its value and policy heads read).
:func:`store_frames` recomputes all of them in batches, ``agent(obs_t, received_t).state``, and checks that within
each episode the state produced at t is the one received at t + 1 (so a store of another agent is refused).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...factors import Directions, coefficients, ica, nmf, pca

NEEDS_RECURRENT = ("rollouts store {path} has no 'agent_state' field: hidden-state analysis needs a recurrent "
                   "agent's rollouts: record one with policylens record zoo:minigrid-do8-recurrent")
COLOURS = ("value", "action", "entropy", "reward", "progress")  # what the figures colour frames by
METHODS = ("pca", "ica", "nmf")
FRAMES_FILE, SUMMARY_FILE = "frames.npz", "summary.json"


@dataclass(frozen=True)
class HxAnalysis:
    """The real states' z-scoring, directions (all in z-space) and clusters, and what they say per frame."""

    mean: torch.Tensor  # (D,) per-unit mean of the raw states
    std: torch.Tensor  # (D,) per-unit standard deviation, floored
    directions: dict  # "pca" | "ica" | "nmf" -> Directions (k, D) in z-space
    centroids: torch.Tensor  # (clusters, D) k-means centres in z-space
    variance_ratio: torch.Tensor  # (min(N, D),) share of the z-variance of every principal component
    frames: dict = field(default_factory=dict)  # per frame: states (N, D), pca/ica/nmf (N, k), cluster (N,),
    #                                             tsne (M, 2) of frames tsne_index (M,), colour variables (N,)
    summary: dict = field(default_factory=dict)  # JSON-able: sizes, variance explained, clusters, settings


def as_states(states, name: str = "states") -> torch.Tensor:
    """A float32 ``(N, D)`` tensor, checked finite."""
    x = torch.as_tensor(np.asarray(states) if not isinstance(states, torch.Tensor) else states).detach()
    x = x.float().cpu()
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array of hidden states, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return x


def zscore_stats(states, std_floor: float = 1e-6) -> tuple:
    """``(mean (D,), std (D,))`` over the frames of ``states`` ``(N, D)``; std floored at ``std_floor``."""
    x = as_states(states).double()
    if not std_floor > 0:
        raise ValueError(f"std_floor must be > 0, got {std_floor}")
    return x.mean(0).float(), x.std(0, correction=0).clamp_min(std_floor).float()


def zscore(states, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(states - mean) / std``, ``(N, D) -> (N, D)``."""
    x = as_states(states)
    if x.shape[1] != mean.shape[0]:
        raise ValueError(f"states have {x.shape[1]} units; the analysis was made on states of {mean.shape[0]}")
    return (x - mean) / std  # (N, D)


def entropy(logits) -> np.ndarray:
    """Policy entropy in nats, ``(N, A) -> (N,)``."""
    logp = torch.log_softmax(torch.as_tensor(np.asarray(logits), dtype=torch.float64), -1)  # (N, A)
    return (-(logp.exp() * logp).sum(-1)).float().numpy()


def _check_sizes(n: int, d: int, k: int, clusters: int, tsne_frames: int, tsne_iter: int) -> None:
    if not 1 <= k <= min(n, d):
        raise ValueError(f"k={k} directions: must be in [1, {min(n, d)}] for {n} frames of {d}-unit states")
    if not 1 <= clusters <= n:
        raise ValueError(f"clusters={clusters}: must be in [1, {n}] for {n} frames")
    if tsne_frames < 0:
        raise ValueError(f"tsne_frames must be >= 0 (0: no t-SNE), got {tsne_frames}")
    if tsne_frames and tsne_iter < 250:
        raise ValueError(f"tsne_iter must be >= 250 (scikit-learn's minimum), got {tsne_iter}")


def _colour_arrays(colours: "dict | None", n: int) -> dict:
    out = {}
    for name, values in (colours or {}).items():
        arr = np.asarray(values)
        if arr.shape[:1] != (n,):
            raise ValueError(f"colour variable {name!r} has shape {arr.shape}; expected one value per frame ({n},)")
        out[name] = arr
    return out


def _directions(z: torch.Tensor, k: int, layer: str, seed: int, max_iter: int, zmeta: dict) -> tuple:
    """``({method: Directions}, variance ratio of every component)`` of z-scored states ``(N, D)``."""
    full = pca(z, min(z.shape), layer=layer, seed=seed)
    ratio = torch.tensor(full.meta["explained_variance_ratio"])  # (min(N, D),)
    top = full.select(range(k))
    pcs = Directions(top.vectors, layer, tuple(f"PC{i + 1}" for i in range(k)), "pca",
                     {**top.meta, "residual": max(0.0, 1.0 - float(ratio[:k].double().sum())), **zmeta})
    ics = ica(z, k, layer=layer, seed=seed, max_iter=max_iter)
    ics = Directions(ics.vectors, layer, tuple(f"IC{i + 1}" for i in range(k)), "ica",
                     {**ics.meta, "on": "z-scored states (FastICA whitens to the top-k principal components)", **zmeta})
    shift = z.min(0).values  # (D,) per-unit minimum: z - shift >= 0
    nfs = nmf(z - shift, k, layer=layer, seed=seed, max_iter=max_iter)
    nfs = Directions(nfs.vectors, layer, tuple(f"NMF{i + 1}" for i in range(k)), "nmf",
                     {**nfs.meta, "mean": shift.tolist(), "on": "z minus its per-unit minimum", **zmeta})
    return {"pca": pcs, "ica": ics, "nmf": nfs}, ratio


def _stability(directions: Directions) -> dict:
    """Each direction's stability score and unstable flag, by label (see :mod:`policylens.factors.stable`)."""
    return {"stability": dict(zip(directions.labels, directions.meta["stability"])),
            "unstable": [lab for lab, bad in zip(directions.labels, directions.meta["unstable"]) if bad]}


def _kmeans(z: torch.Tensor, clusters: int, seed: int) -> tuple:
    from ...factors.stable import kmeans

    labels, centres = kmeans(z.double().numpy(), clusters, seed)
    return torch.from_numpy(centres).float(), labels  # (C, D), (N,)


def _tsne(z: torch.Tensor, frames: int, perplexity: float, seed: int, max_iter: int) -> tuple:
    """``(coordinates (M, 2), frame index (M,))`` of a seeded subsample of at most ``frames`` frames."""
    from sklearn.manifold import TSNE

    from ...factors.stable import one_thread

    n = z.shape[0]
    index = np.sort(np.random.default_rng(seed).choice(n, frames, replace=False)) if frames < n else np.arange(n)
    if len(index) < 4 or frames == 0:  # t-SNE needs a few points to have neighbours
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    perplexity = min(perplexity, (len(index) - 1) / 3)
    model = TSNE(2, perplexity=perplexity, init="pca", max_iter=max_iter, random_state=seed)
    with one_thread():  # Barnes-Hut sums in a fixed order
        coords = model.fit_transform(z[index].double().numpy())  # (M, 2)
    return coords.astype(np.float32), index.astype(np.int64)


def cluster_table(labels: np.ndarray, clusters: int, colours: dict, action_names=()) -> list:
    """Per cluster: size, share and the mean of every numeric colour variable (actions: counts by name)."""
    rows = []
    for c in range(clusters):
        members = labels == c
        row: dict[str, Any] = {"cluster": c, "size": int(members.sum()), "share": float(members.mean())}
        for name, values in colours.items():
            if name == "action":
                counts = np.bincount(values[members].astype(np.int64), minlength=len(action_names) or 1)
                row["actions"] = {(action_names[a] if a < len(action_names) else str(a)): int(n)
                                  for a, n in enumerate(counts)}
            elif np.issubdtype(values.dtype, np.number) or values.dtype == bool:
                row[f"mean_{name}"] = float(values[members].mean()) if members.any() else None
        rows.append(row)
    return rows


def analyze(states, colours: "dict | None" = None, *, k: int = 8, clusters: int = 8, tsne_frames: int = 3000,
            perplexity: float = 30.0, tsne_iter: int = 1000, seed: int = 0, max_iter: int = 1000,
            std_floor: float = 1e-6, layer: str = "hx", action_names=()) -> HxAnalysis:
    """The whole pipeline on any ``(N, D)`` states (module doc). ``colours``: per-frame variables ``{name: (N,)}``
    (value, action, entropy, reward, progress, ...) kept with the frames and summarised per cluster."""
    x = as_states(states)
    n, d = x.shape
    _check_sizes(n, d, k, clusters, tsne_frames, tsne_iter)
    colours = _colour_arrays(colours, n)
    mean, std = zscore_stats(x, std_floor)
    z = (x - mean) / std  # (N, D)
    zmeta = {"std": std.tolist(), "zscore_mean": mean.tolist(), "space": "z", "std_floor": std_floor}
    dirs, ratio = _directions(z, k, layer, seed, max_iter, zmeta)
    centroids, labels = _kmeans(z, clusters, seed)
    coords, index = _tsne(z, min(tsne_frames, n), perplexity, seed, tsne_iter)
    frames = {"states": x.numpy(), **{m: coefficients(z, v).numpy() for m, v in dirs.items()}, "cluster": labels,
              "tsne": coords, "tsne_index": index, **colours}
    ratio_k = ratio[:k].double()
    summary = {
        "layer": layer, "frames": n, "units": d, "k": k, "space": "z", "std_floor": std_floor,
        "constant_units": int((std <= std_floor).sum()), "seed": seed, "action_names": list(action_names),
        "pca": {"explained_variance_ratio": ratio_k.tolist(), "cumulative": ratio_k.cumsum(0).tolist(),
                "all_components": ratio.tolist(), **_stability(dirs["pca"])},
        "ica": {**{k_: dirs["ica"].meta[k_] for k_ in ("residual", "converged", "n_iter", "on")},
                **_stability(dirs["ica"])},
        "nmf": {**{k_: dirs["nmf"].meta[k_] for k_ in ("residual", "converged", "n_iter", "on")},
                **_stability(dirs["nmf"])},
        "clusters": cluster_table(labels, clusters, colours, action_names),
        "tsne": {"frames": int(len(index)), "perplexity": float(min(perplexity, max((len(index) - 1) / 3, 0))),
                 "iterations": tsne_iter, "seed": seed},
        "colours": list(colours),
    }
    return HxAnalysis(mean, std, dirs, centroids, ratio, frames, summary)


def project(states, analysis: HxAnalysis) -> dict:
    """Other states ``(N, D)`` (e.g. simulated ones) in the real analysis, z-scored with the *real* mean and std:
    ``{"z": (N, D), "pca"/"ica"/"nmf": (N, k) coefficients, "cluster": (N,) nearest real k-means centre}``.
    (t-SNE has no map for new points; compare those in the PCA/ICA planes.)"""
    z = zscore(states, analysis.mean, analysis.std)  # (N, D)
    out = {"z": z.numpy(), **{m: coefficients(z, v).numpy() for m, v in analysis.directions.items()}}
    out["cluster"] = torch.cdist(z.double(), analysis.centroids.double()).argmin(1).numpy()  # (N,)
    return out


# ---------------------------------------------------------------------------------------------- reading states
def _episodes_within(lengths: np.ndarray, max_frames: int) -> int:
    """How many whole episodes from the start fit in ``max_frames`` (0: all; at least one)."""
    if max_frames <= 0:
        return len(lengths)
    return max(1, int(np.searchsorted(np.cumsum(lengths), max_frames, side="right")))


@torch.no_grad()
def store_frames(store, agent, *, max_frames: int = 0, batch_size: int = 256, device="cpu", atol: float = 1e-4,
                 progress: bool = False) -> dict:
    """The hidden states a recurrent ``agent`` *produced* on a rollouts store's frames, with what to colour them by.

    Whole episodes from the start of the store, at most ``max_frames`` frames (0: all). Returns ``{"hx": (N, D)
    produced states, "received": (N, D) the store's agent_state, "value", "entropy", "action", "reward", "done",
    "progress" (t / episode length), "episode", "t": (N,)}``. Raises ValueError for a store without agent_state,
    an agent of another hidden size, or an agent that does not reproduce the stored states (beyond ``atol``).
    """
    from tqdm.auto import tqdm

    from ...factors.collect import is_recurrent, open_store

    store = open_store(store)
    if "agent_state" not in store.fields:
        raise ValueError(NEEDS_RECURRENT.format(path=store.path))
    if not is_recurrent(agent):
        raise ValueError(f"hidden-state analysis needs a recurrent agent; {type(agent).__name__} has no state")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(store) == 0:
        raise ValueError(f"rollouts store {store.path} holds no episodes")
    lengths = store.index["length"][:_episodes_within(store.index["length"], max_frames)]  # (E,)
    n = int(lengths.sum())
    received = store.read("agent_state", 0, n)  # (N, D)
    hidden = int(agent.initial_state(1).shape[-1])
    if received.shape[1] != hidden:
        raise ValueError(f"rollouts store {store.path} holds {received.shape[1]}-unit agent states; the agent's "
                         f"hidden state has {hidden} units (recorded with another agent?)")
    produced = []
    for a in tqdm(range(0, n, batch_size), desc="hx", unit="batch", disable=not progress):
        b = min(a + batch_size, n)
        obs = torch.as_tensor(store.read("obs", a, b)).to(device)  # (B, H, W, C)
        produced.append(agent(obs, torch.as_tensor(received[a:b]).to(device)).state.float().cpu())  # (B, D)
    hx = torch.cat(produced).numpy()  # (N, D)
    episode = np.repeat(np.arange(len(lengths)), lengths)  # (N,)
    t = np.arange(n) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # (N,) step within its episode
    inner = t < np.repeat(lengths, lengths) - 1  # (N,) not an episode's last frame
    gap = float(np.abs(hx[inner] - received[1:][inner[:-1]]).max()) if inner.any() else 0.0
    if gap > atol:
        raise ValueError(f"the agent does not reproduce the hidden states stored in {store.path} (the state it "
                         f"produces at t differs from the one received at t + 1 by up to {gap:.3g}); was the "
                         "store recorded with another agent?")
    logits = store.read("logits", 0, n)  # (N, A)
    return {"hx": hx, "received": received, "value": store.read("value", 0, n), "entropy": entropy(logits),
            "action": store.read("action", 0, n).astype(np.int64), "reward": store.read("reward", 0, n),
            "done": store.read("done", 0, n), "progress": t / np.repeat(lengths, lengths), "episode": episode, "t": t}


@torch.no_grad()
def simulated_frames(sim, agent, *, samples: int = 256, steps: int = 20, seed: int = 0, mode: str = "sample",
                     batch_size: int = 64, starts=None) -> dict:
    """Imagined rollouts of the simulator from latents ``z ~ N(0, 1)`` (seeded), or from the filtered start of
    ``starts`` (:class:`~policylens.sim.data.Windows` of ``samples`` real contexts: their frames through the
    posterior, the agent acting from the last; :func:`~policylens.sim.loop.filtered_start`), flattened to frames:
    ``{"hx": (N, hidden) the agent's produced state (the next step's received one, ``hx_last`` at the end),
    "sim_state": (N, deter + stoch) the simulator's own state [h_t, s_t], "value", "entropy", "action", "reward",
    "progress" (t / steps), "sample", "t": (N,)}`` with ``N = samples * steps``."""
    from ...sim.loop import check_starts, rollout, windows_start

    if samples < 1 or steps < 1:
        raise ValueError(f"simulated rollouts need samples >= 1 and steps >= 1, got {samples} and {steps}")
    check_starts(starts, samples)
    generator = torch.Generator().manual_seed(seed)
    device = next(sim.parameters()).device
    k = sim.config.context_frames
    parts = []
    for a in range(0, samples, batch_size):
        z = torch.randn(min(batch_size, samples - a), sim.config.latent, generator=generator).to(device)
        real = {}
        if starts is not None:
            z, real = windows_start(starts, slice(a, a + batch_size), k, device)
        r = rollout(sim, agent, z, steps, mode=mode, generator=generator, **real)
        hx = torch.cat([r.hx[:, 1:], r.hx_last[:, None]], 1)  # (B, T, hidden) produced at each step
        parts.append({"hx": hx, "sim_state": torch.cat([r.h, r.s], -1), "value": r.value, "logits": r.logits,
                      "action": r.action_index, "reward": r.reward})  # (B, T, ...)
    flat = {k: torch.cat([p[k] for p in parts]).flatten(0, 1).float().cpu().numpy() for k in parts[0]}  # (N, ...)
    t = np.tile(np.arange(steps), samples)  # (N,)
    flat["entropy"], flat["action"] = entropy(flat.pop("logits")), flat["action"].astype(np.int64)
    return {**flat, "progress": t / steps, "sample": np.repeat(np.arange(samples), steps), "t": t}


# ---------------------------------------------------------------------------------------------- saving
def save_analysis(analysis: HxAnalysis, out, extra: "dict | None" = None) -> Path:
    """Write ``out/{pca,ica,nmf}.{json,safetensors}``, ``out/frames.npz`` (per-frame arrays, the z-scoring, k-means
    centres, the variance curve) and ``out/summary.json`` (with ``extra`` merged in); returns the summary path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for method, dirs in analysis.directions.items():
        dirs.save(out / method)
    arrays = {**analysis.frames, "zscore_mean": analysis.mean.numpy(), "zscore_std": analysis.std.numpy(),
              "centroids": analysis.centroids.numpy(), "variance_ratio": analysis.variance_ratio.numpy()}
    np.savez_compressed(out / FRAMES_FILE, **arrays)
    summary = {**analysis.summary, **(extra or {}),
               "files": {"directions": [f"{m}.json" for m in analysis.directions], "frames": FRAMES_FILE}}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    return out / SUMMARY_FILE


def load_analysis(folder) -> HxAnalysis:
    """Read what :func:`save_analysis` wrote."""
    from ...sim.command import read_saved

    folder = Path(folder)
    arrays, summary = read_saved(folder, SUMMARY_FILE, FRAMES_FILE, "hidden-state analysis", "hx")
    fixed = {name: torch.from_numpy(arrays.pop(name)) for name in ("zscore_mean", "zscore_std", "centroids",
                                                                  "variance_ratio")}
    dirs = {m: Directions.load(folder / m) for m in METHODS}
    return HxAnalysis(fixed["zscore_mean"], fixed["zscore_std"], dirs, fixed["centroids"], fixed["variance_ratio"],
                      arrays, summary)
