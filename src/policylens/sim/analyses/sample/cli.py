"""``policylens sim sample RUN [--n 16 --steps 32 --start prior|real|filtered --mode modal|sample --video true
--explorer true --agent AGENT]``: imagined rollouts of the frozen agent (:mod:`policylens.sim.sample`) from the
latent prior or encoded real starts. Writes ``OUT`` (default ``RUN/analysis/sample``); ``--agent`` puts another
agent with the same spaces in the loop (:mod:`~policylens.sim.guests`: a run, ``untrained``, ``scripted:forward``)::

    samples.npz      per sample: z, obs (uint8, the env's format), value, logits, action, reward, done_logit, done,
                     hx, advantages (NaN past the cut), length; real starts: episode, frame, real_obs, real_mask
    summary.json     settings, lengths, mean value, predicted return, action counts
    video/           sample_NNN.gif (one per sample, action and value under each frame) and grid.gif (all)
    explorer/        the trajectory explorer (index.html) on the simulated trajectories
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...command import SimCommand, command_main, load_parts, resolve, say

if TYPE_CHECKING:
    from ...loop import Rollout


@dataclass
class SampleConfig(SimCommand):
    agent: str = ""
    """the agent inside the simulator in place of RUN's (any with its observation and action spaces): a run or
    zoo:NAME, untrained (RUN's architecture, weights from --seed), untrained:RUN, scripted:ACTION (e.g.
    scripted:forward) or scripted:random (default: RUN's agent, the one the simulator was trained with)"""
    n: int = 16
    """samples"""
    steps: int = 32
    """steps per sample"""
    start: str = "prior"
    """prior (z ~ N(0, I)), real (z encoded from the first frames of random windows of the store, the agent
    acting from the first), or filtered (those frames through the posterior, the agent acting from the last)"""
    mode: str = "modal"
    """the agent's actions: modal (argmax) or sample (drawn from its policy)"""
    latent: str = "sample"
    """sample (draw z and every stochastic state) or mean (their means)"""
    cut: bool = True
    """end each sample's trajectory (videos, explorer) at its first predicted episode end"""
    video: bool = True
    """write one captioned video per sample and a grid of all"""
    video_format: str = "gif"
    """gif or mp4 (mp4 needs PyAV)"""
    fps: float = 4.0
    """video frames per second"""
    explorer: bool = True
    """write the trajectory explorer on the samples (OUT/explorer/index.html)"""
    layer: str = ""
    """explorer layers, comma-separated (default: as policylens explore chooses)"""
    k: int = 8
    """NMF directions of the explorer's attribution"""
    ig_steps: int = 10
    """integrated-gradients steps of the explorer's attribution"""
    tree_k: int = 0
    """children per node of saliency trees at each sample's first frame and bookmarks (0: none)"""
    max_episodes: int = 500
    """real starts: read at most this many episodes of the store"""
    gamma: float = 0.999
    """discount of the advantages (GAE)"""
    lam: float = 0.95
    """GAE lambda"""
    batch_size: int = 64
    """samples per simulator batch"""


def _check(cfg: SampleConfig) -> None:
    from ...sample import STARTS

    for name in ("n", "steps", "batch_size", "k", "ig_steps"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.start not in STARTS:
        raise ValueError(f"--start {cfg.start!r}; expected one of {', '.join(STARTS)}")
    if cfg.video_format not in ("gif", "mp4"):
        raise ValueError(f"--video-format {cfg.video_format!r}; expected gif or mp4")


def _real_starts(cfg: SampleConfig, store, context_frames: int) -> tuple:
    """``(Windows, arrays for samples.npz, info per sample)`` of ``cfg.n`` real starts from the store."""
    from ...data import load_sim_data
    from ...sample import real_windows

    data = load_sim_data(store, cfg.max_episodes)
    windows, starts = real_windows(data, cfg.n, cfg.steps, cfg.seed, context_frames=context_frames)
    episode = np.searchsorted(data.start, starts, side="right") - 1  # (n,)
    frame = starts - data.start[episode]  # (n,) first frame within its episode
    arrays = {"episode": episode, "frame": frame, "real_obs": windows.obs.numpy(), "real_mask": windows.mask.numpy()}
    return windows, arrays, [{"episode": int(e), "start_frame": int(f)} for e, f in zip(episode, frame)]


def save_samples(path, r: Rollout, trajectories, cfg, **extra) -> None:
    """``samples.npz``: the rollout's arrays (obs in the env's format), each sample's cut ``length`` and its
    ``advantages`` (NaN past the cut), and ``extra``."""
    from ...sample import env_obs

    advantages = np.full(tuple(r.value.shape), np.nan, np.float32)  # (n, T)
    for b, traj in enumerate(trajectories):
        advantages[b, :len(traj)] = traj.advantages
    tensors = {"z": r.z, "value": r.value, "logits": r.logits, "action": r.action_index, "reward": r.reward,
               "done_logit": r.done_logit, "done": r.done_logit > 0, "hx": r.hx}
    np.savez_compressed(path, obs=env_obs(r.decoded, cfg), advantages=advantages,
                        length=np.array([len(t) for t in trajectories]),
                        **{k: v.detach().cpu().numpy() for k, v in tensors.items()}, **extra)


def run_sample(cfg: SampleConfig) -> dict:
    """Sample, save and draw what ``cfg`` asks; returns the summary (also ``OUT/summary.json``)."""
    from ...checkpoint import read_sim_config
    from ...guests import is_scripted, load_guest
    from ...sample import sample, to_trajectories, write_sample_explorer, write_videos

    _check(cfg)
    paths = resolve(cfg, "sample")
    sim, frozen, agent, names = load_parts(cfg, paths)
    conf = read_sim_config(paths.sim)[1]
    env = conf.get("env", "")
    if cfg.agent:
        agent, frozen, _ = load_guest(cfg.agent, cfg.run, sim, names, conf.get("agent", {}).get("sha256", ""),
                                      cfg.seed, cfg.device)
    start, arrays, info = "prior", {}, None
    if cfg.start in ("real", "filtered"):
        say(cfg, f"choosing {cfg.n} real starts from {paths.store}")
        start, arrays, info = _real_starts(cfg, paths.store, sim.config.context_frames)
        start = start.to(cfg.device)
    say(cfg, f"sampling {cfg.n} x {cfg.steps} steps ({cfg.start} start, {cfg.mode} actions)")
    r = sample(sim, frozen, cfg.n, cfg.steps, start, cfg.mode, cfg.seed, latent=cfg.latent, batch_size=cfg.batch_size,
               filtered=cfg.start == "filtered")
    trajectories = to_trajectories(r, sim.config, gamma=cfg.gamma, lam=cfg.lam, cut=cfg.cut, info=info)
    out = paths.out
    out.mkdir(parents=True, exist_ok=True)
    save_samples(out / "samples.npz", r, trajectories, sim.config, **arrays)
    action = r.action_index.cpu().numpy()
    summary = {"run": cfg.run, "agent": cfg.agent or cfg.run, "guest": frozen.guest, "simulator": str(paths.sim),
               "env": env, "samples": cfg.n, "steps": cfg.steps,
               "lengths": [len(t) for t in trajectories], "ended": int(sum(bool(t.done[-1]) for t in trajectories)),
               "mean_value": float(r.value.mean()),
               "predicted_return": [round(t.info["return"], 5) for t in trajectories],
               "action_counts": {names[a]: int((action == a).sum()) for a in range(len(names))},
               "config": asdict(cfg), "files": {"samples": "samples.npz"}}
    if cfg.video:
        say(cfg, f"writing {cfg.n} videos")
        videos = write_videos(trajectories, sim.config.obs_kind, names, out / "video", fmt=cfg.video_format,
                              fps=cfg.fps)
        summary["files"]["videos"] = [str(p.relative_to(out)) for p in videos]
    if cfg.explorer and is_scripted(cfg.agent):
        say(cfg, f"no explorer: {cfg.agent} has no layers to attribute")
    elif cfg.explorer:
        say(cfg, "building the explorer on the samples")
        layers = [x.strip() for x in cfg.layer.split(",") if x.strip()]
        driver = f" driven by {cfg.agent}" if cfg.agent else ""
        title = f"{cfg.run}: {cfg.n} simulated samples{driver} ({cfg.start} start, {cfg.mode} actions)"
        done = write_sample_explorer(agent, trajectories, out / "explorer", layers=layers, k=cfg.k,
                                     ig_steps=cfg.ig_steps, tree_k=cfg.tree_k, seed=cfg.seed, title=title, env=env,
                                     run=cfg.run, action_names=names, progress=cfg.progress,
                                     meta={"simulator": str(paths.sim), "start": cfg.start, "mode": cfg.mode})
        summary["files"]["explorer"] = str(Path(done["index"]).relative_to(out))
        summary["explorer_layers"] = done["layers"]
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return {**summary, "out": str(out)}


def main(argv=None) -> dict:
    summary = command_main(SampleConfig, run_sample, "Imagined rollouts of the frozen agent in its simulator, from the "
                           "latent prior or encoded real starts: arrays, captioned videos and the trajectory explorer.",
                           argv, prog="policylens sim sample")
    lengths = summary["lengths"]
    print(f"wrote {summary['out']}: {summary['samples']} samples of {summary['steps']} steps, {summary['ended']} end "
          f"within them (mean length {np.mean(lengths):.1f}); mean value {summary['mean_value']:.3f}")
    return summary
