"""Observations drawn as the env draws them: MiniGrid's symbolic and one-hot views with MiniGrid's own tiles.

Used by everything that shows a view to people (the simulator's videos, the trajectory explorer's frames and
legend), so they all draw the same picture. MiniGrid's arrays are indexed ``[x, y]``; the pictures are upright
(row = y), so a map laid out like the observation is drawn transposed over them.

    >>> view_kind("minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0")        # "symbolic" (MiniGrid's default)
    >>> frames = render_obs(obs, "symbolic")                            # (T, 7*16, 7*16, 3) uint8
"""
from __future__ import annotations

import numpy as np

from .spec import parse_spec

TILE = 16  # pixels per MiniGrid cell


def view_kind(env: str) -> str:
    """What an env spec's observations are: ``symbolic`` / ``onehot`` (MiniGrid's ``obs`` option; symbolic is
    its default) or ``pixels`` (MiniGrid's ``rgb``, and every other family)."""
    spec = parse_spec(env)
    mode = spec.options.get("obs", "symbolic") if spec.family == "minigrid" else "pixels"
    return "pixels" if mode == "rgb" else str(mode)


def _minigrid_frame(codes: np.ndarray, tile: int) -> np.ndarray:
    """One MiniGrid agent view (7, 7, 3) of (object, colour, state) codes -> RGB with MiniGrid's own tiles; the
    agent at the bottom centre facing up. Codes MiniGrid cannot decode are drawn as unseen (black)."""
    from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX
    from minigrid.core.grid import Grid

    codes = np.array(codes, dtype=np.uint8)
    valid = (codes[..., 0] < OBJECT_TO_IDX["agent"]) & (codes[..., 1] < len(COLOR_TO_IDX)) & (codes[..., 2] < 3)
    codes[~valid] = 0  # unseen
    try:
        grid, seen = Grid.decode(codes)
    except (AssertionError, ValueError, KeyError, IndexError):
        codes[...] = 0
        grid, seen = Grid.decode(codes)
    w, h = codes.shape[:2]
    return grid.render(tile, agent_pos=(w // 2, h - 1), agent_dir=3, highlight_mask=seen)


def render_obs(obs, obs_kind: str, tile: int = TILE) -> np.ndarray:
    """Observations ``(T, H, W, C)`` (uint8 or float of the same values) -> ``(T, h, w, 3)`` uint8.

    ``symbolic``: MiniGrid codes drawn with MiniGrid's renderer (``tile`` pixels per cell; MiniGrid's arrays are
    indexed [x, y], the picture is upright). ``pixels``: as they are (rounded, clipped). ``onehot``: each plane
    group's argmax, then as symbolic."""
    obs = np.asarray(obs)
    if obs.ndim != 4:
        raise ValueError(f"observations must be (T, H, W, C), got shape {obs.shape}")
    if obs_kind == "pixels":
        return np.rint(obs.astype(np.float32)).clip(0, 255).astype(np.uint8)
    return np.stack([_minigrid_frame(frame, tile) for frame in minigrid_codes(obs, obs_kind)])


def minigrid_codes(obs, obs_kind: str) -> np.ndarray:
    """MiniGrid views ``(..., H, W, C)`` -> their (object, colour, state) codes ``(..., H, W, 3)`` uint8:
    ``symbolic`` as they are (rounded), ``onehot`` each plane group's argmax."""
    obs = np.asarray(obs)
    if obs_kind == "onehot":
        from .minigrid import ONEHOT_SIZES

        parts = np.split(obs, np.cumsum(ONEHOT_SIZES)[:-1], axis=-1)
        obs = np.stack([p.argmax(-1) for p in parts], -1)
    elif obs_kind != "symbolic":
        raise ValueError(f"obs kind {obs_kind!r}; expected symbolic, onehot or pixels")
    return np.rint(obs.astype(np.float32)).clip(0, 255).astype(np.uint8)
