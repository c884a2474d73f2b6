"""``policylens sim behaviours RUN [--directions DIR/ica] [--samples 256] [--steps 24] [--window 8] [--behaviours 6]``.

Simulated rollouts clustered into behaviours, and per behaviour the lagged cross-correlation of the hidden-state
directions beside their cross-causation (gradients), with and without the environment's gradient paths
(:mod:`.core`). Needs the simulator (RUN/sim) and the ICA directions of ``policylens sim hx RUN``.
Writes ``OUT`` (default ``RUN/analysis/behaviours``)::

    behaviours.json   behaviours (size, mean value / entropy / reward, actions, representative window), matrices
                      xcorr, xcaus_env, xcaus_own per behaviour and lag (last: all windows), sign consistency with
                      its shuffled-pairing null, settings
    behaviours.npz    per sample: ic, value, entropy, action, reward; per window: index, label, ic, Jacobians;
                      per behaviour: mean_ic, representative, matrices, the representatives' frames
    clusters.png matrices.png consistency.png   (--plots)
    behaviours.gif    the representative windows side by side (--video)
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...command import SimCommand, command_main, load_parts, resolve, say


@dataclass
class BehavioursConfig(SimCommand):
    directions: str = ""
    """hidden-state directions (default: RUN/analysis/hx/ica from `policylens sim hx RUN`): PATH without suffix"""
    samples: int = 256
    """simulated rollouts"""
    steps: int = 24
    """steps per rollout"""
    starts: str = "prior"
    """where rollouts start: prior (z ~ N(0, I)), store (real contexts from the rollouts store, encoded to z, the
    agent acting from the first frame) or filtered (those contexts through the posterior with their recorded
    actions, the agent acting from the last frame, as sim swap and sim fidelity start)"""
    max_episodes: int = 200
    """episodes read from the store for --starts store or filtered (0: all)"""
    latent: str = "sample"
    """simulator state: sample (seeded noise) or mean"""
    actions: str = "straight_through"
    """action path: straight_through (modal one-hot, softmax gradients) or soft (the policy drives the simulator)"""
    cut: str = "actions"
    """how the no-environment gradients are cut: actions (detach the actions) or obs (detach the observations)"""
    window: int = 8
    """steps per behaviour window"""
    stride: int = 0
    """steps between window starts (0: the window, no overlap)"""
    behaviours: int = 6
    """k-means clusters of windows"""
    max_lag: int = 4
    """largest lag of the cross-correlation and cross-causation matrices (below --window)"""
    corr_min: float = 0.1
    """sign consistency counts entries with |xcorr| at least this"""
    grad_min: float = 0.01
    """... and |xcaus| at least this (coefficient change per unit coefficient)"""
    diagonal: bool = False
    """count the diagonal (a direction on itself) in the sign consistency"""
    null_draws: int = 1000
    """shuffles of the shuffled-pairing null"""
    plot_lag: int = 2
    """lag drawn in matrices.png (lags >= 2 hold the environment's paths)"""
    batch_size: int = 64
    """rollouts per forward pass"""
    plots: bool = True
    """write the PNG figures"""
    video: bool = True
    """write behaviours.gif of the representative windows"""


def _check(cfg: BehavioursConfig) -> None:
    for name in ("samples", "steps", "window", "behaviours", "batch_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.starts not in ("prior", "store", "filtered"):
        raise ValueError(f"--starts {cfg.starts!r}; expected prior, store or filtered")
    if cfg.window > cfg.steps:
        raise ValueError(f"--window {cfg.window} is longer than the rollouts (--steps {cfg.steps})")
    if not 0 <= cfg.max_lag < cfg.window:
        raise ValueError(f"--max-lag must be in [0, {cfg.window - 1}] (below --window), got {cfg.max_lag}")
    if not 0 <= cfg.plot_lag <= cfg.max_lag:
        raise ValueError(f"--plot-lag must be in [0, {cfg.max_lag}], got {cfg.plot_lag}")


def load_directions(path: Path, hidden: int):
    """The hidden-state directions at ``path`` (no suffix), with a clear error saying how to make them."""
    from ....factors import Directions

    missing = [p for p in (path.with_suffix(".json"), path.with_suffix(".safetensors")) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no hidden-state directions at {path} ({', '.join(map(str, missing))} missing): "
                                "run `policylens sim hx RUN` first, or pass --directions PATH")
    directions = Directions.load(path)
    if directions.channels != hidden:
        raise ValueError(f"directions {path} have {directions.channels} units; the agent's hidden state has {hidden}")
    return directions


def real_starts(cfg: BehavioursConfig, store: Path, sim):
    """``cfg.samples`` windows of the context frames from the store's episodes (seeded, with replacement when few):
    :class:`~policylens.sim.data.Windows` for a filtered start, their encoder contexts for ``--starts store``."""
    from ...data import load_sim_data

    data = load_sim_data(store, cfg.max_episodes)
    k = sim.config.context_frames
    first = data.window_starts(np.arange(data.num_episodes), k)  # (n,)
    rng = np.random.default_rng(cfg.seed)
    pick = rng.choice(first, cfg.samples, replace=cfg.samples > len(first))
    windows = data.windows(np.sort(pick), k)
    return windows if cfg.starts == "filtered" else windows.context(k)


def representative_frames(samples: dict, arrays: dict, window: int) -> np.ndarray:
    """The representative windows' observations, (B, L, H, W, C) uint8."""
    index = arrays["index"][arrays["representative"]]  # (B, 2)
    return samples["obs"][index[:, :1], index[:, 1:] + np.arange(window)]


def write_video(out: Path, frames: np.ndarray, arrays: dict, samples: dict, summary: dict, obs_kind: str) -> Path:
    """``out/behaviours.gif``: each behaviour's representative window, captioned with step, action and value."""
    from ... import video
    from .core import VIDEO_FILE

    stacks, names = [], summary["action_names"]
    for b, (rep, obs) in enumerate(zip(arrays["representative"], frames)):
        n, t0 = arrays["index"][rep]
        t = t0 + np.arange(len(obs))
        lines = [f"B{b} t{s} {names[samples['action'][n, s]]} v{samples['value'][n, s]:.2f}" for s in t]
        stacks.append(video.caption(video.render_obs(obs, obs_kind), lines))
    return video.write_video(video.grid(stacks, columns=min(4, len(stacks))), out / VIDEO_FILE, fps=2)


def run_behaviours(cfg: BehavioursConfig) -> Path:
    """The whole command; returns the path of ``behaviours.json``."""
    import torch

    from .core import ARRAYS_FILE, JSON_FILE, Readout, analyze, simulate

    _check(cfg)
    paths = resolve(cfg, "behaviours")
    directions_path = Path(cfg.directions) if cfg.directions else paths.run_dir / "analysis" / "hx" / "ica"
    directions_path = directions_path.with_suffix("") if directions_path.suffix in (".json", ".safetensors") \
        else directions_path
    sim, frozen, _, names = load_parts(cfg, paths)
    readout = Readout.from_directions(load_directions(directions_path, frozen.hidden))
    starts = real_starts(cfg, paths.store, sim) if cfg.starts != "prior" else None
    torch.manual_seed(cfg.seed)
    say(cfg, f"simulating {cfg.samples} rollouts of {cfg.steps} steps; Jacobians of {len(readout)} directions up to "
             f"lag {cfg.max_lag}, with and without the environment")
    samples = simulate(sim, frozen, readout, cfg.samples, cfg.steps, cfg.max_lag, seed=cfg.seed, starts=starts,
                       batch_size=cfg.batch_size, cut=cfg.cut, actions=cfg.actions, latent=cfg.latent,
                       progress=cfg.progress)
    say(cfg, f"clustering windows of {cfg.window} steps into {cfg.behaviours} behaviours")
    summary, arrays = analyze(samples, window=cfg.window, stride=cfg.stride, behaviours=cfg.behaviours,
                              max_lag=cfg.max_lag, seed=cfg.seed, corr_min=cfg.corr_min, grad_min=cfg.grad_min,
                              diagonal=cfg.diagonal, draws=cfg.null_draws, action_names=names,
                              labels=readout.labels)
    out = paths.out
    out.mkdir(parents=True, exist_ok=True)
    frames = representative_frames(samples, arrays, cfg.window)
    summary["source"] = {"run": cfg.run, "simulator": str(paths.sim), "directions": str(directions_path),
                         "obs_kind": sim.config.obs_kind, "config": asdict(cfg)}
    per_sample = {f"sample_{k}": samples[k] for k in ("ic", "value", "entropy", "action", "reward")}
    np.savez_compressed(out / ARRAYS_FILE, **arrays, **per_sample, representative_obs=frames)
    (out / JSON_FILE).write_text(json.dumps(summary, indent=1))
    if cfg.plots:
        from .plots import plot_all

        plot_all(out, cfg.plot_lag)
    if cfg.video:
        write_video(out, frames, arrays, samples, summary, sim.config.obs_kind)
    return out / JSON_FILE


def _share(c: dict) -> str:
    if c["share"] is None:
        return "no entries"
    null = "" if c["null_mean"] is None else f", null {c['null_mean']:.2f}"
    return f"{c['share']:.2f} (n={c['entries']}{null})"


def _report(cfg: BehavioursConfig) -> int:
    path = run_behaviours(cfg)
    s = json.loads(path.read_text())
    sizes = ", ".join(str(b["size"]) for b in s["behaviours"])
    print(f"wrote {path.parent}: {s['windows']} windows of {s['window']} steps in {len(s['behaviours'])} behaviours "
          f"({sizes})")
    for path_name in ("env", "own"):
        every = s["consistency"][path_name][-1]  # all windows
        text = ", ".join(f"lag {c['lag']}: {_share(c)}" for c in every)
        print(f"sign consistency xcorr vs xcaus ({'with' if path_name == 'env' else 'without'} the environment), "
              f"all windows: {text}")
    return 0


def main(argv=None) -> int:
    return command_main(BehavioursConfig, _report, (
        "Cluster simulated agent+simulator dynamics into behaviours; per behaviour, lagged cross-correlation vs "
        "cross-causation (gradient) matrices between hidden-state directions, with and without gradients through "
        "the environment, and how often their signs agree against a shuffled null."), argv,
        prog="policylens sim behaviours")
