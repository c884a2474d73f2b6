"""CoinRun ground truth parsed from procgen's state bytes (real procgen, no mocks)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("procgen")

import policylens.envs as E  # noqa: E402
from policylens.envs import coinrun as C  # noqa: E402

EASY = "procgen:coinrun?distribution_mode=easy&use_backgrounds=false"
HARD = "procgen:coinrun?distribution_mode=hard&use_backgrounds=false"
LEFT, NOOP, UP, RIGHT = 1, 4, 5, 7


@pytest.fixture(scope="module")
def truth_env():
    """1 env, easy level of seed 0: the agent starts at (1.5, 1.5787) on the floor (top at y = 1) and tiles
    x = 1..3, y = 1..2 are empty, a small arena for constructed situations."""
    env = E.make(EASY + "&ground_truth=true", num_envs=1, seed=0)
    start = env.get_state()[0]
    p = C.parse_state(start)
    assert (p["agent"]["x"], round(p["agent"]["y"], 4)) == (1.5, 1.5787)
    assert (p["grid"][1:3, 1:4] == C.SPACE).all() and (p["grid"][0, 1:4] == C.WALL_TOP).all()
    env.start = start
    return env


@pytest.fixture(scope="module")
def hard_states():
    """States of 4 hard levels at several points of random play (levels with saws, monsters, crates)."""
    env = E.make(HARD, num_envs=4, seed=1)
    rng = np.random.default_rng(0)
    states = list(env.get_state())
    for t in range(40):
        env.step(rng.choice([RIGHT, RIGHT + 1, UP, LEFT, NOOP], 4))
        if t % 8 == 7:
            states += env.get_state()
    return env, states


def play(env, parsed, action, max_steps=12):
    """Load ``parsed`` and press ``action`` until the episode ends: ``(steps, episode info, state before the
    last step)``; steps is None when it did not end."""
    env.set_state([C.serialize_state(parsed)])
    for k in range(max_steps):
        before = env.get_state()[0]
        _, _, done, info = env.step([action])
        if done[0]:
            return k + 1, info[0]["episode"], before
    return None, None, before


def arena(env, x=2.5, y=4.0, vx=0.0, vy=0.0):
    p = C.parse_state(env.start)
    p["agent"].update(x=x, y=y, vx=vx, vy=vy)
    return p


# --- parsing ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_round_trip_is_byte_exact_and_accepted_by_the_game(hard_states):
    env, states = hard_states
    parsed = [C.parse_state(s) for s in states]
    assert len({p["current_level_seed"] for p in parsed}) >= 3  # several levels
    assert max(p["cur_time"] for p in parsed) >= 8  # and mid-episode states
    assert {e["type"] for p in parsed for e in p["entities"]} >= {"agent", "saw", "crate"}
    for s, p in zip(states, parsed):
        assert C.serialize_state(p) == s
    env.set_state([C.serialize_state(p) for p in parsed[-4:]])
    assert env.get_state() == states[-4:]


@pytest.mark.slow
def test_fields_are_what_the_game_uses(truth_env):
    env = truth_env
    p = C.parse_state(env.start)
    assert p["game_name"] == "coinrun" and p["distribution_mode"] == 0 and p["use_backgrounds"] == 0
    assert p["grid"].shape == (p["main_height"], p["main_width"]) == (64, 64)
    assert p["current_level_seed"] == env._level_seeds[0]
    assert p["grid"][p["coin"][1], p["coin"][0]] == C.GOAL
    p["agent"]["x"] = 3.25  # an edited field reaches the game
    env.set_state([C.serialize_state(p)])
    after = C.parse_state(env.get_state()[0])
    assert after["agent"]["x"] == 3.25 and after["cur_time"] == p["cur_time"]
    env.step([NOOP])
    assert C.parse_state(env.get_state()[0])["cur_time"] == p["cur_time"] + 1


@pytest.mark.slow
def test_agent_moves_right_and_jumps_under_gravity(truth_env):
    env = truth_env
    env.set_state([env.start])
    track = [C.parse_state(env.get_state()[0])["agent"]]
    for a in [RIGHT] * 4 + [UP] + [NOOP] * 5:
        env.step([a])
        track.append(C.parse_state(env.get_state()[0])["agent"])
    xs = [a["x"] for a in track[:5]]
    assert all(b > a for a, b in zip(xs, xs[1:])) and track[4]["vx"] > 0  # RIGHT: x grows
    assert track[5]["vy"] == pytest.approx(1.5) and track[5]["y"] == pytest.approx(track[4]["y"] + 1.5)  # jump
    for prev, cur in zip(track[5:], track[6:]):  # in the air: gravity 0.2 per step, y moves by the new vy
        assert cur["vy"] == pytest.approx(prev["vy"] - 0.2, abs=1e-5)
        assert cur["y"] == pytest.approx(prev["y"] + cur["vy"], abs=1e-5)


@pytest.mark.slow
def test_make_entity_builds_what_the_game_builds(hard_states):
    _, states = hard_states
    fresh = [e for s in states[:4] for e in C.parse_state(s)["entities"]]  # level starts: nothing stepped yet
    for kind in ("saw", "crate"):
        real = next(e for e in fresh if e["type"] == kind)
        assert C.make_entity(kind, real["x"], real["y"], image_theme=real["image_theme"]) == real
    env8 = E.make(HARD, num_envs=8, seed=0)  # seed 0 has a level with monsters
    monster = next(e for s in env8.get_state() for e in C.parse_state(s)["entities"] if e["type"] == "enemy")
    assert C.make_entity("enemy", monster["x"], monster["y"], vx=monster["vx"],
                         image_theme=monster["image_theme"]) == monster


@pytest.mark.slow
def test_bad_states_raise_clear_errors(truth_env, hard_states):
    s = truth_env.start
    with pytest.raises(ValueError, match="truncated"):
        C.parse_state(s[:-100])
    with pytest.raises(ValueError, match="truncated"):
        C.parse_state(s[:10])
    with pytest.raises(ValueError, match="end as expected"):
        C.parse_state(s + b"\0\0\0\0")
    maze = E.make("procgen:maze", num_envs=1, seed=0).get_state()[0]
    with pytest.raises(ValueError, match="not a CoinRun state.*'maze'"):
        C.parse_state(maze)
    with pytest.raises(ValueError, match="bytes"):
        C.parse_state("coinrun")
    p = C.parse_state(s)
    p["agent"]["type"] = "saw"
    with pytest.raises(ValueError, match="type_id"):
        C.serialize_state(p)


# --- why episodes end -------------------------------------------------------------------------------
HAZARD_SETUPS = {
    # kind: (edit that places the hazard, agent start, action)
    ("saw", "land"): (lambda p: p["entities"].append(C.make_entity("saw", 2.5, 1.5)), (2.5, 4.0), NOOP),
    ("enemy", "land"): (lambda p: p["entities"].append(C.make_entity("enemy", 2.5, 1.5, vx=0.15)), (2.5, 4.0), NOOP),
    ("lava", "land"): (lambda p: p["grid"].__setitem__((1, 2), C.LAVA_TOP), (2.5, 4.0), NOOP),
    ("saw", "walk"): (lambda p: p["entities"].append(C.make_entity("saw", 3.5, 1.5)), (1.5, 1.5787), RIGHT),
    ("enemy", "walk"): (lambda p: p["entities"].append(C.make_entity("enemy", 3.5, 1.5, vx=-0.15)),
                        (1.5, 1.5787), RIGHT),
    ("lava", "walk"): (lambda p: p["grid"].__setitem__((1, 3), C.LAVA_MID), (1.5, 1.5787), RIGHT),
}


@pytest.mark.parametrize("kind,how", sorted(HAZARD_SETUPS))
def test_constructed_death_is_labelled_with_its_hazard(truth_env, kind, how):
    edit, (x, y), action = HAZARD_SETUPS[kind, how]
    p = arena(truth_env, x, y)
    edit(p)
    steps, episode, before = play(truth_env, p, action)
    assert steps is not None and steps <= 8, "the constructed situation should end the episode within a few steps"
    assert episode["cause"] == kind and not episode["success"]
    assert C.end_cause(before, action, truth_env.options, replay=True) == kind  # replay agrees with the fast path
    assert [k for k, _ in C.killers(before, action, truth_env.options)] == [kind]


@pytest.mark.parametrize("how", ["land", "walk"])
def test_control_without_hazard_survives(truth_env, how):
    _, (x, y), action = HAZARD_SETUPS["saw", how]
    steps, _, _ = play(truth_env, arena(truth_env, x, y), action)
    assert steps is None


def test_hazard_removed_by_editing_survives(truth_env):
    p = arena(truth_env)
    HAZARD_SETUPS["enemy", "land"][0](p)
    p["entities"] = [e for e in p["entities"] if e["type"] != "enemy"]  # the edit is undone through the dict
    assert play(truth_env, p, NOOP)[0] is None


@pytest.mark.parametrize("hit,near", [("saw", "lava"), ("lava", "saw")])
def test_two_hazards_in_reach_are_settled_by_replay(truth_env, hit, near):
    """The agent falls onto one hazard with the other in the next column: both are within one step's reach,
    so the fast path cannot decide and the replay must find the one actually touched."""
    p = arena(truth_env)
    for kind, x in ((hit, 2), (near, 3)):
        if kind == "saw":
            p["entities"].append(C.make_entity("saw", x + 0.5, 1.5))
        else:
            p["grid"][1, x] = C.LAVA_TOP
    steps, episode, before = play(truth_env, p, NOOP)
    assert steps is not None and episode["cause"] == hit
    assert set(C.hazards_in_reach(C.parse_state(before), NOOP)) == {"saw", "lava"}
    assert [k for k, _ in C.killers(before, NOOP, truth_env.options)] == [hit]  # the neighbour is not touched


@pytest.mark.parametrize("order", [("saw", "enemy"), ("enemy", "saw")])
def test_simultaneous_hits_go_to_the_hazard_the_game_checks_first(truth_env, order):
    """Landing on a saw and a monster at once: both end the episode; the cause is the one
    BasicAbstractGame::game_step checks first, i.e. the later one in the entity list."""
    p = arena(truth_env)
    for kind in order:
        p["entities"].append(C.make_entity(kind, 2.5 if kind == "saw" else 3.2, 1.5))
    steps, episode, before = play(truth_env, p, NOOP)
    assert steps is not None and episode["cause"] == order[-1]
    assert [k for k, _ in C.killers(before, NOOP, truth_env.options)] == [order[-1], order[0]]


def test_reaching_the_coin_is_success(truth_env):
    p = C.parse_state(truth_env.start)
    gx, gy = p["coin"]
    assert p["grid"][gy - 1, gx - 1] in C.WALL_TILES  # there is ground left of the coin to stand on
    p["agent"].update(x=gx - 0.6, y=gy + 0.5787)
    steps, episode, _ = play(truth_env, p, RIGHT)
    assert steps is not None and episode["cause"] == "success" and episode["success"] and episode["return"] == 10


@pytest.mark.slow
def test_real_deaths_fast_path_matches_replay():
    """Deaths of a scripted runner in hard levels: the fast answer equals the replayed one, and the replayed
    cause is one whose hazards alone still kill (checked by the game itself)."""
    env = E.make(HARD + "&ground_truth=true", num_envs=8, seed=3)
    rng = np.random.default_rng(0)
    seen, moves = [], 0
    for _ in range(150):
        before = env.get_state()
        actions = rng.choice([RIGHT, RIGHT + 1, RIGHT + 1, UP, LEFT, NOOP], 8)
        _, reward, done, info = env.step(actions)
        for i in np.flatnonzero(done & (reward == 0)):
            seen.append((info[i]["episode"]["cause"], before[i], int(actions[i])))
        for i, after in enumerate(env.get_state()):  # the fast path's one-step reach bounds every real move
            if not done[i]:
                p, a = C.parse_state(before[i]), C.parse_state(after)["agent"]
                x0, x1, y0, y1 = C.reach_box(p, int(actions[i]))
                assert x0 <= a["x"] - a["rx"] and a["x"] + a["rx"] <= x1
                assert y0 <= a["y"] - a["ry"] and a["y"] + a["ry"] <= y1
                moves += 1
    assert len(seen) >= 5 and moves > 1000
    for cause, s, a in seen:
        assert cause in ("saw", "enemy", "lava")
        assert C.end_cause(s, a, env.options, replay=True) == cause
        only = C.make_harmless(C.parse_state(s), lethal=(cause,))
        assert C.replay_step(C.serialize_state(only), a, env.options)[1]


def test_wrapper_entities_include_agent_and_coin(truth_env):
    truth_env.set_state([truth_env.start])
    (objs,) = truth_env.entities()
    coin = next(o for o in objs if o["type"] == "coin")
    agent = next(o for o in objs if o["type"] == "agent")
    gx, gy = C.parse_state(truth_env.start)["coin"]
    assert (coin["x"], coin["y"]) == (gx + 0.5, gy + 0.5)
    assert (agent["x"], agent["y"]) == (1.5, pytest.approx(1.5787))


# --- where things are on screen ---------------------------------------------------------------------
@pytest.mark.slow
def test_camera_matches_the_games_own(hard_states):
    _, states = hard_states
    for s in states:
        p = C.parse_state(s)
        unit, x_off, y_off, view_dim = C.camera(p)
        stored = (p["unit"], p["x_off"], p["y_off"], p["view_dim"])  # from the game's last render
        assert (unit, x_off, y_off, view_dim) == pytest.approx(stored, abs=1e-3)


def _pixels_changed(env, p, edit):
    env.set_state([C.serialize_state(p)])
    a = env.observe()[0].astype(int)
    q = C.parse_state(C.serialize_state(p))
    edit(q)
    env.set_state([C.serialize_state(q)])
    return np.abs(env.observe()[0].astype(int) - a).sum(-1) > 0  # (64, 64)


def _hide(kind):
    def edit(q):
        for e in q["entities"]:
            if e["type"] == kind:
                e["alpha"] = 0.0  # drawn fully transparent (draw_image's setOpacity), physics untouched
    return edit


@pytest.mark.parametrize("kind,edit", [
    ("agent", _hide("agent")),
    ("saw", _hide("saw")),
    ("enemy", _hide("enemy")),
    ("lava", lambda q: q["grid"].__setitem__(np.isin(q["grid"], C.LAVA_TILES), C.SPACE)),
    ("coin", lambda q: q["grid"].__setitem__(q["grid"] == C.GOAL, C.SPACE)),
])
def test_entity_masks_cover_exactly_the_pixels_that_change(truth_env, kind, edit):
    """Hiding one kind of object changes pixels only inside its mask (and a fair share of it)."""
    p = arena(truth_env, x=2.5, y=1.5787)
    p["entities"] += [C.make_entity("saw", 4.5, 3.5), C.make_entity("enemy", 1.5, 3.5)]
    p["grid"][1, 3], p["grid"][2, 1] = C.LAVA_TOP, C.LAVA_MID
    gx, gy = p["coin"]
    p["grid"][gy, gx] = C.SPACE
    p["grid"][3, 3] = C.GOAL  # a coin in view
    mask = C.entity_masks(p)[kind]
    changed = _pixels_changed(truth_env, p, edit)
    assert 0 < mask.sum() < 0.05 * mask.size
    assert changed.any() and not (changed & ~mask).any()
    assert (changed & mask).sum() >= (0.5 if kind == "agent" else 0.15) * mask.sum()
    for other, m in C.entity_masks(p).items():  # and none inside another object's mask
        if other not in (kind, "wall"):
            assert not (m & changed).any(), other


# --- invisible entities (seed 001's control: the agent playing with invisible buzzsaws) -----------------------
@pytest.mark.slow
def test_invisible_saws_change_only_saw_pixels_and_nothing_of_the_game():
    """``invisible=saw`` plays exactly the game the plain env plays (same rewards, ends, causes, and states but
    for the saws' alpha), in every episode, including those started by an automatic reset; the frames differ
    only inside the saws' masks."""
    spec = EASY + "&ground_truth=true"
    plain, hidden = E.make(spec, num_envs=2, seed=3), E.make(spec + "&invisible=saw", num_envs=2, seed=3)
    obs_p, obs_h = plain.reset(3), hidden.reset(3)
    rng = np.random.default_rng(0)
    differing, ends, saw_frames = 0, 0, 0
    for t in range(400):
        states_p = [C.parse_state(s) for s in plain.get_state()]
        states_h = [C.parse_state(s) for s in hidden.get_state()]
        for sp, sh in zip(states_p, states_h):
            assert [e["alpha"] for e in sh["entities"] if e["type"] == "saw"] == \
                [0.0] * sum(e["type"] == "saw" for e in sp["entities"])
            for e in sh["entities"]:
                e["alpha"] = 1.0 if e["type"] == "saw" else e["alpha"]
            assert C.serialize_state(sh) == C.serialize_state(sp)  # the same game, byte for byte
        for i, sp in enumerate(states_p):
            saw = C.entity_masks(sp)["saw"]
            changed = (obs_p[i] != obs_h[i]).any(-1)  # (H, W)
            assert not (changed & ~saw).any(), f"step {t}, env {i}: a pixel outside the saws changed"
            differing += bool(changed.any())
            saw_frames += bool(saw.any())
        actions = rng.choice([RIGHT, RIGHT + 1, RIGHT + 1, UP, NOOP], 2)
        obs_p, rew_p, done_p, info_p = plain.step(actions)
        obs_h, rew_h, done_h, info_h = hidden.step(actions)
        assert (obs_h == hidden.observe()).all(), f"step {t}: step returned a frame drawn before the saws were hidden"
        assert (rew_p == rew_h).all() and (done_p == done_h).all() and info_p == info_h
        ends += int(done_p.sum())
    assert ends >= 2 and saw_frames > 50 and differing > 0.5 * saw_frames


def test_invisible_refuses_what_it_cannot_hide():
    with pytest.raises(ValueError, match="lava cannot be hidden; expected any of saw, enemy, crate"):
        E.make(EASY + "&invisible=saw,lava", num_envs=1, seed=0)
    with pytest.raises(ValueError, match="coinrun only"):
        E.make("procgen:maze?invisible=saw", num_envs=1, seed=0)
    with pytest.raises(ValueError, match="cannot hide"):
        C.hide_entities(E.make(EASY, num_envs=1, seed=0).get_state()[0], ["agent"])
