"""Decision Transformer Interpretability's findings checked and compared: its quotes are verbatim, goal entries
are told apart by side, the ablation verdicts follow the paired tests, the state embedding's front-cell weights
rebuild Table 3, Table 1's cells, and the comparison (``dt compare``, ``benchmarks.dt_models --quick``) end to end
on tiny `grid` and `raw` models."""
from __future__ import annotations

import glob
import json
import re

import pytest
import torch

from policylens.dt.analysis.ablation import _row
from policylens.dt.analysis.findings import ablation_claims, table1
from policylens.dt.analysis.paper import ABLATIONS, QUOTES, TABLE1

pytestmark = pytest.mark.filterwarnings("ignore:target RTG")
PAPER = glob.glob("/work/shared/seeds/004_*.txt")


def _paper_text() -> str:
    return re.sub(r"\s+", " ", open(PAPER[0], encoding="utf-8").read())


def _quoted(markdown: str) -> list:
    """Every “...” span of a text (what it attributes to the paper)."""
    return re.findall(r"“([^”]+)”", markdown)


@pytest.mark.skipif(not PAPER, reason="the paper's text is not on this machine")
def test_every_quote_is_verbatim_in_the_paper():
    from policylens.dt.analysis.compare import ROWS

    text = _paper_text()
    for key, quote in QUOTES.items():
        assert re.sub(r"\s+", " ", quote) in text, key
    spans = [q for _, label in ROWS for q in _quoted(label)]
    assert len(spans) >= 10 and all(q in text for q in spans), [q for q in spans if q not in text]


@pytest.mark.slow
def test_goal_entries_come_from_the_top_or_the_left_of_the_corner_goal():
    """The goal sits in the bottom-right corner, walled on its right and below: every entry is from the top or the
    left (a wrong direction table would name the right or the bottom)."""
    from policylens.dt.model import DecisionTransformer, DTConfig
    from policylens.dt.play import ENTERED_FROM, play

    model = DecisionTransformer(DTConfig(d_model=16, d_mlp=16, max_timestep=64), seed=0).eval()
    with torch.no_grad():  # prefer forward a little, so that the goal is often reached
        model.b_U.copy_(torch.tensor([0.0, 0.0, 1.0]))
    model.action_names = ["left", "right", "forward"]
    records = play(model, "minigrid:MiniGrid-Empty-5x5-v0?num_actions=3&max_steps=40", 0.9, 48, batch=16)
    wins = [r for r in records if r["cause"] == "success"]
    assert len(wins) >= 5
    assert {r["entered_from"] for r in wins} <= {"top", "left"}
    assert all(r["entered_from"] in ENTERED_FROM for r in records)


def _records(causes_sides) -> list:
    return [{"level": k, "cause": c, "entered_from": s, "success": c == "success", "return": 0.0, "length": 1}
            for k, (c, s) in enumerate(causes_sides)]


def _table(rows_by_rtg: dict, episodes: int) -> dict:
    """An ablation table (the shape ``ablation_table`` writes) from records per (rtg, ablation)."""
    rows = []
    for rtg, by_ablation in rows_by_rtg.items():
        base = by_ablation["none"]
        rows.append(_row(rtg, "none", base, None, 0.05))
        rows += [_row(rtg, name, recs, base, 0.05) for name, recs in by_ablation.items() if name != "none"]
    return {"episodes": episodes, "mode": "mean", "rtgs": list(rows_by_rtg), "rows": rows}


def test_rows_count_goal_entries_by_side_and_pair_them_by_level():
    base = _records([("timeout", "top")] * 30)
    ablated = _records([("success", "top")] * 20 + [("success", "left")] * 3 + [("wall", "top")] * 7)
    row = _row(-1.0, "blocks.0.attn.head0", ablated, base, 0.05)
    sides = row["goal_entered_from"]
    assert sum(sides["counts"].values()) == row["counts"]["success"] == 23
    assert sides["counts"]["top"] == 20 and sides["rates"]["left"]["rate"] == pytest.approx(3 / 30)
    top = sides["vs_unablated"]["top"]
    assert top["only_ablated"] == 20 and top["only_unablated"] == 0 and top["significant"]
    assert not sides["vs_unablated"]["left"]["significant"] and "right" not in sides["vs_unablated"]


def test_ablation_verdicts_follow_the_paired_tests():
    n = 40
    quiet = _records([("timeout", "top")] * n)
    from_top = _records([("success", "top")] * 30 + [("timeout", "top")] * 10)
    from_left = _records([("success", "left")] * 30 + [("timeout", "top")] * 10)
    goal = _records([("success", "top")] * n)
    summary = {"ablation": _table({
        -1.0: {"none": quiet, "blocks.0.attn.head0": from_top, "blocks.0.attn.head1": quiet, "blocks.0.mlp": from_top},
        0.9: {"none": goal, "blocks.0.attn.head0": goal, "blocks.0.attn.head1": goal, "blocks.0.mlp": goal}}, n),
        "situations": {"rows": {}, "preference": "forward - right"}}
    claims = {c["key"]: c for c in ablation_claims(summary)}
    assert [c[0] for c in ABLATIONS] == list(claims)
    assert claims["head0"]["verdict"] == "reproduced" and claims["head0"]["what"] == "goal entries from the top"
    assert claims["mlp"]["verdict"] == "reproduced in part"  # the goal is reached, but from the top, not the left
    assert claims["head1"]["verdict"] == "not reproduced"  # no obstacle hits anywhere
    summary["ablation"] = _table({
        -1.0: {"none": quiet, "blocks.0.attn.head0": quiet, "blocks.0.attn.head1": from_top, "blocks.0.mlp": from_left},
        0.9: {"none": goal, "blocks.0.attn.head0": goal, "blocks.0.attn.head1": goal, "blocks.0.mlp": goal}}, n)
    claims = {c["key"]: c for c in ablation_claims(summary)}
    assert claims["head0"]["verdict"] == "reproduced, heads swapped"
    assert claims["mlp"]["verdict"] == "reproduced" and claims["mlp"]["test"]["only_ablated"] == 30


def test_table1_cells_from_the_behaviour_counts():
    def b(rtg, success, obstacle, wall):
        return {"target_rtg": rtg, "episodes": 20, "success": success, "obstacle": obstacle, "wall": wall,
                "timeout": 20 - success - obstacle - wall, "other": 0}

    cells = table1({"behaviours": [b(-1, 0, 15, 5), b(0, 0, 0, 0), b(0.9, 19, 1, 0)]})
    assert len(cells) == 9 and {c["entity"] for c in cells} == set(TABLE1)
    at = {(c["entity"], c["rtg"]): c for c in cells}
    assert at["obstacle", -1.0]["ours"] == "no" and at["obstacle", -1.0]["agrees"]  # 5 of 20 avoided
    assert at["wall", -1.0]["ours"] == "partly" and not at["wall", -1.0]["agrees"]  # 15 of 20
    assert at["goal", 0.9]["ours"] == "no" and at["goal", 0.9]["agrees"]
    assert all(c["ci95"][0] <= c["share"] <= c["ci95"][1] and c["avoided"] <= c["episodes"] for c in cells)
    assert table1({"behaviours": [b(0, 0, 0, 0)]}) == []


@pytest.mark.parametrize("emb", ["raw", "grid"])
def test_front_weights_rebuild_each_entity_ahead(emb):
    """Table 3 is linear in the cell's features: each entity's direct push is its features times the front cell's
    weights (for `raw`, object code x object weight + colour code x colour weight, as the paper's table)."""
    from policylens.dt.analysis.circuits import ENTITIES, _features, circuit_maps
    from policylens.dt.model import DecisionTransformer, DTConfig

    model = DecisionTransformer(DTConfig(d_model=32, d_mlp=32, state_embedding=emb, max_timestep=16), seed=3).eval()
    model.action_names = ["left", "right", "forward"]
    maps = circuit_maps(model)
    x, y = maps["front_cell"]
    weights = torch.tensor(maps["front_weights"])
    for i, code in enumerate(ENTITIES.values()):
        want = float(_features(model, code) @ weights)
        assert maps["direct_absolute"][i][x][y] == pytest.approx(want, abs=1e-5)
    if emb == "raw":
        w_obj, w_col, w_state = maps["front_weights"]
        goal, obstacle = ENTITIES["goal"], ENTITIES["obstacle"]
        assert maps["direct_absolute"][3][x][y] == pytest.approx(goal[0] * w_obj + goal[1] * w_col, abs=1e-5)
        assert maps["direct_absolute"][2][x][y] == pytest.approx(obstacle[0] * w_obj + obstacle[1] * w_col, abs=1e-5)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """``benchmarks.dt_models --quick``: tiny `grid` and `raw` models trained, calibrated, analysed, compared."""
    from benchmarks.dt_models import main

    work = tmp_path_factory.mktemp("dt_models")
    return work, main(["--quick", "--work", str(work)])


@pytest.mark.slow
def test_quick_benchmark_compares_a_grid_and_a_raw_model(quick):
    work, result = quick
    assert json.loads((work / "dt_models.json").read_text())["models"] == json.loads(json.dumps(result["models"]))
    assert [m["config"]["state_embedding"] for m in result["models"]] == ["grid", "raw"]
    for model, cells in zip(result["models"], result["verdicts"]):
        assert set(model["calibration"]) == {"-1", "0", "0.9"} and len(model["table1"]) == 9
        assert [c["key"] for c in model["ablation"]["claims"]] == ["head0", "head1", "mlp"]
        assert {"calibration", "table1", "walls_vs_obstacles", "goal_square", "head0", "head1", "mlp", "table3",
                "rtg"} <= set(cells)
        wo = model["walls_vs_obstacles"]
        assert wo["wall"] + wo["obstacle"] <= wo["episodes"] and 0 <= wo["p_value"] <= 1
        emb = model["rtg_embedding"]
        assert emb["right_left"]["direct"] is not None and "agrees" in emb
    raw = result["models"][1]
    assert len(raw["table3"]["front_weights"]) == 3  # object, colour, state codes
    assert (work / "dt-raw" / "report.md").read_text().count("Decision Transformer Interpretability") >= 5
    report = (work / "dt-raw" / "report.md").read_text()
    assert "the seed" not in report
    if PAPER:  # whatever the report and the comparison put in quotation marks is the paper's, word for word
        text = _paper_text()
        spans = _quoted(report) + _quoted((work / "compare" / "compare.md").read_text())
        assert len(spans) >= 10 and all(q in text for q in spans), [q for q in spans if q not in text]
    assert "| finding |" in (work / "compare" / "compare.md").read_text()
    assert (work / "compare" / "compare.png").stat().st_size > 10_000


@pytest.mark.slow
def test_cli_compare_refuses_what_it_cannot_read_and_what_is_there(pair, tmp_path, capsys, monkeypatch):
    """On the zoo's two analysed models (the quick benchmark above compares freshly trained ones, slowly)."""
    from policylens.dt.cli import main

    monkeypatch.chdir(tmp_path)  # no runs/ here: the zoo models' own analyses are read
    runs = ["zoo:dt-minigrid-do8", "zoo:dt-minigrid-do8-raw"]
    result = main(["compare", *runs, "--out", str(tmp_path / "c")])
    assert len(result["models"]) == 2 and "| finding |" in capsys.readouterr().out
    with pytest.raises(FileExistsError, match="comparison already exists"):
        main(["compare", *runs, "--out", str(tmp_path / "c")])
    with pytest.raises(FileNotFoundError, match="no analysis of"):
        main(["compare", str(pair / "ff"), "--out", str(tmp_path / "d")])  # a PPO agent's run
    with pytest.raises(ValueError, match="needs --out"):
        main(["compare", *runs])


SHIPPED = ("zoo/dt-minigrid-do8/report.md", "zoo/dt-minigrid-do8-raw/report.md", "docs/decision-transformer-models.md")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_reports_and_docs_name_the_paper_and_quote_it_word_for_word(name):
    from pathlib import Path

    markdown = (Path(__file__).resolve().parent.parent / name).read_text()
    assert "Decision Transformer Interpretability" in markdown and "seed" not in markdown.replace("--seed", "")
    if PAPER:
        text, spans = _paper_text(), [re.sub(r"\s+", " ", q) for q in _quoted(markdown)]  # wrapped lines
        assert len(spans) >= 3 and all(q in text for q in spans), [q for q in spans if q not in text]
