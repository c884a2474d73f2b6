"""Sampling the simulator (Saliency as causality's "samples from the generative model"): imagined rollouts of the frozen agent
from the latent prior or from encoded real starts, as explorer trajectories and captioned videos.

    >>> r = sample(sim, agent, n=16, steps=32, start="prior", mode="modal", seed=0)    # Rollout, (16, 32, ...)
    >>> trajectories = to_trajectories(r, sim.config)        # explorer.Trajectory each, cut at its predicted end
    >>> write_videos(trajectories, sim.config.obs_kind, action_names, "out/video")   # sample_000.gif ... grid.gif

``policylens sim sample RUN`` (:mod:`policylens.sim.analyses.sample.cli`) writes them into a run's analysis folder.
"""
from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from .loop import Context, Noise, Rollout, filtered_start, rollout
from .model import Gaussian
from .obs import agent_view

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
        given = context.obs.shape[0]
        if n is not None and n != given:
            raise ValueError(f"n={n} samples asked, but the real starts hold {given}; pass n=None or {given}")
        n = given
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

