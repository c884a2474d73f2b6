"""The CLI answers ``--version`` and every ``--help`` without importing torch or the other heavy libraries (so both
come back at once)."""
import json
import subprocess
import sys

import pytest

from policylens.cli import COMMANDS, version

HEAVY = ("torch", "sklearn", "scipy", "matplotlib", "gymnasium", "zarr", "pandas", "transformer_lens")
# Runs the CLI in this process and prints, as its last line, the heavy libraries it imported.
PROBE = ("import json, sys\nfrom policylens.cli import main\n"
         "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
         f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")


def probe(*args):
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(proc.stdout.strip().splitlines()[-1])


def test_version_prints_the_installed_version():
    for flag in ("--version", "-V"):
        proc = subprocess.run([sys.executable, "-m", "policylens.cli", flag], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0 and proc.stdout.strip() == f"policylens {version()}", proc.stderr
    parts = version().split(".")
    assert len(parts) >= 2 and all(p.isdigit() for p in parts[:2]), version()


def commands():
    from policylens.dt.cli import SUBCOMMANDS as DT
    from policylens.sim.cli import SUBCOMMANDS as SIM

    return [[name] for name in COMMANDS] + [["dt", sub] for sub in DT] + [["sim", sub] for sub in SIM]


@pytest.mark.parametrize("argv", commands(), ids=" ".join)
def test_help_imports_no_heavy_library(argv):
    out, imported = probe(*argv, "--help")
    assert "usage: policylens " + " ".join(argv) in out
    assert not imported, f"policylens {' '.join(argv)} --help imported {', '.join(imported)}"
