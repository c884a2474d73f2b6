"""``policylens sim report RUN [--out DIR]``: what the sim commands found on a run, as one markdown report.

Reads the simulator (``config.json``, ``train.csv``) and whatever the commands wrote under ``RUN/analysis``
(fidelity, hx, sample, optimize, saliency, behaviours, swap folders; a part that was not run is left out) and
writes ``OUT/report.md`` with the figures it shows copied beside it (``OUT/figures/``), so the folder stands
alone (the zoo's simulators ship theirs). :func:`~.core.report_lines` gives the same text for the demo's report.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ...command import SimCommand, command_main, resolve


@dataclass
class ReportConfig(SimCommand):
    swaps: str = "swap*"
    """folders under RUN/analysis (glob) holding swap experiments to report"""
    note: str = ""
    """a paragraph under the title (how the run was made, what to keep in mind)"""


def write_report(cfg: ReportConfig) -> Path:
    from .core import report_lines

    paths = resolve(cfg, "report", require_sim=False)
    out = paths.out  # RUN/analysis/report by default
    figures = out / "figures"

    def link(path: Path) -> str:
        name = f"{path.parent.name}-{path.name}"
        figures.mkdir(parents=True, exist_ok=True)
        if Path(path).resolve() != (figures / name).resolve():
            shutil.copyfile(path, figures / name)
        return f"figures/{name}"

    lines = [f"# Simulator report: `{cfg.run}`", "", *([cfg.note, ""] if cfg.note else []), *report_lines(paths.run_dir, paths.sim, link, swaps=cfg.swaps)]
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join(lines))
    return out / "report.md"


def main(argv=None) -> Path:
    path = command_main(ReportConfig, write_report, __doc__.split("\n\n")[0], argv, prog="policylens sim report")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
