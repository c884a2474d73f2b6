"""Whole stores: a missing or corrupt chunk of a rollouts store is an error naming the episode and the field.

Every array a :class:`~policylens.rollouts.StoreWriter` creates writes each of its chunks (none is left out
for equalling the fill value, as zarr does by default) and ends each chunk with a crc32c checksum. So a chunk
file that is not there is damage, and a chunk whose bytes changed fails its checksum when read. Arrays without
the checksum (stores made by earlier versions of the writer) may lack chunks that were all fill value; in them
only ``obs`` is checked for missing chunks (no env shows a whole chunk of all-black frames).

:meth:`Rollouts.read <policylens.rollouts.store.Rollouts.read>` checks the chunks it reads are there (a file
test per chunk); :func:`verify` reads every chunk of a store (``policylens record --verify STORE``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

ALWAYS_CHECKED = ("obs",)  # fields checked for missing chunks even without a checksum


class StoreDamage(ValueError):
    """A chunk of a rollouts store is missing or corrupt (a ValueError: bad input, reported without a trace)."""


def checksummed(arr) -> bool:
    """Whether the array's chunks carry a crc32c checksum (and so every chunk was written)."""
    from zarr.codecs import Crc32cCodec

    return any(isinstance(c, Crc32cCodec) for c in getattr(arr.metadata, "codecs", ()))


def chunk_span(arr, start: int, stop: int) -> range:
    """Chunk indices (along the first axis) holding items ``[start, stop)``."""
    size = int(arr.chunks[0])
    stop = min(stop, int(arr.shape[0]))
    return range(start // size, -(-stop // size)) if stop > start else range(0)


def chunk_items(arr, i: int) -> tuple:
    """``(first, stop)`` items (along the first axis) of chunk ``i``."""
    size = int(arr.chunks[0])
    return i * size, min((i + 1) * size, int(arr.shape[0]))


def chunk_file(folder: Path, arr, i: int) -> Path:
    """The file of chunk ``i`` (the first-axis chunk; the other axes are whole) of the array stored in ``folder``."""
    return Path(folder) / arr.metadata.encode_chunk_key((i,) + (0,) * (arr.ndim - 1))


def missing_chunks(arr, folder: Path, name: str, start: int, stop: int) -> list:
    """Chunks holding items ``[start, stop)`` whose file is not there (only where a missing file is damage)."""
    if not (checksummed(arr) or name in ALWAYS_CHECKED):
        return []
    return [i for i in chunk_span(arr, start, stop) if not chunk_file(folder, arr, i).is_file()]


def bad_chunk(arr, start: int, stop: int) -> "tuple[int, Exception] | None":
    """The first chunk holding items ``[start, stop)`` that cannot be read, with its error (None: all read)."""
    for i in chunk_span(arr, start, stop):
        a, b = chunk_items(arr, i)
        try:
            arr[a:b]
        except Exception as e:  # noqa: BLE001  (any codec error: checksum, decompression, truncation)
            return i, e
    return None


def episodes_text(episodes) -> str:
    """``episode 3`` / ``episodes 3-5`` / ``episodes 1, 4``."""
    eps = sorted({int(e) for e in episodes})
    if len(eps) == 1:
        return f"episode {eps[0]}"
    if eps == list(range(eps[0], eps[-1] + 1)):
        return f"episodes {eps[0]}-{eps[-1]}"
    return "episodes " + ", ".join(map(str, eps))


def damage(store_path, field: str, episodes, what: str) -> StoreDamage:
    """The error for a damaged chunk: the store, the field, the episodes it holds, what is wrong, what to run."""
    return StoreDamage(f"rollouts store {store_path}: field {field!r} of {episodes_text(episodes)} is damaged "
                       f"({what}); `policylens record --verify {store_path}` lists every damaged chunk")


def frame_episodes(store, a: int, b: int) -> np.ndarray:
    """Episodes holding any of the committed frames ``[a, b)``."""
    b = min(b, store.num_frames)
    return np.unique(store.episode_of(np.arange(a, max(b, a + 1), dtype=np.int64))) if b > a else np.array([], int)


def state_episodes(store, a: int, b: int) -> np.ndarray:
    """Episodes whose env-state bytes overlap bytes ``[a, b)`` of ``env_state_data``."""
    from .store import STATE_END

    try:
        ends = store._arrays[STATE_END][:store.num_frames]  # (F,) end offset of each frame's bytes
    except Exception:  # noqa: BLE001  (damaged too: reported on its own)
        return np.array([], int)
    first = int(np.searchsorted(ends, a, side="right"))  # the first frame ending after byte a
    last = int(np.searchsorted(ends, b, side="left"))  # the last frame starting before byte b
    return frame_episodes(store, first, last + 1)


def _arrays(store) -> list:
    """``(field, array name, array, items covered, episodes of items [a, b))`` for every array of the store."""
    from functools import partial

    from .store import INDEX_FIELDS, STATE_DATA, STATE_END

    out = []
    for name, arr in store._arrays.items():
        if name == STATE_DATA:
            try:
                covered = int(store._arrays[STATE_END][store.num_frames - 1]) if store.num_frames else 0
            except Exception:  # noqa: BLE001  (env_state_end damaged: reported on its own; check every chunk)
                covered = int(arr.shape[0])
            out.append(("env_state", name, arr, covered, partial(state_episodes, store)))
        else:
            field = "env_state" if name == STATE_END else name
            out.append((field, name, arr, store._derived.get(name, store.num_frames), partial(frame_episodes, store)))
    for name in INDEX_FIELDS:
        out.append((f"episodes/{name}", f"episodes/{name}", store._group["episodes"][name], store.num_episodes,
                    lambda a, b: np.arange(a, min(b, store.num_episodes))))
    return out


def verify(path) -> dict:
    """Read every chunk of the store at ``path``: ``{"path", "episodes", "frames", "chunks" (read), "problems":
    [{"field", "chunk", "episodes", "problem"}]}`` (no problems: the store is whole)."""
    from .store import open as open_store

    store = open_store(path)
    problems, chunks = [], 0
    for field, name, arr, covered, eps in _arrays(store):
        for i in chunk_span(arr, 0, covered):
            chunks += 1
            a, b = chunk_items(arr, i)
            key = chunk_file(Path(store.path) / name, arr, i)
            problem = None
            if missing_chunks(arr, Path(store.path) / name, field, a, b):
                problem = "missing"
            elif key.is_file() or checksummed(arr):
                failed = bad_chunk(arr, a, b)
                problem = f"corrupt: {failed[1]}" if failed else None
            if problem:
                problems.append({"field": field, "chunk": str(key.relative_to(store.path)),
                                 "episodes": [int(e) for e in eps(a, b)], "problem": problem})
    return {"path": str(store.path), "episodes": len(store), "frames": store.num_frames, "chunks": chunks,
            "problems": problems}


def format_verify(report: dict) -> str:
    """The lines ``policylens record --verify`` prints."""
    head = f"{report['path']}: {report['episodes']} episodes, {report['frames']} frames, {report['chunks']} chunks read"
    if not report["problems"]:
        return head + "; the store is whole"
    lines = [head + f"; {len(report['problems'])} damaged chunk(s):"]
    for p in report["problems"]:
        where = episodes_text(p["episodes"]) if p["episodes"] else "episodes unknown"
        lines.append(f"  {p['field']} of {where}: {p['chunk']} is {p['problem']}")
    return "\n".join(lines)
