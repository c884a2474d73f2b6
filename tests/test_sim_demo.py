"""The demo's simulator section end to end on the zoo's recurrent agent at tiny sizes: every sim command runs
through its command line on a fresh run, and the section links what they wrote."""
from __future__ import annotations

import re
import shutil

import pytest

from policylens.sim.demo import sim_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("simdemo")
    return root, sim_demo(root, quick=True)


@pytest.mark.slow
def test_the_simulator_section_runs_every_command_and_links_what_exists(demo):
    tmp_path, section = demo
    run = tmp_path / "recurrent"
    assert section.startswith("## Simulator")
    for part in ("### Fidelity", "### Hidden states", "imagined episodes", "### Saliency through time", "### Behaviours", "### Swap",
                 "In the environment", "In the simulator"):
        assert part in section, part
    for link in re.findall(r"\]\(([^)]+\.png)\)", section):  # every figure the section shows was written
        assert (tmp_path / link).is_file(), link
    assert "| simulator | 1 |" in section and "| baseline | 1 |" in section and "| repeat | 1 |" in section
    assert "| environment drawn again, best guess (32 draws) | 1 |" in section  # Dynamic-Obstacles: a ceiling
    assert "Closed loop: the agent acting on its own" in section and "closed_loop.png" in section
    recall = section[section.index("Recall by object"):].split("\n\n")[1].splitlines()  # the table after it
    assert recall[0].startswith("| model |") and "wall" in recall[0] and recall[2].startswith("| simulator |")
    assert list((run / "analysis" / "sample").rglob("*.gif")) and (run / "analysis" / "sample" / "explorer" /
                                                                  "index.html").is_file()
    assert list((run / "analysis" / "optimize").rglob("result.json"))
    assert (run / "sim" / "baseline").is_dir()


def test_sim_report_copies_every_figure_it_links(demo):
    from policylens.sim.analyses.report.cli import main

    tmp_path = demo[0]
    path = main([str(tmp_path / "recurrent"), "--out", str(tmp_path / "report"), "--progress", "false"])
    text = path.read_text()
    links = re.findall(r"\]\(([^)]+\.png)\)", text)
    assert len(links) >= 6 and all((path.parent / link).is_file() for link in links)
    assert all(link.startswith("figures/") for link in links)  # the folder stands alone
    assert "### Simulator" in text and "### Swap" in text
    # a further scoring beside the main one gets its own table of differences
    shutil.copytree(tmp_path / "recurrent" / "analysis" / "fidelity", tmp_path / "recurrent" / "analysis" / "fidelity-again")
    text = main([str(tmp_path / "recurrent"), "--out", str(tmp_path / "report"), "--progress", "false",
                 "--overwrite"]).read_text()
    again = text[text.index("Scored again (`fidelity-again`)"):]
    assert "| simulator − baseline | 1 (" in again


def test_report_differences_are_bold_only_where_the_interval_clears_zero_on_the_better_side():
    from policylens.sim.analyses.report.core import baseline_budget, difference_rows, fidelity_source

    def d(mean, low, high, count=10):
        return {"mean": mean, "low": low, "high": high, "count": count}

    diffs = {"1": {"obs_score": d(0.01, 0.005, 0.02), "action_agreement": d(-0.01, -0.02, 0.01),
                   "value_error": d(-0.002, -0.003, -0.001)},
             "10": {"obs_score": d(-0.01, -0.02, -0.005), "action_agreement": d(0.02, 0.01, 0.03),
                    "value_error": d(0.002, 0.001, 0.003)},
             "32": {k: d(0.0, 0.0, 0.0, count=0) for k in ("obs_score", "action_agreement", "value_error")}}
    report = {"models": {"baseline": {"simulator_minus_this": diffs}},
              "higher_is_better": {"obs_score": True, "action_agreement": True, "value_error": False},
              "settings": {"split": {"windows": 4096, "test_store": "t.zarr", "scored_episodes": [0, 1],
                                     "store_episodes": 3}, "config": {"reach": 32}}}
    one, ten = difference_rows(report)  # no row where nothing was scored
    cells = [c.strip() for c in one.split("|")[2:6]]
    assert cells[0] == "1 (10 windows)" and cells[1:] == ["**+0.0100 [+0.0050, +0.0200]**", "-0.0100 [-0.0200, +0.0100]", "**-0.0020 [-0.0030, -0.0010]**"]
    cells = [c.strip() for c in ten.split("|")[3:6]]  # worse on obs and value, better on action
    assert [c.startswith("**") for c in cells] == [False, True, False]
    assert fidelity_source(report) == ("4096 windows of a store recorded apart (`t.zarr`, 2 of its 3 episodes scored) "
                                       "with 32 frames after the context in their episode")
    assert baseline_budget({"budget": "--baseline-steps", "steps": 5, "seconds": 2.4}) == "for 5 steps (2 s)"
    assert baseline_budget({"budget": "equal wall time", "steps": 5}) == "for the same wall time (5 steps)"
