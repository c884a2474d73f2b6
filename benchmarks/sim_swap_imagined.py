"""The swap inside a simulator, at the real episodes' horizon and over whole episodes, beside the environment.

    python -m benchmarks.sim_swap_imagined --swap-dir runs/minigrid-do8-recurrent/analysis/swap-ic1-ic3 \\
        --sim runs/minigrid-do8-recurrent/sim-olw0 --label "open-loop-weight 0"

The agent, the swapped agent and the random control of a ``sim swap`` run (``SWAP_DIR/swapped`` and
``SWAP_DIR/control``) drive the same imagined episodes (``simulated_swap``: filtered starts from the store's
episode beginnings, sampled actions, the same noise for the three) for each of ``--steps``; each agent's share of
every outcome is filed under ``runs[LABEL]`` of ``results/sim_swap_imagined.json``, and the environment's shares
(``SWAP_DIR/swap.json``: whole episodes and cut at the simulator's horizon) under ``environment``.
"""
from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import torch

from .common import file_run


def shares(records: list) -> dict:
    """Each outcome's share of the episodes, and the median step of the successes."""
    causes = collections.Counter(r["cause"] for r in records)
    steps = sorted(r["step"] for r in records if r["success"])
    return {**{c: round(n / len(records), 4) for c, n in sorted(causes.items())},
            "median_success_step": steps[len(steps) // 2] if steps else None, "episodes": len(records)}


def environment(swap_dir: Path) -> dict:
    """The real outcome shares per agent from ``sim swap``'s report (whole episodes, and cut at its horizon when
    it has one): ``{setting: {"horizon", "success", "causes": {agent: {cause: rate}}}}``."""
    report = json.loads((swap_dir / "swap.json").read_text())
    out = {}
    for setting in ("real", "real_horizon"):
        compared = report["settings"].get(setting)
        if compared:
            swapped, control = compared["swapped"]["causes"], compared["control"]["causes"]
            out[setting] = {"horizon": compared.get("horizon"), "success": compared["success"], "causes": {
                "original": {c: row["a"]["rate"] for c, row in swapped.items()},
                "swapped": {c: row["b"]["rate"] for c, row in swapped.items()},
                "control": {c: row["b"]["rate"] for c, row in control.items()}}}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="zoo:minigrid-do8-recurrent")
    parser.add_argument("--sim", default="auto", help="the simulator folder (auto: the run's)")
    parser.add_argument("--swap-dir", required=True, help="a sim swap output folder (its swapped/ and control/)")
    parser.add_argument("--label", required=True, help="file the result as this run")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--steps", default="32,253", help="imagined steps after the context, comma-separated")
    parser.add_argument("--view", default="modal", help="modal or sample (rollout's view)")
    args = parser.parse_args(argv)
    from policylens.agents import load
    from policylens.sim.checkpoint import load_sim
    from policylens.sim.command import SimCommand, resolve
    from policylens.sim.data import load_sim_data
    from policylens.sim.imagined import simulated_swap

    torch.set_num_threads(1)
    paths = resolve(SimCommand(run=args.run, sim=args.sim, progress=False), "benchmark")
    agent = load(args.run)
    sim, _ = load_sim(paths.sim, agent=agent)
    swap_dir = Path(args.swap_dir)
    agents = {"original": agent, **{n: load(swap_dir / n / "agent") for n in ("swapped", "control")}}
    data = load_sim_data(paths.store)
    result = {"simulator": str(paths.sim), "samples": args.samples, "view": args.view, "steps": {}}
    for steps in (int(s) for s in args.steps.split(",")):
        records = simulated_swap(sim, agents, data, args.samples, steps, 0, getattr(agent, "action_names", ()),
                                 "filtered", args.view)
        result["steps"][str(steps)] = {name: shares(r) for name, r in records.items()}
        print(steps, {name: {k: v for k, v in s.items() if k != "episodes"} for name, s in
                      result["steps"][str(steps)].items()})
    file_run("sim_swap_imagined", args.label, result,
             environment={"swap_dir": str(swap_dir), **environment(swap_dir)})
    return result


if __name__ == "__main__":
    main()
