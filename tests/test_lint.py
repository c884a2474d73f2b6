"""The sources meet the project's lint rules (``[tool.ruff]`` in pyproject.toml): ``ruff check src tests benchmarks`` is clean."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff():
    try:
        import ruff  # noqa: F401  (the package ships the binary)
    except ImportError:
        return shutil.which("ruff")
    return [sys.executable, "-m", "ruff"]


def test_ruff_check_is_clean():
    cmd = ruff()
    if not cmd:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    cmd = cmd if isinstance(cmd, list) else [cmd]
    proc = subprocess.run([*cmd, "check", "src", "tests", "benchmarks"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
