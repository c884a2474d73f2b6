"""The swap experiment in the real environment: three paired evaluations, statistics, saved edited agents."""
from __future__ import annotations

import json

import pytest
import torch

from policylens.agents import build, load, save_agent
from policylens.factors import Directions
from policylens.hidden.swap.cli import SwapConfig, main, swap_experiment
from policylens.hidden.swap.core import parse_swaps, random_control

ENV = "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0?obs=symbolic"
CONFIG = dict(arch="cnn", obs_shape=(7, 7, 3), num_actions=3, recurrent=True, hidden=8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("swap")
    torch.manual_seed(0)
    agent = build(CONFIG).eval()
    save_agent(agent, CONFIG, root / "run" / "agent", extra={"env": ENV, "action_names": ["left", "right", "forward"]})
    q, _ = torch.linalg.qr(torch.randn(8, 3, generator=torch.Generator().manual_seed(1)))
    Directions(q.T.contiguous(), "hx", ("saw", "box", "coin"), "pca", {"std": [2.0] * 8}).save(root / "hx")
    return root


def _cfg(root, swap, name, run="run", **kw):
    return SwapConfig(**{"run": str(root / run), "directions": str(root / "hx"), "swap": swap, "episodes": 12,
                         "out": str(root / name), "progress": False, **kw})


@pytest.mark.slow
def test_identity_swap_reproduces_the_original_level_by_level(setup):
    report = swap_experiment(_cfg(setup, "saw:saw", "identity"))
    real = report["settings"]["real"]
    assert set(report["settings"]) == {"real"}  # no simulator beside this run
    assert real["success"]["swapped"] == real["success"]["original"]
    for cause, row in real["swapped"]["causes"].items():
        assert row["only_a"] == row["only_b"] == 0  # no level's outcome changed
    assert report["swap_labels"] == [["saw", "saw"]]


@pytest.mark.slow
def test_swap_writes_three_paired_evaluations_and_loadable_edited_agents(setup):
    report = swap_experiment(_cfg(setup, "saw:box,coin:none", "real", policy="greedy"))
    out = setup / "real"
    saved = json.loads((out / "swap.json").read_text())
    assert saved["swaps"] == [[0, 1], [2, None]] and saved["episodes"] == 12
    assert {"swapped", "control"} <= set(saved["settings"]["real"]) and (out / "swap.png").stat().st_size > 0
    assert "random control" in (out / "swap.md").read_text()
    swapped, control = load(out / "swapped"), load(out / "control")
    assert not torch.equal(swapped.gru.swap, control.gru.swap)
    assert torch.allclose(control.gru.swap, _control_matrix(setup), atol=1e-6)
    assert report["runs"]["swapped"] == str(out / "swapped")


def _control_matrix(root):
    from policylens.edit import swap_matrix

    return swap_matrix(random_control(Directions.load(root / "hx"), 0), [(0, 1), (2, None)])


def test_random_control_is_orthonormal_in_the_same_space(setup):
    d = Directions.load(setup / "hx")
    c = random_control(d, seed=3)
    assert torch.allclose(c.vectors @ c.vectors.T, torch.eye(3), atol=1e-5)
    assert c.meta["std"] == d.meta["std"] and c.layer == "hx"
    assert not torch.allclose(c.vectors, random_control(d, seed=4).vectors)


@pytest.mark.parametrize("text, message", [("saw", "expected FROM:TO"), ("", "no swaps"), ("saw:", "expected FROM:TO")])
def test_bad_swap_text(text, message):
    with pytest.raises(ValueError, match=message):
        parse_swaps(text)


def test_cli_names_a_missing_direction(setup, capsys):
    with pytest.raises(SystemExit):
        main([str(setup / "run"), "--directions", str(setup / "hx"), "--swap", "saw:lava", "--episodes", "2",
              "--out", str(setup / "bad")])
    assert "no direction labelled 'lava'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- in the simulator
def test_imagined_outcomes_read_the_cell_ahead_and_the_predicted_end():
    from types import SimpleNamespace

    from policylens.sim.imagined import imagined_outcomes

    b, t = 4, 5
    obs = torch.ones(b, t, 7, 7, 3)  # empty cells everywhere
    action = torch.zeros(b, t, 3)
    action[..., 0] = 1  # turning left
    obs[0, 2, 3, 5, 0], action[0, 2] = 6, torch.tensor([0.0, 0, 1])  # forward into a ball at step 2
    obs[1, 1, 3, 5, 0], action[1, 1] = 8, torch.tensor([0.0, 0, 1])  # forward into the goal at step 1
    obs[2, 0, 3, 5, 0] = 6  # a ball ahead but the agent turns: nothing happens
    done = torch.full((b, t), -5.0)
    done[2, 3] = 3.0  # the simulator predicts an end at step 3 with no reward
    r = SimpleNamespace(value=torch.zeros(b, t), action=action, done_logit=done, reward=torch.zeros(b, t), obs=obs)
    cfg = SimpleNamespace(obs_kind="symbolic", num_actions=3, planes=(11, 6, 3))
    got = [(x["cause"], x["step"], x["success"]) for x in imagined_outcomes(r, cfg, ("left", "right", "forward"))]
    assert got == [("obstacle", 2, False), ("success", 1, True), ("ended", 3, False), ("timeout", t, False)]
    later = [(x["cause"], x["step"]) for x in imagined_outcomes(r, cfg, ("left", "right", "forward"), first=2)]
    assert later == [("obstacle", 0), ("timeout", t - 2), ("ended", 1), ("timeout", t - 2)]  # step 1 was history


@pytest.fixture(scope="module")
def sim_run(sim_world):
    root, run = sim_world, sim_world / "rnn"
    q, _ = torch.linalg.qr(torch.randn(8, 3, generator=torch.Generator().manual_seed(1)))
    Directions(q.T.contiguous(), "hx", ("saw", "box", "coin"), "pca", {"std": [2.0] * 8}).save(root / "hx")
    return root, run


@pytest.mark.slow
def test_in_the_simulator_identity_swap_changes_nothing_and_the_same_starts_pair_up(sim_run):
    root, run = sim_run
    kw = dict(run="rnn", sim_samples=24, sim_steps=6, episodes=4)
    report = swap_experiment(_cfg(root, "saw:saw", "sim-identity", **kw))
    imagined = report["settings"]["simulator"]
    assert imagined["samples"] == 24 and imagined["simulator"] == str(run / "sim")
    assert all(row["only_a"] == row["only_b"] == 0 for row in imagined["swapped"]["causes"].values())
    moved = swap_experiment(_cfg(root, "saw:none,box:none,coin:none", "sim-null", **kw))
    assert moved["settings"]["simulator"]["swapped"]["episodes"] == 24
    cut, real = moved["settings"]["real_horizon"], moved["settings"]["real"]
    assert cut["horizon"] == 2 + 6 and cut["swapped"]["episodes"] == real["swapped"]["episodes"] == 4
    assert all(cut["success"][n] <= real["success"][n] for n in real["success"])
    assert (root / "sim-null" / "swap-real-horizon.png").stat().st_size > 0
    assert (root / "sim-null" / "swap-simulator.png").stat().st_size > 0
    assert "In the simulator" in (root / "sim-null" / "swap.md").read_text()
    none = swap_experiment(_cfg(root, "saw:box", "sim-none", sim="none", **kw))
    assert set(none["settings"]) == {"real"}


def test_a_filtered_start_shows_every_agent_the_same_real_context_and_lets_it_act_from_the_last_frame(sim_run):
    from policylens.edit.swap import swap_directions
    from policylens.sim.data import load_sim_data
    from policylens.sim.imagined import episode_starts
    from policylens.sim.loop import FrozenAgent, Noise, filtered_start, rollout
    from sim_runs import tiny_parts

    root, run = sim_run
    sim, frozen = tiny_parts(run)
    k = sim.config.context_frames
    windows = episode_starts(load_sim_data(run / "rollouts.zarr"), 8, k, 0)
    swapped = FrozenAgent(swap_directions(frozen.net, Directions.load(root / "hx"), [(0, None), (1, None)]))
    noise = Noise.draw(8, k + 5, sim, torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = (rollout(sim, agent, windows.context(k), k + 5, mode="sample", noise=noise,
                        **filtered_start(windows, k)) for agent in (frozen, swapped))
        z = rollout(sim, frozen, windows.context(k), k + 5, mode="sample", noise=noise)
    assert torch.equal(a.hx[:, 0], windows.agent_state[:, 0]) and torch.equal(b.hx[:, 0], windows.agent_state[:, 0])
    assert torch.equal(a.obs[:, :k], b.obs[:, :k]) and not torch.equal(a.obs[:, :k], z.obs[:, :k])
    assert torch.equal(a.action_index[:, :k - 1], windows.action[:, :k - 1])
    assert not torch.equal(a.hx[:, k:], b.hx[:, k:])  # from the last context frame on, each its own way


@pytest.mark.slow
def test_the_simulator_start_is_recorded_and_a_bad_one_refused_before_any_evaluation(sim_run):
    from policylens.sim.objective import trained_start

    root, run = sim_run
    kw = dict(run="rnn", sim_samples=8, sim_steps=4, episodes=2)
    for start in ("z", "filtered"):
        report = swap_experiment(_cfg(root, "saw:box", f"start-{start}", sim_start=start, **kw))
        assert report["settings"]["simulator"]["start"] == start
    auto = swap_experiment(_cfg(root, "saw:box", "start-auto", **kw))["settings"]["simulator"]["start"]
    assert auto == "z"  # this simulator's config records no training, so nothing trained it for filtered starts
    assert trained_start({"train": {"prior_step_weight": 1.0}}) == "filtered"  # sim train's default
    assert trained_start({"train": {"prior_step_weight": 0.0, "prior_obs_weight": 0.0}}) == "z"
    with pytest.raises(ValueError, match="--sim-start 'posterior'; expected auto, filtered or z"):
        swap_experiment(_cfg(root, "saw:box", "start-bad", sim_start="posterior", **kw))
    assert not (root / "start-bad").exists()
    with pytest.raises(ValueError, match="--sim-view 'mean'; expected modal or sample"):
        swap_experiment(_cfg(root, "saw:box", "view-bad", sim_view="mean", **kw))
    assert not (root / "view-bad").exists()


@pytest.mark.slow
def test_sampled_views_show_the_three_agents_the_same_draws(sim_run):
    root, run = sim_run
    kw = dict(run="rnn", sim_samples=24, sim_steps=6, episodes=2)
    same = swap_experiment(_cfg(root, "saw:saw", "view-identity", sim_view="sample", **kw))["settings"]["simulator"]
    assert same["view"] == "sample"  # an identity swap under the same draws: level by level the same outcome
    assert all(row["only_a"] == row["only_b"] == 0 for row in same["swapped"]["causes"].values())
    assert same["swapped"]["causes"]["timeout"]["a"]["count"] < 24  # something happens in them
    assert "drawn cell by cell" in (root / "view-identity" / "swap.md").read_text()


def test_cut_at_horizon_turns_longer_episodes_into_timeouts():
    from policylens.hidden.swap.core import cut_at_horizon

    records = [{"level": 0, "cause": "success", "success": True, "length": 9},
               {"level": 1, "cause": "success", "success": True, "length": 10},
               {"level": 2, "cause": "obstacle", "success": False, "length": 30}]
    got = [(r["cause"], r["success"]) for r in cut_at_horizon(records, 9)]
    assert got == [("success", True), ("timeout", False), ("timeout", False)]
    assert records[1]["cause"] == "success"  # the input is left as it was


def test_no_horizon_table_when_every_real_episode_ends_within_it():
    from policylens.hidden.swap.core import horizon_setting

    rec = lambda level, cause, length: {"level": level, "cause": cause, "success": cause == "success",  # noqa: E731
                                        "length": length}
    results = {"original": [rec(0, "success", 5), rec(1, "success", 9)],
               "swapped": [rec(0, "obstacle", 4), rec(1, "success", 12)],
               "control": [rec(0, "success", 5), rec(1, "success", 9)]}
    assert horizon_setting(results, 12, 0.05) is None
    cut = horizon_setting(results, 10, 0.05)
    assert cut["horizon"] == 10 and cut["success"] == {"original": 1.0, "swapped": 0.0, "control": 1.0}
    assert cut["swapped"]["causes"]["timeout"]["b"]["count"] == 1
