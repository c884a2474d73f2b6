"""Explorer export: time and size for 8 trajectories x 512 steps of CoinRun (64x64 RGB) or Atari Pong (84x84x4).

    python -m benchmarks.explorer_export [--arch impala,clear,nature] [--episodes 8] [--steps 512] [--k 8]
                                         [--map-size 16] [--before SRC]

For each architecture a freshly initialised agent (seed 0) is recorded with ``max_steps = steps`` (so every
trajectory has at most ``steps`` frames): ``impala`` and ``clear`` on CoinRun, ``nature`` on ``atari:pong`` (an
untrained agent's Pong lasts longer than 512 steps, so the trajectories are 8 x 512 frames; Breakout's end
sooner), then ``policylens.explorer.export`` writes the explorer with its default layer (impala:
``block3_relu`` 8x8; clear: the paper's ``conv2b`` 32x32; nature: ``conv3`` 7x7), ``k`` NMF features and
``map_size`` (maps of wider layers stored summed over blocks; 0 keeps 32x32). Reported: seconds to record and
to export (attribution + NMF + thumbnails + saliency trees + encoding), wall and CPU seconds of the export and
frames/s, the machine's load average around it, the folder's bytes in total and per frame, split into frames
(sprite sheets + timeline) and attribution maps, against the issue's 100 MB budget for 8 x 512 steps.

``--before SRC``: also export the same store, with the same settings, with the policylens sources at ``SRC``
(e.g. another checkout's ``src``), one after the other in this run; the row then carries ``before`` (its
seconds and frames/s) and ``speedup`` (the ratio of the export times). An untrained agent's attribution is dense
(nothing is sparse yet), so these sizes are on the high side of what a trained agent gives. Rows are merged
into the results file by (arch, map_size), so one configuration can be rerun alone.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from policylens import agents, rollouts
from policylens.explorer.encode import read_js

from .common import RESULTS, write

ENV = "procgen:coinrun?distribution_mode=easy&use_backgrounds=false"
ATARI = "atari:pong"
SETUP = {"impala": (ENV, [64, 64, 3], 15), "clear": (ENV, [64, 64, 3], 15), "nature": (ATARI, [84, 84, 4], 6)}
BUDGET = 100e6  # bytes, for 8 x 512 steps (issue #3)
TIMED = """
import json, os, sys, time
from policylens.explorer import export
load, wall, cpu = os.getloadavg()[0], time.perf_counter(), time.process_time()
export(sys.argv[1], episodes=sys.argv[2], steps=int(sys.argv[3]), k=int(sys.argv[4]), map_size=int(sys.argv[5]),
       out=sys.argv[6], progress=False)
print(json.dumps({"export_s": time.perf_counter() - wall, "export_cpu_s": time.process_time() - cpu,
                  "load_before": load, "load_after": os.getloadavg()[0]}))
"""


def _size(paths) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def timed_export(src: str, run: Path, episodes: int, steps: int, k: int, map_size: int, out: Path) -> dict:
    """Export in a fresh interpreter whose ``policylens`` comes from ``src``: wall and CPU seconds of the export
    alone (imports left out), and the 1-minute load average before and after it."""
    env = {**os.environ, "PYTHONPATH": src, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", TIMED, str(run), f"0-{episodes - 1}", str(steps), str(k),
                           str(map_size), str(out)], env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"export with the sources at {src} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(arch: str, root: Path, episodes: int, steps: int, k: int, map_size: int, before: str = "") -> dict:
    env, obs_shape, actions = SETUP[arch]
    cfg = {"arch": arch, "obs_shape": obs_shape, "num_actions": actions}
    torch.manual_seed(0)
    run = root / f"{arch}-{map_size}"
    agents.save_agent(agents.build(cfg), cfg, run / "agent", extra={"env": env})
    t = time.perf_counter()
    store = rollouts.record(rollouts.RecordConfig(run=str(run), episodes=episodes, num_envs=episodes, max_steps=steps,
                                                  progress=False))
    t_record = time.perf_counter() - t
    old = timed_export(before, run, episodes, steps, k, map_size, run / "explorer-before") if before else None
    now = timed_export(str(Path(agents.__file__).resolve().parents[2]), run, episodes, steps, k, map_size,
                       run / "explorer")
    out = run / "explorer"
    summary = {"bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file())}
    data = out / "data"
    frames = sum(min(len(rollouts.open(store).episode(i)["done"]), steps) for i in range(episodes))
    maps_bytes = _size(data.glob("t*-l*.js"))
    traj_bytes = _size([p for p in data.glob("t*.js") if "-l" not in p.name])
    layer = read_js(out / "data" / "manifest.js")[1]["layers"][0]
    row = {"arch": arch, "env": env, "layer": layer["name"], "map_size": map_size, "pool": layer["meta"]["pool"],
           "episodes": episodes, "frames": frames, "k": k, "nmf_bootstrap": layer["meta"].get("nmf_bootstrap"),
           "record_s": round(t_record, 1), "export_s": round(now["export_s"], 1),
           "export_cpu_s": round(now["export_cpu_s"], 1), "export_frames_per_s": round(frames / now["export_s"], 1),
           "export_frames_per_cpu_s": round(frames / now["export_cpu_s"], 1),
           "load_average": [round(now["load_before"], 1), round(now["load_after"], 1)],
           "bytes": summary["bytes"], "mb": round(summary["bytes"] / 1e6, 2),
           "bytes_per_frame": round(summary["bytes"] / frames), "frames_and_timeline_bytes": traj_bytes,
           "attribution_maps_bytes": maps_bytes,
           "mb_scaled_to_8x512": round(summary["bytes"] / frames * 8 * 512 / 1e6, 2),
           "within_budget": summary["bytes"] / frames * 8 * 512 < BUDGET}
    if old is not None:
        row["before"] = {"source": before, "export_s": round(old["export_s"], 1),
                         "export_cpu_s": round(old["export_cpu_s"], 1),
                         "export_frames_per_s": round(frames / old["export_s"], 1),
                         "load_average": [round(old["load_before"], 1), round(old["load_after"], 1)]}
        row["speedup"] = round(old["export_s"] / now["export_s"], 2)
        row["cpu_speedup"] = round(old["export_cpu_s"] / now["export_cpu_s"], 2)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="impala,clear,nature")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--map-size", type=int, default=16)
    parser.add_argument("--before", default="", help="also export with the policylens sources at this path "
                        "(e.g. another checkout's src), for a before/after ratio in one run")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp())
    try:
        rows = [measure(a.strip(), root, args.episodes, args.steps, args.k, args.map_size, args.before)
                for a in args.arch.split(",") if a.strip()]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for r in rows:
        was = f"; before {r['before']['export_s']} s, {r['speedup']}x" if "before" in r else ""
        print(f"{r['arch']:<7} {r['layer']:<12} map_size {r['map_size']}  {r['frames']} frames  "
              f"record {r['record_s']} s  export {r['export_s']} s "
              f"({r['export_frames_per_s']} frames/s, {r['export_cpu_s']} s CPU{was})  {r['mb']} MB "
              f"({r['bytes_per_frame']} B/frame; {r['mb_scaled_to_8x512']} MB at 8x512)")
    old = RESULTS / "explorer_export.json"
    kept = json.loads(old.read_text())["rows"] if old.is_file() else []
    new = {(r["arch"], r["map_size"]) for r in rows}
    rows = [r for r in kept if (r["arch"], r.get("map_size")) not in new] + rows
    write("explorer_export", {"env": ENV, "atari_env": ATARI, "budget_mb_8x512": BUDGET / 1e6, "rows": rows})


if __name__ == "__main__":
    main()
