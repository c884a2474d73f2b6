"""The demo's simulator section end to end on the zoo's recurrent agent at tiny sizes: every sim command runs
through its command line on a fresh run, and the section links what they wrote."""
from __future__ import annotations

import re

from policylens.sim.demo import sim_demo


def test_the_simulator_section_runs_every_command_and_links_what_exists(tmp_path):
    section = sim_demo(tmp_path, quick=True)
    run = tmp_path / "recurrent"
    assert section.startswith("## Simulator")
    for part in ("Fidelity", "Hidden states", "Imagined episodes", "saliency through time", "Behaviours",
                 "In the environment", "In the simulator"):
        assert part in section, part
    for link in re.findall(r"\]\(([^)]+\.png)\)", section):  # every figure the section shows was written
        assert (tmp_path / link).is_file(), link
    assert "| simulator | 1 |" in section and "| baseline | 1 |" in section and "| repeat | 1 |" in section
    assert list((run / "analysis" / "sample").rglob("*.gif")) and (run / "analysis" / "sample" / "explorer" /
                                                                  "index.html").is_file()
    assert list((run / "analysis" / "optimize").rglob("result.json"))
    assert (run / "sim" / "baseline").is_dir()
