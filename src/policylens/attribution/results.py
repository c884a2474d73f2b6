"""Saved attributions: arrays + JSON metadata in a ``.zarr`` directory or an ``.npz`` file.

Arrays: ``attribution`` (F, ...) float32, ``episode`` / ``step`` / ``frame`` (F,) int64 (the episode, the
step within it, the frame in the rollouts store) and, for integrated gradients, ``delta`` (F,) float32 (the
completeness delta). The metadata (layer, target, method, steps, episodes, delta summary, ...) is the zarr
group's attributes, or the ``meta`` entry (a JSON string) of the npz. Files are written aside and renamed
into place, so an interrupted run leaves no half-written result under the final name.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

FORMAT = "policylens.attribution/1"
SUFFIXES = (".zarr", ".npz")


def check_path(path) -> Path:
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"attribution output {path} must end in .zarr or .npz")
    return path


def save_attributions(path, arrays: dict, meta: dict) -> Path:
    """Write ``arrays`` (name -> numpy array) and ``meta`` (JSON-able dict) to ``path`` (.zarr or .npz)."""
    path = check_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.writing")
    meta = {**meta, "format": FORMAT}
    if path.suffix == ".npz":
        with open(tmp, "wb") as f:  # a file object: numpy adds no suffix
            np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, path)
        return path
    import zarr

    shutil.rmtree(tmp, ignore_errors=True)
    group = zarr.open_group(str(tmp), mode="w", attributes=meta)
    for name, value in arrays.items():
        value = np.ascontiguousarray(value)
        chunks = (min(256, max(1, value.shape[0])), *value.shape[1:]) if value.ndim else ()
        group.create_array(name, shape=value.shape, chunks=chunks, dtype=value.dtype)[...] = value
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    os.rename(tmp, path)
    return path


def load_attributions(path) -> tuple:
    """``(arrays, meta)`` from a file written by :func:`save_attributions`."""
    path = check_path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved attributions at {path}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k != "meta"}
            meta = json.loads(str(data["meta"]))
    else:
        import zarr

        group = zarr.open_group(str(path), mode="r")
        meta = dict(group.attrs)
        arrays = {name: arr[...] for name, arr in group.arrays()}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a policylens attribution result (format {meta.get('format')!r})")
    return arrays, meta
