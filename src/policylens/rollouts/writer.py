"""Writing a rollouts store: :class:`StoreWriter` appends whole episodes, creating or resuming the store.

The layout, the commit protocol and what readers see are described in :mod:`policylens.rollouts.store`. Every
array is created to write each of its chunks (even one equal to the fill value) and to end each chunk with a
crc32c checksum, so readers can tell a missing or corrupt chunk (:mod:`policylens.rollouts.integrity`).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

from .store import (
    DERIVED,
    FORMAT,
    INDEX_CHUNK,
    INDEX_FIELDS,
    OBS_CHUNK,
    SMALL_CHUNK,
    STATE_DATA,
    STATE_DATA_CHUNK,
    STATE_END,
    _no_store,
    _open_group,
    check_length,
    frame_fields,
    read_commit,
)

if TYPE_CHECKING:
    from zarr.core.array_spec import ArrayConfigParams

# every chunk is written, even one equal to the fill value (the cast: zarr marks "order" NotRequired through
# typing.NotRequired, which a check for Python 3.10 does not see)
WRITE_ALL = cast("ArrayConfigParams", {"write_empty_chunks": True})


def codecs_for(dtype) -> list:
    """Blosc+zstd (byte-shuffled) for numbers: ~55 B/frame for MiniGrid RGB obs vs 9408 raw; zstd for strings;
    then a crc32c checksum of the chunk."""
    if dtype is str:
        return [ZstdCodec(level=5), Crc32cCodec()]
    return [BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"), Crc32cCodec()]


def writing():
    """The zarr settings every write to a store runs under: arrays opened here write every chunk."""
    return zarr.config.set({"array.write_empty_chunks": True})


def chunk_frames(shape: tuple, dtype) -> int:
    """Frames per chunk: a few hundred for images, else up to SMALL_CHUNK keeping a chunk near 4 MB raw."""
    if len(shape) >= 2:
        return OBS_CHUNK
    if dtype is str:
        return 2048
    frame_bytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return int(min(SMALL_CHUNK, max(OBS_CHUNK, (1 << 22) // max(frame_bytes, 1))))


class StoreWriter:
    """Appends whole episodes to a store, creating it or resuming it (truncating a torn tail).

    ``fields`` (for a new store): ``{name: (shape without frames, dtype)}``; ``"env_state"`` stores bytes.
    Holds an exclusive lock on the store directory until :meth:`close`.
    """

    def __init__(self, path, fields: dict | None = None, attrs: dict | None = None):
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            if fields is None:
                _no_store(self.path)
            if self.path.exists() and any(self.path.iterdir()):
                raise FileExistsError(f"{self.path} exists and is not a rollouts store; choose another --out")
            self._create(fields, attrs or {})
        self._lock_fd: int | None = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise RuntimeError(f"another process is writing to the rollouts store {self.path}") from None
        with writing():
            self.group = _open_group(self.path, "a")
        self.num_episodes, self.num_frames, self.index = read_commit(self.group, self.path)
        self.fields = frame_fields(self.group)
        self._cache: dict = {}
        self._truncate()

    def array(self, name: str):
        """A store array by path (``obs``, ``episodes/length``), opened once."""
        if name not in self._cache:
            with writing():
                self._cache[name] = self.group[name]
        return self._cache[name]

    # ----------------------------------------------------------------------------------------------
    def _create(self, fields: dict, attrs: dict) -> None:
        """Build the empty store beside ``path`` and rename it into place, so no reader sees it half made."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.creating")
        group = zarr.open_group(str(tmp), mode="w", attributes={**attrs, "format": FORMAT, "fields": list(fields)})
        for name, (shape, dtype) in fields.items():
            if name == "env_state":
                group.create_array(STATE_END, shape=(0,), chunks=(SMALL_CHUNK,), dtype="int64",
                                   compressors=codecs_for(np.int64), config=WRITE_ALL)
                group.create_array(STATE_DATA, shape=(0,), chunks=(STATE_DATA_CHUNK,), dtype="uint8",
                                   compressors=codecs_for(np.uint8), config=WRITE_ALL)
                continue
            group.create_array(name, shape=(0, *shape), chunks=(chunk_frames(shape, dtype), *shape), dtype=dtype,
                               compressors=codecs_for(dtype), config=WRITE_ALL)
        episodes = group.create_group("episodes", attributes={"num_episodes": 0, "num_frames": 0})
        for name, dtype in INDEX_FIELDS.items():
            episodes.create_array(name, shape=(0,), chunks=(INDEX_CHUNK,), dtype=dtype, compressors=codecs_for(dtype),
                                  config=WRITE_ALL)
        try:
            os.rename(tmp, self.path)  # replaces an empty directory; fails if another writer got there first
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not (self.path / "zarr.json").is_file():
                raise

    def _truncate(self) -> None:
        """Cut every array back to the commit (a torn append leaves longer arrays behind)."""
        for p in self.path.rglob("*.partial"):  # zarr's temporary files left by a killed write
            p.unlink(missing_ok=True)
        n = self.num_frames
        for name in self.arrays():
            arr = self.array(name)
            keep = n
            if name not in DERIVED and name != STATE_DATA:
                check_length(arr, self.path / name, n)
            if name == STATE_DATA:
                keep = int(self.array(STATE_END)[n - 1]) if n else 0
            elif name in DERIVED:
                keep = min(int(arr.attrs.get("num_frames", 0)), n)
            if arr.shape[0] != keep:
                arr.resize((keep, *arr.shape[1:]))
        for name in INDEX_FIELDS:
            arr = self.array(f"episodes/{name}")
            if arr.shape[0] != self.num_episodes:
                arr.resize((self.num_episodes,))

    def arrays(self) -> list:
        """Every frame-indexed array in the store (plus env_state_data)."""
        names = [f for f in self.fields if f != "env_state"]
        if "env_state" in self.fields:
            names += [STATE_END, STATE_DATA]
        return names + [d for d in DERIVED if d in self.group]

    @staticmethod
    def write_at(arr, at: int, data) -> None:
        """Write ``data`` at ``[at, at + len)`` and make that the array's end."""
        if arr.shape[0] == at:
            arr.append(data, axis=0)  # resize + write in one call
        else:
            arr.resize((at + len(data), *arr.shape[1:]))
            arr[at:at + len(data)] = data

    def append(self, episodes: list) -> None:
        """Append finished episodes: dicts of per-step fields ``(T, ...)`` plus ``cause`` and ``return``.

        Frames first, then the index, then the commit, so a kill at any point keeps the previous commit.
        """
        if not episodes:
            return
        f0, e0 = self.num_frames, self.num_episodes
        lengths = np.array([len(ep["done"]) for ep in episodes], np.int64)  # (e,)
        for name in self.fields:
            if name == "env_state":
                self._append_states([s for ep in episodes for s in ep["env_state"]], f0)
            else:
                self.write_at(self.array(name), f0, np.concatenate([np.asarray(ep[name]) for ep in episodes]))
        index = {
            "start": f0 + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),  # (e,)
            "length": lengths,
            "level_seed": np.array([ep["level_seed"][0] for ep in episodes], np.int64),
            "return": np.array([ep["return"] for ep in episodes], np.float64),
            "cause": np.array([str(ep["cause"]) for ep in episodes], dtype=object),
        }
        for name, values in index.items():
            self.write_at(self.array(f"episodes/{name}"), e0, values)
        n_ep, n_fr = e0 + len(episodes), f0 + int(lengths.sum())
        self.array("episodes").update_attributes({"num_episodes": n_ep, "num_frames": n_fr})  # the commit: one write
        self.num_episodes, self.num_frames = n_ep, n_fr
        self.index = {k: np.concatenate([v, index[k]]) for k, v in self.index.items()}
        self.index["cause"] = self.index["cause"].astype(str)

    def _append_states(self, states: list, f0: int) -> None:
        base = int(self.array(STATE_END)[f0 - 1]) if f0 else 0
        sizes = np.array([len(s) for s in states], np.int64)  # (T,)
        self.write_at(self.array(STATE_DATA), base, np.frombuffer(b"".join(states), np.uint8))
        self.write_at(self.array(STATE_END), f0, base + np.cumsum(sizes))

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
