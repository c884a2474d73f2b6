"""Frames for people: observations drawn as the env draws them, captions, signed heat overlays, grids, GIF / MP4.

Every function takes and returns uint8 RGB frame stacks ``(T, h, w, 3)``, so they compose::

    frames = render_obs(rollout_obs, "symbolic")                    # (T, 7*16, 7*16, 3) MiniGrid tiles
    frames = overlay(frames, cell_heat(grad_obs, "symbolic"))       # blue < 0 < red, alpha by magnitude
    frames = caption(frames, [f"{a}  v={v:.2f}" for a, v in ...])   # a text strip under each frame
    write_video(grid([frames, other]), "out/sample.gif", fps=4)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..envs.render import TILE, render_obs  # noqa: F401  (observations drawn as the env draws them)

VIDEO_SUFFIXES = (".gif", ".mp4")


def _stack(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, h, w, 3) RGB, got shape {frames.shape}")
    return frames.astype(np.uint8, copy=False)


def cell_heat(values, obs_kind: str) -> np.ndarray:
    """Per-cell heat ``(T, rows, cols)`` from per-input values ``(T, H, W, C)`` (a gradient w.r.t. observations,
    an attribution), summed over channels and laid out as :func:`render_obs` draws the frame (MiniGrid arrays are
    indexed [x, y]: transposed)."""
    values = np.asarray(values, np.float32)
    if values.ndim != 4:
        raise ValueError(f"values must be (T, H, W, C) like the observations, got shape {values.shape}")
    heat = values.sum(-1)  # (T, H, W)
    return heat if obs_kind == "pixels" else heat.transpose(0, 2, 1)


def overlay(frames, heat, scale: "float | None" = None, strength: float = 0.75) -> np.ndarray:
    """Signed ``heat`` ``(T, H, W)`` over ``frames`` ``(T, h, w, 3)`` (each cell stretched to its pixel block):
    red where positive, blue where negative, opacity ``strength * |heat| / scale`` (``scale``: the largest
    magnitude in all frames, so frames compare)."""
    frames, heat = _stack(frames), np.asarray(heat, np.float32)
    if heat.ndim != 3 or heat.shape[0] != frames.shape[0]:
        raise ValueError(f"heat must be (T, H, W) with T = {frames.shape[0]} frames, got shape {heat.shape}")
    t, h, w, _ = frames.shape
    if h % heat.shape[1] or w % heat.shape[2]:
        raise ValueError(f"frames of {h}x{w} pixels are not whole blocks of a {heat.shape[1]}x{heat.shape[2]} map")
    big = heat.repeat(h // heat.shape[1], 1).repeat(w // heat.shape[2], 2)  # (T, h, w)
    top = float(np.abs(heat).max()) if scale is None else float(scale)
    alpha = (strength * np.abs(big) / top).clip(0, 1)[..., None] if top > 0 else np.zeros((t, h, w, 1), np.float32)
    colour = np.where(big[..., None] >= 0, np.array([220, 30, 30], np.float32), np.array([30, 80, 230], np.float32))
    return np.rint(frames * (1 - alpha) + colour * alpha).astype(np.uint8)


def caption(frames, lines, height: int = 14, fit: bool = True) -> np.ndarray:
    """A black strip with one line of white text under each frame: ``lines`` has one string per frame.
    ``fit``: frames too narrow for the longest line are first enlarged by a whole factor (pixels repeated)."""
    from PIL import Image, ImageDraw

    frames = _stack(frames)
    if len(lines) != len(frames):
        raise ValueError(f"{len(lines)} captions for {len(frames)} frames")
    if fit and len(lines):
        measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        factor = int(np.ceil((max(measure.textlength(str(t)) for t in lines) + 4) / frames.shape[2]))
        if factor > 1:
            frames = frames.repeat(factor, 1).repeat(factor, 2)
    out = []
    for frame, text in zip(frames, lines):
        image = Image.new("RGB", (frame.shape[1], frame.shape[0] + height))
        image.paste(Image.fromarray(frame), (0, 0))
        ImageDraw.Draw(image).text((2, frame.shape[0] + 1), str(text), fill=(255, 255, 255))
        out.append(np.asarray(image))
    return np.stack(out)


def grid(stacks, columns: "int | None" = None, gap: int = 2) -> np.ndarray:
    """Frame stacks side by side (rows of ``columns``), each padded to the longest with its last frame."""
    stacks = [_stack(s) for s in stacks]
    if not stacks:
        raise ValueError("grid needs at least one frame stack")
    t = max(len(s) for s in stacks)
    h, w = max(s.shape[1] for s in stacks), max(s.shape[2] for s in stacks)
    columns = columns or len(stacks)
    rows = -(-len(stacks) // columns)
    out = np.zeros((t, rows * (h + gap) - gap, columns * (w + gap) - gap, 3), np.uint8)
    for k, s in enumerate(stacks):
        s = np.concatenate([s, np.repeat(s[-1:], t - len(s), 0)]) if len(s) < t else s
        y, x = (k // columns) * (h + gap), (k % columns) * (w + gap)
        out[:, y:y + s.shape[1], x:x + s.shape[2]] = s
    return out


def write_video(frames, path, fps: float = 4) -> Path:
    """Write ``frames`` ``(T, h, w, 3)`` to ``path``: ``.gif`` with Pillow (looping), ``.mp4`` (H.264) with PyAV
    (``pip install 'policylens[video]'``; a clear error without it)."""
    from PIL import Image

    frames, path = _stack(frames), Path(path)
    if path.suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"video {path}: expected a name ending in {' or '.join(VIDEO_SUFFIXES)}")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gif":
        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        return path
    try:
        import av
    except ImportError:
        raise ImportError("writing .mp4 needs PyAV: pip install 'policylens[video]' (or av), or write .gif") from None
    even = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]  # H.264 wants even sizes
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=max(1, round(fps)))
        stream.width, stream.height, stream.pix_fmt = even.shape[2], even.shape[1], "yuv420p"
        for frame in even:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())  # flush
    return path
