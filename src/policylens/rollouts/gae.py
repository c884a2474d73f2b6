"""Generalised advantage estimation over recorded data, alone or written into a store.

``advantages[t] = sum_k (gamma * lam)^k * delta[t + k]`` within an episode, with
``delta[t] = reward[t] + gamma * value[t + 1] * (1 - done[t]) - value[t]``; ``returns = advantages + value``.
An episode's last frame (``done``) does not bootstrap; episodes cut by ``max_steps`` are treated the same.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..gae import gae  # noqa: F401  (re-exported: usable alone on recorded arrays)
from .store import DERIVED, SMALL_CHUNK
from .writer import WRITE_ALL, StoreWriter, codecs_for


def add_advantages(store, gamma: float = 0.999, lam: float = 0.95, block_frames: int = 1 << 20) -> Path:
    """Write fields ``advantages`` and ``returns`` into ``store`` from its reward/value/done.

    Works through whole episodes a block at a time (memory stays bounded), and only over episodes not yet
    covered when the store already holds advantages for the same ``gamma``/``lam``.
    """
    with StoreWriter(store) as w:
        group, n = w.group, w.num_frames
        params = {"gamma": float(gamma), "lam": float(lam)}
        done_upto, arrays = n, {}
        for name in DERIVED:
            arr = w.array(name) if name in w.arrays() else None
            if arr is None or any(arr.attrs.get(k) != v for k, v in params.items()):
                arr = group.create_array(name, shape=(0,), chunks=(SMALL_CHUNK,), dtype="float32",
                                         compressors=codecs_for(np.float32), overwrite=True, config=WRITE_ALL,
                                         attributes={**params, "num_frames": 0})
            arrays[name] = arr
            done_upto = min(done_upto, int(arr.attrs.get("num_frames", 0)))
        starts = w.index["start"]  # (E,)
        e = int(np.searchsorted(starts, done_upto))  # first episode not covered (coverage ends on a boundary)
        while e < w.num_episodes:
            a = int(starts[e])
            e_end = max(int(np.searchsorted(starts, a + block_frames, side="right")), e + 1)
            b = int(starts[e_end]) if e_end < w.num_episodes else n
            reward, value, done = (w.array(k)[a:b] for k in ("reward", "value", "done"))  # (b - a,) each
            adv, ret = gae(reward, value, done, gamma, lam)  # (b - a,)
            for name, values in zip(DERIVED, (adv, ret)):
                w.write_at(arrays[name], a, values)
            for name in DERIVED:
                arrays[name] = arrays[name].update_attributes({**params, "num_frames": b})  # one metadata write
            e = e_end
    return Path(store)
