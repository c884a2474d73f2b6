"""How the explorer shows observations: MiniGrid's symbolic and one-hot views drawn with MiniGrid's own tiles
(:func:`policylens.envs.render.render_obs`, as the simulator's videos draw them), anything else as pixels
(:func:`~policylens.explorer.encode.display_rgb`); and the legend's images cut from those pictures.

MiniGrid's arrays are indexed ``[x, y]`` and so are the agent's layers over them, while the pictures are upright
(row = y): the page draws maps and boxes of such a view transposed (``"transposed": True``).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .encode import display_rgb

TILED = ("symbolic", "onehot")


def frame_view(env: str, obs_shape) -> dict:
    """How frames of ``env`` with observations of ``obs_shape`` ``(H, W, C)`` are drawn: ``{"kind": the env's
    observation kind or "", "tiles": bool, "transposed": bool, "tile": pixels per cell or None}``. Tiles for a
    MiniGrid symbolic (``C == 3``) or one-hot (``C == 20``) view of at most 15x15 cells."""
    from ..envs.minigrid import ONEHOT_SIZES
    from ..envs.render import TILE, view_kind

    try:
        kind = view_kind(env) if env else ""
    except ValueError:
        kind = ""
    shape = tuple(obs_shape)
    channels = {"symbolic": len(ONEHOT_SIZES), "onehot": sum(ONEHOT_SIZES)}.get(kind)
    tiles = len(shape) == 3 and shape[-1] == channels and max(shape[:2]) <= 15
    return {"kind": kind, "tiles": bool(tiles), "transposed": bool(tiles), "tile": TILE if tiles else None}


def display_frames(obs, env: str = "") -> tuple:
    """Observations ``(T, H, W, C)`` or vectors ``(T, D)`` -> ``(frames (T, h, w, 3) uint8, how)``: ``"tiles"``
    (MiniGrid's renderer, upright), else :func:`~policylens.explorer.encode.display_rgb`'s ``"rgb"``,
    ``"scaled"`` or ``"vector"``."""
    from ..envs.render import render_obs

    obs = np.asarray(obs)
    if obs.ndim == 2:
        return display_rgb(obs)
    if obs.ndim != 4:
        raise ValueError(f"observations must be (T, H, W, C) or vectors (T, D), got shape {obs.shape}")
    view = frame_view(env, obs.shape[1:])
    if view["tiles"]:
        return render_obs(obs, view["kind"], view["tile"]), "tiles"
    return display_rgb(obs)


def legend_patches(examples, obs, env: str = "") -> "np.ndarray | None":
    """For a tiled view: each direction's top dataset example as the picture of the observation it comes from,
    cut to the patch its position sees (beyond the view: a checkerboard), ``(K, ph, pw, 3)`` uint8; None for
    other views (their thumbnails are the raw patches)."""
    from ..envs.render import render_obs
    from ..featvis.receptive import crop

    obs = np.asarray(obs)
    if obs.ndim != 4:
        return None
    view = frame_view(env, obs.shape[1:])
    if not view["tiles"]:
        return None
    tile, rf = view["tile"], examples.receptive_field
    if rf is not None:  # the field in picture pixels, laid out like the observation ([x, y])
        rf = replace(rf, size=tuple(s * tile for s in rf.size), stride=tuple(s * tile for s in rf.stride),
                     offset=tuple(o * tile for o in rf.offset), obs_size=tuple(s * tile for s in rf.obs_size))
    patches = []
    for d in range(examples.obs_index.shape[0]):
        picture = render_obs(obs[examples.obs_index[d, 0]][None], view["kind"], tile)[0]  # (rows = y, cols = x)
        y, x = examples.position[d, 0]
        if rf is None or y < 0:
            patches.append(picture)
        else:
            patches.append(crop(picture.transpose(1, 0, 2), rf, int(y), int(x)).transpose(1, 0, 2))
    return np.stack(patches)


def legend_images(examples, obs, env: str = "", size: int = 32) -> np.ndarray:
    """``(K, size, size, 3)`` legend images: :func:`legend_patches` resized for a tiled view; an example of
    vector observations (``patches`` ``(K, n, D)``) drawn as :func:`~.encode.display_rgb`'s strip; else the raw
    patches as :func:`~policylens.featvis.thumbnails` gives them."""
    from ..featvis import resize, thumbnails
    from .encode import display_rgb

    if examples.patches.ndim == 3:
        return resize(display_rgb(examples.patches[:, 0])[0], size)  # (K, 1, D, 3) -> (K, size, size, 3)
    patches = legend_patches(examples, obs, env)
    return thumbnails(examples, size) if patches is None else resize(patches, size)
