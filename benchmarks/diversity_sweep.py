"""Understanding RL Vision's diversity hypothesis on a MiniGrid task whose layout changes with every level.

    python -m benchmarks.diversity_sweep [--env SPEC] [--levels 10,30,100,300,1000,0] [--seeds 1,2]
                                         [--frames N] [--out runs/diversity_sweep] [--quick]

One ``policylens sweep levels`` (an agent per level count and seed, the RGB ``cnn`` of the ``minigrid`` preset):
each agent is evaluated on its own training levels and on held-out levels, and NMF directions of its first conv
layer are scored against the ground-truth entity masks (the objective stand-in for the paper's human raters).
The sweep lives in ``--out`` and is resumed where it stopped (finished runs are read back, an interrupted one
continues from its checkpoint), so the benchmark can be stopped and rerun; ``--report`` files the runs finished
so far (``planned`` lists them all) and trains nothing. Written to
``results/diversity_sweep.json`` (the sweep, its per-level-count groups, the command, the paper's own table)
and ``results/diversity_sweep.png``; ``--quick``: a smoke run into ``results/diversity_sweep_quick.json``.
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

from policylens.sweep import SweepConfig, collect, finished, plot, sweep

from . import common

ENV = "minigrid:MiniGrid-MultiRoom-N2-S4-v0?obs=rgb"

#: The paper's data (Understanding RL Vision, "The diversity hypothesis"): CoinRun agents trained on each number
#: of levels, two runs; completion estimated on 10,000 levels; features rated by two researchers.
PAPER = {
    "levels": [100, 300, 1000, 3000, 10000, 30000, 100000],
    "train": {"run 1": [99.96, 99.82, 99.67, 99.65, 99.47, 99.55, 99.57],
              "run 2": [99.97, 99.86, 99.70, 99.46, 99.39, 99.50, 99.37]},
    "test": {"run 1": [61.81, 66.95, 74.93, 89.87, 97.53, 98.66, 99.25],
             "run 2": [64.13, 67.64, 73.46, 90.36, 97.44, 98.89, 99.35]},
    "interpretable": {"researcher 1, run 1": [52.5, 22.5, 11.25, 45, 90, 75, 91.25],
                      "researcher 2, run 1": [8.75, 8.75, 10, 26.25, 56.25, 90, 70],
                      "researcher 1, run 2": [15, 13.75, 15, 23.75, 53.75, 90, 96.25],
                      "researcher 2, run 2": [3.75, 6.25, 21.25, 45, 72.5, 83.75, 77.5]},
    "units": "percent",
}


CANDIDATES = ("MultiRoom-N2-S4", "DoorKey-5x5", "DoorKey-6x6", "LavaGapS7", "LavaCrossingS9N1", "Empty-Random-6x6")


def layouts(names=CANDIDATES, seeds: int = 2000) -> dict:
    """How many distinct starts (grid, agent position and direction) each MiniGrid task has in its first
    ``seeds`` reset seeds: a task with few cannot show what more levels add."""
    import hashlib

    import gymnasium as gym
    import minigrid  # noqa: F401  (registers the ids)

    out = {}
    for name in names:
        env = gym.make(f"MiniGrid-{name}-v0").unwrapped
        seen = set()
        for seed in range(seeds):
            env.reset(seed=seed)
            key = env.grid.encode().tobytes() + bytes(env.agent_pos) + bytes([env.agent_dir])
            seen.add(hashlib.sha256(key).hexdigest())
        out[name] = len(seen)
    return {"command": "python -m benchmarks.diversity_sweep --layouts", "seeds": seeds, "distinct_starts": out}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default=ENV, help="a MiniGrid task whose layout varies per level (reset seed)")
    parser.add_argument("--levels", default="10,30,100,300,1000,0", help="level counts (0: unlimited)")
    parser.add_argument("--seeds", default="1,2", help="training seeds per level count")
    parser.add_argument("--frames", type=int, default=300_000, help="training frames per run")
    parser.add_argument("--stop-success", type=float, default=0.0,
                        help="stop a run early at this training success (0: train every frame)")
    parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes per split")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--out", default="runs/diversity_sweep", help="the sweep's folder (resumed if present)")
    parser.add_argument("--report", action="store_true", help="file the finished runs only; train nothing")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 level counts, 1 seed, tiny runs")
    parser.add_argument("--layouts", action="store_true", help="only count the distinct starts of candidate "
                        "tasks over 2,000 seeds, into results/minigrid_layouts.json")
    args = parser.parse_args(argv)
    if args.layouts:
        common.write("minigrid_layouts", layouts())
        return
    if args.quick:
        args.levels, args.seeds, args.frames, args.episodes = "3,0", "1", 1024, 6
    train_args = (f"--preset minigrid --total-frames {args.frames} --threads {args.threads} "
                  f"--stop-success {args.stop_success}")
    if args.quick:
        train_args += " --num-envs 4 --num-steps 64 --num-minibatches 2 --update-epochs 1"
    cfg = SweepConfig(kind="levels", env=args.env, levels=args.levels, seeds=args.seeds, train_args=train_args,
                      episodes=args.episodes, out=args.out, resume=Path(args.out).exists(),
                      score_episodes=2 if args.quick else 8)
    name = "diversity_sweep_quick" if args.quick else "diversity_sweep"
    if args.report:
        result = collect(cfg, finished(cfg))
        if not result["runs"]:
            sys.exit(f"no finished run in {args.out}: nothing to file")
        png = plot(result, Path(args.out) / "sweep-report.png")
    else:
        result = sweep(cfg)
        png = Path(args.out) / "sweep.png"
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m benchmarks.diversity_sweep", *map(shlex.quote, given)])
    common.write(name, {"command": command.strip(), "env": args.env, "frames": args.frames, **result, "paper": PAPER})
    shutil.copyfile(png, common.RESULTS / f"{name}.png")


if __name__ == "__main__":
    main()
