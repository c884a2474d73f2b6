"""One way to spread work over workers: local processes or a Ray cluster, results in task order.

>>> for result in pmap(fn, tasks, shared, setup=with_agent, backend="ray", workers=4): ...
>>> with Pool("process", 2) as pool:            # the same workers for several maps, one map at a time
...     a = list(pool.map(fn, tasks, shared)); b = list(pool.map(other, more, shared))

``fn(context, task)`` is a module-level function run on each task; ``context`` is ``setup(shared)`` (default:
``shared`` itself), built once per worker, e.g. the agent loaded from its checkpoint files. With one worker
and the ``process`` backend everything runs here, on ``context`` when given (an agent already loaded).
Otherwise ``shared``, every task and every result cross as :mod:`policylens.wire` messages (safetensors + JSON;
nothing is pickled but bytes), each worker uses one torch thread, at most a few tasks per worker are in
flight, and results are yielded in task order whatever order they finish in. A worker's bad-input error
(ValueError, KeyError, FileNotFoundError, FileExistsError) is raised here as the same type with the same
message; any other failure, or a worker that dies, is a RuntimeError naming the task and the worker's traceback.

The agent travels as its checkpoint files (:func:`agent_files`: ``config.json`` and ``weights.safetensors``),
so Ray workers on other machines need no shared file system.
"""
from __future__ import annotations

import hashlib
import itertools
import multiprocessing as mp
import queue as queue_module
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from .wire import pack, unpack

BACKENDS = ("process", "ray")
BAD_INPUT = {e.__name__: e for e in (ValueError, FileNotFoundError, KeyError, FileExistsError)}
AHEAD = 2  # tasks in flight per worker


def check_backend(backend: str, workers: int) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")


def is_local(backend: str, workers: int) -> bool:
    """Whether :func:`pmap` runs everything in this process (one worker, ``process`` backend)."""
    check_backend(backend, workers)
    return workers == 1 and backend == "process"


def require_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("backend='ray' needs Ray: pip install 'policylens[ray]'") from None
    return ray


def pmap(fn, tasks, shared=None, *, setup=None, context=None, backend: str = "process", workers: int = 1,
         ray_address: "str | None" = None, on_done=None, what: str = "task"):
    """An iterator over ``fn(context, task)`` for each of ``tasks`` (any iterable, read as workers free up),
    in task order, on a :class:`Pool` of its own. ``on_done(index, result)`` is called as each task finishes."""
    pool = Pool(backend, workers, ray_address)

    def run():
        with pool:
            yield from pool.map(fn, tasks, shared, setup=setup, context=context, on_done=on_done, what=what)

    return run()


class Pool:
    """Workers kept for several maps (``with Pool("ray", 4) as pool: pool.map(...); pool.map(...)``): local
    processes start on the first map that needs them and stop at :meth:`close`; Ray starts when first needed."""

    def __init__(self, backend: str = "process", workers: int = 1, ray_address: "str | None" = None):
        check_backend(backend, workers)
        self.backend, self.workers, self.ray_address = backend, workers, ray_address
        self.local = is_local(backend, workers)
        self._procs: list = []  # mp.Process per worker
        self._boxes: list = []  # each worker's inbox (mp.Queue)
        self._outbox: Any = None  # the mp.Queue every worker replies on
        self._tokens: list[set[str]] = []  # per worker: the maps whose shared data it holds

    def map(self, fn, tasks, shared=None, *, setup=None, context=None, on_done=None, what: str = "task"):
        """An iterator over ``fn(context, task)`` for each task, in task order (see the module doc)."""
        if self.local:
            return _local(fn, tasks, context if context is not None else _setup(setup, shared), on_done)
        run = self._ray if self.backend == "ray" else self._processes
        return run(fn, setup, shared, tasks, on_done, what)

    # -- local processes -----------------------------------------------------------------------------------
    def _start(self) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that holds torch threads
        self._outbox = ctx.Queue()
        self._boxes = [ctx.Queue() for _ in range(self.workers)]
        self._procs = [ctx.Process(target=_process_loop, args=(w, box, self._outbox), daemon=True)
                       for w, box in enumerate(self._boxes)]
        self._tokens = [set() for _ in self._procs]
        for p in self._procs:
            p.start()

    def _processes(self, fn, setup, shared, tasks, on_done, what: str):
        if not self._procs:
            self._start()
        token, blob = uuid.uuid4().hex, pack(shared)
        busy = [0] * self.workers  # tasks in flight per worker

        def submit(index, task):
            w = min(range(self.workers), key=lambda i: busy[i])
            first = token not in self._tokens[w]  # the shared data goes once to each worker
            self._boxes[w].put((fn, setup, token, blob if first else None, index, pack(task)))
            self._tokens[w].add(token)
            busy[w] += 1

        def receive():
            while True:
                try:
                    w, index, reply = self._outbox.get(timeout=1.0)
                    break
                except queue_module.Empty:
                    dead = [i for i, p in enumerate(self._procs) if not p.is_alive()]
                    if dead:
                        code = self._procs[dead[0]].exitcode
                        raise RuntimeError(f"{what} worker process {dead[0]} died (exit code {code})") from None
            busy[w] -= 1
            result = _result(reply, index, what)
            if on_done is not None:
                on_done(index, result)
            return index, result

        finished = False
        try:
            yield from _ordered(submit, receive, tasks, AHEAD * self.workers)
            finished = True
        finally:
            if not finished:  # tasks of this map may still be running: these workers are not reused
                self.close()

    # -- ray -----------------------------------------------------------------------------------------------
    def _ray(self, fn, setup, shared, tasks, on_done, what: str):
        ray = require_ray()
        if not ray.is_initialized():
            ray.init(address=self.ray_address, include_dashboard=False, log_to_driver=False)
        # At most `workers` tasks run at once: each asks for the fraction of the cluster's CPUs that allows it.
        cpus = ray.cluster_resources().get("CPU", 1.0) / self.workers
        cpus = int(cpus) if cpus >= 1 else max(round(cpus, 2), 0.01)  # Ray wants whole CPUs above one
        remote = ray.remote(num_cpus=cpus, max_retries=0)(_work)
        token, shared_ref = uuid.uuid4().hex, ray.put(pack(shared))
        refs = {}  # ObjectRef -> task index

        def submit(index, task):
            refs[remote.remote(fn, setup, token, shared_ref, pack(task))] = index

        def receive():
            done, _ = ray.wait(list(refs), num_returns=1)
            index = refs.pop(done[0])
            try:
                reply = ray.get(done[0])
            except ray.exceptions.RayError as e:
                raise RuntimeError(f"{what} {index} failed on Ray: {type(e).__name__}: {e}") from None
            result = _result(reply, index, what)
            if on_done is not None:
                on_done(index, result)
            return index, result

        try:
            yield from _ordered(submit, receive, tasks, AHEAD * self.workers)
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        """Stop the local worker processes (a later map starts new ones)."""
        procs, boxes, self._procs, self._boxes = self._procs, self._boxes, [], []
        for box in boxes:
            box.put(None)
        deadline = time.monotonic() + 5.0
        for p in procs:
            p.join(max(deadline - time.monotonic(), 0.1))
            if p.is_alive():
                p.terminate()
                p.join()
        for q in [*boxes, *([self._outbox] if self._outbox is not None else [])]:
            q.cancel_join_thread()
            q.close()
        self._outbox = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _local(fn, tasks, context, on_done):
    for i, task in enumerate(tasks):
        result = fn(context, task)
        if on_done is not None:
            on_done(i, result)
        yield result


def _setup(setup, shared):
    return shared if setup is None else setup(shared)


# -- in a worker -------------------------------------------------------------------------------------------
_CONTEXTS: dict = {}  # token -> context, the latest few
_SHARED: dict = {}  # token -> packed shared data (local processes get it once)


def _context(token: str, setup, shared_blob: "bytes | None"):
    if token not in _CONTEXTS:
        assert shared_blob is not None, "a map's shared data comes with its first task to each worker"
        import torch

        torch.set_num_threads(1)  # workers share the machine: one thread each
        while len(_CONTEXTS) >= 2:
            _CONTEXTS.pop(next(iter(_CONTEXTS)))
        _CONTEXTS[token] = _setup(setup, unpack(shared_blob))
    return _CONTEXTS[token]


def _work(fn, setup, token: str, shared_blob: "bytes | None", task_blob: bytes) -> bytes:
    """One task in a worker: a packed ``["ok", result]`` or ``["error", kind, message, traceback]``."""
    try:
        return pack(["ok", fn(_context(token, setup, shared_blob), unpack(task_blob))])
    except Exception as e:
        from .config import error_message

        return pack(["error", type(e).__name__, error_message(e), traceback.format_exc()])


def _process_loop(worker: int, inbox, outbox) -> None:
    """A worker process: run tasks from ``inbox`` until ``None``, put ``(worker, index, reply)`` on ``outbox``."""
    parent = mp.parent_process()
    while True:
        try:
            item = inbox.get(timeout=1.0)
        except queue_module.Empty:
            if parent is not None and not parent.is_alive():  # the driver was killed: stop, leave no orphans
                return
            continue
        if item is None:
            return
        fn, setup, token, shared_blob, index, task_blob = item
        if shared_blob is not None:
            _SHARED.clear()
            _SHARED[token] = shared_blob
        outbox.put((worker, index, _work(fn, setup, token, _SHARED.get(token), task_blob)))


def _result(blob: bytes, index: int, what: str):
    reply = unpack(blob)
    if reply[0] == "ok":
        return reply[1]
    _, kind, message, trace = reply
    if kind in BAD_INPUT:  # the same clear error one worker gives
        raise BAD_INPUT[kind](message)
    raise RuntimeError(f"{what} {index} failed in a worker with {kind}: {message}\nworker traceback:\n{trace}")


def _ordered(submit, receive, tasks, slots: int):
    """Keep up to ``slots`` tasks ahead of the next result due; yield results in task order.
    ``submit(index, task)`` starts one, ``receive()`` waits for any: ``(index, result)``."""
    it, sent, due = iter(tasks), 0, 0
    ready: dict = {}  # index -> result, received ahead of its turn
    exhausted = False
    while True:
        while not exhausted and sent < due + slots:
            task = next(it, _END)
            if task is _END:
                exhausted = True
                break
            submit(sent, task)
            sent += 1
        if due in ready:
            yield ready.pop(due)
            due += 1
            continue
        if exhausted and due == sent:
            return
        index, result = receive()
        ready[index] = result


_END = object()


# -- the agent, shipped ------------------------------------------------------------------------------------
CHECKPOINT_FILES = ("config.json", "weights.safetensors")
_AGENTS: dict = {}  # (sha256 of the files, device) -> agent, in a worker


def agent_files(checkpoint) -> dict:
    """A checkpoint folder's files as ``{name: bytes}``, for :func:`with_agent` in a worker."""
    from .agents import read_config

    read_config(checkpoint)  # a clear error when there is no checkpoint there
    return {name: (Path(checkpoint) / name).read_bytes() for name in CHECKPOINT_FILES}


def load_files(files: dict, device: str = "cpu"):
    """The agent of checkpoint ``files`` (as :func:`agent_files` gives them), loaded once per process."""
    from .agents import load_agent

    key = (hashlib.sha256(b"".join(files[n] for n in CHECKPOINT_FILES)).hexdigest(), str(device))
    if key not in _AGENTS:
        with tempfile.TemporaryDirectory(prefix="policylens-agent-") as tmp:
            for name in CHECKPOINT_FILES:
                (Path(tmp) / name).write_bytes(files[name])
            _AGENTS.clear()
            _AGENTS[key] = load_agent(tmp, device=device).eval()
    return _AGENTS[key]


def with_agent(shared: dict) -> dict:
    """``setup`` for tasks on an agent: ``shared`` with its ``agent`` files replaced by the loaded agent
    (on ``shared["device"]``, default cpu)."""
    return {**shared, "agent": load_files(shared["agent"], shared.get("device", "cpu"))}


def chunks(items: list, size: int) -> list:
    """``items`` in consecutive pieces of ``size`` (the last may be shorter)."""
    it = iter(items)
    return [list(c) for c in iter(lambda: list(itertools.islice(it, size)), [])]


# -- progress ----------------------------------------------------------------------------------------------
class Progress:
    """A tqdm bar on stderr counting ``unit`` s, with frames/s; ``advance(units, frames)`` moves it."""

    def __init__(self, total: int, enabled: bool, desc: str = "", unit: str = "ep", initial: int = 0):
        self.bar, self.frames, self.t0 = None, 0, time.perf_counter()
        if enabled:
            import sys

            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, file=sys.stderr, dynamic_ncols=True)

    def advance(self, units: int, frames: int = 0) -> None:
        self.frames += frames
        if self.bar is not None:
            self.bar.update(units)
            if self.frames:
                rate = self.frames / max(time.perf_counter() - self.t0, 1e-9)
                self.bar.set_postfix_str(f"{rate:.0f} frames/s", refresh=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
