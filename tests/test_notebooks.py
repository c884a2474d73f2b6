"""The tutorial notebooks in docs/notebooks run from top to bottom without an error, each within two minutes.

Each notebook is executed with nbclient on a kernel of the interpreter running the tests (a kernel spec written
into a temporary JUPYTER_PATH, so no installed ``python3`` spec is used), with this checkout's sources first on
the path and a temporary working directory: a notebook that writes anywhere relative would write there.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "docs" / "notebooks"
NAMES = ("vision", "decision-transformer", "simulator")
LIMIT_S = 120.0  # each notebook, wall clock, kernel start included
KERNEL = "policylens-notebook-test"


def _kernel_spec(root: Path) -> Path:
    """A kernel spec that starts ``sys.executable``'s ipykernel, under ``root/kernels``."""
    folder = root / "kernels" / KERNEL
    folder.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "policylens tests", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    return root


def test_notebooks_are_committed_without_outputs():
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code, name
        assert all(not c.outputs and c.execution_count is None for c in code), f"{name}.ipynb has outputs"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_within_two_minutes(name, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(_kernel_spec(tmp_path / "jupyter")))
    source = str(REPO / "src")  # this checkout's sources
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    work = tmp_path / "cwd"
    work.mkdir()
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=LIMIT_S, allow_errors=False,
                                     resources={"metadata": {"path": str(work)}})
    start = time.perf_counter()
    client.execute(env=env)  # raises CellExecutionError when a cell raises
    wall = time.perf_counter() - start
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "a code cell did not run"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    figures = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert figures, f"{name}.ipynb drew no figure"
    assert not any(work.iterdir()), f"{name}.ipynb wrote into its working directory: {sorted(work.iterdir())}"
    print(f"{name}.ipynb: {wall:.1f} s")
    assert wall < LIMIT_S, f"{name}.ipynb took {wall:.1f} s (limit {LIMIT_S:.0f} s)"
