"""Rollout store: bytes per frame against raw uint8, write and read throughput (MiniGrid RGB, 56x56x3).

    python -m benchmarks.store [--episodes 400]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from policylens import agents, rollouts
from policylens.rollouts import StoreWriter

from .common import write

ENV = "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs=rgb"


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=400)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp())
    try:
        cfg = {"arch": "cnn", "obs_shape": [56, 56, 3], "num_actions": 3, "obs_scale": 1 / 255}
        torch.manual_seed(0)
        agents.save_agent(agents.build(cfg), cfg, root / "run" / "agent", extra={"env": ENV})
        t = time.perf_counter()
        out = rollouts.record(rollouts.RecordConfig(run=str(root / "run"), episodes=args.episodes, num_envs=8,
                                                    progress=False))
        t_rec = time.perf_counter() - t
        store = rollouts.open(out)
        frames = sum(len(store.episode(i)["done"]) for i in range(len(store)))
        res = {"env": ENV, "episodes": len(store), "frames": frames,
               "raw_obs_bytes_per_frame": 56 * 56 * 3,
               "obs_bytes_per_frame": round(_bytes(out / "obs") / frames, 1),
               "store_bytes_per_frame": round(_bytes(out) / frames, 1),
               "record_frames_per_s_with_env_and_agent": round(frames / t_rec, 1)}
        res["obs_compression_ratio"] = round(res["raw_obs_bytes_per_frame"] / res["obs_bytes_per_frame"], 1)
        names = [f for f in store.fields if f not in ("advantages", "returns")]
        eps = [{**{k: store.episode(i)[k] for k in names}, "cause": store.episode(i).info["cause"],
                "return": store.episode(i).info["return"]} for i in range(len(store))]
        fields = {k: (eps[0][k].shape[1:], eps[0][k].dtype if k != "entities" else str) for k in names}
        for per in (256, 2048):  # store-only write throughput, appending ~per frames at a time
            t = time.perf_counter()
            with StoreWriter(root / f"w{per}.zarr", fields, {"env": ENV}) as w:
                batch, n = [], 0
                for ep in eps:
                    batch.append(ep)
                    n += len(ep["done"])
                    if n >= per:
                        w.append(batch)
                        batch, n = [], 0
                if batch:
                    w.append(batch)
            res[f"write_frames_per_s_appends_of_{per}"] = round(frames / (time.perf_counter() - t), 1)
        t = time.perf_counter()
        for _ in rollouts.open(out).batches(("obs",), batch_size=256):
            pass
        res["read_frames_per_s_batches_obs"] = round(frames / (time.perf_counter() - t), 1)
        t = time.perf_counter()
        for _ in rollouts.open(out).batches(("obs", "logits", "value"), batch_size=256, shuffle=True):
            pass
        res["read_frames_per_s_batches_shuffled"] = round(frames / (time.perf_counter() - t), 1)
        print(res)
        write("store", res)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
