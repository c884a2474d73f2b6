"""Scale-out: recording and attribution throughput on 1 and 2 workers, local processes and a local Ray, CoinRun.

    python -m benchmarks.scale_out [--episodes 16] [--max-steps 256] [--frames 512] [--workers 1,2] [--quick]

An IMPALA agent with random weights (seed 0) records ``episodes`` CoinRun episodes (cut at ``max-steps``) by
episode plan with each configuration -- here (``process``, 1 worker), ``process`` and ``ray`` with each number of
``--workers`` -- and, for reference, as ``record`` does by default (``vector``: 8 envs stepped together in one
process, here on one thread; other levels, so another store). Then integrated gradients (10 steps, value, layer ``block2``, batches
of 64) of the store's first ``frames`` frames, with the same configurations plus here on torch's default thread
count (what ``policylens attribute`` uses without ``--workers``). Every row's time includes starting its workers
(spawning processes that import torch and load the agent; Ray's first tasks start its worker processes); the
startup of each backend alone is reported too (a no-op map that loads the agent). Each row has its frames/s and
its ratio to the 1-process row of the same run. The stores recorded by plan are checked equal field for field
and the attributions equal to float precision: the benchmark fails otherwise.

On a 2-core machine a second worker can at best double throughput, less what the driver (reading the store,
appending, the progress bar) and Ray's own processes take from the same two cores; the load average while the
benchmark ran is in the JSON. ``--quick``: a smoke run of a few seconds (writes ``scale_out_quick.json``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from policylens import agents, rollouts
from policylens.attribution.cli import AttributeConfig, run_config
from policylens.attribution.results import load_attributions
from policylens.envs import make
from policylens.parallel import agent_files, pmap, with_agent
from policylens.rollouts import RecordConfig, record

from .common import write

ENV = "procgen:coinrun?distribution_mode=easy&use_backgrounds=false"
LAYER = "block2"


def _noop(context, task):
    return task


def startup(run: Path, backend: str, workers: int) -> float:
    """Seconds for a map of one task per worker that loads the agent: what a backend costs before any work."""
    if backend == "ray":  # Ray's workers may not have this folder on their path: send _noop itself
        import ray

        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    t = time.perf_counter()
    list(pmap(_noop, range(workers), {"agent": agent_files(run / "agent")}, setup=with_agent, backend=backend,
              workers=workers))
    return time.perf_counter() - t


def _frames_of(store) -> int:
    return int(rollouts.open(store).num_frames)


def _same_store(a, b) -> None:
    a, b = rollouts.open(a), rollouts.open(b)
    assert len(a) == len(b) and a.num_frames == b.num_frames, "stores of different sizes"
    for name in a.fields:
        x, y = a.read(name, 0, a.num_frames), b.read(name, 0, b.num_frames)
        assert list(x) == list(y) if x.dtype == object else np.array_equal(x, y), f"stores differ in {name}"


def bench_record(run: Path, root: Path, configs: list, args) -> list:
    rows, reference = [], None
    for backend, workers in [("vector", 1), *configs]:
        out = root / f"record-{backend}-{workers}.zarr"
        kw = dict(num_envs=8) if backend == "vector" else dict(backend=backend, workers=workers)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # vector recording on one thread too (the others set it themselves)
        try:
            t = time.perf_counter()
            record(RecordConfig(run=str(run), episodes=args.episodes, max_steps=args.max_steps, out=str(out),
                                progress=False, **kw))
            seconds = time.perf_counter() - t
        finally:
            torch.set_num_threads(threads)
        if backend != "vector":
            reference = reference or out
            _same_store(reference, out)
        frames = _frames_of(out)
        rows.append({"backend": backend, "workers": workers, "episodes": args.episodes, "frames": frames,
                     "seconds": round(seconds, 2), "frames_per_s": round(frames / seconds, 1)})
        print(rows[-1])
    return _ratios(rows)


def bench_attribute(run: Path, store: Path, root: Path, configs: list, args) -> list:
    frames_each = np.cumsum([len(e["done"]) for e in rollouts.open(store)])
    episodes = range(min(int(np.searchsorted(frames_each, args.frames)) + 1, len(frames_each)))
    threads = torch.get_num_threads()
    here = [("process", 1, threads)] + [("process", 1, 1)] * (threads > 1)
    rows, reference = [], None
    for backend, workers, here_threads in [*here, *[(b, w, 1) for b, w in configs if (b, w) != ("process", 1)]]:
        out = root / f"attr-{backend}-{workers}-{here_threads}.npz"
        cfg = AttributeConfig(run=str(run), store=str(store), layer=LAYER, steps=10, episodes=tuple(episodes),
                              out=str(out), backend=backend, workers=workers, progress=False)
        torch.set_num_threads(here_threads)  # the driver's; each worker uses one
        try:
            t = time.perf_counter()
            run_config(cfg)
            seconds = time.perf_counter() - t
        finally:
            torch.set_num_threads(threads)
        arrays, _ = load_attributions(out)
        reference = arrays if reference is None else reference
        np.testing.assert_allclose(arrays["attribution"], reference["attribution"], rtol=1e-4, atol=1e-5)
        frames = len(arrays["attribution"])
        rows.append({"backend": backend, "workers": workers,
                     "torch_threads": here_threads if (backend, workers) == ("process", 1) else 1,
                     "frames": frames, "seconds": round(seconds, 2), "frames_per_s": round(frames / seconds, 1)})
        print(rows[-1])
    return _ratios(rows)


def _ratios(rows: list) -> list:
    """Each row's frames/s over that of the last row with one process on one thread (``process``, 1 worker)."""
    ref = [r for r in rows if (r["backend"], r["workers"], r.get("torch_threads", 1)) == ("process", 1, 1)][-1]
    return [{**r, "ratio_to_one_process": round(r["frames_per_s"] / ref["frames_per_s"], 2)} for r in rows]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--max-steps", type=int, default=256)
    parser.add_argument("--frames", type=int, default=512, help="frames attributed")
    parser.add_argument("--workers", default="1,2", help="worker counts for each backend (one process here is always run)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.episodes, args.max_steps, args.frames = 2, 12, 16
    counts = [int(w) for w in args.workers.split(",")]
    configs = [("process", 1)] + [("process", w) for w in counts if w > 1] + [("ray", w) for w in counts]
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    load0 = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root, cfg = Path(tmp), {"arch": "impala", "obs_shape": [64, 64, 3], "num_actions": 15}
            torch.manual_seed(0)
            agents.save_agent(agents.build(cfg), cfg, root / "run" / "agent", extra={"env": ENV})
            run = root / "run"
            make(ENV, num_envs=1, seed=0).close()  # procgen's first env is slow to make: not a row's cost
            starts = {f"{b}-{w}": round(startup(run, b, w), 2) for b, w in configs if (b, w) != ("process", 1)}
            record_rows = bench_record(run, root, configs, args)
            attribute_rows = bench_attribute(run, root / "record-process-1.zarr", root, configs, args)
    finally:
        if started:
            ray.shutdown()
    result = {"setup": {"env": ENV, "agent": "impala, random weights (seed 0)", "episodes": args.episodes,
                        "max_steps": args.max_steps, "record_batch": 8, "attribute": f"ig, 10 steps, value, {LAYER}",
                        "attribute_batch": 64, "quick": args.quick},
              "load_average_1min": {"start": round(load0, 2), "end": round(os.getloadavg()[0], 2)},
              "startup_s": starts, "record": record_rows, "attribute": attribute_rows,
              "note": "times include starting each row's workers; the stores recorded by plan are equal field for "
                      "field and the attributions equal to float precision across rows (checked); on 2 cores a "
                      "second worker shares them with the driver and, for Ray, Ray's own processes"}
    write("scale_out_quick" if args.quick else "scale_out", result)
    return result


if __name__ == "__main__":
    main()
