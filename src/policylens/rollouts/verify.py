"""``policylens record --verify``: read every chunk of a store and list what is missing or corrupt, by episode
(the chunk checks are :mod:`.integrity`'s)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .integrity import (
    bad_chunk,
    checksummed,
    chunk_file,
    chunk_items,
    chunk_span,
    episodes_text,
    frame_episodes,
    missing_chunks,
    state_episodes,
)
from .layout import INDEX_FIELDS, STATE_DATA, STATE_END
from .store import open as open_store


def _arrays(store) -> list:
    """``(field, array name, array, items covered, episodes of items [a, b))`` for every array of the store."""
    from functools import partial

    out: list[tuple] = []
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
