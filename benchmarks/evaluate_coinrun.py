"""Evaluation of many CoinRun levels: frames/s against the env-step bound (raw stepping with ground truth).

    python -m benchmarks.evaluate_coinrun [--episodes 10000] [--workers 2] [--run RUN]

Without --run an `impala` agent with random weights plays (its episodes are realistic in length: it dies or
times out); the figure of interest is throughput, not success.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from policylens import agents, envs
from policylens.evaluate import evaluate

from .common import write

ENV = "procgen:coinrun?distribution_mode=easy&use_backgrounds=false"


def env_bound(spec: str, steps: int = 2000) -> float:
    env = envs.make(spec + "&ground_truth=true", num_envs=8, seed=0)
    env.reset(0)
    acts = np.random.default_rng(0).integers(0, 15, (steps // 8, 8))
    t = time.perf_counter()
    for a in acts:
        env.step(a)
    return steps / (time.perf_counter() - t)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--run", default="")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if not run:
            cfg = {"arch": "impala"}
            torch.manual_seed(0)
            agents.save_agent(agents.build(cfg), cfg, Path(tmp) / "agent", extra={"env": ENV})
            run = tmp
        bound = env_bound(ENV)
        result = evaluate(run, ENV, episodes=args.episodes, start_level=0, workers=args.workers, progress=True)
    timing = result["timing"]
    res = {"env": ENV, "agent": args.run or "impala, random weights", "episodes": result["episodes"],
           "workers": args.workers, "frames": timing["frames"], "seconds": round(timing["seconds"], 1),
           "eval_frames_per_s": round(timing["frames_per_s"], 1), "env_step_bound_frames_per_s": round(bound, 1),
           "ratio_to_bound": round(timing["frames_per_s"] / bound, 3), "causes": result["causes"]}
    print(res)
    write(f"evaluate_coinrun_{args.episodes}", res)


if __name__ == "__main__":
    main()
