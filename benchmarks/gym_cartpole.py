"""PPO on a gym: env with vector observations: ``policylens train --preset classic`` (CartPole-v1, mlp) and
the trained agent's return over held-out episodes, against CartPole's cap of 500 (Gymnasium's threshold: 475).

    python -m benchmarks.gym_cartpole [--frames 100000] [--episodes 50] [--threads 1]
"""
from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from policylens.evaluate import evaluate
from policylens.train import TrainConfig, train

from .common import write


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--episodes", type=int, default=50, help="held-out evaluation episodes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the result does not depend on the machine)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cartpole"
        t = time.perf_counter()
        train(TrainConfig(out=str(out), preset="classic", total_frames=args.frames, threads=args.threads,
                          seed=args.seed, progress=False))
        seconds = time.perf_counter() - t
        with open(out / "train.csv") as f:
            rows = list(csv.DictReader(f))
        curve = [(int(r["frames"]), float(r["return_mean"])) for r in rows if r["return_mean"]]
        results = {}
        for policy in ("sample", "greedy"):
            res = evaluate(str(out), episodes=args.episodes, start_level=1_000_000, policy=policy)
            results[policy] = {"return_mean": res["mean_return"], "return_std": res["return_std"],
                               "episodes": res["episodes"], "causes": res["causes"]}
    first = next((f for f, r in curve if r >= 475), None)
    write("gym_cartpole", {
        "command": f"policylens train --preset classic --total-frames {args.frames} --threads {args.threads} "
                   f"--seed {args.seed}",
        "frames": args.frames, "train_seconds": round(seconds, 1), "frames_per_s": round(args.frames / seconds, 1),
        "train_return_last": curve[-1][1] if curve else None, "frames_to_475": first,
        "curve": curve, "held_out": results})


if __name__ == "__main__":
    main()
