"""policylens sim agents: other agents inside the simulator against the same agents in the environment. Real
episodes are evaluate's, imagined ones start from their first frames and are driven by the agent, imagined ends
are read from the simulator's heads, the tables add up, the command runs and refuses bad input."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from policylens import agents
from policylens.agents.scripted import ScriptedAgent
from policylens.evaluate.run import evaluate
from policylens.sim.analyses.agents.cli import main
from policylens.sim.analyses.agents.core import ended_outcomes, paired_table, play_imagined, play_real
from policylens.sim.guests import load_guest
from policylens.sim.loop import Noise, rollout
from sim_runs import ENV, tiny_parts

NAMES = ["left", "right", "forward"]


@pytest.fixture(scope="module")
def run(sim_world):
    return sim_world / "rnn"


@pytest.fixture(scope="module")
def parts(run):
    return tiny_parts(run)


@pytest.mark.slow
def test_real_episodes_are_evaluates_episodes(run):
    agent = agents.load(run)
    for who in (agent, ScriptedAgent("random", (7, 7, 3), 3, NAMES)):
        mine = play_real(who, ENV, 8, start_level=5, seed=3, batch=8)
        theirs = evaluate(who, ENV, 8, start_level=5, seed=3, batch=8)["per_episode"]
        for a, b in zip(mine, theirs):
            assert {k: a[k] for k in b} == b
            assert len(a["obs"]) == len(a["actions"]) == a["length"]


def test_imagined_ends_are_read_from_the_heads_and_the_view(parts):
    sim, frozen = parts
    r = rollout(sim, frozen, torch.zeros(6, sim.config.latent), 6, mode="modal", latent="mean")
    obs, action = r.obs.clone(), torch.zeros(6, 6, dtype=torch.long)  # all turn left
    front = (3, 5)  # the cell ahead in a 7x7 view: [x = w // 2, y = h - 2]
    ends = torch.full((6, 6), -5.0)
    reward = torch.zeros(6, 6)
    ends[0, 0] = 5.0  # before the takeover: not counted, and nothing after -> timeout
    ends[1, 3], reward[1, 3] = 5.0, 0.9  # a positive reward: success
    ends[2, 2], action[2, 2], obs[(2, 2, *front, 0)] = 5.0, 2, 2  # forward into a wall
    ends[3, 4], action[3, 4], obs[(3, 4, *front, 0)] = 5.0, 2, 6  # forward into a ball
    action[3, 2], obs[(3, 2, *front, 0)] = 2, 6  # a ball walked into without an end: the heads decide, not rules
    ends[4, 5] = 5.0  # an end while turning
    ends[5, 2], action[5, 2], obs[(5, 2, *front, 0)], reward[5, 2] = 5.0, 2, 2, 0.5  # a wall, but a positive reward
    r = dataclasses.replace(r, obs=obs, action=torch.nn.functional.one_hot(action, 3).float(), done_logit=ends,
                            reward=reward)
    got = ended_outcomes(r, sim.config, NAMES, first=1)
    assert [g["cause"] for g in got] == ["timeout", "success", "wall", "obstacle", "other", "success"]
    assert [g["view"] for g in got] == ["timeout", "other", "wall", "obstacle", "other", "wall"]
    assert [g["step"] for g in got] == [5, 2, 1, 3, 4, 1]


def test_a_scripted_agent_drives_the_imagined_rest_of_its_own_real_episodes(parts, run):
    sim, frozen = parts
    k, horizon = sim.config.context_frames, 10
    module, guest, _ = load_guest("scripted:forward", str(run), sim, NAMES)
    real = [r for r in play_real(module, ENV, 6, seed=1) if r["length"] >= k]
    noise = Noise.draw(6, horizon, sim, torch.Generator().manual_seed(0))
    imagined = play_imagined(sim, guest, real, horizon, noise, frozen.initial_state(1)[0], NAMES, keep=len(real))
    assert [i["episode"] for i in imagined] == [r["episode"] for r in real]
    for r, i in zip(real, imagined):
        assert np.array_equal(i["actions"][:k - 1], r["actions"][:k - 1])  # the agent's own real history
        assert (i["actions"][k - 1:] == 2).all()  # then forward, every imagined step
        assert len(i["obs"]) == len(i["actions"]) == k - 1 + i["step"] + (i["cause"] != "timeout")
    again = play_imagined(sim, guest, real[::-1], horizon, noise, frozen.initial_state(1)[0], NAMES, batch=2)
    assert sorted(again, key=lambda i: i["episode"]) == [{x: v for x, v in i.items() if x not in ("obs", "actions")}
                                                         for i in imagined]  # noise follows the episode number


def test_the_paired_table_adds_up():
    real = [{"episode": e, "length": n, "cause": c} for e, (n, c) in
            enumerate([(1, "wall"), (5, "success"), (9, "obstacle"), (30, "timeout"), (25, "success"), (3, "wall")])]
    imagined = [{"episode": e, "cause": c, "step": s, "view": v} for e, c, s, v in
                [(1, "success", 3, "success"), (2, "success", 4, "wall"), (3, "timeout", 18, "timeout"),
                 (4, "timeout", 18, "timeout"), (5, "wall", 1, "wall")]]
    t = paired_table(real, imagined, k=2, horizon=20)
    assert t["episodes"] == 6 and t["paired"] == 5 and t["in_context"] == {"count": 1, "causes": {"wall": 1}}
    for side in ("real", "imagined", "imagined_view"):
        assert sum(row["count"] for row in t[side].values()) == 5
        assert all(row["ci95"][0] <= row["rate"] <= row["ci95"][1] for row in t[side].values())
    assert t["real"]["timeout"]["count"] == 2  # 25 steps is past the horizon of 20: a timeout there
    assert t["agree"]["count"] == 4  # success, timeout, timeout (cut), wall; the obstacle was imagined a success
    assert t["steps"] == {"real": pytest.approx(np.mean([4, 8, 19, 19, 2])),
                          "imagined": pytest.approx(np.mean([4, 5, 18, 18, 2]))}


@pytest.mark.slow
def test_sim_agents_runs_and_writes_its_table_figure_and_videos(run, tmp_path):
    out = tmp_path / "out"
    result = main([str(run), "--episodes", "6", "--horizon", "12", "--videos", "1", "--video-steps", "6", "--seed", "1",
                   "--out", str(out), "--progress", "false"])
    filed = json.loads((out / "agents.json").read_text())
    assert list(filed["agents"]) == ["trained", "untrained", "scripted:forward", "scripted:left"]
    assert [filed["agents"][n]["guest"] for n in filed["agents"]] == [False, True, True, True]
    for name, row in filed["agents"].items():
        assert row["paired"] + row["in_context"]["count"] == 6
        assert sum(c["count"] for c in row["imagined"].values()) == row["paired"]
        assert (out / row["video"]).is_file()
    left = filed["agents"]["scripted:left"]
    assert left["real"]["timeout"]["count"] == 6  # turning in place never ends an episode
    assert (out / "agents.png").is_file() and "| `scripted:left` (6 paired) |" in (out / "agents.md").read_text()
    assert result["horizon"] == 12


@pytest.mark.parametrize("args, message", [
    (["--agents", "trained,trained"], "names an agent twice"),
    (["--agents", "scripted:jump"], "scripted agent 'jump'"),
    (["--horizon", "500"], "past the env's step limit 100"),
    (["--horizon", "2"], "no imagined step after the 2 context frames"),
    (["--env", "minigrid:MiniGrid-Empty-5x5-v0"], "takes 7 actions; the simulator was built for"),
])
def test_sim_agents_refuses_bad_input(run, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit):
        main([str(run), "--episodes", "2", "--out", str(tmp_path / "x"), "--progress", "false", *args])
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_the_benchmark_files_real_against_imagined_rates_per_agent(tmp_path, monkeypatch):
    import benchmarks.common as common
    import benchmarks.sim_agents as bench

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    bench.main(["--quick", "--agents", "trained,scripted:left"])
    filed = json.loads((tmp_path / "sim_agents_quick.json").read_text())
    assert (tmp_path / "sim_agents_quick.png").is_file() and filed["horizon"] == 24 and filed["episodes"] == 6
    left = filed["agents"]["scripted:left"]
    assert left["real"]["timeout"]["count"] == left["paired"] == 6  # turning in place: every real episode runs on
    for row in filed["agents"].values():
        assert "per_episode" not in row
        assert sum(c["count"] for c in row["imagined"].values()) == row["paired"]
