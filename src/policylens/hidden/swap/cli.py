"""``policylens sim swap RUN --directions PATH --swap A:B[,C:none]``: test a hidden-state hypothesis by control.

Saliency as causality swapped the "buzzsaw" direction of the agent's hidden state for the "box" one and watched the agent
jump onto buzzsaws; the statistics it left as TODO ("% of samples with deaths by buzzsaw", "with and without swap of buzzsaw direction and box
direction") are what this computes. Three agents play the same ``episodes`` levels with the same env and action
seeds (so outcomes pair up level by level): the agent, the agent with the swaps
(:func:`~policylens.edit.swap_directions`), and a control with the same swaps between random orthonormal
directions of the same space. Each cause's rate gets a Wilson 95% interval and each edited agent is compared
with the original by McNemar's exact test, Holm-corrected over the causes (:func:`~policylens.evaluate.compare.
compare_records`). A hypothesis holds when the swap moves the predicted cause and the control does not.

With a simulator (``--sim auto`` finds ``RUN/sim``) the three agents also drive the same imagined episodes from
encoded real episode beginnings, with the same noise, and the same statistics are computed on outcomes read
from what the simulator showed (:mod:`policylens.sim.imagined`): does the simulator predict what the swap does?
Imagined episodes are short (context frames + ``sim_steps``) while real ones run to the env's time limit, so the
real episodes are also scored cut at that horizon (setting ``real_horizon``: still running then = ``timeout``):
that, not the whole-episode table, is what the simulator's table is to be read against.

Writes ``OUT/swap.json`` (``settings``: ``real`` and ``simulator``), ``OUT/swap.png`` / ``swap-simulator.png``
(rates by cause, the three agents side by side), ``OUT/swap.md`` and
the two edited checkpoints (``OUT/swapped/agent``, ``OUT/control/agent``: any command that takes a RUN can use
them).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ...sim.command import SimCommand, command_main, resolve, shown
from .plots import plot
from .report import figure, markdown


@dataclass
class SwapConfig(SimCommand):
    sim: str = "auto"
    """also run the three agents inside this simulator: auto (RUN/sim when it exists), none, or a folder"""
    store: str = ""
    """rollouts store whose episode beginnings start the imagined episodes (default: RUN/rollouts.zarr)"""
    out: str = ""
    """output folder (default: RUN/analysis/swap, runs/NAME/analysis/swap for zoo:NAME)"""
    seed: int = 0
    """env and action seed, shared by the three agents (and the imagined episodes' starts and noise)"""
    device: str = "cpu"
    """torch device of the simulator"""
    directions: str = ""
    """hidden-state directions (layer hx, e.g. from policylens sim hx): PATH, PATH.json or PATH.safetensors"""
    swap: str = ""
    """swaps FROM:TO, comma-separated, by index or label; TO 'none' collapses FROM into the nullspace (e.g. 3:5,1:none)"""
    episodes: int = 1000
    """levels each agent plays (the same levels for all three)"""
    start_level: Optional[int] = 1_000_000
    """first level (held-out levels by default)"""
    env: Optional[str] = None
    """env spec (default: the run's training env)"""
    policy: str = "sample"
    """how actions are picked: sample | greedy | temperature"""
    control_seed: int = 0
    """seed of the random control directions"""
    workers: int = 1
    """worker processes per evaluation"""
    alpha: float = 0.05
    """significance level after Holm's correction over causes"""
    sim_samples: int = 1000
    """imagined episodes per agent (the same starts and noise for all three)"""
    sim_steps: int = 32
    """steps per imagined episode after its context frames (the real episodes are also read cut there)"""
    sim_start: str = "auto"
    """how imagined episodes start: filtered (the real context frames through the posterior, the agents acting
    from the last), z (the agents acting from the first frame, decoded from z alone), or auto (filtered when the
    simulator was trained for it, as sim fidelity scores it)"""
    sim_view: str = "modal"
    """what the agents see in imagined episodes: modal (each cell's likeliest code) or sample (each cell's code
    drawn from the simulator's distribution, the same draws for the three agents: a sampled world, where the
    modal view drops what the simulator spreads over several cells, such as a moving ball)"""


def swap_experiment(cfg: SwapConfig) -> dict:
    """Run the three evaluations and compare; returns what ``OUT/swap.json`` holds."""
    from ...agents import load, read_config, resolve_run, save_agent
    from ...edit.swap import direction_index, swap_directions
    from ...evaluate.run import evaluate, run_env_spec
    from ...factors import Directions
    from ...sim.loop import VIEWS
    from .core import horizon_setting, paired_comparison, parse_swaps, random_control

    if cfg.episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {cfg.episodes}")
    if cfg.sim_start not in ("auto", "filtered", "z"):
        raise ValueError(f"--sim-start {cfg.sim_start!r}; expected auto, filtered or z")
    if cfg.sim_view not in VIEWS:
        raise ValueError(f"--sim-view {cfg.sim_view!r}; expected {' or '.join(VIEWS)}")
    directions = Directions.load(cfg.directions)
    swaps = [(direction_index(directions, a), direction_index(directions, b)) for a, b in parse_swaps(cfg.swap)]
    paths = resolve(cfg, "swap", require_sim=False)  # the simulator: None with --sim none or none found
    out = paths.out
    agent = load(cfg.run)
    config = read_config(resolve_run(cfg.run))
    extra = {k: v for k, v in config.items() if k not in ("agent", "edits")}
    edited = {"swapped": swap_directions(agent, directions, swaps),
              "control": swap_directions(agent, random_control(directions, cfg.control_seed), swaps)}
    runs = {"original": cfg.run}
    for name, model in edited.items():
        save_agent(model, config["agent"], out / name / "agent", extra=extra)
        runs[name] = str(out / name)
    env = cfg.env or run_env_spec(cfg.run)
    kwargs: dict[str, Any] = dict(start_level=cfg.start_level, policy=cfg.policy, seed=cfg.seed,
                                  workers=cfg.workers, progress=cfg.progress)
    evaluations = {name: evaluate(run, env, cfg.episodes, **kwargs) for name, run in runs.items()}
    results = {name: e["per_episode"] for name, e in evaluations.items()}
    label = lambda k: directions.labels[k] if k < len(directions.labels) else str(k)  # noqa: E731
    names = [[label(a), "nullspace" if b is None else label(b)] for a, b in swaps]
    report = {"run": cfg.run, "env": env, "directions": cfg.directions, "method": directions.method,
              "swaps": [[a, b] for a, b in swaps], "swap_labels": names, "runs": runs,
              "episodes": cfg.episodes, "setup": evaluations["original"]["setup"],
              "settings": {"real": paired_comparison(results, cfg.alpha)}}
    simulator = paths.sim
    if simulator is not None:
        from ...sim.checkpoint import load_sim, read_sim_config
        from ...sim.data import load_sim_data
        from ...sim.imagined import simulated_swap
        from ...sim.objective import trained_start

        sim, _ = load_sim(simulator, agent=agent, device=cfg.device)
        start = cfg.sim_start if cfg.sim_start != "auto" else trained_start(read_sim_config(simulator)[1])
        data = load_sim_data(paths.store)
        imagined = simulated_swap(sim, {"original": agent, **edited}, data, cfg.sim_samples, cfg.sim_steps,
                                  cfg.seed, getattr(agent, "action_names", ()), start, cfg.sim_view,
                                  device=cfg.device, progress=cfg.progress)
        at_horizon = horizon_setting(results, sim.config.context_frames + cfg.sim_steps, cfg.alpha)
        if at_horizon is not None:
            report["settings"]["real_horizon"] = at_horizon
        report["settings"]["simulator"] = {**paired_comparison(imagined, cfg.alpha),
                                           "simulator": shown(simulator),
                                           "samples": cfg.sim_samples, "steps": cfg.sim_steps, "start": start,
                                           "view": cfg.sim_view}
    out.mkdir(parents=True, exist_ok=True)
    (out / "swap.json").write_text(json.dumps(report, indent=1))
    for setting, compared in report["settings"].items():
        plot(compared, names, cfg.alpha, setting, out / figure(setting))
    (out / "swap.md").write_text(markdown(report))
    return report


def main(argv=None) -> dict:
    report = command_main(SwapConfig, swap_experiment, __doc__.split("\n\n")[1], argv, prog="policylens sim swap")
    print(markdown(report))
    print(f"wrote {Path(report['runs']['swapped']).parent}")  # swap.json, swap.md, figures and the edited agents
    return report


if __name__ == "__main__":
    main()
