"""policylens.parallel and policylens.wire: one map over local processes or a local Ray, results in task order,
clear errors; plain data across without pickle."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from policylens import parallel
from policylens.parallel import AHEAD, chunks, pmap
from policylens.wire import pack, unpack


# -- the wire ----------------------------------------------------------------------------------------------
def _same(a, b):
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def test_pack_round_trips_every_kind_exactly():
    rng = np.random.default_rng(0)
    strings = np.empty(3, dtype=object)
    strings[:] = ['{"a":1}', "", "é"]
    obj = {
        "obs": rng.integers(0, 255, (5, 7, 7, 3)).astype(np.uint8), "logits": rng.normal(size=(5, 3)).astype(np.float32),
        "f64": rng.normal(size=4), "i32": np.arange(3, dtype=np.int32), "done": np.array([False, True]),
        "empty": np.zeros((0, 4), np.float32), "scalar": np.float32(0.1), "zero_d": np.array(7, np.int64),
        "entities": strings, "names": np.array(["left", "forward"]), "t": torch.arange(6.0).reshape(2, 3),
        "bytes": b"\x00\x01state", "states": [b"ab", b"", b"cde"], "pair": (1, "x"), 3: None,
        "nested": [{"x": 1.5, "y": [True, None]}, float("nan"), 2**70],
    }
    got = unpack(pack(obj))
    _same(obj, got)
    assert got["scalar"].dtype == np.float32 and got["names"].dtype == obj["names"].dtype


def test_pack_refuses_what_is_not_plain_data():
    with pytest.raises(TypeError, match="cannot send a torch.nn.modules.linear.Linear"):
        pack({"agent": torch.nn.Linear(2, 2)})
    with pytest.raises(TypeError, match="dict key"):
        pack({(1, 2): 3})
    with pytest.raises(ValueError, match="not a packed message"):
        unpack(b"\x80\x04not ours")


# -- tasks (module-level, so workers import them) ------------------------------------------------------------
def square_later(context, task):
    """Later tasks finish first: the result order must come from the task order alone. With a ``gate`` file,
    task 0 also waits (up to a minute) for task 1 to create it, so the two finish out of order however late
    the other worker starts."""
    gate = context.get("gate")
    if gate and task == 0:
        deadline = time.monotonic() + 60
        while not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    time.sleep(context["delay"] * (context["n"] - task))
    if gate and task == 1:
        Path(gate).touch()
    return {"task": task, "square": task * task, "pid": os.getpid(), "threads": torch.get_num_threads(),
            "add": context.get("add")}


def fail(context, task):
    if task == context["bad"]:
        if context["how"] == "value":
            raise ValueError(f"task {task} is bad input")
        if context["how"] == "die":
            os._exit(3)
        return 1 / 0
    return task


def offset(shared):
    return {"add": shared["add"] * 10}


def with_offset(shared):
    return {**shared, **offset(shared)}


def add(context, task):
    return task + context["add"]


def _ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'policylens[ray]')")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # this test module is not on Ray's path
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    return ray


@pytest.fixture(scope="module")
def local_ray():
    ray = _ray()
    yield ray
    ray.shutdown()


BACKENDS = [("process", 1), ("process", 2), ("ray", 2)]


@pytest.mark.slow
@pytest.mark.parametrize("backend,workers", BACKENDS)
def test_results_come_in_task_order_each_reported_with_the_workers_setup(backend, workers, request, tmp_path):
    if backend == "ray":
        request.getfixturevalue("local_ray")
    n, done = 6, []
    # two processes take tasks 0 and 1 one each: the gate makes task 1 finish first
    gate = str(tmp_path / "task1-done") if (backend, workers) == ("process", 2) else None
    results = list(pmap(square_later, range(n), {"delay": 0.05, "n": n, "add": 1, "gate": gate}, setup=with_offset,
                        backend=backend, workers=workers, on_done=lambda i, r: done.append(i)))
    assert [r["task"] for r in results] == list(range(n)) and [r["square"] for r in results] == [0, 1, 4, 9, 16, 25]
    assert all(r["add"] == 10 for r in results)  # setup(shared) is the context
    assert sorted(done) == list(range(n))
    if workers == 2:
        assert len({r["pid"] for r in results} - {os.getpid()}) >= 1  # not here
        assert all(r["threads"] == 1 for r in results)  # one torch thread per worker
        if backend == "process":
            assert done != sorted(done)  # they did finish out of order
    else:  # a context in hand is used as it is
        assert list(pmap(add, [1], {"add": 1}, setup=offset, context={"add": 5})) == [6]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["process", "ray"])
def test_worker_errors_are_clear(backend, request):
    if backend == "ray":
        request.getfixturevalue("local_ray")
    run = lambda how: list(pmap(fail, range(6), {"bad": 3, "how": how}, backend=backend, workers=2))  # noqa: E731
    with pytest.raises(ValueError, match="^task 3 is bad input$"):
        run("value")
    if backend == "ray":  # (the same code turns it into an error for both backends; processes are slow to start)
        with pytest.raises(RuntimeError, match="(?s)task 3 failed in a worker with ZeroDivisionError.*worker traceback"):
            run("zero")
    with pytest.raises(RuntimeError, match="died|failed on Ray"):
        run("die")


@pytest.mark.slow
def test_a_pool_reads_tasks_as_workers_free_up_keeps_them_across_maps_and_replaces_them_after_a_failure():
    pulled = []

    def tasks():
        for i in range(30):
            pulled.append(i)
            yield i

    with parallel.Pool("process", 2) as pool:
        it = pool.map(square_later, tasks(), {"delay": 0.0, "n": 0})
        first = next(it)
        assert first["task"] == 0 and len(pulled) <= AHEAD * 2 + 1
        a = [first, *it]
        assert [r["task"] for r in a] == list(range(30))
        b = list(pool.map(square_later, range(4), {"delay": 0.0, "n": 0, "add": 2}))
        assert {r["pid"] for r in b} <= {r["pid"] for r in a} and [r["add"] for r in b] == [2] * 4
        with pytest.raises(ValueError, match="task 1 is bad input"):
            list(pool.map(fail, range(4), {"bad": 1, "how": "value"}))
        assert list(pool.map(add, [1, 2], {"add": 3})) == [4, 5]  # on new workers
    assert not pool._procs


def test_ray_missing_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'policylens\[ray\]'"):
        list(pmap(add, [1], {"add": 0}, backend="ray", workers=2))


def test_bad_backend_and_workers():
    with pytest.raises(ValueError, match="unknown backend 'dask'"):
        pmap(add, [1], backend="dask")
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        pmap(add, [1], workers=0)


def test_chunks():
    assert chunks(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert chunks([], 3) == []
