"""The environment drawn again (policylens.sim.reroll): replayed without reseeding it reproduces the record
exactly; reseeded in Dynamic-Obstacles the world is drawn again as a replay by hand on gymnasium's env draws it,
and until the agent goes forward only the balls differ; the one-step ceiling equals a hand computation from the
draws, and is perfect in a deterministic env; envs that cannot replay are refused."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from minigrid.core.constants import OBJECT_TO_IDX
from sim_runs import AGENT, TINY, make_run, tiny_parts

from policylens import agents
from policylens.rollouts import RecordConfig, record
from policylens.sim import fidelity_cli
from policylens.sim.config import SimConfig, for_data
from policylens.sim.data import load_sim_data
from policylens.sim.loop import FrozenAgent
from policylens.sim.reroll import can_reroll, one_step_ceiling, rerolled

OBSTACLES = "minigrid:MiniGrid-Dynamic-Obstacles-6x6-v0"
K, STEPS = 2, 6


@pytest.fixture(scope="module")
def obstacles(tmp_path_factory):
    """A random recurrent agent's 12 episodes of Dynamic-Obstacles 6x6, every window with a frame after K, and the
    agent frozen."""
    root = tmp_path_factory.mktemp("reroll") / "do"
    agents.save_agent(agents.build(AGENT), AGENT, root / "agent", extra={"env": OBSTACLES})
    record(RecordConfig(run=str(root), episodes=12, num_envs=2, progress=False))
    data = load_sim_data(root / "rollouts.zarr")
    starts = np.concatenate([np.arange(s, s + n - K) for s, n in zip(data.start, data.length) if n > K])
    return data, starts, FrozenAgent(agents.load(root))


def test_replayed_without_reseeding_the_record_comes_back_exactly(obstacles):
    data, starts, _ = obstacles
    w = data.windows(starts, K + STEPS)
    obs, reward, done, alive = (x[:, 0] for x in rerolled(data, starts, K, STEPS, reseed=False))
    m = w.mask[:, K:].numpy()  # (B, H)
    assert m.sum() > 50 and np.array_equal(alive, m)
    assert (obs == w.obs[:, K:].numpy()).all(axis=(2, 3, 4))[m].all()
    assert np.array_equal(reward[m], w.reward[:, K:].numpy()[m]) and np.array_equal(done[m], w.done[:, K:].numpy()[m])


def test_reseeded_the_world_is_drawn_again_as_a_hand_replay_draws_it(obstacles):
    data, starts, _ = obstacles
    w = data.windows(starts, K + STEPS)
    obs, _, _, alive = (x[:, 0] for x in rerolled(data, starts, K, STEPS, seed=3))
    real = w.obs[:, K:].numpy()  # (B, H, 7, 7, 3)
    running = w.mask[:, K:].numpy() & alive  # (B, H) both episodes still on
    assert running.sum() > 50
    # until the agent goes forward its place is its own: then the frames differ in the balls alone
    forward = np.cumsum(w.action[:, K - 1:-1].numpy() == 2, 1) > 0  # (B, H) a forward step made or came before
    ball = OBJECT_TO_IDX["ball"]
    no_ball = (obs[..., 0] != ball) & (real[..., 0] != ball)  # (B, H, 7, 7)
    turned = running & ~forward
    assert turned.sum() > 10 and ((obs == real).all(-1) | ~no_ball).all(axis=(2, 3))[turned].all()
    assert not (obs == real).all(axis=(2, 3, 4))[running].all(), "reseeding moved no ball anywhere"
    for i in range(0, len(starts), max(len(starts) // 8, 1)):  # by hand, on gymnasium's env itself
        e = int(np.searchsorted(data.start, starts[i], side="right") - 1)
        env = gym.make(OBSTACLES.split(":")[1]).unwrapped
        env.reset(seed=int(data.level_seed[e]))
        for a in data.action[data.start[e]:starts[i] + K - 1]:
            env.step(int(a))
        env.np_random = np.random.default_rng([3, int(starts[i]), 0])
        for j in range(STEPS):
            if not running[i, j]:
                break
            env.step(int(w.action[i, K - 1 + j]))
            assert np.array_equal(env.gen_obs()["image"], obs[i, j]), (i, j)
    again, other = (rerolled(data, starts, K, STEPS, seed=seed)[0][:, 0] for seed in (3, 4))
    assert np.array_equal(again, obs) and not np.array_equal(other, obs)  # seeded draws


def test_the_one_step_ceiling_equals_a_hand_computation_from_the_draws(obstacles):
    data, starts, agent = obstacles
    cfg = for_data(SimConfig(context_frames=K), OBSTACLES, (7, 7, 3), 3, AGENT["hidden"])
    w = data.windows(starts, K + 1)
    got = one_step_ceiling(data, w, K, cfg, agent, draws=5, seed=2, batch_size=7)
    drawn = rerolled(data, starts, K, 1, seed=2, draws=5)[0][:, :, 0]  # (B, D, 7, 7, 3)
    real = w.obs[:, K].numpy()  # (B, 7, 7, 3)
    for i in range(0, len(starts), max(len(starts) // 10, 1)):
        hx = w.agent_state[i:i + 1, K]
        out = [agent(torch.from_numpy(f)[None], hx) for f in (real[i], *drawn[i])]
        actions = [int(o.logits.argmax()) for o in out]
        values = [float(o.value) for o in out]
        counts = np.bincount(actions[1:], minlength=3)
        cells = (drawn[i] == real[i]).mean(axis=(1, 2, 3))  # (D,)
        commonest = np.array([[[np.bincount(drawn[i, :, y, x, c]).argmax() for c in range(3)] for x in range(7)]
                              for y in range(7)])
        assert np.isclose(got["sampled"]["obs_score"][i], cells.mean(), atol=1e-6)
        assert np.isclose(got["best"]["obs_score"][i], (commonest == real[i]).mean(), atol=1e-6)
        assert np.isclose(got["sampled"]["action_agreement"][i], np.mean(np.array(actions[1:]) == actions[0]))
        assert got["best"]["action_agreement"][i] == float(np.argmax(counts) == actions[0])
        assert np.isclose(got["sampled"]["value_error"][i], np.mean(np.abs(np.array(values[1:]) - values[0])),
                          atol=1e-5)
        assert np.isclose(got["best"]["value_error"][i], abs(np.median(values[1:]) - values[0]), atol=1e-5)
    assert got["best"]["obs_score"].mean() > got["sampled"]["obs_score"].mean()  # the commonest code wins on average


def test_in_a_deterministic_env_the_ceiling_is_perfect(tmp_path):
    run = make_run(tmp_path)  # Empty-Random: nothing random after the reset
    sim, frozen = tiny_parts(run)
    data = load_sim_data(run / "rollouts.zarr")
    starts = np.concatenate([data.start, data.start + data.length - K - 1])
    got = one_step_ceiling(data, data.windows(starts, K + 1), K, sim.config, frozen, draws=3)
    for way in ("sampled", "best"):
        assert np.allclose(got[way]["obs_score"], 1.0) and np.allclose(got[way]["action_agreement"], 1.0)
        assert np.allclose(got[way]["value_error"], 0.0, atol=1e-6)
    assert sim.config.context_frames == TINY.context_frames == K


def test_envs_that_cannot_replay_are_refused(obstacles):
    data, starts, _ = obstacles
    assert can_reroll(OBSTACLES) and not can_reroll("procgen:coinrun") and not can_reroll("")
    procgen = type(data)(**{**data.__dict__, "env": "procgen:coinrun"})
    with pytest.raises(ValueError, match="cannot be re-rolled"):
        rerolled(procgen, starts[:2], K, STEPS)
    with pytest.raises(ValueError, match="--ceiling-draws 4"):
        fidelity_cli._ceiling_draws(fidelity_cli.FidelityConfig(run="x", ceiling_draws=4), procgen)
    assert fidelity_cli._ceiling_draws(fidelity_cli.FidelityConfig(run="x"), procgen) == 0  # auto: none
    assert fidelity_cli._ceiling_draws(fidelity_cli.FidelityConfig(run="x"), data) == 32
    seedless = type(data)(**{**data.__dict__, "level_seed": np.zeros(0, np.int64)})
    with pytest.raises(ValueError, match="no level seeds"):
        rerolled(seedless, starts[:2], K, STEPS)
    shifted = type(data)(**{**data.__dict__, "level_seed": data.level_seed + 1})  # another level: no replay
    with pytest.raises(ValueError, match="does not replay"):
        rerolled(shifted, starts[:4], K, STEPS)
