"""Gymnasium views of policylens envs: Gymnasium's own checker, the vector API's conventions, and a real
Stable-Baselines3 PPO trained on a MiniGrid view with the causes coming through ``info``."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, VectorEnv

from policylens.envs import CAUSES, as_gymnasium, gymnasium_env, make

MINIGRID = "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0"


@pytest.mark.parametrize("spec", [MINIGRID, MINIGRID + "?obs=rgb", "gym:CartPole-v1?stack=2",
                                  "procgen:coinrun?distribution_mode=easy&ground_truth=true"])
def test_single_view_passes_gymnasiums_env_checker(spec):
    env = gymnasium_env(spec, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker warning fails the test ...
        warnings.filterwarnings("ignore", message=".*infinity.*")  # ... but CartPole's own unbounded velocities
        check_env(env, skip_render_check=True)
    env.close()


def test_single_view_ends_an_episode_and_reset_starts_the_next():
    env = gymnasium_env(MINIGRID, seed=3)
    twin = make(MINIGRID, num_envs=1)  # the same env, driven directly
    obs, info = env.reset()
    assert np.array_equal(obs, twin.reset(3)[0]) and info["level_seed"] == twin._level_seeds[0]
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = int(rng.integers(3))
        obs, reward, terminated, truncated, info = env.step(a)
        o, r, d, i = twin.step([a])
        assert reward == r[0] and (terminated or truncated) == d[0]
        if d[0]:
            assert np.array_equal(obs, i[0]["final_obs"]) and info["cause"] == i[0]["episode"]["cause"]
            assert info["cause"] in CAUSES and terminated != truncated
            with pytest.raises(RuntimeError, match="reset"):
                env.step(0)
            nxt, info = env.reset()
            assert np.array_equal(nxt, o[0]) and info["level_seed"] == i[0]["level_seed"]
        else:
            assert np.array_equal(obs, o[0])
    assert info["entities"] and info["entities"][0]["type"] == "agent"  # MiniGrid's ground truth in info


def test_vector_view_follows_the_vector_api():
    env = make("gym:CartPole-v1?max_steps=7", num_envs=3)
    view = as_gymnasium(env)
    assert isinstance(view, VectorEnv) and view.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert view.observation_space.shape == (3, 4) and view.single_observation_space == env.observation_space
    assert view.action_space.shape == (3,) and view.single_action_space.n == 2
    obs, infos = view.reset(seed=0)
    assert obs in view.observation_space and infos["_level_seed"].all() and infos["level_seed"].dtype.kind == "i"
    view.action_space.seed(0)
    cut = 0
    for _ in range(20):
        obs, reward, terminated, truncated, infos = view.step(view.action_space.sample())
        assert obs in view.observation_space
        assert reward.shape == (3,) and reward.dtype == np.float64
        assert terminated.dtype == truncated.dtype == np.bool_ and not (terminated & truncated).any()
        ended, cut = terminated | truncated, cut + int(truncated.sum())
        if ended.any():
            assert (infos["_episode"] == ended).all() and (infos["_final_obs"] == ended).all()
            for i in np.flatnonzero(ended):
                cause = infos["episode"]["cause"][i]
                assert (cause == "timeout") == truncated[i] and (cause == "other") == terminated[i]
                assert infos["episode"]["l"][i] <= 7 and infos["final_obs"][i].shape == (4,)
                assert infos["final_obs"][i] in view.single_observation_space
                assert infos["final_info"]["cause"][i] == cause
        else:
            assert "episode" not in infos
    assert cut > 0  # episodes of seven steps at most: some were cut by the time limit
    view.close()


def test_vector_view_gives_causes_and_entities_as_the_env_does():
    env, twin = make(MINIGRID, num_envs=4), make(MINIGRID, num_envs=4)
    view = as_gymnasium(env)
    view.reset(seed=1)
    twin.reset(1)
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(60):
        actions = rng.integers(3, size=4)
        obs, reward, terminated, truncated, infos = view.step(actions)
        o, r, d, i = twin.step(actions)
        assert np.array_equal(obs, o) and np.array_equal(reward, r) and np.array_equal(terminated | truncated, d)
        assert list(infos["entities"]) == twin.entities()
        for k in np.flatnonzero(d):
            assert infos["episode"]["cause"][k] == i[k]["episode"]["cause"]
            assert np.array_equal(infos["final_obs"][k], i[k]["final_obs"])
            seen.add(i[k]["episode"]["cause"])
    assert seen & {"obstacle", "wall"}  # ground truth, not just "done"


@pytest.mark.slow
def test_procgen_vector_view_has_no_final_obs_to_give():
    view = as_gymnasium(make("procgen:coinrun?distribution_mode=easy&ground_truth=true", num_envs=2), entities=False)
    view.reset(seed=0)
    view.action_space.seed(0)
    for _ in range(1000):
        *_, terminated, truncated, infos = view.step(view.action_space.sample())
        if "_final_obs" in infos:
            k = int(np.flatnonzero(infos["_final_obs"])[0])
            assert infos["final_obs"][k] is None and infos["episode"]["cause"][k] in CAUSES
            return
    pytest.fail("no CoinRun episode ended in 1000 steps")


def test_a_real_stable_baselines3_ppo_trains_on_a_minigrid_view():
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    class Causes(BaseCallback):
        def __init__(self):
            super().__init__()
            self.causes = []

        def _on_step(self) -> bool:
            self.causes += [i["cause"] for i in self.locals["infos"] if "cause" in i]
            return True

    venv = make_vec_env(lambda: gymnasium_env(MINIGRID, entities=False), n_envs=2, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    callback = Causes()
    model.learn(total_timesteps=256, callback=callback)
    assert model.num_timesteps >= 256
    assert callback.causes and set(callback.causes) <= set(CAUSES)
    assert len(model.ep_info_buffer) == len(callback.causes)  # SB3's Monitor saw the same episodes end


def test_the_view_functions_are_not_shadowed_by_a_module():
    make("gym:CartPole-v1")  # imports the gym: family's module
    import policylens.envs as package

    assert callable(package.gymnasium_env) and callable(package.as_gymnasium)
    assert isinstance(package.gymnasium_env("gym:CartPole-v1"), gymnasium_env("gym:CartPole-v1").__class__)
