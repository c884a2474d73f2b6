"""Sampling the simulator (Saliency as causality's "samples from the generative model"): imagined rollouts of the frozen agent
from the latent prior or from encoded real starts, as explorer trajectories and captioned videos.

    >>> r = sample(sim, agent, n=16, steps=32, start="prior", mode="modal", seed=0)    # Rollout, (16, 32, ...)
    >>> trajectories = to_trajectories(r, sim.config)        # explorer.Trajectory each, cut at its predicted end
    >>> write_videos(trajectories, sim.config.obs_kind, action_names, "out/video")   # sample_000.gif ... grid.gif

``policylens sim sample RUN [--n 16 --steps 32 --start prior|real|filtered --mode modal|sample --video true
--explorer true --agent AGENT]`` writes ``OUT`` (default ``RUN/analysis/sample``); ``--agent`` puts another agent
with the same spaces in the loop (:mod:`~policylens.sim.guests`: a run, ``untrained``, ``scripted:forward``)::

    samples.npz      per sample: z, obs (uint8, the env's format), value, logits, action, reward, done_logit, done,
                     hx, advantages (NaN past the cut), length; real starts: episode, frame, real_obs, real_mask
    summary.json     settings, lengths, mean value, predicted return, action counts
    video/           sample_NNN.gif (one per sample, action and value under each frame) and grid.gif (all)
    explorer/        the trajectory explorer (index.html) on the simulated trajectories
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from .command import SimCommand, command_main, load_parts, resolve, say
from .guests import is_scripted, load_guest
from .obs import agent_view
from .loop import Context, Noise, Rollout, filtered_start, rollout
from .model import Gaussian

STARTS = ("prior", "real", "filtered")


# ------------------------------------------------------------------------------------------------ sampling
def _context(sim, start) -> "Context | None":
    """The encoder's input for a real start (a Windows or a Context), None for the prior."""
    from .data import Windows

    if isinstance(start, str):
        if start == "prior":
            return None
        raise ValueError(f"start {start!r}; expected 'prior', or real starts as Windows / a Context "
                         f"(e.g. real_windows(data, n, seed))")
    if isinstance(start, Windows):
        return start.context(sim.config.context_frames)
    if isinstance(start, Context):
        return start
    raise ValueError(f"start must be 'prior', Windows or a Context, got {type(start).__name__}")


def concat(parts: list) -> Rollout:
    """Rollouts of the same steps stacked along the batch: one :class:`Rollout`."""
    def cat(values):
        if values[0] is None:
            return None
        if isinstance(values[0], Gaussian):
            return Gaussian(torch.cat([v.mean for v in values]), torch.cat([v.std for v in values]))
        return torch.cat(values)

    return Rollout(**{f.name: cat([getattr(p, f.name) for p in parts]) for f in fields(Rollout)})


def sample(sim, agent, n: "int | None" = None, steps: int = 32, start="prior", mode: str = "modal", seed: int = 0, *,
           latent: str = "sample", batch_size: int = 64, filtered: bool = False) -> Rollout:
    """``n`` imagined rollouts of ``steps`` steps (no gradients): the agent's own actions drive the simulator.

    ``start``: ``"prior"`` (z ~ N(0, I)) or real starts: :class:`~policylens.sim.data.Windows` (their first
    ``context_frames`` frames and agent state, encoded to q(z | context)) or a :class:`Context` (``n`` must be
    its batch or None). ``mode``: ``modal`` (argmax actions) or ``sample`` (drawn from the policy).
    ``filtered`` (real starts as Windows only): their context frames through the posterior with their recorded
    actions, the agent acting from the last one (:func:`~policylens.sim.loop.filtered_start`).
    ``latent``: ``sample`` draws z (real starts) and every s_t, ``mean`` takes their means. Every draw comes from
    ``seed`` up front: the same seed gives the same samples, and the same draws whatever ``batch_size`` (then
    equal up to float rounding)."""
    from .data import Windows

    context = _context(sim, start)
    if filtered and not isinstance(start, Windows):
        raise ValueError("a filtered start needs real starts as Windows (their recorded actions and frames), got "
                         f"{start if isinstance(start, str) else type(start).__name__}")
    if context is not None:
        rows = context.obs.shape[0]
        if n is not None and n != rows:
            raise ValueError(f"n={n} samples asked, but the real starts hold {rows}; pass n=None or {rows}")
        n = rows
    if n is None or n < 1:
        raise ValueError(f"n (samples) must be >= 1, got {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(sim.parameters()).device
    noise = Noise.draw(n, steps, sim, torch.Generator().manual_seed(seed), device=device)  # z (n, latent) ~ N(0, I)
    parts = []
    with torch.no_grad():
        for a in range(0, n, batch_size):
            rows = slice(a, min(n, a + batch_size))
            begin = noise.z[rows] if context is None else context.rows(rows)
            real = filtered_start(start.rows(rows), sim.config.context_frames) if filtered else {}
            parts.append(rollout(sim, agent, begin, steps, mode, latent=latent, noise=noise.rows(rows), **real))
    return concat(parts)


def real_windows(data, n: int, steps: int, seed: int = 0, episodes=None, context_frames: int = 1) -> tuple:
    """``(Windows (n, steps), starts (n,) global frames)``: ``n`` real starts chosen with ``seed`` among every
    frame of ``episodes`` (default all) from which ``context_frames`` frames remain (without replacement while
    there are enough); the windows run on past the context, padded past an episode's end (``mask`` False)."""
    episodes = np.arange(data.num_episodes) if episodes is None else np.asarray(episodes)
    candidates = data.window_starts(episodes, context_frames)  # (m,)
    if len(candidates) == 0:
        raise ValueError(f"no real start of {context_frames} frames in episodes {episodes.tolist()} of {data.path}")
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.choice(candidates, n, replace=n > len(candidates)))  # (n,)
    return data.windows(starts, steps), starts


# ------------------------------------------------------------------------------------------------ trajectories
def env_obs(decoded: torch.Tensor, cfg) -> np.ndarray:
    """The decoder's output ``(..., H, W, channels)`` -> what the agent is shown, in the env's format, uint8
    ``(..., H, W, C)`` (:func:`~policylens.sim.obs.agent_view`'s forward: each cell's code for symbolic views,
    the one-hot planes for onehot), pixels rounded."""
    decoded = decoded.detach().float().cpu()
    if cfg.obs_kind != "pixels":
        decoded = agent_view(decoded, cfg, straight_through=True)
    return decoded.round().clamp(0, 255).to(torch.uint8).numpy()


def episode_lengths(done_logit: torch.Tensor) -> np.ndarray:
    """``(B,)`` steps up to and including each sample's first predicted end (done_logit > 0), else all ``T``."""
    done = (done_logit.detach().cpu() > 0).numpy()  # (B, T)
    first = done.argmax(1)  # (B,) 0 also when never done
    return np.where(done.any(1), first + 1, done.shape[1])


def to_trajectories(r: Rollout, cfg, *, gamma: float = 0.999, lam: float = 0.95, cut: bool = True,
                    info: "list | None" = None) -> list:
    """One :class:`~policylens.explorer.Trajectory` per sample of rollout ``r``: obs decoded to the env's format
    (:func:`env_obs`), the agent's value, logits and action, the predicted reward, ``done`` where done_logit > 0,
    GAE advantages of the predicted reward and value (:func:`policylens.gae.gae`), ``state`` the hx the agent
    received. ``cut``: each sample ends at its first predicted end. A sample that does not end is bootstrapped
    with its last value (the simulator gives no value for the step after). ``info``: a dict per sample, merged in."""
    from ..explorer.bundle import Trajectory
    from ..gae import gae

    obs = env_obs(r.decoded, cfg)  # (B, T, H, W, C)
    value, logits, reward = (x.detach().float().cpu().numpy() for x in (r.value, r.logits, r.reward))
    action, hx = r.action_index.cpu().numpy(), r.hx.detach().float().cpu().numpy()
    done = (r.done_logit.detach().cpu() > 0).numpy()  # (B, T)
    lengths = episode_lengths(r.done_logit) if cut else np.full(len(value), value.shape[1])
    out = []
    for b, length in enumerate(lengths):
        keep = slice(0, int(length))
        last = 0.0 if done[b, length - 1] else float(value[b, length - 1])
        adv = gae(reward[b, keep], value[b, keep], done[b, keep], gamma, lam, last_value=last)[0]
        ended = bool(done[b, length - 1])
        meta = {"sample": b, "label": f"sample {b} ({length} steps, {'ends' if ended else 'runs on'})",
                "cause": "predicted end" if ended else "cut", "return": float(reward[b, keep].sum()),
                **((info or [{}] * len(lengths))[b])}
        out.append(Trajectory(obs[b, keep], value[b, keep], logits[b, keep], action[b, keep], reward[b, keep],
                              done[b, keep], adv, meta, state=hx[b, keep]))
    return out


# ------------------------------------------------------------------------------------------------ videos
def frames(traj, obs_kind: str, action_names=()) -> np.ndarray:
    """A trajectory drawn as the env draws it, enlarged so the caption fits, with ``step action v=value`` (and the
    predicted reward and end where there are) under each frame: ``(T, h, w, 3)`` uint8."""
    from .video import caption, render_obs

    images = render_obs(traj.obs, obs_kind)  # (T, h, w, 3)
    names = list(action_names)
    lines = []
    for t, (a, v, rew, end) in enumerate(zip(traj.action, traj.value, traj.reward, traj.done)):
        text = f"{t} {names[a] if a < len(names) else a} v={v:.2f}"
        text += (f" r={rew:.2f}" if abs(rew) >= 0.05 else "") + (" END" if end else "")
        lines.append(text)
    return caption(images, lines)


def write_videos(trajectories, obs_kind: str, action_names, folder, *, stem: str = "sample", grid_name: str = "grid",
                 each: bool = True, fmt: str = "gif", fps: float = 4) -> list:
    """``folder/STEM_NNN.FMT`` per trajectory (unless ``each`` is False) and ``folder/GRID_NAME.FMT`` (all side by
    side, in rows of about sqrt(n)); returns the paths, the grid last."""
    from .video import grid, write_video

    if fmt not in ("gif", "mp4"):
        raise ValueError(f"video format {fmt!r}; expected gif or mp4")
    folder = Path(folder)
    stacks = [frames(t, obs_kind, action_names) for t in trajectories]
    paths = [write_video(s, folder / f"{stem}_{i:03d}.{fmt}", fps) for i, s in enumerate(stacks)] if each else []
    columns = max(1, math.ceil(math.sqrt(len(stacks))))
    return paths + [write_video(grid(stacks, columns), folder / f"{grid_name}.{fmt}", fps)]


# ------------------------------------------------------------------------------------------------ explorer
def write_sample_explorer(agent, trajectories, out, *, layers=None, k: int = 8, ig_steps: int = 10,
                          tree_k: int = 0, seed: int = 0, title: str = "", env: str = "", run: str = "",
                          action_names=(), progress: bool = False, meta: "dict | None" = None) -> dict:
    """The trajectory explorer on simulated trajectories, built as ``policylens explore`` builds it
    (:func:`~policylens.explorer.export.analyse_layer`, ``write_explorer``; ``layers`` default as ``explore``:
    :func:`~policylens.explorer.export.default_layers`), its rewards, returns and ends shown as the simulator's
    predictions; returns ``write_explorer``'s summary plus ``layers``."""
    from tqdm.auto import tqdm

    from ..explorer.bundle import write_explorer
    from ..explorer.export import add_saliency_trees, analyse_layer, check_layer, default_layers, tree_frames

    names = list(layers or []) or default_layers(agent)
    for name in names:
        check_layer(agent, name)
    bar = tqdm(total=len(trajectories) * len(names), desc="explorer", unit="traj", disable=not progress)
    try:
        views = [analyse_layer(agent, trajectories, name, k=k, ig_steps=ig_steps, seed=seed, env=env,
                               progress=bar.update) for name in names]
        if tree_k:
            add_saliency_trees(agent, trajectories, lambda tr: tree_frames(tr, 10, 3), k=tree_k)
    finally:
        bar.close()
    summary = write_explorer(out, views, trajectories, title=title, env=env, run=run, action_names=action_names,
                             meta=meta, predicted=True)  # rewards, returns and ends: the simulator's predictions
    return {**summary, "layers": names}


# ------------------------------------------------------------------------------------------------ the command
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
    for name in ("n", "steps", "batch_size", "k", "ig_steps"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.start not in STARTS:
        raise ValueError(f"--start {cfg.start!r}; expected one of {', '.join(STARTS)}")
    if cfg.video_format not in ("gif", "mp4"):
        raise ValueError(f"--video-format {cfg.video_format!r}; expected gif or mp4")


def _real_starts(cfg: SampleConfig, store, context_frames: int) -> tuple:
    """``(Windows, arrays for samples.npz, info per sample)`` of ``cfg.n`` real starts from the store."""
    from .data import load_sim_data

    data = load_sim_data(store, cfg.max_episodes)
    windows, starts = real_windows(data, cfg.n, cfg.steps, cfg.seed, context_frames=context_frames)
    episode = np.searchsorted(data.start, starts, side="right") - 1  # (n,)
    frame = starts - data.start[episode]  # (n,) first frame within its episode
    arrays = {"episode": episode, "frame": frame, "real_obs": windows.obs.numpy(), "real_mask": windows.mask.numpy()}
    return windows, arrays, [{"episode": int(e), "start_frame": int(f)} for e, f in zip(episode, frame)]


def save_samples(path, r: Rollout, trajectories, cfg, **extra) -> None:
    """``samples.npz``: the rollout's arrays (obs in the env's format), each sample's cut ``length`` and its
    ``advantages`` (NaN past the cut), and ``extra``."""
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
    from .checkpoint import read_sim_config

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
