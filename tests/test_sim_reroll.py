"""The environment drawn again (sim/analyses/fidelity/reroll.py): replayed without reseeding it reproduces the record
exactly; reseeded in Dynamic-Obstacles the world is drawn again as a replay by hand on gymnasium's env draws it,
and until the agent goes forward only the balls differ; the one-step ceiling equals a hand computation from the
draws, and is perfect in a deterministic env; envs that cannot replay are refused."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from minigrid.core.constants import OBJECT_TO_IDX

from policylens import agents
from policylens.rollouts import RecordConfig, record
from policylens.sim.analyses.fidelity import cli as fidelity_cli
from policylens.sim.analyses.fidelity.reroll import can_reroll, one_step_ceiling, rerolled
from policylens.sim.config import SimConfig, for_data
from policylens.sim.data import load_sim_data
from policylens.sim.loop import FrozenAgent
from sim_runs import AGENT, TINY, tiny_parts

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


@pytest.mark.slow
def test_replayed_without_reseeding_the_record_comes_back_exactly(obstacles):
    data, starts, _ = obstacles
    w = data.windows(starts, K + STEPS)
    obs, reward, done, alive = (x[:, 0] for x in rerolled(data, starts, K, STEPS, reseed=False))
    m = w.mask[:, K:].numpy()  # (B, H)
    assert m.sum() > 50 and np.array_equal(alive, m)
    assert (obs == w.obs[:, K:].numpy()).all(axis=(2, 3, 4))[m].all()
    assert np.array_equal(reward[m], w.reward[:, K:].numpy()[m]) and np.array_equal(done[m], w.done[:, K:].numpy()[m])


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_in_a_deterministic_env_the_ceiling_is_perfect(sim_world):
    run = sim_world / "rnn"  # Empty-Random: nothing random after the reset
    sim, frozen = tiny_parts(run)
    data = load_sim_data(run / "rollouts.zarr")
    starts = np.concatenate([data.start, data.start + data.length - K - 1])
    got = one_step_ceiling(data, data.windows(starts, K + 1), K, sim.config, frozen, draws=3)
    for way in ("sampled", "best"):
        assert np.allclose(got[way]["obs_score"], 1.0) and np.allclose(got[way]["action_agreement"], 1.0)
        assert np.allclose(got[way]["value_error"], 0.0, atol=1e-6)
    assert sim.config.context_frames == TINY.context_frames == K


@pytest.mark.slow
def test_envs_that_cannot_replay_are_refused(obstacles):
    data, starts, _ = obstacles
    assert can_reroll(OBSTACLES) and not can_reroll("procgen:coinrun") and not can_reroll("")
    procgen = type(data)(**{**data.__dict__, "env": "procgen:coinrun"})
    with pytest.raises(ValueError, match="cannot be re-rolled"):
        rerolled(procgen, starts[:2], K, STEPS)
    with pytest.raises(ValueError, match="--ceiling-draws 4"):
        fidelity_cli._draws(fidelity_cli.FidelityConfig(run="x", ceiling_draws=4), procgen, "ceiling_draws")
    assert fidelity_cli._draws(fidelity_cli.FidelityConfig(run="x"), procgen, "closed_loop_draws") == 0  # auto
    assert fidelity_cli._draws(fidelity_cli.FidelityConfig(run="x"), data, "ceiling_draws") == 32
    seedless = type(data)(**{**data.__dict__, "level_seed": np.zeros(0, np.int64)})
    with pytest.raises(ValueError, match="no level seeds"):
        rerolled(seedless, starts[:2], K, STEPS)
    shifted = type(data)(**{**data.__dict__, "level_seed": data.level_seed + 1})  # another level: no replay
    with pytest.raises(ValueError, match="does not replay"):
        rerolled(shifted, starts[:4], K, STEPS)


# -------------------------------------------------------------------------------------------------- closed loop
def test_closed_loop_agreement_equals_a_hand_count():
    from policylens.sim.analyses.fidelity.closed_loop import ENDED, agreement

    drawn = np.array([[[0, 2], [0, ENDED], [1, ENDED], [0, ENDED]]])  # (B=1, D=4, H=2)
    got = agreement(np.array([[0, ENDED]]), drawn)
    assert got["simulator"].tolist() == [[0.75, 0.75]]
    assert got["a draw"].tolist() == [[(3 * 2) / 12, (3 * 2) / 12]]  # pairs of draws that agree, of 4 * 3
    # step 0, halves [0, 0] and [1, 0]: the first's commonest, 0, matches 1 of 2 in the second; the second's tie
    # goes to the lower symbol, 0, which matches 2 of 2 in the first
    assert got["best guess"][0, 0] == pytest.approx((0.5 + 1.0) / 2)
    with pytest.raises(ValueError, match="at least 4 draws"):
        agreement(np.zeros((1, 2), np.int64), np.zeros((1, 3, 2), np.int64))


@pytest.mark.slow
def test_closed_loop_draws_start_from_the_recorded_state_and_part_as_the_world_is_drawn_again(tmp_path, sim_world):
    from policylens.sim.analyses.fidelity.closed_loop import ENDED, closed_loop, drawn_outcomes

    zoo = "zoo:minigrid-do8-recurrent"  # a trained agent: it walks, so the balls it meets differ between draws
    record(RecordConfig(run=zoo, episodes=8, num_envs=4, out=str(tmp_path / "zoo.zarr"), progress=False))
    data, agent = load_sim_data(tmp_path / "zoo.zarr"), FrozenAgent(agents.load(zoo))
    some = np.concatenate([np.arange(s, s + n - K) for s, n in zip(data.start, data.length) if n > K])[::2]
    drawn = drawn_outcomes(data, some, K, 8, agent, draws=6, seed=1)  # (B, 6, 8)
    recorded = data.logits[some + K - 1].argmax(-1)  # the agent's argmax there, from its recorded state
    assert (drawn[:, :, 0] == recorded[:, None]).all()  # step 0: the same frame and state in every draw
    assert (drawn[:, :, 1:] != drawn[:, :1, 1:]).any()  # later the drawn worlds part
    ended = drawn == ENDED
    assert not (ended[:, :, :-1] & ~ended[:, :, 1:]).any()  # an ended episode stays ended
    run = sim_world / "rnn"  # Empty-Random: nothing to draw, every draw agrees with every other
    sim, frozen = tiny_parts(run)
    flat = load_sim_data(run / "rollouts.zarr")
    windows = flat.windows(flat.start, K + 1)
    got = closed_loop(sim, frozen, flat, windows, K, 4, draws=4)
    assert np.allclose(got["a draw"], 1.0) and np.allclose(got["best guess"], 1.0)
    assert got["simulator"].shape == (len(flat.start), 4) and ((got["simulator"] == 0) | (got["simulator"] == 1)).all()


@pytest.mark.slow
def test_the_one_step_ceiling_on_pixels_takes_the_mean_frame_as_its_best_guess(tmp_path):
    env = "minigrid:MiniGrid-Dynamic-Obstacles-6x6-v0?obs=rgb"
    rgb = dict(AGENT, obs_shape=[56, 56, 3], obs_scale=1 / 255)
    agents.save_agent(agents.build(rgb), rgb, tmp_path / "rgb" / "agent", extra={"env": env})
    record(RecordConfig(run=str(tmp_path / "rgb"), episodes=4, num_envs=2, progress=False))
    data = load_sim_data(tmp_path / "rgb" / "rollouts.zarr")
    cfg = for_data(SimConfig(context_frames=K), env, (56, 56, 3), 3, AGENT["hidden"])
    assert cfg.obs_kind == "pixels"
    starts = np.concatenate([np.arange(s, s + n - K) for s, n in zip(data.start, data.length) if n > K])[:12]
    w = data.windows(starts, K + 1)
    got = one_step_ceiling(data, w, K, cfg, FrozenAgent(agents.load(tmp_path / "rgb")), draws=4, seed=1)
    drawn = rerolled(data, starts, K, 1, seed=1, draws=4)[0][:, :, 0].astype(np.float64) / 255  # (B, D, 56, 56, 3)
    real = w.obs[:, K].numpy().astype(np.float64)[:, None] / 255  # (B, 1, 56, 56, 3)
    assert np.allclose(got["sampled"]["obs_score"], ((drawn - real) ** 2).mean(axis=(2, 3, 4)).mean(1), atol=1e-6)
    assert np.allclose(got["best"]["obs_score"], ((drawn.mean(1, keepdims=True) - real) ** 2).mean(axis=(1, 2, 3, 4)),
                       atol=1e-6)
