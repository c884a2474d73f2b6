"""The agent's view of a MiniGrid env, as MiniGrid draws it, bit for bit, without building Grid objects.

MiniGrid's ``gen_obs`` slices a ``Grid`` of ``agent_view_size``² cells around the agent (walls outside the
grid), rotates it left ``agent_dir + 1`` times (a new Grid each time), propagates visibility row by row from the
agent (``process_vis``, unless ``see_through_walls``), puts the carried object at the agent's cell and encodes
cell by cell: about as much pure Python as the rest of a step. Here the view's cells are read straight from the
grid's list through an index table per direction, visibility runs on one integer bitmask per row, and the RGB
point of view is put together from MiniGrid's own cached tiles with one numpy gather.

>>> image, vis = view(env)            # == MiniGridEnv.gen_obs(env)["image"], gen_obs_grid's vis_mask
>>> frame = pov_frame(env, 8)         # == env.get_frame(highlight=False, tile_size=8, agent_pov=True)

Both take ``hide``: object types left out of the grid (as if their cells were empty) while the view is drawn.
:func:`supported` says whether an env draws its view the way these replicate.
"""
from __future__ import annotations

from functools import lru_cache
from itertools import chain
from operator import itemgetter

import numpy as np
from minigrid.core.grid import Grid
from minigrid.core.world_object import Wall
from minigrid.minigrid_env import MiniGridEnv

_EMPTY = (1, 0, 0)  # MiniGrid's encoding of an empty cell (OBJECT_TO_IDX["empty"], colour 0, state 0)
_OUTSIDE = Wall()  # what MiniGrid's Grid.slice puts where the view leaves the grid
# Every method whose behaviour these functions replicate: an env overriding one draws its own way.
_REPLICATED = ("gen_obs", "gen_obs_grid", "get_view_exts", "get_pov_render", "get_frame")
# Bounds of the tile code (object < 16, colour < 8, state < 4); encodings beyond them take the slow path.
_TYPES, _COLORS, _STATES = 16, 8, 4
_BOUNDS = np.array([_TYPES, _COLORS, _STATES], np.uint8)
_CODE = np.array([_COLORS * _STATES * 2, _STATES * 2, 2], np.int64)  # encoding -> tile code, less the highlight


def supported(env) -> bool:
    """Whether ``env`` draws its view with MiniGrid's own methods (the ones :func:`view` and :func:`pov_frame`
    replicate) on a plain ``Grid``."""
    cls = type(env)
    return (isinstance(env, MiniGridEnv) and all(getattr(cls, m) is getattr(MiniGridEnv, m) for m in _REPLICATED)
            and type(getattr(env, "grid", None)) is Grid)


@lru_cache(maxsize=None)
def _offsets(size: int, direction: int) -> tuple:
    """Per view cell ``[i, j]`` (flattened i-major, as MiniGrid's view arrays are indexed), its (dx, dy) from the
    agent in the world: ``get_view_exts``' corner, then ``direction + 1`` left turns of the sliced square."""
    corner = {0: (0, -(size // 2)), 1: (-(size // 2), 0), 2: (-size + 1, -(size // 2)),
              3: (-(size // 2), -size + 1)}[direction]
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")  # (V, V) each, [x, y] of the slice
    dx, dy = corner[0] + i, corner[1] + j
    for _ in range(direction + 1):  # Grid.rotate_left: new[j, V-1-i] = old[i, j]
        dx, dy = np.rot90(dx, -1), np.rot90(dy, -1)
    return tuple(zip(dx.ravel().tolist(), dy.ravel().tolist()))


@lru_cache(maxsize=1 << 16)
def _reader(width: int, height: int, size: int, x: int, y: int, direction: int) -> itemgetter:
    """Reads the view's cells (flattened i-major) from a grid's cell list with one more entry at its end, the
    wall MiniGrid puts outside the grid: index -1 wherever the view leaves the grid."""
    index = [(y + dy) * width + x + dx if 0 <= x + dx < width and 0 <= y + dy < height else -1
             for dx, dy in _offsets(size, direction)]
    return itemgetter(*index)


def _cells(env, hide: tuple) -> list:
    """The objects of the view's cells (None: empty), flattened i-major; the agent's cell holds the grid's."""
    grid = env.grid
    read = _reader(grid.width, grid.height, env.agent_view_size, int(env.agent_pos[0]), int(env.agent_pos[1]),
                   int(env.agent_dir))
    objs = list(read(grid.grid + [_OUTSIDE]))
    if hide:
        objs = [None if o is not None and o.type in hide else o for o in objs]
    return objs


@lru_cache(maxsize=None)
def _slots(size: int) -> tuple:
    """Per view cell (flattened i-major), its row j and its bit 1 << i in that row's mask."""
    return tuple((k % size, 1 << (k // size)) for k in range(size * size))


@lru_cache(maxsize=None)
def _unpacked(size: int) -> np.ndarray:
    """``(2**size, size)`` bool: the bits of every row mask."""
    return (np.arange(1 << size)[:, None] >> np.arange(size) & 1).astype(bool)


def _visible(objs: list, size: int) -> np.ndarray:
    """``Grid.process_vis`` from the agent at the bottom middle: row by row upwards, a visible cell one sees
    behind makes its row neighbours visible and the three cells above it. Each row is a bitmask (bit i = column
    i); within a row the spreading runs to a fixed point, as MiniGrid's left-then-right sweeps reach."""
    full = (1 << size) - 1
    through = [0] * size  # per row j, bits of the cells one sees behind
    for (j, bit), o in zip(_slots(size), objs):
        if o is None or o.see_behind():
            through[j] |= bit
    rows = [0] * size
    reach = 1 << (size // 2)  # the agent's cell, at (size // 2, size - 1)
    for j in range(size - 1, -1, -1):
        seen, t = reach, through[j]
        while True:
            s = seen & t
            grown = (seen | (s << 1) | (s >> 1)) & full
            if grown == seen:
                break
            seen = grown
        rows[j] = seen
        s = seen & t
        reach = (s | (s << 1) | (s >> 1)) & full
    return _unpacked(size)[rows].T  # (V, V) [i, j]


def _view(env, hide: tuple) -> tuple:
    size = env.agent_view_size
    objs = _cells(env, hide)
    see_all = env.see_through_walls
    vis = np.ones((size, size), bool) if see_all else _visible(objs, size)
    agent = (size // 2) * size + size - 1  # the agent's cell (size // 2, size - 1), flattened
    objs[agent] = env.carrying or None
    codes = bytearray(chain.from_iterable([_EMPTY if o is None else o.encode() for o in objs]))
    image = np.frombuffer(codes, np.uint8).reshape(size, size, 3)  # (V, V, 3), writable over the bytearray
    if not see_all:
        image[~vis] = 0
    return image, vis, objs


def view(env, hide: tuple = ()) -> tuple:
    """``(image (V, V, 3) uint8, vis_mask (V, V) bool)``: MiniGrid's ``gen_obs()["image"]`` and the visibility
    mask of ``gen_obs_grid``, both indexed ``[x, y]`` of the view as MiniGrid's are."""
    image, vis, _ = _view(env, hide)
    return image, vis


class _Tiles:
    """The tiles of one tile size: a table from a cell's code (its encoding and whether it is highlighted) to a
    row of an atlas, filled from MiniGrid's ``Grid.render_tile`` (and its cache) the first time a code shows."""

    def __init__(self, tile_size: int):
        self.tile_size = tile_size
        self.lut = np.full(_TYPES * _COLORS * _STATES * 2, -1, np.int64)
        self.tiles: list = []
        self.atlas = np.zeros((0, tile_size, tile_size, 3), np.uint8)

    def add(self, code: int, obj, highlight: bool) -> None:
        self.lut[code] = len(self.tiles)
        self.tiles.append(Grid.render_tile(obj, agent_dir=None, highlight=highlight, tile_size=self.tile_size))
        self.atlas = np.stack(self.tiles).astype(np.uint8)  # MiniGrid's tiles are floats, truncated as it draws


_TILE_SETS: dict = {}


def pov_frame(env, tile_size: int, hide: tuple = ()) -> np.ndarray:
    """``(V * tile_size, V * tile_size, 3)`` uint8: ``env.get_frame(highlight=False, tile_size=tile_size,
    agent_pov=True)``, the view rendered with the visible cells highlighted and the agent facing up."""
    image, vis, objs = _view(env, hide)
    size, ts = env.agent_view_size, tile_size
    agent_tile = Grid.render_tile(objs[(size // 2) * size + size - 1], agent_dir=3, highlight=True, tile_size=ts)
    if (image >= _BOUNDS).any():
        return _slow_pov(size, vis, objs, ts, agent_tile)
    tiles = _TILE_SETS.get(ts) or _TILE_SETS.setdefault(ts, _Tiles(ts))
    # (V, V): an unseen cell (encoded 0, not highlighted) gets code 0, drawn as MiniGrid does, empty and dark
    code = image.astype(np.int64) @ _CODE + vis
    index = tiles.lut[code]
    if (index < 0).any():
        for k in np.flatnonzero(index.ravel() < 0).tolist():
            c = int(code.ravel()[k])
            if tiles.lut[c] < 0:
                tiles.add(c, objs[k] if vis.ravel()[k] else None, bool(vis.ravel()[k]))
        index = tiles.lut[code]
    frame = tiles.atlas[index.T]  # (Vy, Vx, ts, ts, 3)
    frame = frame.transpose(0, 2, 1, 3, 4).reshape(size * ts, size * ts, 3)
    frame[(size - 1) * ts:, (size // 2) * ts:(size // 2 + 1) * ts] = agent_tile
    return frame


def _slow_pov(size: int, vis: np.ndarray, objs: list, ts: int, agent_tile: np.ndarray) -> np.ndarray:
    """The frame tile by tile through ``Grid.render_tile`` (encodings beyond the table's bounds)."""
    frame = np.zeros((size * ts, size * ts, 3), np.uint8)
    for k, o in enumerate(objs):
        i, j = divmod(k, size)
        tile = Grid.render_tile(o if vis[i, j] else None, agent_dir=None, highlight=bool(vis[i, j]), tile_size=ts)
        frame[j * ts:(j + 1) * ts, i * ts:(i + 1) * ts] = tile
    frame[(size - 1) * ts:, (size // 2) * ts:(size // 2 + 1) * ts] = agent_tile
    return frame


def gen_obs(env) -> dict:
    """MiniGrid's ``gen_obs`` with :func:`view`; installed on an env as ``types.MethodType(gen_obs, env)``. With
    ``env._view_unused`` set (by a caller that draws its own view of this step) the image is left out (None)."""
    if getattr(env, "_view_unused", False):
        image = None
    elif type(env.grid) is Grid:
        image = view(env)[0]
    else:
        image = MiniGridEnv.gen_obs(env)["image"]
    return {"image": image, "direction": env.agent_dir, "mission": env.mission}
