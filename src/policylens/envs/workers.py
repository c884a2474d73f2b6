"""One vector env stepped by several processes: the batch split into shards, each stepping in its own process.

>>> env = make("minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs=onehot", num_envs=16, seed=0, workers=2)

MiniGrid and ``gym:`` envs step in Python, one env after another, so a PPO update on them waits on the env; with
``workers=K`` the first shard steps in this process while the other ``K - 1`` step in their own, at the same time.
That pays on machines with physical cores to spare; where two logical CPUs share one core, as on a small cloud
machine, the shards step no faster than one process.
Env ``i`` of the batch draws its episodes from the same seed whatever the split (:func:`policylens.envs.base.env_rngs`),
so ``workers`` changes the speed and nothing else: observations, rewards, episode ends, causes and states equal
those of one process, step for step (``tests/test_env_workers.py``).

Messages between processes are JSON with the arrays' raw bytes after it (:func:`pack`, :func:`unpack`): nothing is
pickled. Workers are started with ``spawn`` (no fork of a process holding torch's threads) and stop with the env.
"""
from __future__ import annotations

import base64
import json
import multiprocessing as mp

import numpy as np

from .base import VecEnv
from .families import make_batch
from .spec import parse_spec


# ---- messages: JSON + raw array bytes ------------------------------------------------------------
def pack(obj) -> bytes:
    """``obj`` (dicts, lists, tuples, numbers, strings, bytes, numpy arrays and scalars) as bytes."""
    arrays: list = []

    def encode(x):
        if isinstance(x, np.ndarray):
            arrays.append(np.ascontiguousarray(x))
            return {"__array__": len(arrays) - 1, "dtype": x.dtype.str, "shape": list(x.shape)}
        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, bytes):
            return {"__bytes__": base64.b64encode(x).decode()}
        if isinstance(x, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in x):
                return {k: encode(v) for k, v in x.items()}
            return {"__dict__": [[encode(k), encode(v)] for k, v in x.items()]}
        if isinstance(x, (list, tuple)):
            return [encode(v) for v in x]
        if x is None or isinstance(x, (str, int, float, bool)):
            return x
        raise TypeError(f"cannot send a {type(x).__name__} between env processes")

    header = json.dumps(encode(obj)).encode()
    return len(header).to_bytes(8, "little") + header + b"".join(a.tobytes() for a in arrays)


def unpack(data: bytes):
    """The object :func:`pack` wrote (tuples come back as lists)."""
    n = int.from_bytes(data[:8], "little")
    header, offset = json.loads(data[8:8 + n]), 8 + n

    def decode(x):  # arrays come in the order pack met them, so each one's bytes follow the one before
        nonlocal offset
        if isinstance(x, list):
            return [decode(v) for v in x]
        if isinstance(x, dict):
            if "__array__" in x:
                dtype, shape = np.dtype(x["dtype"]), tuple(x["shape"])
                count = int(np.prod(shape))
                array = np.frombuffer(data, dtype, count=count, offset=offset).reshape(shape).copy()
                offset += dtype.itemsize * count
                return array
            if "__bytes__" in x:
                return base64.b64decode(x["__bytes__"])
            if "__dict__" in x:
                return {decode(k): decode(v) for k, v in x["__dict__"]}
            return {k: decode(v) for k, v in x.items()}
        return x

    return decode(header)


# ---- the worker process --------------------------------------------------------------------------
def _serve(conn, spec: str, num_envs: int, seed, shard: tuple) -> None:
    """A worker's loop: make its shard, then answer ``(method, args)`` messages until ``close``."""
    env = make_batch(parse_spec(spec), num_envs=num_envs, seed=seed, shard=tuple(shard))
    conn.send_bytes(pack(None))
    while True:
        method, args = unpack(conn.recv_bytes())
        if method == "close":
            env.close()
            conn.close()
            return
        try:
            conn.send_bytes(pack(["ok", getattr(env, method)(*args)]))
        except Exception as e:  # noqa: BLE001 - the error goes back to the parent, which raises it
            conn.send_bytes(pack(["error", f"{type(e).__name__}: {e}"]))


def split(num_envs: int, workers: int) -> list:
    """Shard sizes: ``num_envs`` in ``workers`` near-equal parts, the larger first; never an empty shard."""
    workers = max(1, min(workers, num_envs))
    return [num_envs // workers + (k < num_envs % workers) for k in range(workers)]


class WorkerVecEnv(VecEnv):
    """``num_envs`` envs of one spec in ``workers`` shards: the first in this process, the others each in a
    process of its own. Behaves as the one-process env, step for step."""

    def __init__(self, spec, num_envs: int, seed: "int | None", workers: int):
        self.sizes = split(num_envs, workers)
        firsts = np.cumsum([0, *self.sizes[:-1]]).tolist()
        self._local = make_batch(parse_spec(spec), num_envs=self.sizes[0], seed=seed, shard=(0, num_envs))
        for name in ("observation_space", "action_space", "action_names", "spec", "obs_scale"):
            setattr(self, name, getattr(self._local, name))
        self.num_envs = num_envs  # each shard tracks its own episodes; snapshot/restore join and split them
        ctx = mp.get_context("spawn")
        self._conns, self._procs = [], []
        try:
            for first, n in zip(firsts[1:], self.sizes[1:]):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(child, str(self.spec), n, seed, (first, num_envs)), daemon=True)
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
            for conn in self._conns:
                unpack(conn.recv_bytes())
        except BaseException:
            self.close()
            raise

    def _call(self, method: str, *remote_args, local_args=None) -> list:
        """Call ``method`` on every shard, the remote ones first so they work while the local one does; the
        shards' results in order. ``remote_args[k]`` go to shard ``k + 1`` when given per shard."""
        for k, conn in enumerate(self._conns):
            conn.send_bytes(pack([method, [a[k] for a in remote_args] if remote_args else []]))
        try:
            results = [getattr(self._local, method)(*(local_args or []))]
        finally:  # every worker answers, even when this shard failed, so the next call reads its own answers
            answers = [unpack(conn.recv_bytes()) for conn in self._conns]
        for status, value in answers:
            if status == "error":
                raise RuntimeError(f"env worker, {method}: {value}")
            results.append(value)
        return results

    def _parts(self, values) -> list:
        """``values`` (one per env) cut into the shards' parts."""
        edges = np.cumsum(self.sizes)[:-1]
        return np.split(np.asarray(values), edges) if isinstance(values, np.ndarray) else \
            [list(values[a:b]) for a, b in zip([0, *edges], [*edges, len(values)])]

    def reset(self, seed: "int | None" = None) -> np.ndarray:
        seeds = [seed] * len(self._conns)
        return np.concatenate(self._call("reset", seeds, local_args=[seed]))

    def step(self, actions):
        parts = self._parts(np.asarray(actions).reshape(self.num_envs))
        results = self._call("step", parts[1:], local_args=[parts[0]])
        obs, rew, done, info = zip(*results)
        return (np.concatenate(obs), np.concatenate(rew).astype(np.float32), np.concatenate(done).astype(bool),
                [i for part in info for i in part])

    def observe(self) -> np.ndarray:
        return np.concatenate(self._call("observe"))

    def get_state(self) -> list:
        return [s for part in self._call("get_state") for s in part]

    def set_state(self, states: list) -> None:
        if len(states) != self.num_envs:
            raise ValueError(f"set_state got {len(states)} states for {self.num_envs} envs")
        parts = self._parts(list(states))
        self._call("set_state", parts[1:], local_args=[parts[0]])

    def snapshot(self) -> dict:
        trackers = self._call("snapshot")
        return {"states": [s for t in trackers for s in t["states"]],
                "tracker": {key: [v for t in trackers for v in t["tracker"][key]] for key in ("returns", "lengths")}}

    def restore(self, snap: dict) -> np.ndarray:
        states = self._parts(list(snap["states"]))
        tracker = {key: self._parts(list(snap["tracker"][key])) for key in ("returns", "lengths")}
        shards = [{"states": states[k], "tracker": {key: tracker[key][k] for key in tracker}}
                  for k in range(len(self.sizes))]
        return np.concatenate(self._call("restore", shards[1:], local_args=[shards[0]]))

    def entities(self) -> "list | None":
        parts = self._call("entities")
        return None if parts[0] is None else [e for part in parts for e in part]

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send_bytes(pack(["close", []]))
                conn.close()
            except OSError:
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        self._conns, self._procs = [], []
        self._local.close()
