"""Explorer export: time and size for 8 trajectories x 512 steps of CoinRun (64x64 RGB).

    python -m benchmarks.explorer_export [--arch impala,clear] [--episodes 8] [--steps 512] [--k 8] [--map-size 16]

For each architecture a freshly initialised agent (seed 0) is recorded on CoinRun with ``max_steps = steps``
(so every trajectory has at most ``steps`` frames), then ``policylens.explorer.export`` writes the explorer
with its default layer (impala: ``block3_relu`` 8x8; clear: the paper's ``conv2b`` 32x32), ``k`` NMF
features and ``map_size`` (maps of wider layers stored summed over blocks; 0 keeps 32x32). Reported: seconds to record and to export (attribution + NMF + thumbnails + encoding), the
folder's bytes in total and per frame, split into frames (sprite sheets + timeline) and attribution maps,
against the issue's 100 MB budget for 8 x 512 steps. An untrained agent's attribution is dense (nothing is
sparse yet), so these sizes are on the high side of what a trained agent gives. Rows are merged into the
results file by (arch, map_size), so one configuration can be rerun alone.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from policylens import agents, rollouts
from policylens.explorer import export
from policylens.explorer.encode import read_js

from .common import RESULTS, write

ENV = "procgen:coinrun?distribution_mode=easy&use_backgrounds=false"
BUDGET = 100e6  # bytes, for 8 x 512 steps (issue #3)


def _size(paths) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def measure(arch: str, root: Path, episodes: int, steps: int, k: int, map_size: int) -> dict:
    cfg = {"arch": arch, "obs_shape": [64, 64, 3], "num_actions": 15}
    torch.manual_seed(0)
    run = root / f"{arch}-{map_size}"
    agents.save_agent(agents.build(cfg), cfg, run / "agent", extra={"env": ENV})
    t = time.perf_counter()
    store = rollouts.record(rollouts.RecordConfig(run=str(run), episodes=episodes, num_envs=episodes, max_steps=steps,
                                                  progress=False))
    t_record = time.perf_counter() - t
    t = time.perf_counter()
    summary = export(run, episodes=f"0-{episodes - 1}", steps=steps, k=k, map_size=map_size, progress=True)
    t_export = time.perf_counter() - t
    out = summary["index"].parent
    data = out / "data"
    frames = sum(min(len(rollouts.open(store).episode(i)["done"]), steps) for i in range(episodes))
    maps_bytes = _size(data.glob("t*-l*.js"))
    traj_bytes = _size([p for p in data.glob("t*.js") if "-l" not in p.name])
    pool = read_js(out / "data" / "manifest.js")[1]["layers"][0]["meta"]["pool"]
    return {"arch": arch, "layer": summary["layers"][0], "map_size": map_size, "pool": pool,
            "episodes": episodes, "frames": frames, "k": k,
            "record_s": round(t_record, 1), "export_s": round(t_export, 1),
            "export_frames_per_s": round(frames / t_export, 1),
            "bytes": summary["bytes"], "mb": round(summary["bytes"] / 1e6, 2),
            "bytes_per_frame": round(summary["bytes"] / frames), "frames_and_timeline_bytes": traj_bytes,
            "attribution_maps_bytes": maps_bytes,
            "mb_scaled_to_8x512": round(summary["bytes"] / frames * 8 * 512 / 1e6, 2),
            "within_budget": summary["bytes"] / frames * 8 * 512 < BUDGET}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="impala,clear")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--map-size", type=int, default=16)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp())
    try:
        rows = [measure(a.strip(), root, args.episodes, args.steps, args.k, args.map_size)
                for a in args.arch.split(",") if a.strip()]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for r in rows:
        print(f"{r['arch']:<7} {r['layer']:<12} map_size {r['map_size']}  {r['frames']} frames  "
              f"record {r['record_s']} s  export {r['export_s']} s "
              f"({r['export_frames_per_s']} frames/s)  {r['mb']} MB ({r['bytes_per_frame']} B/frame; "
              f"{r['mb_scaled_to_8x512']} MB at 8x512)")
    old = RESULTS / "explorer_export.json"
    kept = json.loads(old.read_text())["rows"] if old.is_file() else []
    new = {(r["arch"], r["map_size"]) for r in rows}
    rows = [r for r in kept if (r["arch"], r.get("map_size")) not in new] + rows
    write("explorer_export", {"env": ENV, "budget_mb_8x512": BUDGET / 1e6, "rows": rows})


if __name__ == "__main__":
    main()
