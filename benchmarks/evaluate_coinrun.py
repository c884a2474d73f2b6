"""Evaluation of many CoinRun levels: frames/s against the env-step bound (raw stepping with ground truth) and
against the agent-forward bound (the agent alone on batches of the evaluation's size, one thread per worker as
evaluation runs it); the two together bound what evaluation can reach: 1 / (1 / env + 1 / agent) per worker.

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


def agent_bound(run, batch: int = 8, seconds: float = 5.0) -> float:
    """Frames/s of the agent's forward pass alone on one thread, batches of ``batch`` uint8 frames."""
    agent = agents.load(run).eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        obs = torch.randint(0, 256, (batch, 64, 64, 3), dtype=torch.uint8)
        init = getattr(agent, "initial_state", None)
        state = init(batch) if callable(init) else None
        with torch.no_grad():
            agent(obs, state)
            frames, t = 0, time.perf_counter()
            while time.perf_counter() - t < seconds:
                agent(obs, state)
                frames += batch
            return frames / (time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)


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
        forward = agent_bound(run)
        result = evaluate(run, ENV, episodes=args.episodes, start_level=0, workers=args.workers, progress=True)
    timing = result["timing"]
    res = {"env": ENV, "agent": args.run or "impala, random weights", "episodes": result["episodes"],
           "workers": args.workers, "frames": timing["frames"], "seconds": round(timing["seconds"], 1),
           "eval_frames_per_s": round(timing["frames_per_s"], 1), "env_step_bound_frames_per_s": round(bound, 1),
           "ratio_to_bound": round(timing["frames_per_s"] / bound, 3),
           "agent_forward_bound_frames_per_s": round(forward, 1),
           "combined_bound_frames_per_s": round(args.workers / (1 / bound + 1 / forward), 1),
           "ratio_to_combined_bound": round(timing["frames_per_s"] * (1 / bound + 1 / forward) / args.workers, 3),
           "causes": result["causes"]}
    print(res)
    write(f"evaluate_coinrun_{args.episodes}", res)


if __name__ == "__main__":
    main()
