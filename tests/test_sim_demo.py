"""The demo's simulator section end to end on the zoo's recurrent agent at tiny sizes: every sim command runs
through its command line on a fresh run, and the section links what they wrote."""
from __future__ import annotations

import re

import pytest

from policylens.sim.demo import sim_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("simdemo")
    return root, sim_demo(root, quick=True)


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
    from policylens.sim.report import main

    tmp_path = demo[0]
    path = main([str(tmp_path / "recurrent"), "--out", str(tmp_path / "report"), "--progress", "false"])
    text = path.read_text()
    links = re.findall(r"\]\(([^)]+\.png)\)", text)
    assert len(links) >= 6 and all((path.parent / link).is_file() for link in links)
    assert all(link.startswith("figures/") for link in links)  # the folder stands alone
    assert "### Simulator" in text and "### Swap" in text
