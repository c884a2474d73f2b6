"""``policylens sim optimize RUN --target value|value_drop|action|actions|neuron|direction --maximize|--minimize``.

Generative visualisation (:mod:`.core`): latents optimised so the simulated rollouts maximise or
minimise a target over a window (``--start``/``--stop``), kept on the prior, several samples per target. Writes
``OUT/NAME`` (``OUT`` default ``RUN/analysis/optimize``, ``NAME`` default ``TARGET[-INDEX]-max|min``)::

    latents.safetensors   z_start, z and the per-step draws: enough to unroll both again (optimize.load_latents)
    result.json           the target, per sample: its value before and after, log N(z; 0, I) before and after (and
                          where a draw from the prior would lie: prior_percentile), the iterate kept; the settings
    curve.png             the target and log N(z; 0, I) against the optimisation step
    video/                sample_NNN.gif of each optimised rollout (action and value under each frame), grid.gif of
                          all, start_grid.gif of the starting latents
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from ...command import SimCommand, claim_out, command_main, load_parts, resolve, say
from .plots import plot_curves

HX_METHODS = ("pca", "ica", "nmf")  # directions that `policylens sim hx` writes to RUN/analysis/hx/


@dataclass
class OptimizeConfig(SimCommand):
    target: str = "value"
    """what to optimise: value | value_drop | action | actions | neuron | direction"""
    maximize: Optional[bool] = None
    """maximise the target (the default)"""
    minimize: Optional[bool] = None
    """minimise the target instead (default: maximise)"""
    start: int = 0
    """first step of the target's window"""
    stop: Optional[int] = None
    """one past the window's last step (default: the end of the rollout)"""
    index: str = "0"
    """the action (index or name), hidden unit, or direction (index or label) the target reads"""
    sequence: str = ""
    """--target actions: the action sequence from --start, comma-separated indices or names"""
    directions: str = "ica"
    """--target direction: pca | ica | nmf (RUN/analysis/hx/, from policylens sim hx) or a Directions PATH"""
    samples: int = 8
    """latents optimised (different starting draws, one seed)"""
    steps: int = 24
    """steps per simulated rollout"""
    iterations: int = 100
    """Adam steps"""
    lr: float = 0.05
    """Adam learning rate"""
    prior_weight: float = 0.001
    """weight of the prior penalty in the loss (see --prior): larger keeps the latents closer to the prior"""
    prior: str = "map"
    """the penalty: map (0.5 |z|^2, towards the prior's mode) | typical (keep |z| near sqrt(latent), where draws lie)"""
    optimize_noise: bool = False
    """optimise the per-step noise of the stochastic state too (with the same prior penalty)"""
    mode: str = "modal"
    """the agent's actions: modal (argmax) or sample (drawn, Gumbel draws fixed by the seed)"""
    latent: str = "sample"
    """sample (the stochastic states are drawn) or mean (their means)"""
    name: str = ""
    """output subfolder (default: TARGET[-INDEX]-max|min)"""
    video: bool = True
    """write captioned videos of the optimised rollouts"""
    video_format: str = "gif"
    """gif or mp4 (mp4 needs PyAV)"""
    fps: float = 4.0
    """video frames per second"""


def goal(cfg: OptimizeConfig) -> bool:
    """True to maximise: ``--maximize`` (default), ``--minimize`` or ``--maximize false``; contradictions refused."""
    up, down = cfg.maximize, cfg.minimize
    if up is not None and down is not None and up == down:
        raise ValueError("--maximize and --minimize contradict each other; give one of them")
    return not (down is True or up is False)


def load_directions(cfg: OptimizeConfig, run_dir: Path):
    """The Directions ``--directions`` names: a method of ``RUN/analysis/hx`` or a path."""
    from ....factors import Directions

    text = cfg.directions.strip()
    if not text:
        raise ValueError("--target direction needs --directions (pca, ica, nmf or a Directions path)")
    path = Path(text)
    if text in HX_METHODS and not path.with_suffix(".json").is_file():
        path = run_dir / "analysis" / "hx" / text
        if not path.with_suffix(".json").is_file():
            raise FileNotFoundError(f"no {text} directions at {path}.json; compute them with `policylens sim hx "
                                    f"{cfg.run}` or pass --directions PATH")
    return Directions.load(path)


def build_target(cfg: OptimizeConfig, sim, action_names, run_dir: Path):
    """The :class:`~policylens.sim.targets.Target` ``cfg`` names, checked to fit ``cfg.steps``."""
    from ...targets import TARGETS, make_target
    from .core import check_fits

    if cfg.target not in TARGETS:
        raise ValueError(f"target {cfg.target!r}; expected one of {', '.join(TARGETS)}")
    directions = load_directions(cfg, run_dir) if cfg.target == "direction" else None
    index = cfg.index.strip()
    target = make_target(cfg.target, start=cfg.start, stop=cfg.stop, index=index, sequence=cfg.sequence,
                         directions=directions, action_names=action_names, num_actions=sim.config.num_actions,
                         hidden=sim.config.agent_hidden)
    check_fits(target, cfg.steps)
    return target


def folder_name(cfg: OptimizeConfig, maximize: bool) -> str:
    indexed = cfg.target in ("action", "neuron", "direction")
    parts = [cfg.target] + ([cfg.directions] if cfg.target == "direction" and cfg.directions in HX_METHODS else [])
    parts += [cfg.index.strip()] if indexed else []
    return cfg.name or "-".join(parts + ["max" if maximize else "min"]).replace("/", "_").replace(" ", "_")


def _listed(x) -> "list | None":
    return None if x is None else [round(float(v), 6) for v in x]


def run_optimize(cfg: OptimizeConfig) -> dict:
    """Optimise, save and draw what ``cfg`` asks; returns the result (also ``OUT/NAME/result.json``)."""
    from ...sample import to_trajectories, write_videos
    from .core import optimize_latents, prior_percentile, save_latents, typical_log_prior

    maximize = goal(cfg)
    if cfg.samples < 1 or cfg.iterations < 0:
        raise ValueError(f"--samples must be >= 1 and --iterations >= 0, got {cfg.samples} and {cfg.iterations}")
    paths = resolve(cfg, "optimize", claim=False)  # its output is a folder per target under OUT
    sim, frozen, _, names = load_parts(cfg, paths)
    target = build_target(cfg, sim, names, paths.run_dir)
    out = claim_out(cfg, paths.out / folder_name(cfg, maximize), "optimize")
    say(cfg, f"{'maximising' if maximize else 'minimising'} {target.label} over {cfg.samples} samples")
    result = optimize_latents(sim, frozen, target, samples=cfg.samples, steps=cfg.steps, iterations=cfg.iterations,
                              lr=cfg.lr, maximize=maximize, prior_weight=cfg.prior_weight, prior=cfg.prior,
                              optimize_noise=cfg.optimize_noise, mode=cfg.mode, latent=cfg.latent, seed=cfg.seed,
                              progress=cfg.progress)
    out.mkdir(parents=True, exist_ok=True)
    save_latents(result, out / "latents.safetensors")
    span = target.window(cfg.steps)
    plot_curves(result, f"{target.label}, steps {span.start}-{span.stop - 1} ({'max' if maximize else 'min'}imised)",
                out / "curve.png")
    report: dict[str, Any] = {
        "run": cfg.run, "simulator": str(paths.sim),
        "target": {"kind": target.kind, "label": target.label, "window": [span.start, span.stop],
                   "index": target.index, "sequence": list(target.sequence),
                   "directions": cfg.directions if target.kind == "direction" else None},
        "goal": "maximize" if maximize else "minimize",
        "before": _listed(result.before), "after": _listed(result.after),
        "mean_before": float(result.before.mean()), "mean_after": float(result.after.mean()),
        "log_prior_before": _listed(result.log_prior_before), "log_prior_after": _listed(result.log_prior_after),
        "typical_log_prior": typical_log_prior(result.z.shape[1]),
        "prior_percentile_before": _listed(prior_percentile(result.z_start)),
        "prior_percentile_after": _listed(prior_percentile(result.z)),
        "noise_log_prior_before": _listed(result.noise_log_prior_before),
        "noise_log_prior_after": _listed(result.noise_log_prior_after),
        "best_iteration": result.best_iteration.tolist(),
        "curve": {"target": result.curve.mean(1).tolist(), "log_prior": result.log_prior_curve.mean(1).tolist()},
        "config": asdict(cfg), "files": {"latents": "latents.safetensors", "curve": "curve.png"},
    }
    if cfg.video:
        say(cfg, f"writing videos to {out / 'video'}")
        kind = sim.config.obs_kind
        optimised = to_trajectories(result.rollout, sim.config)
        videos = write_videos(optimised, kind, names, out / "video", fmt=cfg.video_format, fps=cfg.fps)
        start = write_videos(to_trajectories(result.start_rollout, sim.config), kind, names, out / "video",
                             grid_name="start_grid", each=False, fmt=cfg.video_format, fps=cfg.fps)
        report["files"]["videos"] = [str(p.relative_to(out)) for p in videos + start]
    (out / "result.json").write_text(json.dumps(report, indent=1))
    return {**report, "out": str(out)}


def main(argv=None) -> dict:
    r = command_main(OptimizeConfig, run_optimize, "Generative visualisation: optimise the simulator's latents so "
                     "the imagined rollouts maximise or minimise a target (value, value drop, actions, a hidden unit "
                     "or direction), regularised to stay on the prior; videos and curves.", argv,
                     prog="policylens sim optimize")
    print(f"wrote {r['out']}: {r['target']['label']} {r['goal']}d from {r['mean_before']:.4g} to "
          f"{r['mean_after']:.4g} (mean of {len(r['after'])} samples); log N(z; 0, I) from "
          f"{sum(r['log_prior_before']) / len(r['log_prior_before']):.1f} to "
          f"{sum(r['log_prior_after']) / len(r['log_prior_after']):.1f} (a typical draw: {r['typical_log_prior']:.1f})")
    return r
