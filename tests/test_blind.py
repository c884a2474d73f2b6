"""Blinding by ground truth: the direction chosen locates the entity, and only it is removed."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from policylens import agents, rollouts
from policylens.edit import blind, cli as edit_cli
from policylens.factors import Directions
from policylens.rollouts import RecordConfig, record
from policylens.scores import episode_masks


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("blind") / "r.zarr"
    return record(RecordConfig(run="zoo:minigrid-do8-rgb", episodes=6, num_envs=2, out=str(out), progress=False))


@pytest.fixture(scope="module")
def recorded(store_path):
    store = rollouts.open(store_path)
    obs = np.concatenate([store.episode(i)["obs"] for i in range(len(store))])
    per = [episode_masks(store, i, kinds=["agent", "ball", "goal"]) for i in range(len(store))]
    return obs, {k: np.concatenate([m[k] for m in per]) for k in per[0]}


def conv1_of(agent, x):  # what the consumer of `embed` makes of an embedding (B, 32, 7, 7)
    with torch.no_grad():
        return agent.conv1(x)


@pytest.mark.slow
def test_blind_removes_the_ball_direction_and_passes_the_others(recorded):
    obs, masks = recorded
    agent = agents.load("zoo:minigrid-do8-rgb")
    edited, info = blind(agent, obs, masks, "ball", layer="embed", k=6)
    (best,) = info["chosen"]
    chosen = info["scores"]["directions"][best]
    assert chosen["best_entity"] == "ball" and chosen["entities"]["ball"]["nmi"] > 0.5
    assert info["edit"]["how"] == "fold" and info["edit"]["keep"] is not None
    d = info["directions"]
    bias_only = conv1_of(agent, torch.zeros(1, 32, 7, 7))
    torch.testing.assert_close(conv1_of(edited, grid(d[best])), bias_only, atol=1e-4, rtol=0)
    for j in range(len(d)):
        if j != best:
            torch.testing.assert_close(conv1_of(edited, grid(d[j])), conv1_of(agent, grid(d[j])), atol=1e-4, rtol=1e-4)
    # seed 001's orthogonal projection of the same direction disturbs some of the others
    plain, _ = blind(agent, obs, masks, "ball", layer="embed", k=6, keep_others=False)
    moved = max(float((conv1_of(plain, grid(d[j])) - conv1_of(agent, grid(d[j]))).abs().max())
                for j in range(len(d)) if j != best)
    assert moved > 1e-2


def grid(v):  # one direction at every cell (1, 32, 7, 7)
    return v[None, :, None, None].expand(1, -1, 7, 7).contiguous()


@pytest.mark.parametrize("top", ["2", "all"])
@pytest.mark.slow
def test_blind_top_removes_each_chosen_direction_and_passes_the_rest(recorded, top):
    obs, masks = recorded
    agent = agents.load("zoo:minigrid-do8-rgb")
    edited, info = blind(agent, obs, masks, "ball", layer="embed", k=8, top=top, restarts=2)
    rows, d = info["scores"]["directions"], info["directions"]
    nmi = [r["entities"]["ball"]["nmi"] for r in rows]
    if top == "2":
        assert info["chosen"] == sorted(range(len(d)), key=lambda j: -nmi[j])[:2]
    else:
        assert set(info["chosen"]) == {j for j, r in enumerate(rows) if r["best_entity"] == "ball"}
        assert nmi[info["chosen"][0]] == max(nmi) and len(info["chosen"]) >= 1
    bias_only = conv1_of(agent, torch.zeros(1, 32, 7, 7))
    for j in range(len(d)):
        want = bias_only if j in info["chosen"] else conv1_of(agent, grid(d[j]))
        torch.testing.assert_close(conv1_of(edited, grid(d[j])), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("top", ["0", "two", "1.5", "8"])
@pytest.mark.slow
def test_blind_top_bad_values_are_refused(recorded, top):
    obs, masks = recorded
    with pytest.raises(ValueError, match="top="):
        blind(agents.load("zoo:minigrid-do8-rgb"), obs[:64], {k: m[:64] for k, m in masks.items()}, "ball",
              layer="embed", k=8, top=top, restarts=2)


@pytest.mark.slow
def test_blind_names_the_entities_it_has(recorded):
    obs, masks = recorded
    with pytest.raises(KeyError, match="ball"):
        blind(agents.load("zoo:minigrid-do8-rgb"), obs, masks, "saw", layer="embed")


@pytest.mark.slow
def test_edit_command_blind_equals_the_in_memory_edit(store_path, recorded, tmp_path, capsys):
    obs, masks = recorded
    new = tmp_path / "blind-ball"
    assert edit_cli.main(["zoo:minigrid-do8-rgb", "--layer", "embed", "--blind", "ball", "--k", "6", "--keep",
                          "others", "--store", str(store_path), "--max-frames", "0", "--out", str(new)]) == 0
    agent = agents.load("zoo:minigrid-do8-rgb")
    expected, info = blind(agent, obs, masks, "ball", layer="embed", k=6)
    x = torch.as_tensor(obs[:32])
    with torch.no_grad():
        torch.testing.assert_close(agents.load(new)(x)[0], expected(x)[0], atol=1e-5, rtol=1e-5)
    found = json.loads((new / "blind.json").read_text())
    assert found["chosen"] == info["directions"].labels[info["chosen"][0]] and found["frames"] == len(obs)
    assert max(found["directions"], key=lambda d: d["nmi"])["label"] == found["chosen"]
    (record,) = json.loads((new / "agent" / "config.json").read_text())["edits"]
    assert record["blind"] == "ball" and record["kept"] == "others" and record["selected"] == found["chosen"]
    torch.testing.assert_close(Directions.load(record["directions"]).vectors, info["directions"].vectors)


@pytest.mark.slow
def test_edit_command_blind_bad_input(store_path, tmp_path, capsys):
    for argv, needle in ((["--layer", "embed", "--blind", "saw"], "ball"),   # no such entity: names the ones there
                         (["--blind", "ball"], "--layer"),
                         (["--layer", "embed", "--blind", "ball", "--direction", "0"], "--direction"),
                         (["--layer", "embed", "--blind", "ball", "--channel", "0"], "exactly one"),
                         (["--layer", "embed", "--blind", "ball", "--top", "x"], "top='x'"),
                         (["--layer", "embed", "--directions", "d.json", "--direction", "0", "--top", "2"], "--top"),
                         (["--layer", "nope", "--blind", "ball"], "embed")):  # unknown layer: lists the layers
        with pytest.raises(SystemExit):
            edit_cli.main(["zoo:minigrid-do8-rgb", "--store", str(store_path), "--max-frames", "64",
                           "--out", str(tmp_path / "x"), *argv])
        assert needle in capsys.readouterr().err
    assert not (tmp_path / "x" / "agent").exists()


@pytest.mark.slow
def test_blind_refuses_a_layer_where_no_direction_locates_the_entity_unless_forced(recorded, store_path, tmp_path,
                                                                                   capsys):
    """conv1 of the zoo agent mixes the cells around each cell: no NMF direction there locates balls, and
    projecting out the "best" one would blind the agent to something else while reporting success."""
    from policylens.edit.blind import MIN_NMI, choose

    obs, masks = recorded
    agent = agents.load("zoo:minigrid-do8-rgb")
    with pytest.raises(ValueError, match=r"no NMF direction of layer 'conv1' locates 'ball': the best is direction "
                                         r"\S+ with NMI 0\.\d+ \(its own best entity is '\w+'\), below the threshold"):
        choose(agent, obs, masks, "ball", layer="conv1", k=8)
    found = choose(agent, obs, masks, "ball", layer="conv1", k=8, force=True)
    assert found.scores["directions"][found.chosen[0]]["entities"]["ball"]["nmi"] < MIN_NMI
    argv = ["zoo:minigrid-do8-rgb", "--layer", "conv1", "--blind", "ball", "--store", str(store_path),
            "--max-frames", "0"]
    with pytest.raises(SystemExit):
        edit_cli.main([*argv, "--out", str(tmp_path / "refused")])
    assert "--force" in capsys.readouterr().err and not (tmp_path / "refused").exists()
    assert edit_cli.main([*argv, "--force", "--out", str(tmp_path / "forced")]) == 0


@pytest.mark.slow
def test_blind_json_carries_each_directions_stability_and_says_when_the_chosen_one_is_unstable(store_path, tmp_path,
                                                                                            capsys):
    from policylens.factors.stable import UNSTABLE

    new = tmp_path / "b"
    assert edit_cli.main(["zoo:minigrid-do8-rgb", "--layer", "embed", "--blind", "ball", "--store", str(store_path),
                          "--max-frames", "0", "--out", str(new)]) == 0
    found = json.loads((new / "blind.json").read_text())
    saved = Directions.load(new / "blind-directions")
    assert [d["stability"] for d in found["directions"]] == saved.meta["stability"]
    assert [d["unstable"] for d in found["directions"]] == [s < UNSTABLE for s in saved.meta["stability"]]
    chosen = next(d for d in found["directions"] if d["label"] == found["chosen"])
    assert found["chosen_unstable"] == ([found["chosen"]] if chosen["unstable"] else [])
    assert ("unstable" in capsys.readouterr().out) == chosen["unstable"]


def test_edit_refuses_negative_and_out_of_range_direction_indices(tmp_path, capsys):
    path = Directions(torch.eye(4), "embed").save(tmp_path / "d")
    for bad in ("-1", "4", "0,-2"):
        with pytest.raises(SystemExit):
            edit_cli.main(["zoo:minigrid-do8-rgb", "--directions", str(path), "--direction", bad,
                           "--out", str(tmp_path / "x")])
        assert "out of range" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
