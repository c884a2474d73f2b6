"""PPO frames/s against the raw env's steps/s with random actions (same envs, same run): the overhead ratio.

    python -m benchmarks.ppo_overhead [--updates 3]
"""
from __future__ import annotations

import argparse
import csv
import tempfile
import time

import numpy as np

from policylens import envs
from policylens.train import TrainConfig, train

from .common import write

SETUPS = {
    "minigrid-rgb-cnn": dict(preset="minigrid"),
    "minigrid-symbolic-cnn": dict(preset="minigrid", env="minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0"),
    "coinrun-impala-bf16": dict(preset="procgen-easy", num_envs=64, num_steps=64, bf16=True),
    "coinrun-impala-fp32": dict(preset="procgen-easy", num_envs=64, num_steps=64, bf16=False),
}


def raw_steps_per_s(spec: str, num_envs: int, steps: int) -> float:
    env = envs.make(spec, num_envs=num_envs, seed=0)
    env.reset(0)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, env.action_space.n, (steps, num_envs))
    t = time.perf_counter()
    for a in actions:
        env.step(a)
    return steps * num_envs / (time.perf_counter() - t)


def ppo_frames_per_s(setup: dict, updates: int) -> tuple[float, dict]:
    from policylens.train import resolve

    cfg = resolve(TrainConfig(**setup, progress=False))
    with tempfile.TemporaryDirectory() as tmp:
        cfg.out, cfg.total_frames = tmp, cfg.num_envs * cfg.num_steps * (updates + 1)
        train(cfg)
        with open(f"{tmp}/train.csv") as f:
            rows = list(csv.DictReader(f))[1:]  # the first update pays start-up costs
    frames = sum(cfg.num_envs * cfg.num_steps for _ in rows)
    seconds = sum(cfg.num_envs * cfg.num_steps / float(r["fps"]) for r in rows)
    return frames / seconds, cfg


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated setup names")
    args = parser.parse_args(argv)
    import json

    from .common import RESULTS

    old = RESULTS / "ppo_overhead.json"
    results = json.loads(old.read_text())["setups"] if old.is_file() and args.only else {}
    for name, setup in SETUPS.items():
        if args.only and name not in args.only.split(","):
            continue
        fps, cfg = ppo_frames_per_s(setup, args.updates)
        raw = raw_steps_per_s(cfg.env, cfg.num_envs, cfg.num_steps)
        results[name] = {"env": cfg.env, "arch": cfg.arch, "num_envs": cfg.num_envs, "num_steps": cfg.num_steps,
                         "bf16": cfg.bf16, "ppo_frames_per_s": round(fps, 1), "raw_env_steps_per_s": round(raw, 1),
                         "overhead_ratio": round(raw / fps, 2)}
        print(name, results[name])
    write("ppo_overhead", {"setups": results})


if __name__ == "__main__":
    main()
