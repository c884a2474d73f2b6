"""Running shards of an evaluation in worker processes or on a Ray cluster.

A shard is plain data (a checkpoint path, an env spec string, the ``(k, level)`` list and the policy
settings); every worker loads the agent itself and uses one torch thread. Nothing but JSON text crosses
back: per-episode progress and the shard's records. Records are merged by episode index, so the result is
the one a single worker gives (see :mod:`policylens.evaluate.run`).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import queue as queue_module
import traceback

BACKENDS = ("process", "ray")
BAD_INPUT = {"ValueError": ValueError, "FileNotFoundError": FileNotFoundError, "KeyError": KeyError}


def shards(plan: list, n: int) -> list:
    """Split ``plan`` into ``n`` interleaved shards (episode k goes to shard k % n), dropping empty ones."""
    return [s for s in (plan[i::n] for i in range(n)) if s]


def run_parallel(job: dict, plan: list, workers: int, backend: str, bar, ray_address=None) -> list:
    """Play ``plan`` on ``workers`` workers; returns the merged records in episode order."""
    if backend == "process":
        parts = _run_processes(job, shards(plan, workers), bar)
    elif backend == "ray":
        parts = _run_ray(job, shards(plan, workers * 4), workers, bar, ray_address)
    else:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    records = [r for part in parts for r in part]
    records.sort(key=lambda r: r["episode"])
    if [r["episode"] for r in records] != [k for k, _ in plan]:
        raise RuntimeError("workers returned an incomplete set of episodes")
    return records


# -- processes ---------------------------------------------------------------------------------------------
def _process_worker(job: dict, index: int, out) -> None:
    """Entry point of one worker process: play a shard, report each episode, then the records."""
    from .run import play_shard

    try:
        records = play_shard(job, on_episode=lambda r: out.put(json.dumps(["episode", index, r["length"]])))
        out.put(json.dumps(["done", index, records]))
    except BaseException as e:
        out.put(json.dumps(["error", index, [type(e).__name__, str(e), traceback.format_exc()]]))


def _run_processes(job: dict, parts: list, bar) -> list:
    ctx = mp.get_context("spawn")  # never fork a process that holds torch threads
    out = ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=({**job, "plan": p}, i, out), daemon=True)
             for i, p in enumerate(parts)]
    for p in procs:
        p.start()
    results = [None] * len(parts)
    try:
        while any(r is None for r in results):
            try:
                kind, index, payload = json.loads(out.get(timeout=1.0))
            except queue_module.Empty:
                dead = [i for i, p in enumerate(procs) if results[i] is None and not p.is_alive()]
                if dead and out.empty():
                    raise RuntimeError(f"evaluation worker {dead[0]} died (exit code {procs[dead[0]].exitcode})")
                continue
            if kind == "episode":
                bar.advance(1, payload)
            elif kind == "done":
                results[index] = payload
            else:
                kind, message, trace = payload
                if kind in BAD_INPUT:  # the same clear error a single worker gives
                    raise BAD_INPUT[kind](message)
                raise RuntimeError(f"evaluation worker {index} failed with {kind}: {message}\n{trace}")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
    return results


# -- ray ---------------------------------------------------------------------------------------------------
def _ray_shard(job: dict) -> str:
    from .run import play_shard

    return json.dumps(play_shard(job))


def _run_ray(job: dict, parts: list, workers: int, bar, address=None) -> list:
    try:
        import ray
    except ImportError:
        raise ImportError("backend='ray' needs Ray: pip install 'policylens[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    # At most `workers` shards run at once: each asks for the fraction of the cluster's CPUs that allows it.
    cpus = ray.cluster_resources().get("CPU", 1.0) / workers
    cpus = int(cpus) if cpus >= 1 else max(round(cpus, 2), 0.01)  # Ray wants whole CPUs above one
    task = ray.remote(num_cpus=cpus, max_retries=0)(_ray_shard)
    refs = {task.remote({**job, "plan": p}): i for i, p in enumerate(parts)}
    results, pending = [None] * len(parts), list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        index = refs[done[0]]
        results[index] = json.loads(ray.get(done[0]))
        bar.advance(len(results[index]), sum(r["length"] for r in results[index]))
    return results
