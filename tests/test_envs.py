import numpy as np
import pytest

from policylens.envs import CAUSES, make, make_minigrid, parse_spec
from policylens.envs.minigrid import onehot

DO5 = "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0"


def test_spec_round_trip_and_types():
    spec = parse_spec("procgen:coinrun?distribution_mode=easy&num_levels=500&use_backgrounds=false")
    assert (spec.family, spec.name) == ("procgen", "coinrun")
    assert spec.options == {"distribution_mode": "easy", "num_levels": 500, "use_backgrounds": False}
    assert parse_spec(str(spec)) == spec
    assert spec.replace(num_levels=None).options == {"distribution_mode": "easy", "use_backgrounds": False}


@pytest.mark.parametrize("bad, words", [
    ("coinrun", "family:name"),
    ("nes:pong", "procgen.*atari"),
    ("procgen:coinrunn", "coinrun"),
    ("procgen:coinrun?num_lvls=3", "num_levels"),
    ("minigrid:MiniGrid-Nope-v0", "MiniGrid-Dynamic-Obstacles-8x8-v0"),
    (DO5 + "?obs=pixels", "rgb"),
])
def test_bad_specs_name_the_valid_choices(bad, words):
    with pytest.raises(ValueError, match=words):
        make(bad)


def test_make_minigrid_gives_the_minigrid_games_and_refuses_other_families():
    env = make_minigrid("minigrid:MiniGrid-Empty-5x5-v0", 2, seed=0)
    assert len(env.envs) == 2 and env.envs[0].max_steps > 0
    with pytest.raises(ValueError, match="not a MiniGrid env"):
        make_minigrid("gym:CartPole-v1")


@pytest.mark.parametrize("mode, shape, scale", [("symbolic", (7, 7, 3), 0.1), ("onehot", (7, 7, 20), 1.0),
                                                ("rgb", (56, 56, 3), 1 / 255)])
def test_minigrid_observation_modes(mode, shape, scale):
    env = make(f"{DO5}?obs={mode}", num_envs=2, seed=0)
    obs = env.reset(0)
    assert obs.shape == (2, *shape) and obs.dtype == np.uint8
    assert env.observation_space.shape == shape and env.obs_scale == pytest.approx(scale)
    assert env.action_names == ["left", "right", "forward"]


def test_onehot_encodes_each_plane():
    image = np.array([[[10, 5, 2]]], dtype=np.uint8)  # agent, grey, locked
    out = onehot(image)[0, 0]
    assert out.sum() == 3 and out[10] == 1 and out[11 + 5] == 1 and out[17 + 2] == 1


def _run_random(env, steps, seed):
    rng = np.random.default_rng(seed)
    trace = []
    for _ in range(steps):
        obs, rew, done, info = env.step(rng.integers(0, env.action_space.n, env.num_envs))
        trace.append((obs.copy(), rew.copy(), done.copy(), [i.get("episode") for i in info]))
    return trace


def _same(a, b):
    return all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) and np.array_equal(x[2], y[2])
               and x[3] == y[3] for x, y in zip(a, b))


@pytest.mark.parametrize("spec, n, steps", [(DO5 + "?obs=rgb", 3, 120), ("procgen:coinrun?distribution_mode=easy", 8, 400)])
@pytest.mark.slow
def test_same_seed_same_trajectory_and_snapshot_restores_exactly(spec, n, steps):
    a, b = make(spec, num_envs=n, seed=7), make(spec, num_envs=n, seed=7)
    assert np.array_equal(a.reset(7), b.reset(7))
    assert _same(_run_random(a, 40, 0), _run_random(b, 40, 0))
    snap = a.snapshot()
    first = _run_random(a, steps, 1)
    a.restore(snap)
    assert _same(first, _run_random(a, steps, 1))
    assert any(any(e is not None for e in step[3]) for step in first), "no episode ended: the test saw no reset"


@pytest.mark.slow
def test_minigrid_episode_records_and_causes_from_the_grid():
    env = make(DO5, num_envs=4, seed=0)
    env.reset(0)
    rng = np.random.default_rng(0)
    seen = []
    returns = np.zeros(4)
    for _ in range(400):
        _, rew, done, info = env.step(rng.integers(0, 3, 4))
        returns += rew
        for i in np.flatnonzero(done):
            ep = info[i]["episode"]
            assert ep["return"] == pytest.approx(returns[i]) and ep["cause"] in CAUSES
            assert ep["success"] == (ep["cause"] == "success") == (ep["return"] > 0)
            if ep["cause"] in ("obstacle", "wall"):
                assert ep["return"] == -1
            seen.append(ep["cause"])
            returns[i] = 0
    assert {"obstacle", "wall"} <= set(seen)


def _place(env, i=0):
    """A 5x5 Dynamic-Obstacles level with the agent at (1,1) facing east, nothing but walls around."""
    u = env.envs[i]
    for x in range(1, 4):
        for y in range(1, 4):
            u.grid.set(x, y, None)
    u.obstacles = []
    u.agent_pos, u.agent_dir = np.array((1, 1)), 0
    return u


def test_minigrid_constructed_causes():
    from minigrid.core.world_object import Ball, Goal

    env = make(DO5, num_envs=1, seed=0)
    env.reset(0)
    u = _place(env)
    u.put_obj(Goal(), 2, 1)
    assert env.step([2])[3][0]["episode"]["cause"] == "success"

    u = _place(env)
    ball = Ball()
    u.put_obj(ball, 2, 1)
    u.obstacles = []  # keep it still
    assert env.step([2])[3][0]["episode"]["cause"] == "obstacle"

    u = _place(env)
    u.agent_dir = 2  # facing the west wall
    assert env.step([2])[3][0]["episode"]["cause"] == "wall"

    u = _place(env)
    u.step_count = u.max_steps - 1
    assert env.step([0])[3][0]["episode"]["cause"] == "timeout"


@pytest.mark.slow
def test_minigrid_levels_are_seeds():
    env = make(DO5 + "?start_level=100&num_levels=3", num_envs=8, seed=0)
    env.reset(0)
    seen = set()
    for _ in range(200):
        _, _, _, info = env.step(np.full(8, 2))
        seen |= {i["level_seed"] for i in info}
    assert seen <= {100, 101, 102} and len(seen) == 3


def test_procgen_options_reach_the_game():
    plain = make("procgen:coinrun?distribution_mode=easy&use_backgrounds=false", num_envs=1, seed=0).reset(0)
    mono = make("procgen:coinrun?distribution_mode=easy&use_backgrounds=false&use_monochrome_assets=true",
                num_envs=1, seed=0).reset(0)
    assert plain.shape == (1, 64, 64, 3) and not np.array_equal(plain, mono)
    env = make("procgen:maze?num_levels=1&start_level=5", num_envs=2, seed=0)
    env.reset(0)
    _, _, _, info = env.step([4, 4])
    assert {i["level_seed"] for i in info} == {5}


def test_minigrid_num_actions_keeps_the_first_actions():
    env = make("minigrid:MiniGrid-Empty-Random-6x6-v0?num_actions=3", num_envs=1, seed=0)
    assert env.action_space.n == 3 and env.action_names == ["left", "right", "forward"]
    with pytest.raises(ValueError, match="num_actions=9"):
        make("minigrid:MiniGrid-Empty-Random-6x6-v0?num_actions=9", num_envs=1)


@pytest.mark.parametrize("obs", ["symbolic", "rgb"])
@pytest.mark.slow
def test_minigrid_invisible_balls_leave_the_game_and_the_rest_of_the_view_alone(obs):
    """``invisible=ball``: the same game (rewards, ends, causes, entities), and the view differs from the plain
    env's only where a ball stands, and there always."""
    from policylens.envs.masks import minigrid_masks

    spec = f"minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs={obs}"
    plain, hidden = make(spec, num_envs=2, seed=5), make(spec + "&invisible=ball", num_envs=2, seed=5)
    obs_p, obs_h = plain.reset(5), hidden.reset(5)
    rng = np.random.default_rng(0)
    ends = hid = 0
    for t in range(300):
        ents = plain.entities()
        assert ents == hidden.entities()
        for i in range(2):
            balls = minigrid_masks(ents[i], obs_p.shape[1:]).get("ball", np.zeros(obs_p.shape[1:3], bool))
            changed = (obs_p[i] != obs_h[i]).any(-1)  # (7, 7) cells or (56, 56) pixels
            assert not (changed & ~balls).any(), f"step {t}: a cell without a ball changed"
            tile = obs_p.shape[1] // 7
            seen = changed.reshape(7, tile, 7, tile).any((1, 3))  # (7, 7): cells where something changed
            assert (seen == balls[::tile, ::tile]).all()  # every ball in view is gone
            hid += int(balls.sum())
        actions = rng.integers(0, 3, 2)
        obs_p, rew_p, done_p, info_p = plain.step(actions)
        obs_h, rew_h, done_h, info_h = hidden.step(actions)
        assert (rew_p == rew_h).all() and (done_p == done_h).all()
        for ip, ih in zip(info_p, info_h):  # the same episode records; the last frames differ as the views do
            final_p, final_h = ip.pop("final_obs", None), ih.pop("final_obs", None)
            assert ip == ih and (final_p is None) == (final_h is None)
        ends += int(done_p.sum())
    assert ends >= 5 and hid > 100
    with pytest.raises(ValueError, match="wall cannot be hidden"):
        make(spec + "&invisible=wall", num_envs=1, seed=0)
