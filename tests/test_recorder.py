"""``policylens record`` and ``policylens dt collect`` run one recording loop (policylens.rollouts.loop): the same
agent, env, seed and policy recorded through either give the same episodes, frame for frame. A copy of the loop
that drifts (other seeding, other episode bookkeeping, a field left out) fails here."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from policylens import agents, rollouts
from policylens.dt.collect import CollectConfig, collect
from policylens.rollouts import RecordConfig, record

ENV = "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0?max_steps=20"
SHARED = ("obs", "action", "logits", "value", "reward", "done", "level_seed", "entities")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("recorder_runs")
    torch.manual_seed(0)
    for name, extra in (("ff", {}), ("rnn", {"recurrent": True, "hidden": 16})):
        cfg = {"arch": "cnn", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1, **extra}
        agents.save_agent(agents.build(cfg), cfg, root / name / "agent", extra={"env": ENV})
    return root


def _both(run, out, policy, temperature, strategy, **kw):
    """The same recording through record and dt collect, opened."""
    common = {"run": str(run), "progress": False, **kw}
    rec = record(RecordConfig(out=str(out / "record.zarr"), policy=policy, temperature=temperature, **common))
    dt = collect(CollectConfig(out=str(out / "dt" / "trajectories.zarr"), strategies=(strategy,), extra_obs="",
                               **common))
    return rollouts.open(rec), rollouts.open(dt)


def _assert_same_episodes(rec, dt, fields):
    assert len(rec) == len(dt) > 0 and rec.num_frames == dt.num_frames
    for name in ("start", "length", "level_seed", "return", "cause"):
        np.testing.assert_array_equal(rec.index[name], dt.index[name], err_msg=f"episode {name}")
    for name in fields:
        np.testing.assert_array_equal(rec.read(name, 0, rec.num_frames), dt.read(name, 0, dt.num_frames),
                                      err_msg=f"field {name}")
    assert dt.metadata["recurrent"] == rec.metadata["recurrent"]
    assert dt.metadata["action_names"] == rec.metadata["action_names"]


@pytest.mark.parametrize("run", ["ff", "rnn"])
@pytest.mark.slow
def test_greedy_play_is_recorded_alike_by_record_and_dt_collect(runs, tmp_path, run):
    # several envs, episodes cut by max_steps, more episodes than envs: the bookkeeping of which episodes count
    rec, dt = _both(runs / run, tmp_path, "greedy", 1.0, "greedy", episodes=8, num_envs=3, seed=4, max_steps=2)
    fields = SHARED + (("agent_state",) if run == "rnn" else ())
    assert set(fields) <= set(rec.fields) and set(fields) <= set(dt.fields)
    _assert_same_episodes(rec, dt, fields)
    assert "max_steps" in set(dt.index["cause"])  # the cut path was exercised
    np.testing.assert_array_equal(dt.read("strategy", 0, dt.num_frames), 0)  # the one strategy
    np.testing.assert_allclose(dt.read("rtg", 0, dt.num_frames)[dt.index["start"]], dt.index["return"], atol=1e-6)


@pytest.mark.parametrize(("policy", "temperature", "strategy"), [("sample", 1.0, "sampled"),
                                                                  ("temperature", 2.0, "temperature:2")])
@pytest.mark.slow
def test_sampled_play_draws_the_same_actions_through_record_and_dt_collect(runs, tmp_path, policy, temperature,
                                                                           strategy):
    # one env: record samples every env's row, dt collect only the counted ones; with one env they coincide
    rec, dt = _both(runs / "rnn", tmp_path, policy, temperature, strategy, episodes=5, num_envs=1, seed=9)
    _assert_same_episodes(rec, dt, SHARED + ("agent_state",))
    logits, action = rec.read("logits", 0, rec.num_frames), rec.read("action", 0, rec.num_frames)
    assert (action != logits.argmax(-1)).any()  # sampling, not argmax: the generator's draws are compared
