"""Ground-truth pixel masks of what an observation shows, per entity type, from the env's state (not pixels).

- MiniGrid: the agent's partial view is ``view x view`` cells (7x7), the agent at the bottom centre facing up.
  :func:`minigrid_masks` maps the recorded world entities (``{"type", "x", "y"}`` and the agent's ``dir``) into
  that view, cell for cell as MiniGrid's ``get_view_coords`` does, and returns boolean masks laid out like the
  observation: ``(x, y)``-indexed for symbolic obs (MiniGrid's ``encode`` order), pixel rows = view y for RGB.
- CoinRun: :func:`coinrun_masks` parses procgen's state bytes (:mod:`policylens.envs.coinrun`).
"""
from __future__ import annotations

import numpy as np

DIR_TO_VEC = ((1, 0), (0, 1), (-1, 0), (0, -1))  # MiniGrid: 0 right, 1 down, 2 left, 3 up


def minigrid_view_coords(agent: dict, x: int, y: int, view: int = 7) -> "tuple | None":
    """View cell ``(vx, vy)`` of world cell ``(x, y)`` for ``agent`` (``x``, ``y``, ``dir``), or None if out of view."""
    dx, dy = DIR_TO_VEC[int(agent["dir"])]
    rx, ry = -dy, dx  # the agent's right
    half = view // 2
    tx, ty = agent["x"] + dx * (view - 1) - rx * half, agent["y"] + dy * (view - 1) - ry * half
    lx, ly = x - tx, y - ty
    vx, vy = rx * lx + ry * ly, -(dx * lx + dy * ly)
    return (vx, vy) if 0 <= vx < view and 0 <= vy < view else None


def minigrid_masks(entities: list, obs_shape: tuple, view: int = 7) -> dict:
    """``{type: (H, W) bool}`` for one frame's entities (the agent included, at its own cell).

    ``obs_shape`` ``(view, view, C)`` means symbolic obs, indexed ``[x, y]``; ``(view*t, view*t, 3)`` RGB with
    ``t``-pixel tiles, indexed ``[row, col]`` = ``[y*t.., x*t..]``.
    """
    h, w = int(obs_shape[0]), int(obs_shape[1])
    if h != w or h % view:
        raise ValueError(f"MiniGrid obs_shape {tuple(obs_shape)} is not a {view}x{view} view (symbolic or tiled RGB)")
    tile, symbolic = h // view, h == view
    agent = next((e for e in entities if e["type"] == "agent"), None)
    if agent is None:
        raise ValueError("MiniGrid entities have no 'agent' entry; cannot place the view")
    masks: dict = {}
    for e in entities:
        cell = minigrid_view_coords(agent, e["x"], e["y"], view)
        if cell is None:
            continue
        vx, vy = cell
        m = masks.setdefault(e["type"], np.zeros((h, w), bool))
        if symbolic:
            m[vx, vy] = True
        else:
            m[vy * tile:(vy + 1) * tile, vx * tile:(vx + 1) * tile] = True
    return masks


def coinrun_masks(state: bytes, obs_shape: tuple) -> dict:
    """``{kind: (H, W) bool}`` of a CoinRun frame from its procgen state bytes."""
    from .coinrun import entity_masks, parse_state

    return entity_masks(parse_state(state), tuple(obs_shape[:2]))
