"""policylens compare: paired failure-by-cause statistics and the end-to-end command."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from policylens.agents import load, resolve_run, save_agent
from policylens.agents.checkpoint import read_config
from policylens.evaluate.compare import blindness_share, compare_records, holm, main, mcnemar_exact


def records(causes, levels=None):
    return [{"level": (levels or range(len(causes)))[i], "cause": c, "success": c == "success",
             "return": 0.0, "length": 1} for i, c in enumerate(causes)]


def test_mcnemar_exact_matches_the_binomial_by_hand():
    assert mcnemar_exact(0, 10) == pytest.approx(2 * 0.5 ** 10)
    assert mcnemar_exact(3, 3) == pytest.approx(1.0)
    # P(X <= 1) for Binomial(6, 1/2) = 7/64, two-sided doubles it
    assert mcnemar_exact(1, 5) == pytest.approx(2 * 7 / 64)
    assert mcnemar_exact(0, 0) == 1.0


def test_holm_adjusts_in_rank_order_and_stays_monotone():
    adj = holm({"x": 0.01, "y": 0.04, "z": 0.03})
    assert adj["x"] == pytest.approx(0.03)  # 3 * 0.01
    assert adj["z"] == pytest.approx(0.06)  # 2 * 0.03
    assert adj["y"] == pytest.approx(0.06)  # max(0.06, 1 * 0.04)


def test_targeted_rise_is_significant_and_the_rest_is_not():
    n = 400
    a = ["success"] * (n - 8) + ["saw"] * 4 + ["enemy"] * 4
    b = list(a)
    for i in range(0, 60):  # 60 levels A won, B died by saw
        b[i] = "saw"
    b[100], b[n - 1] = "enemy", "success"  # enemy: one moved from a success, one to a success: flat
    result = compare_records(records(a), records(b))
    saw, enemy = result["causes"]["saw"], result["causes"]["enemy"]
    assert saw["a"]["count"] == 4 and saw["b"]["count"] == 64 and saw["only_b"] == 60 and saw["only_a"] == 0
    assert saw["significant"] and not enemy["significant"]
    assert enemy["a"]["count"] == enemy["b"]["count"] == 4
    lo, hi = saw["b"]["ci95"]
    assert lo < 64 / n < hi


def test_unpaired_levels_are_refused():
    with pytest.raises(ValueError, match="same levels"):
        compare_records(records(["success", "saw"], [0, 1]), records(["success", "saw"], [0, 2]))


@pytest.mark.slow
def test_compare_command_finds_the_failure_an_edit_causes(tmp_path, capsys):
    """An agent pushed to always walk forward dies on walls/obstacles far more often than the zoo agent."""
    agent = load("zoo:minigrid-do8-rgb")
    reckless = copy.deepcopy(agent)
    with torch.no_grad():
        reckless.pi.bias[agent.action_names.index("forward")] += 50.0
    cfg = read_config(resolve_run("zoo:minigrid-do8-rgb"))
    save_agent(reckless, cfg["agent"], tmp_path / "reckless", extra={k: v for k, v in cfg.items() if k != "agent"})
    out = tmp_path / "cmp"
    main(["zoo:minigrid-do8-rgb", str(tmp_path / "reckless"), "--episodes", "40", "--start-level", "1000",
          "--out", str(out), "--progress", "false"])
    result = json.loads((out / "compare.json").read_text())
    assert (out / "compare.png").stat().st_size > 1000
    assert result["episodes"] == 40 and result["success"]["b"] < result["success"]["a"]
    died = {c: r for c, r in result["causes"].items() if r["b"]["count"] > r["a"]["count"]}
    assert died and any(r["significant"] for r in died.values())
    assert "p (Holm)" in capsys.readouterr().out


def test_blindness_share_is_the_edits_rise_over_the_controls():
    n = 200
    a = ["success"] * (n - 10) + ["saw"] * 10
    control = list(a)
    for i in range(40):  # the invisible control adds 40 saw deaths
        control[i] = "saw"
    edit = list(a)
    for i in range(10):  # the edit adds 10 of them: a quarter
        edit[i] = "saw"
    share = blindness_share(records(a), records(edit), records(control), "saw")
    assert share["rise_b"] == pytest.approx(10 / n) and share["rise_control"] == pytest.approx(40 / n)
    assert share["share"] == pytest.approx(0.25)
    lo, hi = share["ci95"]
    assert 0 < lo < 0.25 < hi < 0.6
    full = blindness_share(records(a), records(control), records(control), "saw")
    assert full["share"] == 1.0 and full["ci95"] == [1.0, 1.0]  # B as blind as the control, in every resample
    none = blindness_share(records(a), records(a), records(a), "saw")
    assert none["share"] is None and none["ci95"] is None  # no rise to measure against


@pytest.mark.slow
def test_compare_with_invisible_saws_plays_the_control(tmp_path, capsys):
    """The agent with saws invisible (--env-b) is its own perfect edit: the control replays B's episodes
    exactly, so B reaches the whole blindness (or there is none to reach)."""
    out = tmp_path / "cmp"
    env = "procgen:coinrun?distribution_mode=easy&use_backgrounds=false"
    main(["zoo:coinrun-clear", "zoo:coinrun-clear", "--episodes", "24", "--start-level", "1000000",
          "--env-b", env + "&invisible=saw", "--invisible", "saw", "--out", str(out), "--progress", "false"])
    result = json.loads((out / "compare.json").read_text())
    control = result["control"]
    assert control["invisible"] == ["saw"] and "invisible=saw" in control["env"] and "invisible=saw" in result["env_b"]
    assert {c: r["b"] for c, r in control["causes"].items()} == {c: r["b"] for c, r in result["causes"].items()}
    share = control["blindness"]["saw"]
    assert share["share"] == (1.0 if share["rise_control"] > 0 else None)
    assert "of that blindness" in capsys.readouterr().out and (out / "compare.png").stat().st_size > 1000


def test_compare_refuses_what_it_cannot_hide_before_playing(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["zoo:minigrid-do8-rgb", "zoo:minigrid-do8-rgb", "--invisible", "saw", "--out", str(tmp_path / "x"),
              "--progress", "false"])
    assert exit_.value.code == 2 and "saw cannot be hidden; expected any of ball" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
