"""Rollouts: record an agent's episodes into a chunked, compressed, append-only zarr store and read them lazily.

>>> from policylens import rollouts
>>> rollouts.record(rollouts.RecordConfig(run="runs/x", episodes=100))   # -> runs/x/rollouts.zarr
>>> rollouts.record(rollouts.RecordConfig(run="runs/x", episodes=10_000, backend="ray", workers=32, out="big.zarr"))
>>> store = rollouts.open("runs/x/rollouts.zarr")
>>> len(store), store.fields, store.env, store.action_names
>>> ep = store.episode(0); ep["obs"]        # (T, H, W, C) uint8, read on access
>>> for batch in store.batches(("obs", "value"), batch_size=256, shuffle=True): ...

From the shell: ``python -m policylens.rollouts RUN --episodes 100`` (``--help`` lists the options).
The store layout and its commit protocol are described in :mod:`policylens.rollouts.store`; recording,
resuming and what a resumed recording guarantees in :mod:`policylens.rollouts.record`.
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .gae import add_advantages, gae
    from .record import RecordConfig, main, record
    from .store import FORMAT, Episode, Rollouts, open
    from .writer import StoreWriter

__all__ = ["record", "RecordConfig", "main", "open", "Rollouts", "Episode", "StoreWriter", "gae", "add_advantages",
           "FORMAT"]

lazy_exports(__name__)
