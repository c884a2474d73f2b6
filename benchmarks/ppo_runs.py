"""Shared by the PPO benchmarks: one training run of ours or of the reference, reduced to the same curve rows
and the same figures (frames and seconds to a target), plus what else was running on the machine."""
from __future__ import annotations

import csv
import os
import tempfile
import time
from pathlib import Path

#: The target of the MiniGrid benchmarks: the last 100 finished training episodes succeed this often.
TARGET_SUCCESS = 0.95
TARGET_RETURN = 0.8
DO8 = "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0"


def _num(v):
    return None if v in ("", None) else float(v)


def run_ours(seed: int, total_frames: int, stop_success: float = 0.0, keep: "str | None" = None, **overrides) -> dict:
    """``policylens.train.train`` with ``overrides``; its train.csv as curve rows. ``keep``: the run directory to
    write (kept); otherwise a temporary one, removed."""
    from policylens.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(keep or tmp) / ("" if keep else "run")
        cfg = TrainConfig(out=str(out), seed=seed, total_frames=total_frames, stop_success=stop_success,
                          progress=False, **{"threads": 1, **overrides})
        t0, c0 = time.perf_counter(), time.process_time()
        train(cfg)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        with open(out / "train.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    curve = [{"frames": int(r["frames"]), "seconds": float(r["seconds"]), "return_mean": _num(r["return_mean"]),
              "return_100": _num(r["return_100"]), "success_100": _num(r["success_100"]),
              "entropy": _num(r["entropy"])} for r in rows]
    return summarize(curve, wall, cpu)


def run_reference(seed: int, total_frames: int, stop_success: float = 0.0, **overrides) -> dict:
    """``benchmarks.reference_ppo`` with ``overrides``, stopped like ours at ``stop_success``."""
    from .reference_ppo import RefConfig, train_reference

    def stop(row, episodes):
        return bool(stop_success) and len(episodes) >= 100 and row["success_100"] >= stop_success

    t0, c0 = time.perf_counter(), time.process_time()
    out = train_reference(RefConfig(seed=seed, total_frames=total_frames, **overrides), on_update=stop)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    curve = [{k: r[k] for k in ("frames", "seconds", "return_mean", "return_100", "success_100")}
             for r in out["curve"]]
    return summarize(curve, wall, cpu)


def first_reaching(curve: list, key: str, target: float):
    """The first row whose ``key`` >= ``target`` (None if never)."""
    return next((r for r in curve if r.get(key) is not None and r[key] >= target), None)


def summarize(curve: list, wall: float, cpu: float) -> dict:
    hit = first_reaching(curve, "success_100", TARGET_SUCCESS)
    ret = first_reaching(curve, "return_100", TARGET_RETURN)
    last = curve[-1] if curve else {}
    frames = last.get("frames", 0)
    return {"frames_to_95": hit and hit["frames"], "seconds_to_95": hit and round(hit["seconds"], 1),
            "frames_to_return_0.8": ret and ret["frames"], "frames": frames,
            "final_success_100": last.get("success_100"), "final_return_100": last.get("return_100"),
            "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
            "fps": round(frames / wall, 1) if wall else None, "curve": curve}


def load_beside() -> dict:
    """What else ran on the machine while a benchmark ran: load averages and the busiest other processes."""
    info = {"loadavg_1_5_15": list(os.getloadavg()), "cpus": os.cpu_count()}
    try:
        import subprocess

        ps = subprocess.run(["ps", "-eo", "pcpu,args", "--sort=-pcpu"], capture_output=True, text=True, timeout=10)
        mine = str(os.getpid())
        rows = [line.strip() for line in ps.stdout.splitlines()[1:] if line.strip()]
        info["busiest"] = [r[:120] for r in rows if mine not in r][:4]
    except Exception:  # ps missing: the load averages alone
        pass
    return info
