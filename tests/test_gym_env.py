"""The gym: family: any Gymnasium env with image or vector observations and discrete actions."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from policylens import envs


def play(env, steps, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        out.append(env.step(rng.integers(env.action_space.n, size=env.num_envs)))
    return out


def test_cartpole_gives_float_vectors_and_the_episode_records():
    env = envs.make("gym:CartPole-v1", num_envs=3, seed=0)
    assert env.observation_space.shape == (4,) and env.observation_space.dtype == np.float32
    assert env.obs_scale == 1.0 and env.action_space.n == 2 and env.action_names == ["0", "1"]
    obs = env.reset(0)
    assert obs.shape == (3, 4) and obs.dtype == np.float32
    # the same env seeded the same way by hand: policylens's first obs is gymnasium's reset(seed=level_seed)
    raw = gym.make("CartPole-v1")
    level = [s for s in env._level_seeds]
    for i in range(3):
        assert np.array_equal(obs[i], raw.reset(seed=level[i])[0])
    ended = []
    for obs, reward, done, info in play(env, 80):
        assert obs.shape == (3, 4) and reward.dtype == np.float32
        for i in np.flatnonzero(done):
            ep = info[i]["episode"]
            assert ep["cause"] == "other" and not ep["success"]  # the pole fell: terminated, no ground truth
            assert info[i]["final_obs"].shape == (4,)
            assert abs(info[i]["final_obs"][2]) > 0.2 or abs(info[i]["final_obs"][0]) > 2.4  # the end condition
            ended.append(ep)
    assert ended and all(e["return"] == e["length"] for e in ended)  # CartPole pays 1 a step


def test_time_limit_ends_with_timeout_and_levels_repeat():
    env = envs.make("gym:CartPole-v1?max_steps=5&num_levels=2&start_level=10", num_envs=2, seed=0)
    seeds = set()
    for obs, reward, done, info in play(env, 5):
        pass
    assert done.all() and all(i["episode"]["cause"] == "timeout" and i["episode"]["length"] == 5 for i in info)
    for _ in range(6):
        play(env, 5)
        seeds.update(env._level_seeds)
    assert seeds <= {10, 11} and len(seeds) == 2


def test_reset_with_a_seed_is_reproducible():
    a, b = (envs.make("gym:CartPole-v1", num_envs=2, seed=3) for _ in range(2))
    for x, y in zip(play(a, 40), play(b, 40)):
        assert np.array_equal(x[0], y[0]) and np.array_equal(x[2], y[2])


def test_state_restores_exactly_and_replays_the_same_future():
    env = envs.make("gym:CartPole-v1?stack=2", num_envs=2, seed=1)
    play(env, 17)
    snap = env.snapshot()
    first = play(env, 30, seed=5)
    again_obs = env.restore(snap)
    second = play(env, 30, seed=5)
    for x, y in zip(first, second):
        assert np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) and np.array_equal(x[2], y[2])
        assert [i.get("episode") for i in x[3]] == [i.get("episode") for i in y[3]]
    assert again_obs.shape == (2, 8)


class _Unseeded(gym.Env):
    """An env whose dynamics ignore its reset seed (a global RNG): not replayable."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        return np.random.uniform(-1, 1, 2).astype(np.float32), {}

    def step(self, action):
        return np.random.uniform(-1, 1, 2).astype(np.float32), 0.0, False, False, {}


def test_an_env_that_does_not_replay_is_refused_not_restored_wrongly():
    gym.register("PolicylensTestUnseeded-v0", entry_point=_Unseeded)
    env = envs.make("gym:PolicylensTestUnseeded-v0", num_envs=1, seed=0)
    play(env, 3)
    snap = env.snapshot()
    with pytest.raises(ValueError, match="not deterministic given its reset seed"):
        env.restore(snap)


def test_stack_puts_the_last_k_observations_side_by_side_oldest_first():
    env = envs.make("gym:CartPole-v1?stack=3", num_envs=1, seed=0)
    one = envs.make("gym:CartPole-v1", num_envs=1, seed=0)
    o0, p0 = env.reset(0), one.reset(0)
    assert o0.shape == (1, 12)
    assert np.array_equal(o0[0], np.concatenate([np.zeros(8, np.float32), p0[0]]))  # zeros before the first
    o1, p1 = env.step([1])[0], one.step([1])[0]
    o2, p2 = env.step([0])[0], one.step([0])[0]
    assert np.array_equal(o1[0], np.concatenate([np.zeros(4, np.float32), p0[0], p1[0]]))
    assert np.array_equal(o2[0], np.concatenate([p0[0], p1[0], p2[0]]))


def test_pixels_grey_resize_stack_give_uint8_frames():
    env = envs.make("gym:CartPole-v1?pixels=true&grey=true&resize=40x60&stack=4", num_envs=2, seed=0)
    assert env.observation_space.shape == (40, 60, 4) and env.observation_space.dtype == np.uint8
    assert env.obs_scale == pytest.approx(1 / 255)
    obs = env.reset(0)
    assert obs.shape == (2, 40, 60, 4) and obs.dtype == np.uint8
    assert (obs[..., :3] == 0).all() and obs[..., 3].max() == 255 and obs[..., 3].min() < 255  # the cart is drawn
    after = env.step([0, 1])[0]
    assert (after[..., :2] == 0).all() and np.array_equal(after[..., 2], obs[..., 3])  # shifted one place


def test_discrete_observations_are_one_hot():
    env = envs.make("gym:FrozenLake-v1?is_slippery=false", num_envs=2, seed=0)
    obs = env.reset(0)
    assert env.observation_space.shape == (16,) and obs.dtype == np.float32
    assert np.array_equal(obs, np.eye(16, dtype=np.float32)[[0, 0]])
    obs = env.step([2, 1])[0]  # right, down
    assert np.array_equal(obs, np.eye(16, dtype=np.float32)[[1, 4]])


@pytest.mark.parametrize("spec,message", [
    ("gym:Pendulum-v1", r"continuous action space Box\(-2.0, 2.0, \(1,\), float32\): not supported yet"),
    ("gym:CartPol-v1", r"gym env 'CartPol-v1' cannot be made.*did you mean CartPole-v1"),
    ("gym:CartPole-v1?invisible=ball", r"needs ground truth.*gym:CartPole-v1\?invisible=ball has none"),
    ("gym:CartPole-v1?grey=true", r"grey=true needs RGB frames .* \(add pixels=true"),
    ("gym:CartPole-v1?pixels=true&resize=big", r"resize='big': expected N or HxW"),
    ("gym:CartPole-v1?stack=0", r"stack=0: expected a positive number"),
    ("gym:CartPole-v1?colour=red", r"refused options \['colour'\]"),
])
def test_bad_input_is_named(spec, message):
    with pytest.raises(ValueError, match=message):
        envs.make(spec)


# ---------------------------------------------------------------- every analysis on a gym: env


@pytest.mark.slow
def test_every_command_runs_on_cartpole_and_ground_truth_requests_say_there_is_none(tmp_path):
    from pipeline import pl, pl_error, run_pipeline
    from policylens.rollouts import open as open_store

    run = tmp_path / "cartpole"
    pl("train", "--preset", "classic", "--total-frames", 256, "--num-envs", 2, "--num-steps", 64, "--out", run,
       "--progress", "false")
    out = run_pipeline(run, "fc2")
    store = open_store(out["store"])
    assert store.episode(0)["obs"].dtype == np.float32 and store.episode(0)["obs"].shape[1:] == (4,)
    assert out["explorer"].is_file() and (out["edited"] / "agent" / "config.json").is_file()
    assert out["compare"]["episodes"] == 2
    blind = pl_error("edit", run, "--blind", "ball", "--layer", "fc2", "--out", tmp_path / "b")
    invisible = pl_error("compare", run, run, "--episodes", 2, "--invisible", "ball", "--out", tmp_path / "c")
    for message in (blind, invisible):
        assert "gym:CartPole-v1" in message and "ground truth" in message, message


@pytest.mark.slow
def test_training_resumes_exactly_on_a_gym_env(tmp_path):
    """The env's state (replayed from its seed) is part of the checkpoint: two updates, then a resumed third,
    reach exactly the weights of three updates in one go."""
    import torch
    from safetensors.torch import load_file

    from policylens.train import TrainConfig, train

    kw = dict(preset="classic", env="gym:CartPole-v1?stack=2", num_envs=2, num_steps=32, anneal_lr=False,
              threads=1, progress=False)
    train(TrainConfig(out=str(tmp_path / "whole"), total_frames=3 * 64, **kw))
    train(TrainConfig(out=str(tmp_path / "cut"), total_frames=2 * 64, **kw))
    train(TrainConfig(out=str(tmp_path / "cut"), total_frames=3 * 64, resume=True, **kw))
    a, b = (load_file(str(tmp_path / r / "agent" / "weights.safetensors")) for r in ("whole", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
