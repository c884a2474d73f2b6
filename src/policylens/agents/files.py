"""An agent's checkpoint as files: copying one into a run directory (the demos start their runs this way)."""
from __future__ import annotations

import shutil
from pathlib import Path


def copy_agent(agent: str, out: Path) -> Path:
    """Copy the checkpoint of ``agent`` (a run dir or zoo:NAME) to ``out/agent``; returns where it came from."""
    from . import resolve_run

    src = resolve_run(agent)
    shutil.rmtree(out / "agent", ignore_errors=True)
    shutil.copytree(src, out / "agent")
    return src
