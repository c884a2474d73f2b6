"""``policylens sim swap RUN --directions PATH --swap A:B[,C:none]``: test a hidden-state hypothesis by control.

Saliency as causality swapped the "buzzsaw" direction of the agent's hidden state for the "box" one and watched the agent
jump onto buzzsaws; the statistics it left as TODO ("% of samples with deaths by buzzsaw with and without
swap") are what this computes. Three agents play the same ``episodes`` levels with the same env and action
seeds (so outcomes pair up level by level): the agent, the agent with the swaps
(:func:`~policylens.edit.swap_directions`), and a control with the same swaps between random orthonormal
directions of the same space. Each cause's rate gets a Wilson 95% interval and each edited agent is compared
with the original by McNemar's exact test, Holm-corrected over the causes (:func:`~policylens.evaluate.compare.
compare_records`). A hypothesis holds when the swap moves the predicted cause and the control does not.

With a simulator (``--sim auto`` finds ``RUN/sim``) the three agents also drive the same imagined episodes from
encoded real episode beginnings, with the same noise, and the same statistics are computed on outcomes read
from what the simulator showed (:mod:`policylens.sim.swap_sim`): does the simulator predict what the swap does?
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
from typing import Optional

import torch

from ..factors import Directions
from .command import SimCommand, command_main, resolve, shown
from .loop import VIEWS


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


def parse_swaps(text: str) -> list:
    """``"3:5,saw:box,1:none"`` -> ``[("3", "5"), ("saw", "box"), ("1", None)]``."""
    swaps = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        a, sep, b = part.partition(":")
        if not sep or not a or not b:
            raise ValueError(f"swap {part!r}; expected FROM:TO (index or label; TO may be 'none')")
        swaps.append((a, None if b.lower() == "none" else b))
    if not swaps:
        raise ValueError("no swaps given; expected --swap FROM:TO[,FROM:TO...]")
    return swaps


def random_control(directions: Directions, seed: int = 0) -> Directions:
    """As many random orthonormal directions as ``directions`` has, in the same space (z-space when they are
    z-scored: ``meta["std"]`` is kept), as PCA-like directions: a swap between them moves as much as a swap
    between real ones of unit norm, but along nothing the agent learnt."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(directions.channels, len(directions), generator=g, dtype=torch.float64))
    meta = {k: v for k, v in directions.meta.items() if k == "std"}
    return Directions(q.T.float(), directions.layer, tuple(f"random{k}" for k in range(len(directions))), "pca",
                      {**meta, "control_seed": seed})


def swap_experiment(cfg: SwapConfig) -> dict:
    """Run the three evaluations and compare; returns what ``OUT/swap.json`` holds."""
    from ..agents import load, read_config, resolve_run, save_agent
    from ..edit.swap import direction_index, swap_directions
    from ..evaluate.run import evaluate, run_env_spec

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
    kwargs = dict(start_level=cfg.start_level, policy=cfg.policy, seed=cfg.seed, workers=cfg.workers,
                  progress=cfg.progress)
    evaluations = {name: evaluate(run, env, cfg.episodes, **kwargs) for name, run in runs.items()}
    results = {name: e["per_episode"] for name, e in evaluations.items()}
    label = lambda k: directions.labels[k] if k < len(directions.labels) else str(k)  # noqa: E731
    names = [[label(a), "nullspace" if b is None else label(b)] for a, b in swaps]
    report = {"run": cfg.run, "env": env, "directions": cfg.directions, "method": directions.method,
              "swaps": [[a, b] for a, b in swaps], "swap_labels": names, "runs": runs,
              "episodes": cfg.episodes, "setup": evaluations["original"]["setup"],
              "settings": {"real": _compared(results, cfg.alpha)}}
    simulator = paths.sim
    if simulator is not None:
        from .checkpoint import load_sim, read_sim_config
        from .data import load_sim_data
        from .objective import trained_start
        from .swap_sim import simulated_swap

        sim, _ = load_sim(simulator, agent=agent, device=cfg.device)
        start = cfg.sim_start if cfg.sim_start != "auto" else trained_start(read_sim_config(simulator)[1])
        data = load_sim_data(paths.store)
        imagined = simulated_swap(sim, {"original": agent, **edited}, data, cfg.sim_samples, cfg.sim_steps,
                                  cfg.seed, getattr(agent, "action_names", ()), start, cfg.sim_view,
                                  device=cfg.device, progress=cfg.progress)
        at_horizon = horizon_setting(results, sim.config.context_frames + cfg.sim_steps, cfg.alpha)
        if at_horizon is not None:
            report["settings"]["real_horizon"] = at_horizon
        report["settings"]["simulator"] = {**_compared(imagined, cfg.alpha), "simulator": shown(simulator),
                                           "samples": cfg.sim_samples, "steps": cfg.sim_steps, "start": start,
                                           "view": cfg.sim_view}
    out.mkdir(parents=True, exist_ok=True)
    (out / "swap.json").write_text(json.dumps(report, indent=1))
    for setting, compared in report["settings"].items():
        _plot(compared, names, cfg.alpha, setting, out / _figure(setting))
    (out / "swap.md").write_text(markdown(report))
    return report


def cut_at_horizon(records: list, horizon: int) -> list:
    """Real episode records as an imagined episode of ``horizon`` frames would score them: an episode longer
    than ``horizon`` becomes a ``timeout`` (no success); the others keep their outcome."""
    return [{**r, "cause": "timeout", "success": False} if r["length"] > horizon else r for r in records]


def horizon_setting(results: dict, horizon: int, alpha: float) -> "dict | None":
    """The real comparison with every agent's episodes cut at ``horizon`` frames, or None when no real episode
    runs longer (the whole-episode comparison then already is the one at the horizon)."""
    if not any(r["length"] > horizon for recs in results.values() for r in recs):
        return None
    cut = {name: cut_at_horizon(recs, horizon) for name, recs in results.items()}
    return {**_compared(cut, alpha), "horizon": horizon}


def _compared(records: dict, alpha: float) -> dict:
    """Each edited agent's records against the original's: success rates and :func:`compare_records`."""
    from ..evaluate.compare import compare_records

    base = records["original"]
    return {"success": {n: sum(bool(r["success"]) for r in recs) / len(recs) for n, recs in records.items()},
            **{n: compare_records(base, recs, alpha) for n, recs in records.items() if n != "original"}}


def _plot(compared: dict, names: list, alpha: float, setting: str, path: Path) -> None:
    from ..evaluate.compare import plot_rates

    causes = sorted(set(compared["swapped"]["causes"]) | set(compared["control"]["causes"]))
    edits = {k: compared[k] for k in ("swapped", "control")}
    groups = [("original", {c: _side(edits, c, "a") for c in causes}),
              ("swapped", {c: _side({"x": compared["swapped"]}, c, "b") for c in causes}),
              ("random control", {c: _side({"x": compared["control"]}, c, "b") for c in causes})]
    labels = [c + "".join(m for m, k in (("*", "swapped"), ("†", "control"))
                          if compared[k]["causes"].get(c, {}).get("significant")) for c in causes]
    where = "levels" if setting.startswith("real") else "imagined episodes"
    title = (f"Swap {', '.join(f'{a} -> {b}' for a, b in names)} ({setting}): {compared['swapped']['episodes']} "
             f"paired {where} (* swapped, † control differ from the original, p < {alpha} Holm)")
    plot_rates(groups, causes, labels, title, path)


def _side(comparisons: dict, cause: str, side: str) -> dict:
    """A cause's rate on one side of whichever comparison has it (rate 0 when none does)."""
    for comparison in comparisons.values():
        if cause in comparison["causes"]:
            return comparison["causes"][cause][side]
    return {"rate": 0.0, "ci95": [0.0, 0.0]}


def markdown(report: dict) -> str:
    """The experiment as tables, one per setting: each cause's rate per agent with its interval and paired test."""
    swaps = ", ".join(f"{a} → {b}" for a, b in report["swap_labels"])
    lines = [f"### Hidden-state swap: {swaps}", ""]
    for setting, compared in report["settings"].items():
        n = compared["swapped"]["episodes"]
        if setting == "real":
            lines += [f"In the environment: {n} held-out levels, each played by the three agents with the same env "
                      "and action seeds; causes from the env's ground truth."]
        elif setting == "real_horizon":
            lines += [f"The same real episodes cut at the simulator's horizon: an episode still running after "
                      f"{compared['horizon']} steps (the context frames and the imagined steps) counts as a "
                      "timeout. Read the simulator's table against this one."]
        else:
            start = {"filtered": "the context frames filtered through the posterior with their recorded actions, "
                                 "the agents acting from the last one",
                     "z": "the agents acting from the first frame, decoded from z alone"}.get(compared.get("start"), "")
            lines += [f"In the simulator (`{compared['simulator']}`): {n} imagined episodes of the context frames + "
                      f"{compared['steps']} steps from encoded real episode beginnings"
                      + (f" ({start})" if start else "") + ", the same latent and action noise for the three "
                      "agents" + (", each view drawn cell by cell from the simulator's distribution (the same draws "
                                  "for the three)" if compared.get("view") == "sample" else "")
                      + "; outcomes read from the views the simulator showed."]
        lines += ["Rates with Wilson 95% intervals; p: McNemar exact against the original, Holm over causes.", "",
                  "| outcome | original | swapped | p | random control | p |", "|---|---|---|---|---|---|"]
        lines += _rows(compared)
        lines += ["", f"![swap ({setting})]({_figure(setting)})", ""]
    return "\n".join(lines)


def _figure(setting: str) -> str:
    return "swap.png" if setting == "real" else f"swap-{setting.replace('_', '-')}.png"


def _rows(compared: dict) -> list:
    fmt = lambda r: f"{100 * r['rate']:.2f}% [{100 * r['ci95'][0]:.2f}, {100 * r['ci95'][1]:.2f}]"  # noqa: E731
    cell = lambda r: ("–", "–") if r is None else (fmt(r["b"]), f"{r['p_holm']:.2g}" + (" *" if r["significant"] else ""))  # noqa: E731
    rows = []
    for c in sorted(set(compared["swapped"]["causes"]) | set(compared["control"]["causes"])):
        s, k = compared["swapped"]["causes"].get(c), compared["control"]["causes"].get(c)
        rows.append(f"| {c} | {fmt((s or k)['a'])} | {' | '.join(cell(s))} | {' | '.join(cell(k))} |")
    success = compared["success"]
    rows.append(f"| success | {100 * success['original']:.2f}% | {100 * success['swapped']:.2f}% | | "
                f"{100 * success['control']:.2f}% | |")
    return rows


def main(argv=None) -> dict:
    report = command_main(SwapConfig, swap_experiment, __doc__.split("\n\n")[1], argv, prog="policylens sim swap")
    print(markdown(report))
    print(f"wrote {Path(report['runs']['swapped']).parent}")  # swap.json, swap.md, figures and the edited agents
    return report


if __name__ == "__main__":
    main()
