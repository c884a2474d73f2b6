"""The CLI answers ``--version`` and every ``--help`` without importing torch (so both come back at once)."""
import json
import subprocess
import sys

import pytest

from policylens.cli import COMMANDS, version

# Runs the CLI in this process and prints, as its last line, whether torch got imported.
PROBE = ("import json, sys\nfrom policylens.cli import main\n"
         "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
         "print(json.dumps('torch' in sys.modules))")


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


# sub-commands whose modules still import torch at the top (their --help takes a torch import)
STILL_IMPORT_TORCH = {"dt collect", "dt train", "dt analyze", "dt ablate", "sim train", "sim fidelity",
                      "sim sample", "sim saliency", "sim swap"}


def commands():
    from policylens.dt.cli import SUBCOMMANDS as DT
    from policylens.sim.cli import SUBCOMMANDS as SIM

    names = [[name] for name in COMMANDS] + [["dt", sub] for sub in DT] + [["sim", sub] for sub in SIM]
    return [pytest.param(argv, marks=pytest.mark.xfail(strict=True, reason="imports torch at the top"))
            if " ".join(argv) in STILL_IMPORT_TORCH else argv for argv in names]


@pytest.mark.parametrize("argv", commands(), ids=" ".join)
def test_help_does_not_import_torch(argv):
    out, imported = probe(*argv, "--help")
    assert "usage: policylens " + " ".join(argv) in out
    assert not imported, f"policylens {' '.join(argv)} --help imported torch"
