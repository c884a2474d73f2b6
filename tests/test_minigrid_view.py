"""The numpy view of MiniGrid (policylens.envs.minigrid_view) against MiniGrid's own, on real envs."""
import gymnasium as gym
import numpy as np
import pytest
from minigrid.core.constants import TILE_PIXELS
from minigrid.minigrid_env import MiniGridEnv

from policylens.envs import minigrid_view as mv
from policylens.envs.minigrid import MiniGridVecEnv, _hidden
from policylens.envs.spec import parse_spec

# (id, make kwargs, objects to hide): walls seen through or not, doors in every state, keys carried, lava,
# several rooms, a view of 5 and of 3, a BabyAI level (whose step checks its instruction after MiniGrid's).
ENVS = [
    ("MiniGrid-Dynamic-Obstacles-8x8-v0", {}, ("ball",)),
    ("MiniGrid-DoorKey-6x6-v0", {}, ("key",)),
    ("MiniGrid-MultiRoom-N2-S4-v0", {}, ("goal",)),
    ("MiniGrid-LavaGapS7-v0", {}, ("lava",)),
    ("MiniGrid-KeyCorridorS3R1-v0", {}, ("key", "ball")),
    ("MiniGrid-Empty-8x8-v0", {"agent_view_size": 5}, ("goal",)),
    ("MiniGrid-DoorKey-8x8-v0", {"agent_view_size": 3}, ("key",)),
    ("BabyAI-UnlockPickup-v0", {}, ("key", "box")),
]


def _play(env, seeds=(0, 1, 2), steps=150):
    """Random actions over a few episodes' seeds; yields before every step (and after every reset)."""
    for seed in seeds:
        rng = np.random.default_rng(seed)
        env.reset(seed=seed)
        for t in range(steps):
            yield t
            _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            if terminated or truncated:
                env.reset(seed=1000 * seed + t)


@pytest.mark.parametrize("name,kwargs,hide", ENVS, ids=[e[0] + "".join(f"-{v}" for v in e[1].values()) for e in ENVS])
@pytest.mark.slow
def test_view_and_pov_equal_minigrids_own(name, kwargs, hide):
    env = gym.make(name, **kwargs).unwrapped
    assert mv.supported(env)
    carried, door_states, hidden_seen = 0, set(), 0
    doorkey = name == "MiniGrid-DoorKey-6x6-v0"  # played longer: keys carried, doors locked, closed and open
    for t in _play(env, *(((0, 1, 2, 3), 300) if doorkey else ())):
        grid, vis_ref = MiniGridEnv.gen_obs_grid(env)
        ref = grid.encode(vis_ref)
        image, vis = mv.view(env)
        assert image.dtype == np.uint8 and np.array_equal(image, ref), (name, t)
        assert np.array_equal(vis, vis_ref), (name, t)
        assert np.array_equal(image, MiniGridEnv.gen_obs(env)["image"])
        if t % 3 == 0:
            for ts in (8, TILE_PIXELS):
                frame = mv.pov_frame(env, ts)
                assert frame.dtype == np.uint8 and np.array_equal(frame, MiniGridEnv.get_pov_render(env, ts)), (name, ts, t)
        if t % 5 == 0:  # objects left out: as MiniGrid draws the grid with their cells emptied
            with _hidden(env, hide):
                ref_hidden = MiniGridEnv.gen_obs(env)["image"]
                ref_frame = MiniGridEnv.get_pov_render(env, 8)
            assert np.array_equal(mv.view(env, hide)[0], ref_hidden), (name, t)
            assert np.array_equal(mv.pov_frame(env, 8, hide), ref_frame), (name, t)
            hidden_seen += not np.array_equal(ref_hidden, ref)
        carried += env.carrying is not None
        door_states |= {int(s) for s in ref[..., 2][ref[..., 0] == 4]}
    assert hidden_seen > 0, "no step saw an object to hide: the test proves nothing about hide="
    if doorkey:  # the paths this env is here for were taken
        assert carried > 0 and door_states == {0, 1, 2}


def test_unseen_cells_and_walls_outside_the_grid():
    """Behind a wall nothing is seen (encoded zeros); seeing through walls, the view beyond the grid is walls."""
    env = gym.make("MiniGrid-LavaGapS7-v0").unwrapped
    env.reset(seed=0)
    env.agent_pos, env.agent_dir = np.array((1, 1)), 3  # in the top-left corner, facing up (out of the grid)
    image, vis = mv.view(env)
    size, mid = env.agent_view_size, env.agent_view_size // 2  # the view's x = world x - 1 + mid
    assert np.array_equal(image, MiniGridEnv.gen_obs(env)["image"])
    assert (image[mid - 1:, size - 2] == (2, 5, 0)).all() and vis[mid - 1:, size - 2].all()  # the top wall
    assert not vis[: mid - 1, size - 2].any() and not vis[:, : size - 2].any()  # beyond it and the left wall
    assert (image[~vis] == 0).all()
    env = gym.make("MiniGrid-Empty-8x8-v0").unwrapped  # sees through walls
    env.reset(seed=0)
    env.agent_pos, env.agent_dir = np.array((1, 1)), 3
    image, vis = mv.view(env)
    assert vis.all() and np.array_equal(image, MiniGridEnv.gen_obs(env)["image"])
    assert (image[:, : size - 1] == (2, 5, 0)).all()  # rows y = 0 (the grid's wall) and above (outside)


def test_the_slow_tile_path_equals_minigrids_own():
    """Encodings beyond the tile table's bounds go tile by tile through Grid.render_tile: same picture."""
    env = gym.make("MiniGrid-DoorKey-6x6-v0").unwrapped
    for t in _play(env, seeds=(3,), steps=60):
        _, vis, objs = mv._view(env, ())
        size = env.agent_view_size
        agent = mv.Grid.render_tile(objs[(size // 2) * size + size - 1], agent_dir=3, highlight=True, tile_size=8)
        assert np.array_equal(mv._slow_pov(size, vis, objs, 8, agent), MiniGridEnv.get_pov_render(env, 8)), t


def test_envs_that_draw_their_own_view_are_not_supported():
    class OwnView(type(gym.make("MiniGrid-Empty-5x5-v0").unwrapped)):
        def gen_obs(self):
            return super().gen_obs()

    assert mv.supported(gym.make("MiniGrid-Empty-5x5-v0").unwrapped)
    assert not mv.supported(OwnView())


def _rollout(spec: str, fast: bool, steps: int = 120):
    env = MiniGridVecEnv(parse_spec(spec), num_envs=3, seed=0, fast_view=fast)
    assert env.fast_view == fast
    rng = np.random.default_rng(0)
    out = [env.reset(0)]
    for _ in range(steps):
        obs, rewards, dones, info = env.step(rng.integers(0, env.action_space.n, env.num_envs))
        out += [obs, rewards, dones] + [i["final_obs"] for i in info if "final_obs" in i]
    states = env.get_state()
    env.set_state(states)  # replayed with MiniGrid's own image left out where fast
    out.append(env.observe())
    return out, env


@pytest.mark.parametrize("spec", [
    "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs=symbolic",
    "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs=onehot",
    "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs=rgb",
    "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs=onehot&invisible=ball",
    "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs=rgb&invisible=ball",
    "minigrid:MiniGrid-DoorKey-6x6-v0?obs=rgb&tile_size=5",
    "minigrid:MiniGrid-KeyCorridorS3R1-v0?obs=symbolic&invisible=key,ball",
])
@pytest.mark.slow
def test_vec_env_rollouts_are_the_same_with_the_fast_view(spec):
    fast, env = _rollout(spec, True)
    slow, _ = _rollout(spec, False)
    assert len(fast) == len(slow) > 300  # final observations included: some episodes ended
    for a, b in zip(fast, slow):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    for e in env.envs:  # MiniGrid's gen_obs is ours, and gives the whole image again outside our steps
        assert e.gen_obs.__func__ is mv.gen_obs
        assert np.array_equal(e.gen_obs()["image"], MiniGridEnv.gen_obs(e)["image"])
