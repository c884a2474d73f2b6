"""Envs stepped by several processes behave as in one: same observations, rewards, ends, causes and states."""
import numpy as np
import pytest

from policylens import envs
from policylens.envs.workers import WorkerVecEnv, pack, split, unpack

DO8 = "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs=onehot"


def play(spec: str, workers: int, num_envs: int = 6, steps: int = 120, seed: int = 3) -> dict:
    """Random actions (the same for every split); everything the env returns, a snapshot midway and a replay
    from it."""
    env = envs.make(spec, num_envs=num_envs, seed=seed, workers=workers)
    try:
        rng = np.random.default_rng(0)
        actions = rng.integers(0, env.action_space.n, (steps, num_envs))
        out = {"reset": env.reset(seed), "obs": [], "rew": [], "done": [], "info": []}
        for t, a in enumerate(actions):
            if t == steps // 2:
                snap, states = env.snapshot(), env.get_state()
            obs, rew, done, info = env.step(a)
            for key, value in zip(("obs", "rew", "done", "info"), (obs, rew, done, info)):
                out[key].append(value)
        out["restored"] = env.restore(snap)
        out["replayed"] = [env.step(a)[0] for a in actions[steps // 2:]]
        env.set_state(states)
        out["observe"] = env.observe()
        out["snap"], out["entities"], out["kind"] = snap, env.entities(), type(env)
        return out
    finally:
        env.close()


def same_info(a: list, b: list) -> bool:
    """Info lists equal, final observations compared as arrays."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.keys() != y.keys() or not all(
                np.array_equal(x[k], y[k]) if isinstance(x[k], np.ndarray) else x[k] == y[k] for k in x):
            return False
    return True


@pytest.mark.parametrize("spec", [DO8, "gym:CartPole-v1"])
@pytest.mark.slow
def test_two_and_three_workers_play_exactly_what_one_process_plays(spec):
    one = play(spec, 1)
    assert one["kind"] is not WorkerVecEnv
    assert sum(i.get("episode") is not None for step in one["info"] for i in step) >= 3  # episodes ended midway
    for workers in (2, 3):
        many = play(spec, workers)
        assert many["kind"] is WorkerVecEnv
        for key in ("reset", "restored", "observe"):
            np.testing.assert_array_equal(many[key], one[key])
        for key in ("obs", "rew", "done", "replayed"):
            for x, y in zip(many[key], one[key]):
                np.testing.assert_array_equal(x, y)
        assert all(same_info(x, y) for x, y in zip(many["info"], one["info"]))
        assert many["snap"] == one["snap"] and many["entities"] == one["entities"]
    # the replay from the snapshot is the original second half
    for x, y in zip(one["replayed"], one["obs"][len(one["obs"]) // 2:]):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_a_snapshot_taken_with_two_workers_restores_in_one_process():
    env2 = envs.make(DO8, num_envs=4, seed=1, workers=2)
    env2.reset(1)
    for _ in range(30):
        env2.step(np.ones(4, int) * 2)
    snap, obs2 = env2.snapshot(), env2.observe()
    env2.close()
    env1 = envs.make(DO8, num_envs=4, seed=9)
    np.testing.assert_array_equal(env1.restore(snap), obs2)


def test_split_and_messages():
    assert split(16, 2) == [8, 8] and split(7, 3) == [3, 2, 2] and split(2, 8) == [1, 1] and split(5, 1) == [5]
    message = ["ok", [np.arange(6, dtype=np.float32).reshape(2, 3), {"a": [1, "x", None], 3: b"\x00\xff"},
                      {"__array__": 1}, np.int64(4), (True, 2.5)]]
    back = unpack(pack(message))
    np.testing.assert_array_equal(back[1][0], message[1][0])
    assert back[1][0].dtype == np.float32
    assert back[1][1] == {"a": [1, "x", None], 3: b"\x00\xff"} and back[1][2] == {"__array__": 1}
    assert back[1][3] == 4 and back[1][4] == [True, 2.5]
    with pytest.raises(TypeError, match="cannot send a set"):
        pack({"a": {1, 2}})


def test_bad_worker_counts_and_families_are_refused():
    with pytest.raises(ValueError, match="env workers=0"):
        envs.make(DO8, num_envs=2, workers=0)
    from policylens.envs.families import make_batch
    from policylens.envs.spec import parse_spec

    with pytest.raises(ValueError, match="procgen envs cannot be made as a shard"):
        make_batch(parse_spec("procgen:coinrun"), num_envs=2, shard=(0, 4))


@pytest.mark.slow
def test_an_error_in_a_worker_is_raised_here_with_its_message():
    env = envs.make(DO8, num_envs=4, seed=0, workers=2)
    try:
        with pytest.raises(ValueError, match="set_state got 1 states for 4 envs"):
            env.set_state([b"{}"])
        with pytest.raises(ValueError, match=r"not a MiniGrid env state \(env 0\)"):  # this process's shard
            env.set_state([b"{}"] * 4)
        states = env.get_state()
        with pytest.raises(RuntimeError, match=r"env worker, set_state: ValueError: not a MiniGrid env state \(env 1\)"):
            env.set_state(states[:3] + [b"{}"])
        env.set_state(states)  # the env still answers in step after both errors
        assert env.step(np.zeros(4, int))[0].shape == (4, 7, 7, 20)
    finally:
        env.close()


@pytest.mark.slow
def test_training_with_two_env_workers_gives_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    from policylens.train import TrainConfig, train

    weights = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        train(TrainConfig(preset="minigrid-mlp", out=str(out), num_envs=4, num_steps=32, num_minibatches=2,
                          total_frames=256, progress=False, threads=1, env_workers=workers))
        weights.append(load_file(str(out / "agent" / "weights.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    assert all((weights[0][k] == weights[1][k]).all() for k in weights[0])
