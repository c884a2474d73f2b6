"""policylens.evaluate: outcomes by cause over fixed levels, Wilson intervals, workers, CLI."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from policylens.agents import build, save_agent
from policylens.envs import CAUSES
from policylens.evaluate import episode_plan, evaluate, main, wilson_interval
from policylens.evaluate.run import pick_actions, play

MINIGRID = "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0"
MLP = {"arch": "mlp", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1}
REQUIRED = ("episodes", "success_rate", "ci95", "mean_return", "mean_length", "causes")


def _save(agent, cfg, root, env=MINIGRID):
    save_agent(agent, cfg, root / "agent", extra={"env": env})
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny random MLP agent trained (nominally) on Dynamic-Obstacles 5x5."""
    torch.manual_seed(0)
    return _save(build(MLP), MLP, tmp_path_factory.mktemp("mlp"))


@pytest.fixture(scope="module")
def turner(tmp_path_factory):
    """An agent that always turns left and never moves forward (greedy)."""
    agent = build(MLP)
    with torch.no_grad():
        agent.pi.weight.zero_()
        agent.pi.bias.copy_(torch.tensor([5.0, -5.0, -5.0]))  # left, right, forward
    return _save(agent, MLP, tmp_path_factory.mktemp("turner"))


def _outcome(result: dict) -> dict:
    """Everything but timing, which is the only part allowed to differ between equivalent runs."""
    return {k: v for k, v in result.items() if k != "timing"}


# -- Wilson interval ---------------------------------------------------------------------------------------
def test_wilson_interval_known_values():
    # published 95% Wilson intervals (4 decimals), e.g. R's prop.test(k, n, correct=FALSE)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(0, 6)[1] == pytest.approx(1.96**2 / (6 + 1.96**2))  # closed form at k = 0
    # z = 0 collapses the interval onto the observed rate; complementary counts mirror each other
    assert wilson_interval(3, 7, z=0.0) == pytest.approx((3 / 7, 3 / 7))
    lo, hi = wilson_interval(2, 9)
    assert wilson_interval(7, 9) == pytest.approx((1 - hi, 1 - lo))
    with pytest.raises(ValueError, match="n >= 1"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(11, 10)


def test_episode_plan_levels():
    assert episode_plan(3, 5) == [(0, 5), (1, 6), (2, 7)]
    assert episode_plan(5, 10, num_levels=2) == [(0, 10), (1, 11), (2, 10), (3, 11), (4, 10)]
    with pytest.raises(ValueError, match="episodes must be a positive integer"):
        episode_plan(0)


def test_pick_actions_follows_softmax_row_by_row():
    logits = torch.tensor([[0.0, math.log(3.0), -30.0], [5.0, 0.0, 0.0]])
    rng = np.random.default_rng(0)
    draws = [pick_actions(logits, "sample", 1.0, [rng, None])[0] for _ in range(4000)]
    assert abs(np.mean(np.equal(draws, 1)) - 0.75) < 0.03 and 2 not in draws
    hot = [pick_actions(logits, "temperature", 0.01, [rng, None])[0] for _ in range(50)]
    assert set(hot) == {1}  # near-zero temperature is greedy
    assert pick_actions(logits, "greedy", 1.0, [None, None]).tolist() == [1, 0]
    # a row's action depends on its own logits and generator only, not on the other rows
    other = torch.tensor([[0.0, math.log(3.0), -30.0], [0.0, 9.0, 0.0]])
    a = [pick_actions(logits, "sample", 1.0, [np.random.default_rng(s), None])[0] for s in range(30)]
    b = [pick_actions(other, "sample", 1.0, [np.random.default_rng(s), np.random.default_rng(99)])[0] for s in range(30)]
    assert a == b


# -- evaluation on MiniGrid --------------------------------------------------------------------------------
def test_counts_rates_and_levels(run):
    n, start = 24, 1000
    result = evaluate(run, episodes=n, start_level=start, seed=3)
    eps = result["per_episode"]
    assert result["episodes"] == n == len(eps)
    assert sum(result["causes"].values()) == n
    assert set(result["causes"]) >= set(CAUSES)
    assert result["success_rate"] == result["causes"]["success"] / n
    assert result["ci95"] == pytest.approx(list(wilson_interval(result["causes"]["success"], n)))
    # episode k is played on level start + k, and the records agree with the summary
    assert [e["level"] for e in eps] == list(range(start, start + n))
    assert result["mean_return"] == pytest.approx(sum(e["return"] for e in eps) / n)
    assert result["mean_length"] == pytest.approx(sum(e["length"] for e in eps) / n)
    assert result["timing"]["frames"] == sum(e["length"] for e in eps)
    for e in eps:  # MiniGrid: success iff positive reward; any other end is a collision or the step limit
        assert e["success"] == (e["return"] > 0) == (e["cause"] == "success")
        assert e["cause"] in ("success", "obstacle", "wall", "timeout")
        assert 1 <= e["length"] <= 100
    assert sum(r["count"] for r in result["cause_rates"].values()) == n
    assert result["setup"]["env"] == MINIGRID


@pytest.mark.slow
def test_same_levels_and_seed_are_identical_other_seed_differs(run):
    a = evaluate(run, episodes=16, seed=7)
    b = evaluate(run, episodes=16, seed=7, batch=8)
    assert _outcome(a) == _outcome(b)
    c = evaluate(run, episodes=16, seed=8)
    assert [e["level"] for e in c["per_episode"]] == [e["level"] for e in a["per_episode"]]
    assert c["per_episode"] != a["per_episode"]  # sampled actions (and obstacle moves) follow the seed


def test_level_is_the_reset_seed(run):
    """Cycling two levels with a greedy agent: an episode on a level repeats the earlier one on it exactly."""
    result = evaluate(run, episodes=6, start_level=40, num_levels=2, policy="greedy")
    eps = [(e["level"], e["return"], e["length"], e["cause"]) for e in result["per_episode"]]
    assert [e[0] for e in eps] == [40, 41, 40, 41, 40, 41]
    assert eps[0] == eps[2] == eps[4] and eps[1] == eps[3] == eps[5]


@pytest.mark.slow
def test_agent_that_never_moves_times_out(turner):
    result = evaluate(turner, episodes=6, policy="greedy")
    assert result["causes"]["timeout"] == 6 and result["success_rate"] == 0.0
    assert all(e["length"] == 100 for e in result["per_episode"])  # 4 * 5 * 5 steps, the env's limit
    assert result["ci95"] == pytest.approx([0.0, 1.96**2 / (6 + 1.96**2)])


def test_outcome_does_not_depend_on_slot_or_neighbours():
    """A recurrent agent's episode is the same whichever slot plays it and whatever ran there before."""
    torch.manual_seed(1)
    agent = build({**MLP, "recurrent": True}).eval()
    plan = episode_plan(12, 300)
    forward = play(agent, MINIGRID, plan, seed=2, batch=4)
    backward = play(agent, MINIGRID, plan[::-1], seed=2, batch=4)
    assert forward == backward and [e["level"] for e in forward] == list(range(300, 312))


@pytest.mark.slow
def test_two_workers_equal_one(run):
    one = evaluate(run, episodes=20, start_level=7, seed=11, workers=1, batch=4)
    two = evaluate(run, episodes=20, start_level=7, seed=11, workers=2, batch=4)
    assert two["timing"]["workers"] == 2
    assert _outcome(two) == _outcome(one)


def test_module_agent_and_its_limits(run):
    agent = build(MLP)
    result = evaluate(agent, MINIGRID, episodes=4)
    assert result["episodes"] == 4 and result["setup"]["run"] is None
    with pytest.raises(ValueError, match="checkpoint"):
        evaluate(agent, MINIGRID, episodes=4, workers=2)
    with pytest.raises(ValueError, match="env_spec"):
        evaluate(agent, episodes=4)


@pytest.mark.slow
def test_bad_input(run, tmp_path, capsys):
    missing = tmp_path / "no_such_run"
    with pytest.raises(FileNotFoundError, match="no_such_run"):
        evaluate(missing, episodes=3)
    with pytest.raises(ValueError, match="episodes must be a positive integer"):
        evaluate(run, episodes=0)
    with pytest.raises(SystemExit) as exit_info:
        main([str(missing), "--episodes", "3"])
    assert exit_info.value.code == 2
    assert "no_such_run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(run), "--episodes", "-1"])
    assert "episodes must be a positive integer" in capsys.readouterr().err
    rgb = MINIGRID + "?obs=rgb"  # (56, 56, 3) observations for a (7, 7, 3) agent: the agent's own message
    for workers in (1, 2):
        with pytest.raises(ValueError, match="does not match the agent"):
            evaluate(run, rgb, episodes=2, workers=workers)


# -- the command -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_json_is_exactly_one_object(run):
    cmd = [sys.executable, "-m", "policylens.evaluate", str(run), "--episodes", "5", "--start-level", "3",
           "--json", "--per-episode"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # the whole of stdout is one JSON value
    assert isinstance(result, dict) and all(k in result for k in REQUIRED)
    assert result["episodes"] == 5 and sum(result["causes"].values()) == 5
    lo, hi = result["ci95"]
    assert 0.0 <= lo <= result["success_rate"] <= hi <= 1.0
    assert [e["level"] for e in result["per_episode"]] == [3, 4, 5, 6, 7]
    # and the CLI reports what the API computes
    api = evaluate(run, episodes=5, start_level=3)
    assert result["per_episode"] == api["per_episode"] and result["causes"] == api["causes"]


def test_cli_table_help_and_level_options(run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "--num-levels" in capsys.readouterr().out
    assert main([str(run), "--episodes", "5", "--start-level", "20", "--num-levels", "2", "--json",
                 "--per-episode", "--progress", "false"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [e["level"] for e in result["per_episode"]] == [20, 21, 20, 21, 20]
    assert main([str(run), "--episodes", "4", "--progress", "false"]) == 0
    out = capsys.readouterr().out
    assert "success" in out and "95% CI" in out and MINIGRID in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


# -- procgen and Ray ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_coinrun_end_to_end(tmp_path):
    cfg = {"arch": "cnn", "obs_shape": [64, 64, 3], "num_actions": 15}
    torch.manual_seed(0)
    root = _save(build(cfg), cfg, tmp_path, env="procgen:coinrun?distribution_mode=easy&use_backgrounds=false")
    result = evaluate(root, episodes=3, start_level=500, batch=3)
    assert "ground_truth=true" in result["setup"]["env"]
    assert [e["level"] for e in result["per_episode"]] == [500, 501, 502]
    assert sum(result["causes"].values()) == 3
    for e in result["per_episode"]:
        assert e["cause"] in CAUSES and 1 <= e["length"] <= 1000
        assert e["success"] == (e["cause"] == "success") == (e["return"] == 10.0)
        if e["cause"] == "timeout":
            assert e["length"] == 1000


@pytest.mark.slow
def test_ray_backend_equals_processes(run):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'policylens[ray]')")
    expected = evaluate(run, episodes=12, seed=5, batch=4)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        got = evaluate(run, episodes=12, seed=5, batch=4, workers=2, backend="ray")
    finally:
        ray.shutdown()
    assert got["timing"]["backend"] == "ray"
    assert _outcome(got) == _outcome(expected)
    assert not math.isnan(got["timing"]["frames_per_s"])
