"""CoinRun ground truth from the game's own state bytes (procgen ``get_state``).

The byte layout mirrors procgen's C++ serialisation (``procgen/src``), field by field:

* ``VecGame get_state``: ``game->serialize(b)`` then the marker ``END_OF_BUFFER = 0xCAFECAFE``;
* ``Game::serialize`` (game.cpp) -> :data:`GAME_FIELDS`;
* ``BasicAbstractGame::serialize`` (basic-abstract-game.cpp): ``grid_size``, the entities
  (``write_entities`` -> ``Entity::serialize``, :data:`ENTITY_FIELDS`), :data:`BASIC_FIELDS`, then
  ``Grid::serialize`` (grid.h: ``w``, ``h``, ``write_vector_int(data)``, ``data[y * w + x]``);
* ``CoinRun::serialize`` (games/coinrun.cpp) -> :data:`COINRUN_FIELDS`.

``WriteBuffer`` (buffer.h) writes native little-endian 4-byte ints and floats, strings as an int length
plus raw bytes, bools as ints 0/1; a ``RandGen`` is ``is_seeded`` plus the text of its ``std::mt19937``.

World coordinates are the game's: x to the right, y *up* (y = 0 is the floor row), one unit per tile.
``parsed["grid"][y, x]`` is the tile at column x, row y (row 0 at the bottom, unlike an image).

In CoinRun saws (``SAW``), walking monsters (``ENEMY``) and crates (``CRATE``) are entities; lava
(``LAVA_MID``/``LAVA_TOP``), walls and the coin (``GOAL``) are grid tiles.
"""
from __future__ import annotations

import struct
from typing import Any

import numpy as np

# --- constants from procgen/src/object-ids.h and games/coinrun.cpp -------------------------------
PLAYER = 0  # object-ids.h
GOAL = 1  # coinrun.cpp: the coin, a grid tile
SAW = 2
SAW2 = 3  # image only (the saw's second animation frame)
ENEMY = 5  # the walking monster
ENEMY1, ENEMY2 = 6, 7  # its two animation images
WALL_MID, WALL_TOP = 15, 16
LAVA_MID, LAVA_TOP = 17, 18
ENEMY_BARRIER = 19  # invisible tile that turns monsters round
CRATE = 20
EXPLOSION, TRAIL = 54, 59  # object-ids.h; monsters leave TRAIL entities behind them
SPACE = 100  # object-ids.h: an empty tile
END_OF_BUFFER = 0xCAFECAFE  # vecgame.cpp
POS_EPS = np.float32(-0.001)  # basic-abstract-game.cpp

#: Entity type id -> name (``entities[i]["type"]``).
ENTITY_TYPES = {PLAYER: "agent", GOAL: "coin", SAW: "saw", ENEMY: "enemy", CRATE: "crate", TRAIL: "trail",
                **{t: "explosion" for t in range(EXPLOSION, EXPLOSION + 5)}}
#: Grid tile id -> name.
TILE_NAMES = {SPACE: "empty", GOAL: "coin", WALL_MID: "wall", WALL_TOP: "wall_top", LAVA_MID: "lava",
              LAVA_TOP: "lava_top", ENEMY_BARRIER: "enemy_barrier"}
LAVA_TILES = (LAVA_MID, LAVA_TOP)
WALL_TILES = (WALL_MID, WALL_TOP)
HAZARDS = {SAW: "saw", ENEMY: "enemy"}  # entities that end the episode on touch (CoinRun::handle_agent_collision)

# --- field tables, in serialisation order ("i" int32, "f" float32, "s" string, "rng" RandGen) -----
#: Game::serialize (game.cpp). ``reward``/``done``/``level_complete`` are ``step_data``'s.
GAME_FIELDS = (
    ("serialize_version", "i"), ("game_name", "s"),
    ("paint_vel_info", "i"), ("use_generated_assets", "i"), ("use_monochrome_assets", "i"),
    ("restrict_themes", "i"), ("use_backgrounds", "i"), ("center_agent", "i"), ("debug_mode", "i"),
    ("distribution_mode", "i"), ("use_sequential_levels", "i"), ("use_easy_jump", "i"), ("plain_assets", "i"),
    ("physics_mode", "i"), ("grid_step", "i"), ("level_seed_low", "i"), ("level_seed_high", "i"),
    ("game_type", "i"), ("game_n", "i"), ("level_seed_rand_gen", "rng"), ("rand_gen", "rng"),
    ("reward", "f"), ("done", "i"), ("level_complete", "i"), ("action", "i"), ("timeout", "i"),
    ("current_level_seed", "i"), ("prev_level_seed", "i"), ("episodes_remaining", "i"), ("episode_done", "i"),
    ("last_reward_timer", "i"), ("last_reward", "f"), ("default_action", "i"), ("fixed_asset_seed", "i"),
    ("cur_time", "i"), ("is_waiting_for_step", "i"),
)
#: Entity::serialize (entity.cpp); ``type`` is stored as ``type_id`` (``type`` holds its name).
ENTITY_FIELDS = (
    ("x", "f"), ("y", "f"), ("vx", "f"), ("vy", "f"), ("rx", "f"), ("ry", "f"),
    ("type_id", "i"), ("image_type", "i"), ("image_theme", "i"), ("render_z", "i"), ("will_erase", "i"),
    ("collides_with_entities", "i"), ("collision_margin", "f"), ("rotation", "f"), ("vrot", "f"),
    ("is_reflected", "i"), ("fire_time", "i"), ("spawn_time", "i"), ("life_time", "i"), ("expire_time", "i"),
    ("use_abs_coords", "i"), ("friction", "f"), ("smart_step", "i"), ("avoids_collisions", "i"),
    ("auto_erase", "i"), ("alpha", "f"), ("health", "f"), ("theta", "f"), ("grow_rate", "f"),
    ("alpha_decay", "f"), ("climber_spawn_x", "f"),
)
#: BasicAbstractGame::serialize after the entities and before the grid.
BASIC_FIELDS = (
    ("use_procgen_background", "i"), ("background_index", "i"), ("bg_tile_ratio", "f"), ("bg_pct_x", "f"),
    ("char_dim", "f"), ("last_move_action", "i"), ("move_action", "i"), ("special_action", "i"),
    ("mixrate", "f"), ("maxspeed", "f"), ("max_jump", "f"), ("action_vx", "f"), ("action_vy", "f"),
    ("action_vrot", "f"), ("center_x", "f"), ("center_y", "f"), ("random_agent_start", "i"),
    ("has_useful_vel_info", "i"), ("step_rand_int", "i"), ("asset_rand_gen", "rng"),
    ("main_width", "i"), ("main_height", "i"), ("out_of_bounds_object", "i"),
    ("unit", "f"), ("view_dim", "f"), ("x_off", "f"), ("y_off", "f"), ("visibility", "f"), ("min_visibility", "f"),
)
#: CoinRun::serialize (games/coinrun.cpp), after BasicAbstractGame's.
COINRUN_FIELDS = (
    ("last_agent_y", "f"), ("wall_theme", "i"), ("has_support", "i"), ("facing_right", "i"),
    ("is_on_crate", "i"), ("gravity", "f"), ("air_control", "f"),
)
_ENTITY = struct.Struct("<" + "".join(f for _, f in ENTITY_FIELDS))  # 31 fields, 124 bytes


class _Reader:
    """ReadBuffer (buffer.h) with errors that say what was being read."""

    def __init__(self, data: bytes):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"a CoinRun state is bytes from env.get_state(), not {type(data).__name__}")
        self.data, self.off = bytes(data), 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.off + n > len(self.data):
            raise ValueError(f"CoinRun state truncated or corrupt: {what} needs {n} bytes at offset {self.off}, "
                             f"but the state has {len(self.data)} bytes")
        out = self.data[self.off:self.off + n]
        self.off += n
        return out

    def read(self, kind: str, what: str):
        if kind == "i":
            return struct.unpack("<i", self.take(4, what))[0]
        if kind == "f":
            return struct.unpack("<f", self.take(4, what))[0]
        if kind == "s":  # ReadBuffer::read_string
            n = self.read("i", what + " length")
            return self.take(n, what).decode("latin-1")
        if kind == "rng":  # RandGen::deserialize: is_seeded, then the mt19937 as text
            return {"is_seeded": self.read("i", what), "mt19937": self.read("s", what)}
        raise AssertionError(kind)

    def fields(self, table, out: dict) -> None:
        for name, kind in table:
            out[name] = self.read(kind, name)


def _write(out: list, kind: str, value, what: str) -> None:
    try:
        if kind == "i":
            out.append(struct.pack("<i", int(value)))
        elif kind == "f":
            out.append(struct.pack("<f", float(value)))
        elif kind == "s":
            raw = value.encode("latin-1")
            out.append(struct.pack("<i", len(raw)) + raw)
        else:  # rng
            _write(out, "i", value["is_seeded"], what)
            _write(out, "s", value["mt19937"], what)
    except (struct.error, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"cannot serialise field {what!r} = {value!r} as {kind!r}: {e}") from None


def type_name(type_id: int) -> str:
    return ENTITY_TYPES.get(int(type_id), f"type_{int(type_id)}")


def parse_state(state: bytes) -> dict:
    """Decode a CoinRun state (bytes of ``get_state``) into a flat dict of every serialised field.

    Keys: every name in :data:`GAME_FIELDS`, :data:`BASIC_FIELDS`, :data:`COINRUN_FIELDS` (raw values) and
    ``grid_size``; ``entities``: list of dicts with every :data:`ENTITY_FIELDS` name plus ``type`` (a name from
    :data:`ENTITY_TYPES`); ``agent``: the agent's dict (the same object as in ``entities``); ``grid``: int32
    ``(H, W)`` tile ids indexed ``[y, x]`` with y up; ``coin``: ``(x, y)`` of the coin tile or None.
    """
    r = _Reader(state)
    p: dict = {}
    # Game::serialize starts with SERIALIZE_VERSION and game_name: check them before anything else
    got, want = r.data[4:15], struct.pack("<i", 7) + b"coinrun"
    if len(r.data) >= 8 and got != want[:len(got)]:  # (a shorter prefix is reported as truncated below)
        n = struct.unpack_from("<i", r.data, 4)[0]
        name = r.data[8:8 + max(0, min(n, 32))].decode("latin-1", "replace")
        raise ValueError(f"not a CoinRun state: its game name is {name!r}, expected 'coinrun'")
    r.fields(GAME_FIELDS, p)  # Game::serialize
    if p["serialize_version"] != 0:
        raise ValueError(f"CoinRun state has serialize version {p['serialize_version']}, expected 0")
    p["grid_size"] = r.read("i", "grid_size")  # BasicAbstractGame::serialize
    n = r.read("i", "number of entities")  # write_entities
    if not 0 <= n <= 100_000:
        raise ValueError(f"CoinRun state corrupt: {n} entities")
    ents = []
    for k in range(n):  # Entity::serialize, one per entity
        e = dict(zip((f for f, _ in ENTITY_FIELDS), _ENTITY.unpack(r.take(_ENTITY.size, f"entity {k}"))))
        e["type"] = type_name(e["type_id"])
        ents.append(e)
    p["entities"] = ents
    r.fields(BASIC_FIELDS, p)
    w, h = r.read("i", "grid width"), r.read("i", "grid height")  # Grid::serialize
    count = r.read("i", "grid data length")
    if w < 0 or h < 0 or count != w * h:
        raise ValueError(f"CoinRun state corrupt: grid {w}x{h} with {count} cells")
    p["grid"] = np.frombuffer(r.take(4 * count, "grid data"), "<i4").reshape(h, w).astype(np.int32)  # (H, W)
    r.fields(COINRUN_FIELDS, p)  # CoinRun::serialize
    marker = struct.unpack("<I", r.take(4, "END_OF_BUFFER marker"))[0]
    if marker != END_OF_BUFFER or r.off != len(r.data):
        raise ValueError(f"CoinRun state does not end as expected: marker {marker:#x} at offset {r.off - 4}, "
                         f"{len(r.data) - r.off} bytes left (expected 0xcafecafe and none)")
    agents = [e for e in ents if e["type_id"] == PLAYER]
    if not agents:
        raise ValueError("CoinRun state has no agent entity")
    p["agent"] = agents[-1]  # BasicAbstractGame::deserialize takes the last PLAYER (find_entity_index)
    ys, xs = np.nonzero(p["grid"] == GOAL)
    p["coin"] = (int(xs[0]), int(ys[0])) if len(xs) else None
    return p


def serialize_state(parsed: dict) -> bytes:
    """The exact inverse of :func:`parse_state`: the bytes ``set_state`` accepts.

    The grid's width/height come from ``parsed["grid"].shape``; ``agent`` and ``coin`` are views and ignored
    (edit ``entities`` and ``grid``). Each entity's ``type`` must name its ``type_id`` (see :func:`make_entity`).
    """
    out: list = []
    for name, kind in GAME_FIELDS:
        _write(out, kind, parsed[name], name)
    _write(out, "i", parsed["grid_size"], "grid_size")
    ents = parsed["entities"]
    _write(out, "i", len(ents), "number of entities")
    for k, e in enumerate(ents):
        if "type" in e and e["type"] != type_name(e["type_id"]):
            raise ValueError(f"entity {k} has type {e['type']!r} but type_id {e['type_id']} "
                             f"({type_name(e['type_id'])!r}); change both, or build it with make_entity()")
        try:
            out.append(_ENTITY.pack(*(e[f] for f, _ in ENTITY_FIELDS)))
        except (struct.error, KeyError) as err:
            raise ValueError(f"cannot serialise entity {k}: {err!r}") from None
    for name, kind in BASIC_FIELDS:
        _write(out, kind, parsed[name], name)
    grid = np.asarray(parsed["grid"])
    if grid.ndim != 2:
        raise ValueError(f"grid must be 2-D (H, W), got shape {grid.shape}")
    h, w = grid.shape
    out.append(struct.pack("<iii", w, h, w * h) + np.ascontiguousarray(grid, "<i4").tobytes())
    for name, kind in COINRUN_FIELDS:
        _write(out, kind, parsed[name], name)
    out.append(struct.pack("<I", END_OF_BUFFER))
    return b"".join(out)


#: Entity kinds ``invisible=`` can hide (``procgen:coinrun?invisible=saw,enemy``).
HIDEABLE = ("saw", "enemy", "crate")


def hide_entities(state: bytes, kinds) -> bytes:
    """``state`` with every entity of ``kinds`` drawn fully transparent (``alpha`` 0, which only the renderer
    reads): the game plays exactly as before, the observation no longer shows them. Understanding RL Vision's control for its
    buzzsaw edit was the agent playing with invisible buzzsaws."""
    kinds = tuple(kinds)
    bad = sorted(set(kinds) - set(HIDEABLE))
    if bad:
        raise ValueError(f"cannot hide {bad}: CoinRun entities that can be made invisible are {', '.join(HIDEABLE)}")
    parsed = parse_state(state)
    for e in parsed["entities"]:
        if e["type"] in kinds:
            e["alpha"] = 0.0
    return serialize_state(parsed)


def make_entity(kind: str, x: float, y: float, vx: float = 0.0, vy: float = 0.0, **fields) -> dict:
    """A new entity dict as the game creates it: ``Entity::Entity`` defaults plus CoinRun's
    ``create_saw_enemy`` / ``create_enemy`` / ``create_crate`` settings (``kind`` "saw", "enemy", "crate").
    A monster walks at ``vx = ±0.15`` in the game; extra ``fields`` override anything."""
    ids = {"saw": SAW, "enemy": ENEMY, "crate": CRATE}
    if kind not in ids:
        raise ValueError(f"make_entity kind {kind!r}; expected one of {sorted(ids)}")
    t = ids[kind]
    e: dict[str, Any] = dict(x=x, y=y, vx=vx, vy=vy, rx=0.5, ry=0.5, type_id=t, image_type=t, image_theme=0, render_z=0,
             will_erase=0, collides_with_entities=0, collision_margin=0.0, rotation=0.0, vrot=0.0, is_reflected=0,
             fire_time=-1, spawn_time=-1, life_time=0, expire_time=-1, use_abs_coords=0, friction=1.0,
             smart_step=0, avoids_collisions=0, auto_erase=1, alpha=1.0, health=1.0, theta=-100.0, grow_rate=1.0,
             alpha_decay=1.0, climber_spawn_x=0.0)
    if t == ENEMY:  # create_enemy
        e.update(smart_step=1, image_type=ENEMY1, render_z=1)
    e.update(fields)
    e["type"] = type_name(e["type_id"])
    return e


def objects(parsed: dict) -> list:
    """The entities plus the coin tile as a pseudo-entity ``{type: "coin", x, y, rx: .5, ry: .5, ...}``."""
    out = list(parsed["entities"])
    if parsed["coin"] is not None:
        cx, cy = parsed["coin"]
        out.append({"type": "coin", "type_id": GOAL, "x": cx + 0.5, "y": cy + 0.5, "vx": 0.0, "vy": 0.0,
                    "rx": 0.5, "ry": 0.5, "will_erase": 0, "from_grid": True})
    return out


# --- why an episode ended ------------------------------------------------------------------------
_f32 = np.float32


def _collides(e1: dict, e2: dict, margin) -> bool:
    """BasicAbstractGame::has_collision, in float32 like the game."""
    tx = (_f32(e1["rx"]) + _f32(e2["rx"])) + _f32(margin)
    ty = (_f32(e1["ry"]) + _f32(e2["ry"])) + _f32(margin)
    return bool(abs(_f32(e1["x"]) - _f32(e2["x"])) < tx and abs(_f32(e1["y"]) - _f32(e2["y"])) < ty)


def _agent_tiles(parsed: dict, agent: dict) -> list:
    """``[((x, y), tile_id)]`` the agent touches, in BasicAbstractGame::check_grid_collisions' order
    (tile range from ``int(a - (r + POS_EPS))``, cells via get_obj_from_floats; outside the grid the
    ``out_of_bounds_object``)."""
    ax, ay, arx, ary = (_f32(agent[k]) for k in ("x", "y", "rx", "ry"))
    x0, x1 = int(ax - (arx + POS_EPS)), int(ax + (arx + POS_EPS))
    y0, y1 = int(ay - (ary + POS_EPS)), int(ay + (ary + POS_EPS))
    return [((x, y), _tile(parsed, x, y)) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]


def _tile(parsed: dict, x: int, y: int) -> int:
    """BasicAbstractGame::get_obj: the tile at ``(x, y)``, ``out_of_bounds_object`` outside the grid."""
    grid = parsed["grid"]
    h, w = grid.shape
    return int(grid[y, x]) if (0 <= x < w and 0 <= y < h) else int(parsed["out_of_bounds_object"])


def reach_box(parsed: dict, action: int) -> tuple:
    """A box ``(x0, x1, y0, y1)`` that surely holds the agent's box after one step with ``action``.

    CoinRun::update_agent_velocity mixes vx towards ``maxspeed * action_vx``; vy is set to ``max_jump`` by a
    jump, otherwise only falls (gravity, plus 0.2 when pressing down), clipped to ``±max_jump``. Walls and
    crates only shorten a move, so the displacement lies between 0 and the new velocity.
    """
    a = parsed["agent"]
    move = action % 9 if action < 9 else 4
    avx, avy = move // 3 - 1, move % 3 - 1
    mj = parsed["max_jump"]
    vx_lo, vx_hi = min(0.0, a["vx"], parsed["maxspeed"] * avx), max(0.0, a["vx"], parsed["maxspeed"] * avx)
    vy_hi = max(0.0, mj if avy > 0 else a["vy"])
    vy_lo = min(0.0, max(a["vy"] - parsed["gravity"] - 0.2, -mj))
    eps = 0.05
    return (a["x"] - a["rx"] + vx_lo - eps, a["x"] + a["rx"] + vx_hi + eps,
            a["y"] - a["ry"] + vy_lo - eps, a["y"] + a["ry"] + vy_hi + eps)


def hazards_in_reach(parsed: dict, action: int) -> dict:
    """``{"saw"|"enemy"|"lava": [...]}``: the hazards the agent could touch during one step with ``action``
    (entity indices for saws/monsters, ``(x, y)`` tiles for lava). A superset of what can kill it."""
    x0, x1, y0, y1 = reach_box(parsed, action)
    found: dict = {}
    for i, e in enumerate(parsed["entities"]):
        if e["type_id"] in HAZARDS:  # (has_agent_collision ignores will_erase too)
            m = abs(e["vx"]) + abs(e["vy"]) + max(0.0, e["collision_margin"])  # its own move this step
            if e["x"] + e["rx"] + m > x0 and e["x"] - e["rx"] - m < x1 and e["y"] + e["ry"] + m > y0 \
                    and e["y"] - e["ry"] - m < y1:
                found.setdefault(HAZARDS[e["type_id"]], []).append(i)
    grid = parsed["grid"]
    h, w = grid.shape
    for y in range(max(0, int(np.floor(y0))), min(h, int(np.floor(y1)) + 1)):
        for x in range(max(0, int(np.floor(x0))), min(w, int(np.floor(x1)) + 1)):
            if grid[y, x] in LAVA_TILES:
                found.setdefault("lava", []).append((x, y))
    return found


_REPLAY_ENVS: dict = {}


def _replay_env(options: dict | None):
    """A cached 1-env procgen CoinRun (no worker threads) made with the same options."""
    key = tuple(sorted((options or {}).items()))
    if key not in _REPLAY_ENVS:
        from .gym3_env import gym3_env

        _REPLAY_ENVS[key] = gym3_env("coinrun", 1, 0, {**(options or {}), "num_threads": 0})
    return _REPLAY_ENVS[key]


def replay_step(state: bytes, action: int, options: dict | None = None) -> tuple:
    """Load ``state`` into the cached replay env and step once: ``(reward, done, level_complete, state_after)``.
    When ``done``, ``state_after`` is already the next episode's (the game resets at once)."""
    env = _replay_env(options)
    env.callmethod("set_state", [state])
    env.act(np.array([action], dtype=np.int32))
    rew, _, first = env.observe()
    info = env.get_info()[0]
    return float(rew[0]), bool(first[0]), bool(info.get("prev_level_complete", 0)), env.callmethod("get_state")[0]


def make_harmless(parsed: dict, lethal: tuple = ()) -> dict:
    """A copy in which nothing but the categories in ``lethal`` can kill, with unchanged physics: hazard
    entities get a collision margin of -(1e6 + index) (has_collision then never fires; the margin is used for
    nothing else in CoinRun, and it tags the entity), and lava tiles become SPACE (lava neither blocks nor
    supports, so the agent moves the same)."""
    p = dict(parsed)
    p["entities"] = [dict(e) for e in parsed["entities"]]
    for i, e in enumerate(p["entities"]):
        if e["type_id"] in HAZARDS and HAZARDS[e["type_id"]] not in lethal:
            e["collision_margin"] = -(1e6 + i)
    if "lava" not in lethal:
        p["grid"] = np.where(np.isin(parsed["grid"], LAVA_TILES), SPACE, parsed["grid"]).astype(np.int32)
    return p


def killers(state_before: bytes, action: int, options: dict | None = None) -> list | None:
    """Everything that touches the agent in the step ``action`` takes from ``state_before``, in the order
    BasicAbstractGame::game_step checks it (entities from last to first; lava when it reaches the agent):
    a list of ``("saw"|"enemy", entity_index)`` / ``("lava", (x, y))``, found by replaying the step with every
    hazard made harmless and applying the game's collision rules to the exact positions after the move.
    Returns None when that step ends the episode anyway (goal, timeout, out of bounds)."""
    before = parse_state(state_before)
    _, done, _, after_bytes = replay_step(serialize_state(make_harmless(before)), action, options)
    if done:
        return None
    after = parse_state(after_bytes)
    moved = {}  # entity index before -> its dict after the move, matched by the margin tag
    for e in after["entities"]:
        if e["type_id"] in HAZARDS and e["collision_margin"] <= -1e6:
            moved[int(round(-e["collision_margin"] - 1e6))] = e
    agent_idx = next(i for i in range(len(before["entities"]) - 1, -1, -1)
                     if before["entities"][i]["type_id"] == PLAYER)
    found = []
    for i in range(len(before["entities"]) - 1, -1, -1):  # game_step's collision loop
        e = before["entities"][i]
        if i in moved and _collides(moved[i], after["agent"], e["collision_margin"]):
            found.append((HAZARDS[e["type_id"]], i))
        if i == agent_idx:  # the agent is a smart_step entity: check_grid_collisions -> handle_grid_collision
            found += [("lava", xy) for xy, t in _agent_tiles(before, after["agent"]) if t in LAVA_TILES]
    return found


def end_cause(state_before: bytes, action: int, options: dict | None = None, replay: bool = False) -> str:
    """Why the step ``action`` from ``state_before`` ended the episode (given it was not success or timeout):
    ``"saw"``, ``"enemy"``, ``"lava"`` or ``"other"``.

    Fast path: the hazards within the agent's one-step reach (:func:`hazards_in_reach`) are a superset of what
    can have killed it, and nothing else in CoinRun ends an episode early; so if they are all of one kind, that
    kind is the cause, and if there are none the cause is "other". Otherwise (or with ``replay=True``) the step
    is replayed with hazards made harmless (:func:`killers`) and the first hazard the game would have hit is
    the cause; should float rounding leave that empty, each kind alone is made lethal and the first with which
    the step still ends the episode is the cause.
    """
    parsed = parse_state(state_before)
    if not replay:
        kinds = hazards_in_reach(parsed, action)
        if not kinds:
            return "other"
        if len(kinds) == 1 and parsed["cur_time"] + 1 < parsed["timeout"]:
            return next(iter(kinds))
    found = killers(state_before, action, options)
    if found:
        return found[0][0]
    if found is None:  # the step ends the episode even with every hazard harmless
        return "other"
    for kind in ("saw", "enemy", "lava"):  # counterfactual: only this kind can kill
        if replay_step(serialize_state(make_harmless(parsed, lethal=(kind,))), action, options)[1]:
            return kind
    return "other"


# --- where things are in the 64x64 observation ----------------------------------------------------
def camera(parsed: dict, obs_hw: int = 64) -> tuple:
    """``(unit, x_off, y_off, view_dim)`` as BasicAbstractGame::prepare_for_drawing computes them for a
    render ``obs_hw`` pixels high (centred on the agent when ``center_agent``)."""
    if parsed["center_agent"]:
        cx, cy, vis = parsed["agent"]["x"], parsed["agent"]["y"], parsed["visibility"]
    else:
        cx, cy = parsed["main_width"] * 0.5, parsed["main_height"] * 0.5
        vis = max(parsed["main_width"], parsed["main_height"], parsed["min_visibility"])
    raw_unit = 64 / vis
    unit = raw_unit * (obs_hw / 64.0)
    view_dim = 64.0 / raw_unit
    return unit, unit * (cx - view_dim / 2), unit * (cy - view_dim / 2), view_dim


def screen_rect(parsed: dict, x: float, y: float, dx: float, dy: float, obs_hw: int = 64) -> tuple:
    """BasicAbstractGame::get_screen_rect of the world box with top-left ``(x, y)`` (y up) and size
    ``(dx, dy)``: pixel ``(left, top, width, height)``, rows counted down from the top of the observation."""
    unit, x_off, y_off, view_dim = camera(parsed, obs_hw)
    return x * unit - x_off, (view_dim - y) * unit + y_off, dx * unit, dy * unit


def entity_rect(parsed: dict, e: dict, obs_hw: int = 64, draw_rect: bool = False) -> tuple:
    """Pixel rect ``(left, top, width, height)`` of entity ``e``'s box (get_object_rect). With ``draw_rect``
    the rect its image is drawn in: for the agent 1.7415 times the box high, extending upwards
    (CoinRun::get_adjusted_image_rect), though that extra part of the image is transparent."""
    left, top, w, h = screen_rect(parsed, e["x"] - e["rx"], e["y"] + e["ry"], 2 * e["rx"], 2 * e["ry"], obs_hw)
    if draw_rect and e["type_id"] == PLAYER:
        top, h = top - 0.7415 * h, 1.7415 * h
    return left, top, w, h


def _rect_mask(rect: tuple, hw: int) -> np.ndarray:
    """Pixels (of an ``(hw, hw)`` image) whose centre lies inside ``rect``."""
    left, top, w, h = rect
    c = np.arange(hw) + 0.5
    cols = (c >= left) & (c < left + w)
    rows = (c >= top) & (c < top + h)
    return rows[:, None] & cols[None, :]  # (hw, hw)


def entity_masks(parsed: dict, obs_shape: tuple = (64, 64)) -> dict:
    """Boolean ``(H, W)`` pixel masks of the observation per kind: the entities ``agent``, ``saw``, ``enemy``,
    ``crate`` (their boxes, which is where their images are drawn; the agent's image is drawn taller but its
    visible part lies in its box) and the tiles ``coin``, ``lava``, ``wall``. A pixel is in a mask when its
    centre is in the rect; masks include the sprites' transparent margins (a saw is a half-saw in its box)."""
    hw = int(obs_shape[0])
    if obs_shape[0] != obs_shape[1]:
        raise ValueError(f"procgen observations are square, got obs_shape {obs_shape}")
    masks = {k: np.zeros((hw, hw), bool) for k in ("agent", "saw", "enemy", "crate", "coin", "lava", "wall")}
    for e in parsed["entities"]:
        kind = e["type"]
        if kind in masks and not e["use_abs_coords"]:
            masks[kind] |= _rect_mask(entity_rect(parsed, e, hw), hw)
    unit, x_off, y_off, view_dim = camera(parsed, hw)
    # visible tile range (draw_foreground draws tiles around the centre)
    x_lo, x_hi = int(np.floor(x_off / unit)) - 1, int(np.ceil((x_off + hw) / unit)) + 1
    y_lo, y_hi = int(np.floor(y_off / unit)) - 1, int(np.ceil(y_off / unit + view_dim)) + 1
    tiles = {"coin": (GOAL,), "lava": LAVA_TILES, "wall": WALL_TILES}
    for y in range(y_lo, y_hi + 1):
        for x in range(x_lo, x_hi + 1):
            t = _tile(parsed, x, y)  # outside the grid the game draws out_of_bounds_object (a wall)
            for kind, ids in tiles.items():
                if t in ids:
                    masks[kind] |= _rect_mask(screen_rect(parsed, x, y + 1, 1, 1, hw), hw)
    return masks


__all__ = [
    "parse_state", "serialize_state", "end_cause", "killers", "hazards_in_reach", "reach_box", "make_harmless",
    "replay_step", "make_entity", "objects", "entity_masks", "entity_rect", "camera", "screen_rect", "type_name",
    "hide_entities", "HIDEABLE",
]
