"""Plain data as bytes, for what crosses between the driver and its workers: safetensors + JSON, no pickle.

>>> blob = pack({"obs": np.zeros((4, 7, 7, 3), np.uint8), "cause": "wall", "state": None})
>>> unpack(blob)["obs"].shape
(4, 7, 7, 3)

What packs: ``None``, bools, ints, floats, strings; lists and tuples; dicts (keys: str, int, float, bool or
None); numpy arrays (numbers and bools go to safetensors; arrays of strings, of dtype ``object`` or ``U``, to
JSON) and numpy scalars; torch tensors (returned as CPU tensors); ``bytes``. Each comes back as the same type,
and arrays with their dtype, shape and values exactly. Anything else is a TypeError naming it.

Layout: ``MAGIC``, the JSON's length (8 bytes, little-endian), the JSON (the structure, arrays named by
number), the safetensors blob (the arrays, bytes as uint8).
"""
from __future__ import annotations

import json
import struct

import numpy as np

MAGIC = b"PLW1"
_KEYS = (str, int, float, bool, type(None))


def pack(obj) -> bytes:
    """``obj`` as bytes (see the module doc for what packs)."""
    from safetensors.numpy import save

    arrays: dict[str, np.ndarray] = {}

    def add(array: np.ndarray) -> str:
        name = str(len(arrays))
        arrays[name] = array if array.flags.c_contiguous else array.copy(order="C")  # (keeps 0-d arrays 0-d)
        return name

    def enc(x):
        if x is None or isinstance(x, (bool, int, float, str)):
            return ["j", x]
        if isinstance(x, bytes):
            return ["b", add(np.frombuffer(x, np.uint8))]
        if isinstance(x, dict):
            bad = [k for k in x if not isinstance(k, _KEYS)]
            if bad:
                raise TypeError(f"pack: dict key {bad[0]!r} of type {type(bad[0]).__name__} (keys must be str, "
                                "int, float, bool or None)")
            return ["d", [[k, enc(v)] for k, v in x.items()]]
        if isinstance(x, (list, tuple)):
            if x and all(isinstance(v, bytes) for v in x):  # e.g. env states: one buffer and the sizes
                sizes = [len(v) for v in x]
                return ["B" if isinstance(x, list) else "Bt", add(np.frombuffer(b"".join(x), np.uint8)), sizes]
            return ["l" if isinstance(x, list) else "t", [enc(v) for v in x]]
        if isinstance(x, np.generic):
            return ["n", add(np.asarray(x))]
        if isinstance(x, np.ndarray):
            if x.dtype.kind in "OU":
                flat = [str(v) if isinstance(v, (str, np.str_)) else _not_str(v) for v in x.reshape(-1)]
                return ["s", flat, list(x.shape)] if x.dtype.kind == "O" else ["u", flat, list(x.shape), x.dtype.str]
            return ["a", add(x)]
        if type(x).__module__.startswith("torch") and hasattr(x, "detach"):
            return ["T", add(x.detach().cpu().numpy())]
        raise TypeError(f"pack: cannot send a {type(x).__module__}.{type(x).__qualname__} to a worker (send plain "
                        "data: numbers, strings, lists, dicts, numpy arrays, tensors, bytes)")

    body = json.dumps(enc(obj), separators=(",", ":")).encode()
    return MAGIC + struct.pack("<Q", len(body)) + body + save(arrays)


def _not_str(v):
    raise TypeError(f"pack: an object array holds a {type(v).__name__}; only arrays of strings are sent")


def unpack(blob: bytes):
    """The object :func:`pack` turned into ``blob``."""
    from safetensors.numpy import load

    if not isinstance(blob, (bytes, bytearray, memoryview)) or bytes(blob[:4]) != MAGIC:
        raise ValueError("unpack: not a packed message (wrong magic)")
    (n,) = struct.unpack("<Q", bytes(blob[4:12]))
    tree = json.loads(bytes(blob[12:12 + n]))
    arrays = load(bytes(blob[12 + n:]))

    def dec(node):
        tag = node[0]
        if tag == "j":
            return node[1]
        if tag == "d":
            return {k: dec(v) for k, v in node[1]}
        if tag in ("l", "t"):
            items = [dec(v) for v in node[1]]
            return items if tag == "l" else tuple(items)
        if tag in ("B", "Bt"):
            buf, ends = arrays[node[1]].tobytes(), np.cumsum([0, *node[2]])
            items = [buf[a:b] for a, b in zip(ends[:-1], ends[1:])]
            return items if tag == "B" else tuple(items)
        if tag == "b":
            return arrays[node[1]].tobytes()
        if tag == "n":
            return arrays[node[1]][()]
        if tag == "a":
            return arrays[node[1]]
        if tag in ("s", "u"):
            out = np.empty(len(node[1]), dtype=object)
            out[:] = node[1]
            out = out.reshape(node[2])
            return out if tag == "s" else out.astype(node[3])
        if tag == "T":
            import torch

            return torch.from_numpy(arrays[node[1]].copy())
        raise ValueError(f"unpack: unknown node {tag!r}")

    return dec(tree)
