"""Atari ground truth from RAM, through OCAtari's RAM extraction (``pip install 'policylens[atari]'``).

Only OCAtari's per-game functions ``_init_objects_ram`` / ``_detect_objects_ram`` are used, on RAM read from ALE
here; OCAtari's own env (its stepping and its state helpers) is not. Those functions keep state between calls
(an object that appears is often placed only on the next call), so :func:`detect` calls them on a fresh object
list until the result stops changing: the objects become a pure function of the RAM.

Coordinates: OCAtari boxes are in the 160x210 screen; :func:`obs_box` scales them into the agent's
``size x size`` frame, and :func:`box_mask` marks the observation pixels whose area the box overlaps (the pixels
an area-averaging resize lets it reach). In most games the RAM after a frame describes that frame's screen; in
those of :data:`LAG` the screen shows the RAM of the frame before (tested against the pixels).

``invisible=KIND`` paints the objects of that category over in every frame the agent sees, with the background
as last seen there (a per-env memory of the screen outside those objects; where none was seen yet, the most common
colour just around the box). The emulator never sees the change.
"""
from __future__ import annotations

import functools
import importlib
import re
from types import ModuleType
from typing import Any

import numpy as np

from .atari_causes import GHOST_NAMES
from .spec import invisible_option, option_list

SCREEN_H, SCREEN_W = 210, 160
#: Games whose screen shows the objects of the RAM one frame earlier (Ms. Pac-Man draws last frame's positions).
LAG = {"ms_pacman": 1}
#: Where OCAtari's boxes miss drawn pixels, the box grown by (left, top, right, bottom) screen pixels, measured
#: on real frames (Pong's paddles are drawn 16 rows high, its ball a row higher; Asterix's lyres 8 columns wide).
GROW = {("pong", "player"): (0, 1, 0, 2), ("pong", "enemy"): (0, 0, 0, 1), ("pong", "ball"): (0, 1, 0, 0),
        ("asterix", "enemy"): (0, 0, 1, 0)}
_MODULES: dict[str, ModuleType | None] = {}


@functools.lru_cache(maxsize=None)
def category(cls_name: str) -> str:
    """OCAtari's class name as an entity type: ``PowerPill`` -> ``power_pill``, ``Ball`` -> ``ball``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cls_name).lower()


def ocatari_module(rom: str) -> ModuleType | None:
    """OCAtari's RAM-extraction module for ALE game ``rom``, or None where OCAtari does not cover the game
    (or is not installed)."""
    if rom not in _MODULES:
        try:
            _MODULES[rom] = importlib.import_module("ocatari.ram." + rom.replace("_", ""))
        except ImportError:
            _MODULES[rom] = None
    return _MODULES[rom]


def unavailable(rom: str) -> str | None:
    """Why there is no ground truth for ``rom`` (a sentence), or None when there is."""
    try:
        importlib.import_module("ocatari.ram")
    except ImportError:
        return "Atari ground truth needs OCAtari: pip install 'policylens[atari]'"
    if ocatari_module(rom) is None:
        return f"no ground truth for Atari game {rom!r}: OCAtari's RAM extraction does not cover it"
    return None


def detect(mod, ram: np.ndarray, hud: bool = False, max_calls: int = 6) -> list:
    """The objects OCAtari reads from ``ram``: ``[(slot, category, x, y, w, h)]`` in screen pixels, visible
    objects only, with a fixed point of its extraction reached (see the module docstring)."""
    key = (mod.__name__, bytes(np.asarray(ram, np.uint8)), hud)
    if key not in _SEEN:
        if len(_SEEN) >= 256:
            _SEEN.pop(next(iter(_SEEN)))
        _SEEN[key] = _detect(mod, ram, hud, max_calls)
    return list(_SEEN[key])


_SEEN: dict = {}  # the last RAMs' objects (a frame's RAM is read for its mask, its hiding and its causes)


def _detect(mod, ram: np.ndarray, hud: bool, max_calls: int) -> list:
    objs = mod._init_objects_ram(hud)
    last: list[tuple[Any, ...]] | None = None
    for _ in range(max_calls):
        mod._detect_objects_ram(objs, ram, hud)
        now = [(k, type(o).__name__, bool(o), *map(int, o.xywh)) for k, o in enumerate(objs)]  # absent ones too
        if now == last:
            break
        last = now
    assert last is not None, "max_calls must be at least 1"
    return [(k, category(c), x, y, w, h) for k, c, shown, x, y, w, h in last if shown and w > 0 and h > 0]


def obs_box(x: float, y: float, w: float, h: float, size: int) -> list:
    """A screen box as ``[x, y, w, h]`` in the agent's ``size x size`` frame."""
    sx, sy = size / SCREEN_W, size / SCREEN_H
    return [round(x * sx, 3), round(y * sy, 3), round(w * sx, 3), round(h * sy, 3)]


def box_mask(box, shape: tuple) -> np.ndarray:
    """``(H, W)`` bool: the pixels whose square ``[c, c+1) x [r, r+1)`` overlaps ``box`` ``[x, y, w, h]`` (in the
    same pixel units) with positive area."""
    x, y, w, h = box
    eps = 1e-6
    rows, cols = np.arange(shape[0]), np.arange(shape[1])
    r = (rows + 1 > y + eps) & (rows < y + h - eps)
    c = (cols + 1 > x + eps) & (cols < x + w - eps)
    return r[:, None] & c[None, :]


def entity_masks(entities: list, obs_shape: tuple) -> dict:
    """``{type: (H, W) bool}`` of one frame's entities (:meth:`Truth.entities`): every box the observation shows
    each object in (both max-pooled frames)."""
    masks: dict = {}
    for e in entities:
        m = masks.setdefault(e["type"], np.zeros(tuple(obs_shape[:2]), bool))
        for b in e["pooled"]:
            m |= box_mask(b, obs_shape[:2])
    return masks


def _ring_colour(screen: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    """The most common colour in a 2-pixel ring around a screen box."""
    y0, y1, x0, x1 = max(0, y - 2), min(SCREEN_H, y + h + 2), max(0, x - 2), min(SCREEN_W, x + w + 2)
    patch = screen[y0:y1, x0:x1].reshape(-1, 3)
    inner = np.zeros((y1 - y0, x1 - x0), bool)
    inner[max(0, y - y0):max(0, y + h - y0), max(0, x - x0):max(0, x + w - x0)] = True
    ring = patch[~inner.ravel()] if (~inner).any() else patch
    vals, counts = np.unique(ring, axis=0, return_counts=True)
    return vals[counts.argmax()]


class Truth:
    """Per-env ground truth beside an :class:`~.atari.AtariVecEnv`: objects, masks, hiding, causes."""

    def __init__(self, rom: str, opts: dict, num_envs: int, required: bool):
        self.rom, self.opts, self.size = rom, opts, int(opts["size"])
        why = unavailable(rom)
        if why and required:
            covered = sorted(m for m in _covered())
            raise ValueError(f"{why}; ground_truth= and invisible= work for the games OCAtari covers: "
                             f"{', '.join(covered)}")
        self.mod = None if why else ocatari_module(rom)
        self.lag = LAG.get(rom, 0)
        kinds = self.categories() if self.mod is not None else ()
        self.invisible = invisible_option(opts.get("invisible"), kinds, "atari") if option_list(
            opts.get("invisible")) else ()
        # (210, 160, 3) per env: the screen as last seen outside hidden objects
        self.bg: list[np.ndarray | None] = [None] * num_envs
        self.causes = None
        if opts.get("ground_truth") and self.mod is not None:
            from .atari_causes import Causes

            self.causes = Causes(rom, self, num_envs)

    @property
    def available(self) -> bool:
        return self.mod is not None

    def categories(self) -> tuple:
        """Every object category the game's extraction can give (HUD excluded); none without the extraction."""
        if self.mod is None:
            return ()
        return tuple(sorted({category(k) for k in self.mod.MAX_NB_OBJECTS}))

    def objects(self, ram: np.ndarray) -> list:
        """``[(slot, category, x, y, w, h)]`` in screen pixels for the screen ``ram`` describes (OCAtari's boxes,
        grown where :data:`GROW` says)."""
        out = []
        for slot, cat, x, y, w, h in detect(self.mod, ram):
            gl, gt, gr, gb = GROW.get((self.rom, cat), (0, 0, 0, 0))
            out.append((slot, cat, x - gl, y - gt, w + gl + gr, h + gt + gb))
        return out

    def shown_rams(self, rams: list, n: int) -> list:
        """The RAMs describing the last ``n`` frames of a step, from ``rams`` = [before the step, after each
        frame] (with :data:`LAG` the RAM one frame earlier)."""
        end = len(rams) - self.lag
        return [rams[k] for k in range(max(0, end - n), end)]

    def entities(self, rams: list, pooled: int) -> list:
        """The objects the observation shows, one dict each: ``type`` (category), ``id`` (OCAtari's slot),
        ``box`` ``[x, y, w, h]`` in the agent's frame (the last frame's), ``pooled`` (its boxes in every frame
        the observation max-pools); Ms. Pac-Man's ghosts also have a ``name``."""
        frames = [self.objects(r) for r in self.shown_rams(rams, pooled)]
        out: dict[int, dict[str, Any]] = {}
        for objs in frames:
            for slot, cat, x, y, w, h in objs:
                e = out.setdefault(slot, {"type": cat, "id": slot, "pooled": []})
                e["type"], e["box"] = cat, obs_box(x, y, w, h, self.size)
                if e["box"] not in e["pooled"]:
                    e["pooled"].append(e["box"])
                if self.rom == "ms_pacman" and cat == "ghost":
                    e["name"] = GHOST_NAMES.get(slot, f"ghost{slot}")
        return [out[k] for k in sorted(out)]

    # --- invisible objects ------------------------------------------------------------------------------
    def hide(self, i: int, ram: np.ndarray, screen: np.ndarray) -> np.ndarray:
        """``screen`` (described by ``ram``) with the invisible categories painted over by the remembered
        background; the memory takes every other pixel of this screen."""
        boxes = [(x, y, w, h) for _, c, x, y, w, h in self.objects(ram) if c in self.invisible]
        mask = np.zeros((SCREEN_H, SCREEN_W), bool)
        for x, y, w, h in boxes:
            mask[max(0, y):max(0, y + h), max(0, x):max(0, x + w)] = True
        bg = self.bg[i]
        if bg is None:
            bg = screen.copy()
            for x, y, w, h in boxes:
                bg[max(0, y):max(0, y + h), max(0, x):max(0, x + w)] = _ring_colour(screen, x, y, w, h)
        out = np.where(mask[..., None], bg, screen)
        self.bg[i] = out
        return out

    def new_episode(self, i: int) -> None:
        self.bg[i] = None
        if self.causes is not None:
            self.causes.new_episode(i)

    def state(self, i: int) -> dict | None:
        bg = self.bg[i]
        return None if bg is None else {"bg": _b64(bg)}

    def load(self, i: int, state: dict | None) -> None:
        self.bg[i] = None if not state else _unb64(state["bg"]).reshape(SCREEN_H, SCREEN_W, 3)
        if self.causes is not None:
            self.causes.new_episode(i)  # the history of steps does not travel with a state


def _b64(a: np.ndarray) -> str:
    import base64
    import zlib

    return base64.b64encode(zlib.compress(np.ascontiguousarray(a).tobytes(), 1)).decode()


def _unb64(s: str) -> np.ndarray:
    import base64
    import zlib

    return np.frombuffer(zlib.decompress(base64.b64decode(s)), np.uint8).copy()


def _covered() -> list:
    """ALE games OCAtari's RAM extraction covers."""
    from ale_py import roms

    return [r for r in roms.get_all_rom_ids() if ocatari_module(r) is not None]
