"""``policylens sim saliency RUN --target value --t 20 --samples 0,1,2 --smooth 8 --through-env both``.

Saliency through time (:mod:`.core`) of simulated samples: the gradient of a target at step t
w.r.t. what the agent saw, the state it received, the simulator's state and the actions at every step up to t,
with and without gradients through the environment. Sample k unrolls from the latent :func:`sample_latents`
gives it, or from row k of ``--latents FILE`` (e.g. optimised latents); its draws come from
:func:`sample_seed` (``--seed``, k) alone.
Writes ``OUT`` (default ``RUN/analysis/saliency``)::

    saliency.npz     z, samples, what the agent saw (obs), value, logits, action; per setting (with_env,
                     without_env): target, grad_{obs,hx,h,s,action} (B, T, ...), grad_z, vargrad_* (--smooth)
    saliency.json    settings, per-step gradient norms per sample and their means, each gradient's mean lag
    norms.png        gradient norm vs steps before t (obs, hx, h, s, action), both settings
    sample_K.gif     the frames with the obs gradient overlaid (red +, blue -), with / without the environment
                     side by side, captioned with step, action and value
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...command import SimCommand, command_main, load_parts, resolve, say

if TYPE_CHECKING:
    import torch

SETTINGS = {"yes": ("with_env",), "no": ("without_env",), "both": ("with_env", "without_env")}
THROUGH_ENV = {"with_env": True, "without_env": False}


@dataclass
class SaliencyConfig(SimCommand):
    target: str = "value"
    """what to explain: value, value_drop, action, actions, neuron or direction (policylens.sim.targets)"""
    index: str = "0"
    """the action (name or index), hidden unit, or direction (index or label) the target reads"""
    sequence: str = ""
    """actions target: the action sequence ending at t, comma-separated names or indices"""
    target_start: int = 0
    """value_drop target: the step the drop is measured from (before t)"""
    directions: str = ""
    """direction target: saved hidden-state Directions (e.g. RUN/analysis/hx/ica from policylens sim hx)"""
    t: int = 20
    """the step the target is read at (0 = the first simulated step)"""
    steps: int = 0
    """rollout length (0: t + 1; steps after t get no gradient)"""
    samples: str = "0,1,2"
    """samples to explain: ids, comma-separated, or ranges A-B"""
    latents: str = ""
    """take sample k's latent from row k of this file (.npz or .safetensors with an array 'z' of shape (N, latent))"""
    smooth: int = 0
    """SmoothGrad: noised latents averaged per sample (0: the plain gradient)"""
    sigma: float = 0.1
    """SmoothGrad: standard deviation of the latent noise (the prior is N(0, 1))"""
    through_env: str = "both"
    """gradients through the environment: yes (the actions carry them), no (actions detached) or both"""
    mode: str = "modal"
    """the agent's actions: modal (argmax) or sample (Gumbel, seeded)"""
    latent: str = "sample"
    """the simulator's stochastic state: sample (seeded draws) or mean"""
    video: bool = True
    """write one video per sample"""
    video_format: str = "gif"
    """gif, or mp4 (needs PyAV)"""
    fps: float = 4.0
    """video frames per second"""
    plots: bool = True
    """write norms.png"""


def parse_samples(text: str) -> list:
    """``"0,1,5-7"`` -> ``[0, 1, 5, 6, 7]`` (order kept, repeats dropped)."""
    ids = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        low, dash, high = part.partition("-")
        try:
            span = range(int(low), int(high) + 1) if dash else [int(part)]
        except ValueError:
            raise ValueError(f"--samples {text!r}: expected ids like 0,1,2 or ranges like 0-9") from None
        ids += [k for k in span if k not in ids]
    if not ids or min(ids) < 0:
        raise ValueError(f"--samples {text!r}: expected one or more ids >= 0")
    return ids


def sample_seed(seed: int, k: int) -> int:
    """The seed of sample ``k``: its latent, its rollout's draws and its SmoothGrad noise come from it alone, so a
    sample is the same whichever others are asked for."""
    return seed * 1_000_003 + k


def sample_latents(ids, latent: int, seed: int = 0) -> torch.Tensor:
    """Each sample's latent z ~ N(0, I), (B, latent): the first draw of a generator seeded by
    :func:`sample_seed` (as ``Noise.draw``'s z, so ``saliency(..., seed=sample_seed(seed, k))`` draws the rest)."""
    import torch

    return torch.stack([torch.randn(latent, generator=torch.Generator().manual_seed(sample_seed(seed, k)))
                        for k in ids])


def read_latents(path, ids, latent: int) -> torch.Tensor:
    """Rows ``ids`` of the array ``z`` (N, latent) in ``path`` (.npz or .safetensors)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no latents file {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        arrays = load_file(str(path))
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: torch.as_tensor(data[k]) for k in data.files}
    else:
        raise ValueError(f"latents file {path}: expected .npz or .safetensors")
    z = arrays.get("z")
    if z is None or z.dim() != 2 or z.shape[1] != latent:
        found = f"an array 'z' of shape {tuple(z.shape)}" if z is not None else f"arrays {', '.join(arrays)}"
        raise ValueError(f"latents file {path}: expected an array 'z' of shape (N, {latent}), found {found}")
    if max(ids) >= len(z):
        raise ValueError(f"latents file {path} has {len(z)} latents; --samples asks for id {max(ids)}")
    return z[ids].float()


def build_target(cfg: SaliencyConfig, agent, action_names):
    """The :class:`~policylens.sim.targets.Target` the options name."""
    from ....factors import Directions
    from ...targets import make_target

    directions = Directions.load(cfg.directions) if cfg.directions else None
    return make_target(cfg.target, start=cfg.target_start, index=cfg.index, sequence=cfg.sequence,
                       directions=directions, action_names=action_names, num_actions=agent.num_actions,
                       hidden=agent.hidden)


def _check(cfg: SaliencyConfig) -> None:
    if cfg.through_env not in SETTINGS:
        raise ValueError(f"--through-env {cfg.through_env!r}; expected one of {', '.join(SETTINGS)}")
    if cfg.t < 0 or cfg.steps < 0 or (cfg.steps and cfg.t >= cfg.steps):
        raise ValueError(f"--t {cfg.t} must be a step of the rollout: 0 <= t < steps (--steps {cfg.steps})")
    if cfg.video_format not in ("gif", "mp4"):
        raise ValueError(f"--video-format {cfg.video_format!r}; expected gif or mp4")


def mean_lag(norms: torch.Tensor, t: int) -> torch.Tensor:
    """How far back a gradient lies: the norm-weighted mean of ``t - k`` over steps k <= t; (B,) from (B, T)."""
    import torch

    lag = t - torch.arange(t + 1, dtype=norms.dtype)  # (t+1,)
    part = norms[:, :t + 1]  # (B, t+1)
    return (part * lag).sum(1) / part.sum(1).clamp_min(1e-30)


def summarise(results: dict, t: int) -> dict:
    """Per setting and gradient: per-sample per-step norms, their mean over samples, the mean lag; ``results``
    maps each setting to one :class:`~.core.Saliency` per sample."""
    import torch

    from .core import PROBES

    out = {}
    for name, per_sample in results.items():
        norms = {k: torch.cat([s.norms()[k] for s in per_sample]) for k in PROBES}  # (B, T) each
        out[name] = {"norms": {k: v.tolist() for k, v in norms.items()},
                     "mean_norms": {k: v.mean(0).tolist() for k, v in norms.items()},
                     "mean_lag": {k: mean_lag(v, t).tolist() for k, v in norms.items()},
                     "target": torch.cat([s.target for s in per_sample]).tolist()}
    return out


def save_arrays(results: dict, z: torch.Tensor, ids, path: Path) -> Path:
    """``saliency.npz``: each array stacked over the samples (rows in ``ids`` order)."""
    import torch

    from .core import PROBES

    def cat(items):
        return torch.cat(list(items)).detach().cpu().numpy()

    first = next(iter(results.values()))
    arrays = {"z": z.cpu().numpy(), "samples": np.asarray(ids)}
    arrays.update({k: cat(getattr(s.rollout, k) for s in first) for k in ("obs", "value", "logits")})
    arrays["action"] = cat(s.rollout.action_index for s in first)
    for name, per_sample in results.items():
        arrays[f"{name}_target"], arrays[f"{name}_grad_z"] = cat(s.target for s in per_sample), \
            cat(s.z_grad for s in per_sample)
        for k in PROBES:
            arrays[f"{name}_grad_{k}"] = cat(s.grads[k] for s in per_sample)
            if per_sample[0].vargrad is not None:
                arrays[f"{name}_vargrad_{k}"] = cat(s.vargrad[k] for s in per_sample)
    np.savez_compressed(path, **arrays)
    return path


def write_videos(results: dict, ids, action_names, obs_kind: str, out: Path, cfg: SaliencyConfig) -> list:
    """One video per sample: the frames the agent saw with its obs gradient overlaid, one column per setting."""
    from ...video import caption, cell_heat, grid, overlay, render_obs, write_video
    from .plots import LABELS

    paths = []
    for b, k in enumerate(ids):
        r = next(iter(results.values()))[b].rollout
        frames = render_obs(r.obs[0].cpu().numpy(), obs_kind)  # (T, h, w, 3)
        heats = {name: cell_heat(s[b].grads["obs"][0].cpu().numpy(), obs_kind) for name, s in results.items()}
        scale = max(float(np.abs(h).max()) for h in heats.values())  # one scale: the settings compare
        steps = [f"{j}{'*' if j == cfg.t else ''} {action_names[int(a)]} v={float(v):.2f}"
                 for j, (a, v) in enumerate(zip(r.action_index[0], r.value[0]))]
        columns = [caption(caption(overlay(frames, heat, scale=scale or None), steps), [LABELS[name]] * len(steps))
                   for name, heat in heats.items()]
        paths.append(write_video(grid(columns), out / f"sample_{k}.{cfg.video_format}", fps=cfg.fps))
    return paths


def explain(cfg: SaliencyConfig, sim, frozen, target, z: torch.Tensor, ids) -> dict:
    """Each setting -> one :class:`~.core.Saliency` per sample (seeded by its id)."""
    from tqdm.auto import tqdm

    from .core import saliency

    results: dict[str, list] = {name: [] for name in SETTINGS[cfg.through_env]}
    for b, k in enumerate(tqdm(ids, desc="samples", unit="sample", disable=not cfg.progress)):
        for name in results:
            results[name].append(saliency(sim, frozen, z[b:b + 1], cfg.steps or cfg.t + 1, target, cfg.t,
                                          through_env=THROUGH_ENV[name], smooth=cfg.smooth, sigma=cfg.sigma,
                                          mode=cfg.mode, latent=cfg.latent, seed=sample_seed(cfg.seed, k)))
    return results


def run_saliency(cfg: SaliencyConfig) -> Path:
    """Compute and write what ``cfg`` asks for; returns ``OUT/saliency.json``."""
    from .plots import LABELS, plot_norms

    _check(cfg)
    ids = parse_samples(cfg.samples)
    paths = resolve(cfg, "saliency")
    sim, frozen, _, action_names = load_parts(cfg, paths)
    target = build_target(cfg, frozen, action_names)
    latent = sim.config.latent
    z = read_latents(cfg.latents, ids, latent) if cfg.latents else sample_latents(ids, latent, cfg.seed)
    z = z.to(next(sim.parameters()).device)
    say(cfg, f"{target.label} at t={cfg.t}: gradients {' and '.join(LABELS[n] for n in SETTINGS[cfg.through_env])}")
    results = explain(cfg, sim, frozen, target, z, ids)
    out = paths.out
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(results, cfg.t)
    files: dict[str, Any] = {"arrays": save_arrays(results, z, ids, out / "saliency.npz").name}
    if cfg.plots:
        smoothing = f", SmoothGrad n={cfg.smooth} sigma={cfg.sigma}" if cfg.smooth else ""
        files["figure"] = plot_norms(summary, cfg.t, out / "norms.png", f"{target.label} at t={cfg.t}{smoothing}").name
    if cfg.video:
        files["videos"] = [p.name for p in write_videos(results, ids, action_names, sim.config.obs_kind, out, cfg)]
    first, steps = next(iter(results.values())), cfg.steps or cfg.t + 1
    info = {"target": {"kind": target.kind, "label": target.label, "t": cfg.t}, "steps": steps, "samples": ids,
            "latents": cfg.latents or f"z ~ N(0, I) seeded by sample_seed(seed {cfg.seed}, sample id)",
            "simulator": str(paths.sim), "steps_before_t": [cfg.t - k for k in range(steps)],
            "actions": [[action_names[int(a)] for a in s.rollout.action_index[0]] for s in first],
            "values": [s.rollout.value[0].tolist() for s in first], "settings": summary, "files": files,
            "config": asdict(cfg)}
    path = out / "saliency.json"
    path.write_text(json.dumps(info, indent=1))
    return path


def main(argv=None) -> int:
    path = command_main(SaliencyConfig, run_saliency, (
        "Saliency through time in the simulator: gradients of a target at step t (value, an action's "
        "log-probability, a hidden unit or direction) w.r.t. the observations, the agent's hidden state, the "
        "simulator's state and the actions at every step up to t, with and without gradients through the "
        "environment; SmoothGrad in latent space; figures and blue/red videos."), argv,
        prog="policylens sim saliency")
    from .plots import LABELS

    info = json.loads(path.read_text())
    lags = ", ".join(f"{LABELS[name]} {np.mean(s['mean_lag']['obs']):.1f}" for name, s in info["settings"].items())
    print(f"wrote {path.parent}: {info['target']['label']} at t={info['target']['t']} for "
          f"{len(info['samples'])} samples; mean lag of the obs gradient (steps before t): {lags}")
    return 0
