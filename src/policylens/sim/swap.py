"""``policylens sim swap RUN --directions PATH --swap A:B[,C:none]``: test a hidden-state hypothesis by control.

Seed 000 swapped the "buzzsaw" direction of the agent's hidden state for the "box" one and watched the agent
jump onto buzzsaws; the statistics it left as TODO ("% of samples with deaths by buzzsaw with and without
swap") are what this computes. Three agents play the same ``episodes`` levels with the same env and action
seeds (so outcomes pair up level by level): the agent, the agent with the swaps
(:func:`~policylens.edit.swap_directions`), and a control with the same swaps between random orthonormal
directions of the same space. Each cause's rate gets a Wilson 95% interval and each edited agent is compared
with the original by McNemar's exact test, Holm-corrected over the causes (:func:`~policylens.evaluate.compare.
compare_records`). A hypothesis holds when the swap moves the predicted cause and the control does not.

Writes ``OUT/swap.json``, ``OUT/swap.png`` (rates by cause, the three agents side by side), ``OUT/swap.md`` and
the two edited checkpoints (``OUT/swapped/agent``, ``OUT/control/agent``: any command that takes a RUN can use
them).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..config import add_dataclass_args, clear_errors, from_args
from ..factors import Directions


@dataclass
class SwapConfig:
    run: str = ""
    """run directory, checkpoint folder or zoo:NAME of a recurrent agent"""
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
    seed: int = 0
    """env and action seed, shared by the three agents"""
    control_seed: int = 0
    """seed of the random control directions"""
    workers: int = 1
    """worker processes per evaluation"""
    alpha: float = 0.05
    """significance level after Holm's correction over causes"""
    out: str = ""
    """output folder (default: RUN/sim/swap, or runs/swap/NAME for a zoo agent)"""
    progress: bool = True
    """show progress bars on stderr"""


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


def _default_out(cfg: SwapConfig) -> Path:
    if cfg.out:
        return Path(cfg.out)
    if cfg.run.startswith("zoo:"):
        return Path("runs") / "swap" / cfg.run[4:]
    return Path(cfg.run) / "sim" / "swap"


def swap_experiment(cfg: SwapConfig) -> dict:
    """Run the three evaluations and compare; returns what ``OUT/swap.json`` holds."""
    from ..agents import load, read_config, resolve_run, save_agent
    from ..edit.swap import direction_index, swap_directions
    from ..evaluate.compare import compare_records, plot_rates
    from ..evaluate.run import evaluate, run_env_spec

    if cfg.episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {cfg.episodes}")
    directions = Directions.load(cfg.directions)
    swaps = [(direction_index(directions, a), direction_index(directions, b)) for a, b in parse_swaps(cfg.swap)]
    agent = load(cfg.run)
    out = _default_out(cfg)
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
    results = {name: evaluate(run, env, cfg.episodes, **kwargs) for name, run in runs.items()}
    base = results["original"]["per_episode"]
    comparisons = {name: compare_records(base, results[name]["per_episode"], cfg.alpha) for name in edited}
    label = lambda k: directions.labels[k] if k < len(directions.labels) else str(k)  # noqa: E731
    names = [[label(a), "nullspace" if b is None else label(b)] for a, b in swaps]
    report = {"run": cfg.run, "env": env, "directions": cfg.directions, "method": directions.method,
              "swaps": [[a, b] for a, b in swaps], "swap_labels": names, "episodes": cfg.episodes,
              "setup": results["original"]["setup"], "runs": runs,
              "success": {n: r["success_rate"] for n, r in results.items()},
              "swapped": comparisons["swapped"], "control": comparisons["control"]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "swap.json").write_text(json.dumps(report, indent=1))
    causes = sorted(set(comparisons["swapped"]["causes"]) | set(comparisons["control"]["causes"]))
    groups = [("original", {c: _side(comparisons, c, "a") for c in causes}),
              ("swapped", {c: _side({"x": comparisons["swapped"]}, c, "b") for c in causes}),
              ("random control", {c: _side({"x": comparisons["control"]}, c, "b") for c in causes})]
    labels = [c + "".join(m for m, k in (("*", "swapped"), ("†", "control"))
                          if comparisons[k]["causes"].get(c, {}).get("significant")) for c in causes]
    title = (f"Swap {', '.join(f'{a} -> {b}' for a, b in names)}: {cfg.episodes} paired levels "
             f"(* swapped, † control differ from the original, p < {cfg.alpha} Holm)")
    plot_rates(groups, causes, labels, title, out / "swap.png")
    (out / "swap.md").write_text(markdown(report))
    return report


def _side(comparisons: dict, cause: str, side: str) -> dict:
    """A cause's rate on one side of whichever comparison has it (rate 0 when none does)."""
    for comparison in comparisons.values():
        if cause in comparison["causes"]:
            return comparison["causes"][cause][side]
    return {"rate": 0.0, "ci95": [0.0, 0.0]}


def markdown(report: dict) -> str:
    """The experiment as a table: each cause's rate per agent with its interval and paired test."""
    swaps = ", ".join(f"{a} → {b}" for a, b in report["swap_labels"])
    lines = [f"### Hidden-state swap: {swaps}", "",
             f"{report['episodes']} held-out levels, each played by the three agents with the same env and action "
             f"seeds; rates with Wilson 95% intervals; p: McNemar exact against the original, Holm over causes.", "",
             "| outcome | original | swapped | p | random control | p |", "|---|---|---|---|---|---|"]
    fmt = lambda r: f"{100 * r['rate']:.2f}% [{100 * r['ci95'][0]:.2f}, {100 * r['ci95'][1]:.2f}]"  # noqa: E731
    causes = sorted(set(report["swapped"]["causes"]) | set(report["control"]["causes"]))
    for c in causes:
        s, k = report["swapped"]["causes"].get(c), report["control"]["causes"].get(c)
        base = (s or k)["a"]
        cell = lambda r: ("–", "–") if r is None else (fmt(r["b"]), f"{r['p_holm']:.2g}" + (" *" if r["significant"] else ""))  # noqa: E731
        lines.append(f"| {c} | {fmt(base)} | {' | '.join(cell(s))} | {' | '.join(cell(k))} |")
    success = report["success"]
    lines.append(f"| success | {100 * success['original']:.2f}% | {100 * success['swapped']:.2f}% | | "
                 f"{100 * success['control']:.2f}% | |")
    return "\n".join(lines) + "\n\n![swap](swap.png)\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="policylens sim swap", description=__doc__.split("\n\n")[1])
    parser.add_argument("run", help="run directory, checkpoint folder or zoo:NAME of a recurrent agent")
    add_dataclass_args(parser, SwapConfig, skip=("run",))
    with clear_errors(parser):
        cfg = from_args(SwapConfig, parser.parse_args(argv))
        report = swap_experiment(cfg)
    print(markdown(report))
    return report
