"""The demo's simulator section end to end on the zoo's recurrent agent at tiny sizes: every sim command runs
through its command line on a fresh run, and the section links what they wrote. ``sim report`` on the tiny
world's run after the commands it reads ran there at the smallest sizes."""
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


TINY = ["--context-frames", "2", "--latent", "8", "--deter", "16", "--stoch", "4", "--hidden", "16", "--embed", "16",
        "--channels", "4"]


@pytest.fixture(scope="module")
def analysed(sim_world):
    """The tiny world's ``rnn`` run with a simulator trained for two steps, scored by fidelity against its baseline
    and in a closed loop, saliency through time, and a swap in the environment and the simulator: ``(root, run)``."""
    import torch

    from policylens.factors import Directions
    from policylens.hidden.swap import cli as swap_cli
    from policylens.sim import cli as sim_cli
    from policylens.sim.analyses.fidelity import cli as fidelity_cli
    from policylens.sim.analyses.saliency import cli as saliency_cli

    run, quiet = sim_world / "rnn", ["--progress", "false"]
    sim_cli.main(["train", str(run), "--steps", "2", "--window", "5", "--batch-size", "4", "--eval-every", "2",
                  "--checkpoint-every", "2", "--val-windows", "8", "--overwrite", *TINY, *quiet])
    fidelity_cli.main([str(run), "--horizon", "3", "--windows", "16", "--bootstrap", "20", "--ceiling-draws", "0",
                       "--closed-loop-draws", "4", "--baseline-steps", "1", *quiet])
    saliency_cli.main([str(run), "--t", "3", "--samples", "0", "--smooth", "2", *quiet])
    q, _ = torch.linalg.qr(torch.randn(8, 3, generator=torch.Generator().manual_seed(1)))
    Directions(q.T.contiguous(), "hx", ("saw", "box", "coin"), "pca", {"std": [2.0] * 8}).save(sim_world / "hx")
    swap_cli.main([str(run), "--directions", str(sim_world / "hx"), "--swap", "saw:box", "--episodes", "2",
                   "--sim-samples", "8", "--sim-steps", "4", "--out", str(run / "analysis" / "swap"), *quiet])
    return sim_world, run


@pytest.mark.slow
def test_sim_report_copies_every_figure_it_links(analysed):
    from policylens.sim.analyses.report.cli import main

    tmp_path, run = analysed
    path = main([str(run), "--out", str(tmp_path / "report"), "--progress", "false"])
    text = path.read_text()
    links = re.findall(r"\]\(([^)]+\.png)\)", text)
    assert len(links) >= 6 and all((path.parent / link).is_file() for link in links)
    assert all(link.startswith("figures/") for link in links)  # the folder stands alone
    assert "### Simulator" in text and "### Swap" in text
    # a further scoring beside the main one gets its own table of differences
    shutil.copytree(run / "analysis" / "fidelity", run / "analysis" / "fidelity-again")
    text = main([str(run), "--out", str(tmp_path / "report"), "--progress", "false", "--overwrite"]).read_text()
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
