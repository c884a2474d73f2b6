"""Simulator training speed: frames per second of ``policylens sim train`` (the default architecture, the
teacher-forced and the open-loop unroll per step), fp32 against bf16 autocast, side by side in one run.

    python -m benchmarks.sim_training [--run zoo:minigrid-do8-recurrent] [--steps 40] [--rounds 2] [--device cpu]

Frames = windows x window length per optimizer step; the time is the simulator's own ``trained_seconds``
(optimizer steps only: no data loading, no evaluation). The settings alternate round by round so that a
busy machine slows both alike; the result is each setting's total frames over its total seconds and the ratio.
Needs the run's store (``policylens record zoo:minigrid-do8-recurrent --episodes 2000``).
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from .common import write

SETTINGS = {"fp32": False, "bf16": True}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="zoo:minigrid-do8-recurrent")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per setting and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--name", default="", help="result file name (default sim_training[_DEVICE])")
    args = parser.parse_args(argv)
    from policylens.sim.train import SimTrainConfig, train

    totals = {k: {"frames": 0, "seconds": 0.0} for k in SETTINGS}
    scratch = Path(tempfile.mkdtemp(prefix="bench-sim-"))
    try:
        for r in range(args.rounds):
            for name, bf16 in SETTINGS.items():
                out = scratch / f"{name}-{r}"
                cfg = SimTrainConfig(run=args.run, out=str(out), steps=args.steps, batch_size=args.batch_size,
                                     window=args.window, bf16=bf16, device=args.device, eval_every=10 ** 6,
                                     checkpoint_every=10 ** 6, val_windows=8, progress=False, seed=r)
                folder = train(cfg)
                seconds = json.loads((folder / "config.json").read_text())["trained_seconds"]
                totals[name]["frames"] += args.steps * args.batch_size * args.window
                totals[name]["seconds"] += seconds
                print(f"round {r} {name}: {args.steps * args.batch_size * args.window / seconds:.0f} frames/s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rates = {k: v["frames"] / v["seconds"] for k, v in totals.items()}
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    result = {"run": args.run, "device": device, "steps_per_round": args.steps, "rounds": args.rounds,
              "batch_size": args.batch_size, "window": args.window, "frames_per_s": rates,
              "bf16_over_fp32": rates["bf16"] / rates["fp32"], "totals": totals}
    suffix = "" if args.device == "cpu" else "_" + args.device.split(":")[0]
    write(args.name or f"sim_training{suffix}", result)
    return result


if __name__ == "__main__":
    main()
