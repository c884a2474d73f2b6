"""A short check of the CUDA paths: PPO updates of the ``atari`` and ``procgen-easy`` presets, a simulator training
run on a freshly recorded store, and the test files that use CUDA, with bf16 autocast where the GPU has it.

    python -m benchmarks.gpu_check [--out PATH]        # make gpu-check

Writes JSON: the device, each part's frames/s and settings, and each failure with the end of its traceback (the
other parts still run); exit status 1 if any part failed. Without CUDA it says so and runs the same parts on the
CPU at tiny sizes (a dry run of the plumbing: its rates mean nothing). The JSON goes to ``--out``, else
``$OUT/gpu_check.json`` when ``OUT`` is set, else ``benchmarks/results/gpu_check.json``
(``gpu_check_quick.json`` for a dry run).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SIM_RUN = "zoo:minigrid-do8-recurrent"
# per part: settings on CUDA, and the dry run's on the CPU
PPO = {"cuda": {"updates": 3},
       "cpu": {"updates": 2, "num_envs": 2, "num_steps": 8, "num_minibatches": 1, "update_epochs": 1}}
SIM = {"cuda": {"episodes": 64, "steps": 20, "batch_size": 32, "window": 16, "val_windows": 8},
       "cpu": {"episodes": 4, "steps": 2, "batch_size": 4, "window": 5, "val_windows": 2,
               "sim": {"context_frames": 2, "latent": 8, "deter": 16, "stoch": 4, "hidden": 16, "embed": 16,
                       "channels": 4}}}


def ppo_part(preset: str, device: str, bf16: bool, scratch: Path) -> dict:
    """A few PPO updates of ``preset`` on ``device``; frames/s from its ``train.csv`` (after the first update,
    which pays for the warm-up, when there are several)."""
    import csv

    from policylens.train.config import PRESETS, TrainConfig
    from policylens.train.ppo import train

    sizes = dict(PPO["cuda" if device == "cuda" else "cpu"])
    updates = sizes.pop("updates")
    preset_sizes = {k: PRESETS[preset][k] for k in ("num_envs", "num_steps")}
    frames = updates * (sizes.get("num_envs") or preset_sizes["num_envs"]) * (sizes.get("num_steps") or
                                                                                preset_sizes["num_steps"])
    cfg = TrainConfig(preset=preset, out=str(scratch / preset), total_frames=frames, device=device, bf16=bf16,
                      checkpoint_every=10 ** 6, progress=False, **sizes)
    start = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - start
    with open(scratch / preset / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    first, last = rows[0], rows[-1]
    measured = (float(last["frames"]) - float(first["frames"])) / (float(last["seconds"]) - float(first["seconds"])) \
        if len(rows) > 1 else float(last["frames"]) / float(last["seconds"])
    return {"env": PRESETS[preset]["env"], "arch": PRESETS[preset]["arch"], "bf16": bf16, "updates": len(rows),
            "frames": int(last["frames"]), "frames_per_s": round(measured, 1),
            "frames_per_s_with_first_update": round(float(last["frames"]) / float(last["seconds"]), 1),
            "wall_s": round(wall, 2), "settings": {**preset_sizes, **sizes}}


def sim_part(device: str, bf16: bool, scratch: Path) -> dict:
    """Record a store of the zoo's recurrent MiniGrid agent, then train a simulator on it for a few steps on
    ``device``; frames/s = windows x window length per step over the optimizer steps' own seconds."""
    from policylens.rollouts import RecordConfig, record
    from policylens.sim.config import SimConfig
    from policylens.sim.train import SimTrainConfig, train

    sizes = dict(SIM["cuda" if device == "cuda" else "cpu"])
    sim = SimConfig(**sizes.pop("sim", {}))
    episodes = sizes.pop("episodes")
    store = scratch / "rollouts.zarr"
    start = time.perf_counter()
    record(RecordConfig(run=SIM_RUN, episodes=episodes, out=str(store), device=device, progress=False))
    recorded = time.perf_counter() - start
    cfg = SimTrainConfig(run=SIM_RUN, store=str(store), out=str(scratch / "sim"), sim=sim, bf16=bf16, device=device,
                         eval_every=10 ** 6, checkpoint_every=10 ** 6, progress=False, **sizes)
    folder = train(cfg)
    seconds = json.loads((folder / "config.json").read_text())["trained_seconds"]
    frames = cfg.steps * cfg.batch_size * cfg.window
    return {"run": SIM_RUN, "episodes_recorded": episodes, "record_s": round(recorded, 2), "bf16": bf16,
            "frames": frames, "trained_seconds": round(seconds, 3), "frames_per_s": round(frames / seconds, 1),
            "settings": {**sizes, "sim": {k: getattr(sim, k) for k in ("latent", "deter", "stoch", "hidden")}}}


def cuda_test_files() -> list:
    """The test files that use CUDA (they name it; this check's own test aside), relative to the repository."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if p.name != "test_gpu_check.py" and re.search(r"\bcuda\b", p.read_text(encoding="utf-8")))


def tests_part(files: list, cuda: bool) -> dict:
    """Run ``files`` with pytest on a CUDA machine; on the CPU only collect them (the dry run)."""
    if not files:
        return {"files": [], "ran": False}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files] + ([] if cuda else ["--co"])
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        raise RuntimeError(f"pytest exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-1000:]}")
    return {"files": files, "ran": cuda, "summary": proc.stdout.strip().splitlines()[-1]}


def default_out(cuda: bool) -> Path:
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu_check.json"
    return RESULTS / ("gpu_check.json" if cuda else "gpu_check_quick.json")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="", help="JSON path (default: $OUT/gpu_check.json, else "
                                                  "benchmarks/results/gpu_check.json)")
    args = parser.parse_args(argv)
    import torch

    from policylens.train.config import bf16_is_fast

    from .common import machine

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    out = Path(args.out) if args.out else default_out(cuda)
    if not cuda:
        print("gpu_check: no CUDA device here; running a CPU dry run of the same parts at tiny sizes "
              "(its rates mean nothing)", flush=True)
    bf16 = bf16_is_fast(device)
    report = {"machine": machine(), "cuda": cuda, "dry_run": not cuda, "device": torch.cuda.get_device_name() if cuda else "cpu",
              "torch": torch.__version__, "cuda_version": torch.version.cuda, "bf16": bf16, "parts": {},
              "failures": {}}
    parts = {"ppo_atari": lambda d: ppo_part("atari", device, bf16, d),
             "ppo_procgen_easy": lambda d: ppo_part("procgen-easy", device, bf16, d),
             "sim_train": lambda d: sim_part(device, bf16, d),
             "cuda_tests": lambda d: tests_part(cuda_test_files(), cuda)}
    start = time.perf_counter()
    for name, part in parts.items():
        print(f"gpu_check: {name} ...", flush=True)
        t = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix=f"gpu-check-{name}-") as scratch:
                report["parts"][name] = part(Path(scratch))
        except Exception as e:  # every part runs; the failure is reported with the end of its traceback
            report["failures"][name] = f"{type(e).__name__}: {e}\n" + traceback.format_exc()[-3000:]
        print(f"gpu_check: {name} {'failed' if name in report['failures'] else 'ok'} "
              f"({time.perf_counter() - t:.1f} s) {report['parts'].get(name, '')}", flush=True)
    report["seconds"] = round(time.perf_counter() - start, 1)
    if cuda:
        report["max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}" + (f"; failed: {', '.join(report['failures'])}" if report["failures"] else ""))
    if report["failures"]:
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
