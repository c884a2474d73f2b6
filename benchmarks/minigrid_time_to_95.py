"""MiniGrid time to 95% success, read from the zoo agents' own training logs.

``python -m benchmarks.minigrid_time_to_95`` walks each ``zoo/minigrid-*`` agent's curriculum (the stage CSVs
``train-stage1-*.csv`` then ``train.csv``, as ``policylens train`` wrote them) and reports the frames and
wall-clock seconds until the first PPO update on the final env (Dynamic-Obstacles-8x8) whose finished episodes
succeed >= 95% of the time, counting every frame and second of the earlier stages. The held-out check is the
agent's ``evaluation.json`` (1000 levels). Seconds are as measured during training, on a shared machine.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from .common import write

ZOO = Path(__file__).resolve().parents[1] / "zoo"
TARGET = 0.95


def read_rows(path: Path) -> list:
    with path.open() as f:
        return [r for r in csv.DictReader(f)]


def time_to_target(agent_dir: Path, target: float = TARGET) -> dict:
    """Frames and seconds (all stages) until the final stage first reaches ``target`` training success."""
    stages = sorted(agent_dir.glob("train-stage*.csv")) + [agent_dir / "train.csv"]
    frames = seconds = 0.0
    out = {"agent": agent_dir.name, "stages": []}
    for k, path in enumerate(stages):
        rows = read_rows(path)
        final = k == len(stages) - 1
        hit = next((r for r in rows if final and r["success_rate"] and float(r["success_rate"]) >= target), None)
        last = hit or rows[-1]
        out["stages"].append({"csv": path.name, "frames": int(float(last["frames"])),
                              "seconds": float(last["seconds"]),
                              "fps": round(float(last["frames"]) / max(float(last["seconds"]), 1e-9), 1)})
        frames += float(last["frames"])
        seconds += float(last["seconds"])
        if final:
            out["reached"] = hit is not None
    out["frames_to_target"] = int(frames)
    out["seconds_to_target"] = round(seconds, 1)
    evaluation = agent_dir / "evaluation.json"
    if evaluation.is_file():
        e = json.loads(evaluation.read_text())
        out["held_out"] = {"episodes": e["episodes"], "success_rate": e["success_rate"], "ci95": e["ci95"]}
    return out


def main() -> None:
    agents = [time_to_target(d) for d in sorted(ZOO.glob("minigrid-*")) if (d / "train.csv").is_file()]
    for a in agents:
        print(f"{a['agent']}: {a['frames_to_target']:,} frames, {a['seconds_to_target'] / 60:.1f} min "
              f"to {TARGET:.0%} training success (reached: {a['reached']})")
    write("minigrid_time_to_95", {"target": TARGET, "agents": agents})


if __name__ == "__main__":
    main()
