"""The explorer's per-trajectory analyses, run here or on workers (``policylens explore RUN --backend ray``).

:class:`TrajectoryMap` maps a module-level analysis ``fn(agent, *per_trajectory, *common)`` over trajectories:
here on the agent in hand, or on a :class:`~policylens.parallel.Pool` of local processes or Ray workers, each
loading the agent from its checkpoint files, with results in trajectory order. ``fn`` travels by name (only
``policylens`` functions), its arguments and results as plain data (:mod:`policylens.wire`); a
:class:`~policylens.factors.Directions` among the common arguments is sent as its fields.
"""
from __future__ import annotations

import importlib

from ..parallel import Pool, agent_files, with_agent


class TrajectoryMap:
    """``over(fn, items, *common)`` -> ``[fn(agent, *item, *common) for item in items]``, here or on workers."""

    def __init__(self, agent, checkpoint=None, backend: str = "process", workers: int = 1,
                 ray_address: "str | None" = None, device: str = "cpu"):
        self.agent, self.pool = agent, Pool(backend, workers, ray_address)
        if not self.pool.local and checkpoint is None:
            raise ValueError(f"workers={workers} / backend={backend!r} load the agent from its checkpoint: "
                             "pass the checkpoint folder")
        self.shared = None if self.pool.local else {"agent": agent_files(checkpoint), "device": str(device)}

    def __call__(self, fn, items, *common, progress=None) -> list:
        items = [tuple(item) for item in items]
        done = (lambda i, result: progress(1)) if progress else None
        if self.pool.local:
            return list(self.pool.map(_call, items, context={"agent": self.agent, "fn": fn, "common": common},
                                      on_done=done))
        assert self.shared is not None  # made for workers
        shared = {**self.shared, "fn": f"{fn.__module__}:{fn.__qualname__}", "common": [_send(c) for c in common]}
        return list(self.pool.map(_call, items, shared, setup=_setup, on_done=done,
                                  what=f"{fn.__name__} of trajectory"))

    def close(self) -> None:
        self.pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _call(context: dict, item: tuple):
    return context["fn"](context["agent"], *item, *context["common"])


def _setup(shared: dict) -> dict:
    module, _, name = shared["fn"].partition(":")
    if module != "policylens" and not module.startswith("policylens."):
        raise ValueError(f"a trajectory analysis must be a policylens function, not {shared['fn']!r}")
    fn = importlib.import_module(module)
    for part in name.split("."):
        fn = getattr(fn, part)
    return {**with_agent(shared), "fn": fn, "common": [_receive(c) for c in shared["common"]]}


def _send(value):
    from ..factors import Directions

    if isinstance(value, Directions):
        return {"directions": [value.vectors, value.layer, list(value.labels), value.method, value.meta]}
    return {"value": value}


def _receive(sent: dict):
    if "directions" in sent:
        from ..factors import Directions

        vectors, layer, labels, method, meta = sent["directions"]
        return Directions(vectors, layer, tuple(labels), method, meta)
    return sent["value"]
