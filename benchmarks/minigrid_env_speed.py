"""MiniGrid env steps/s: MiniGridVecEnv with its numpy view against MiniGrid's own drawing, side by side.

    python -m benchmarks.minigrid_env_speed [--env MiniGrid-Dynamic-Obstacles-8x8-v0] [--obs onehot,rgb]
        [--num-envs 16] [--steps 300] [--repeats 5] [--threads 1]

The same vector env (``minigrid:ENV?obs=MODE``), ``num_envs`` envs stepped together with the same uniform random
actions, once with ``fast_view=True`` (:mod:`policylens.envs.minigrid_view`: the symbolic view and the RGB point
of view with numpy, installed as each env's ``gen_obs``) and once with MiniGrid's own ``gen_obs`` and
``get_frame``; the two alternate ``repeats`` times so the machine's load falls on both alike. The ratio is the
median of the paired ratios (fast steps/s over MiniGrid's). Both give the same observations (tests/test_minigrid_view.py).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from policylens.envs.minigrid import MiniGridVecEnv
from policylens.envs.spec import parse_spec

from .common import write


def steps_per_s(spec: str, fast: bool, num_envs: int, steps: int) -> float:
    env = MiniGridVecEnv(parse_spec(spec), num_envs=num_envs, seed=0, fast_view=fast)
    actions = np.random.default_rng(0).integers(0, env.action_space.n, (steps + 1, num_envs))
    env.step(actions[0])  # warm (tile caches)
    t = time.perf_counter()
    for a in actions[1:]:
        env.step(a)
    return steps * num_envs / (time.perf_counter() - t)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="MiniGrid-Dynamic-Obstacles-8x8-v0", help="MiniGrid env id")
    parser.add_argument("--obs", default="onehot,rgb", help="comma-separated observation modes")
    parser.add_argument("--num-envs", type=int, default=16, help="envs stepped together")
    parser.add_argument("--steps", type=int, default=300, help="steps timed per measure (each of num_envs envs)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating measures of each setup")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the envs step in this one)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    modes = {}
    for mode in [m for m in args.obs.split(",") if m]:
        spec = f"minigrid:{args.env}?obs={mode}"
        rates: dict = {"minigrid": [], "fast_view": []}
        for _ in range(args.repeats):
            rates["minigrid"].append(steps_per_s(spec, False, args.num_envs, args.steps))
            rates["fast_view"].append(steps_per_s(spec, True, args.num_envs, args.steps))
        ratios = [f / m for f, m in zip(rates["fast_view"], rates["minigrid"])]
        modes[mode] = {"steps_per_s_median": {k: round(statistics.median(v), 1) for k, v in rates.items()},
                       "steps_per_s": {k: [round(x, 1) for x in v] for k, v in rates.items()},
                       "ratio_fast_to_minigrid": round(statistics.median(ratios), 3),
                       "ratios": [round(r, 3) for r in ratios]}
        print(mode, modes[mode]["steps_per_s_median"], "ratio", modes[mode]["ratio_fast_to_minigrid"])
    import minigrid

    write("minigrid_env_speed", {
        "command": "python -m benchmarks.minigrid_env_speed " + " ".join(argv if argv is not None else []),
        "env": args.env, "num_envs": args.num_envs, "steps": args.steps, "repeats": args.repeats,
        "threads": args.threads, "minigrid": minigrid.__version__,
        "load_average_1_5_15": {"before": [round(x, 2) for x in load_before],
                                "after": [round(x, 2) for x in os.getloadavg()]},
        "setup": "uniform random actions; fast_view=True (numpy view) against fast_view=False (MiniGrid's own "
                 "gen_obs, and get_frame for rgb), measures alternating",
        "modes": modes})


if __name__ == "__main__":
    main()
