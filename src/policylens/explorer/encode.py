"""How the explorer's data reach the browser from disk: PNG sprite sheets, deflated uint8 arrays in base64,
and small JavaScript files that hand a JSON payload to the page.

Browsers refuse ``fetch()`` over ``file://``, but ``<script src>`` works, so every data file is
``PolicyLensExplorer.load("KIND", {...});``. JSON is written with ``ensure_ascii`` (no U+2028 surprises)
and the page shows every string with ``textContent``, never as HTML.
"""
from __future__ import annotations

import base64
import io
import json
import math
import zlib
from pathlib import Path

import numpy as np


def png_bytes(image: np.ndarray) -> bytes:
    """``(H, W, 3)`` / ``(H, W, 4)`` / ``(H, W)`` uint8 -> PNG file bytes (Pillow, maximum compression)."""
    from PIL import Image

    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"PNG images must be uint8, got {image.dtype}")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def png_data_url(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def display_rgb(obs: np.ndarray) -> tuple:
    """Observations ``(T, H, W, C)`` -> ``(T, H, W, 3)`` uint8 for display, and how they were made.

    RGB pixels stay as they are (``"rgb"``). Anything else (MiniGrid's symbolic or one-hot grids, one
    channel) is shown ``"scaled"``: its first three channels (one channel: grey), each stretched to 0..255
    by its largest value in these frames. Vectors ``(T, D)`` (``gym:`` envs such as CartPole) become a strip
    ``(T, 1, D, 3)``, one cell per feature (``"vector"``): red above zero, blue below, white at zero, each
    feature stretched by its largest magnitude in these frames.
    """
    obs = np.asarray(obs)
    if obs.ndim == 2:
        x = obs.astype(np.float32)
        top = np.abs(x).max(0, initial=0.0)  # (D,)
        x = x / np.where(top > 0, top, 1.0)  # (T, D) in [-1, 1]
        pos, neg = np.clip(x, 0, 1), np.clip(-x, 0, 1)
        rgb = np.stack([1 - neg, 1 - pos - neg, 1 - pos], -1) * 255  # (T, D, 3)
        return np.rint(rgb).clip(0, 255).astype(np.uint8)[:, None], "vector"
    if obs.ndim != 4:
        raise ValueError(f"observations must be images (T, H, W, C) or vectors (T, D), got shape {obs.shape}")
    c = obs.shape[-1]
    if c == 3 and obs.dtype == np.uint8 and obs.max(initial=0) > 15:
        return obs, "rgb"
    x = obs.astype(np.float32)
    x = np.repeat(x, 3, axis=-1) if c == 1 else x[..., :3]
    if x.shape[-1] < 3:  # two channels: pad with zeros
        x = np.concatenate([x, np.zeros((*x.shape[:-1], 3 - x.shape[-1]), np.float32)], -1)
    top = x.reshape(-1, 3).max(0)  # (3,)
    x = x * (255.0 / np.where(top > 0, top, 1.0))
    return np.rint(x).clip(0, 255).astype(np.uint8), "scaled"


def sprite_columns(count: int) -> int:
    """Tiles per row of a sheet of ``count`` square-ish tiles: near a square sheet."""
    return max(1, math.ceil(math.sqrt(count)))


def sprite_sheet(frames: np.ndarray, columns: "int | None" = None) -> tuple:
    """``(T, H, W, 3)`` uint8 -> ``(sheet (rows*H, columns*W, 3), columns)``; frame t at row t // columns,
    column t % columns (unused tiles black)."""
    frames = np.asarray(frames)
    t, h, w = frames.shape[:3]
    columns = columns or sprite_columns(t)
    rows = max(1, math.ceil(t / columns))
    sheet = np.zeros((rows * h, columns * w, frames.shape[3]), np.uint8)
    for i in range(t):
        r, c = divmod(i, columns)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = frames[i]
    return sheet, columns


def deflate_b64(array: np.ndarray, level: int = 9) -> str:
    """A uint8 array's bytes (C order), zlib-deflated and base64-encoded; the page inflates it with
    ``DecompressionStream("deflate")``."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 array, got {array.dtype}")
    return base64.b64encode(zlib.compress(array.tobytes(), level)).decode("ascii")


def inflate_b64(text: str, shape, dtype=np.uint8) -> np.ndarray:
    """Inverse of :func:`deflate_b64` (used by tests and the live server)."""
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=dtype).reshape(shape)


def rounded(values, digits: int = 5) -> list:
    """A float array as a JSON list with ``digits`` significant digits (the timeline needs no more)."""
    arr = np.asarray(values, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("values to show contain NaN or infinite entries")
    return [float(f"{v:.{digits}g}") for v in arr.reshape(-1)] if arr.ndim <= 1 else [rounded(r, digits) for r in arr]


def js_payload(kind: str, payload: dict) -> str:
    """The text of a data file: one call handing ``payload`` (JSON) to the page."""
    body = json.dumps(payload, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return f'PolicyLensExplorer.load({json.dumps(kind)}, {body});\n'


def write_js(path, kind: str, payload: dict) -> int:
    """Write a data file (see :func:`js_payload`); returns its size in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = js_payload(kind, payload)
    path.write_text(text, encoding="ascii")
    return len(text)


def read_js(path) -> tuple:
    """``(kind, payload)`` from a data file written by :func:`write_js` (for tests and the server)."""
    text = Path(path).read_text(encoding="ascii")
    prefix = "PolicyLensExplorer.load("
    if not text.startswith(prefix) or not text.rstrip().endswith(");"):
        raise ValueError(f"{path} is not an explorer data file")
    kind, _, body = text[len(prefix):].rstrip()[:-2].partition(", ")
    return json.loads(kind), json.loads(body)
