"""The CLI answers ``--version`` and every ``--help`` without importing torch or the other heavy libraries (so both
come back at once)."""
import json
import subprocess
import sys

import pytest

from policylens.cli import COMMANDS, version

HEAVY = ("torch", "sklearn", "scipy", "matplotlib", "gymnasium", "zarr", "pandas", "transformer_lens")
# One fresh interpreter imports the CLI, then runs each command line in a child forked from it (the state a fresh
# `from policylens.cli import main` leaves, without paying the interpreter's start per command); each child
# reports its exit code, what it printed and the heavy libraries it imported. A child stops at its first attempt
# to import one (the answer is known then, and the import itself can cost seconds).
FORKER = """
import contextlib, io, json, os, sys, traceback
from policylens.cli import main
HEAVY = %r
results = {}
for argv in json.loads(sys.argv[1]):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        out, code = io.StringIO(), 0

        def report(heavy):
            with os.fdopen(w, "w") as f:
                json.dump({"code": code, "out": out.getvalue(), "heavy": heavy}, f)
            os._exit(0)

        class HeavyTrap:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in HEAVY:
                    report([name.split(".")[0]])

        sys.meta_path.insert(0, HeavyTrap())
        try:
            with contextlib.redirect_stdout(out):
                main(argv)
        except SystemExit as e:
            code = e.code
        except BaseException:
            code = traceback.format_exc()
        report([m for m in HEAVY if m in sys.modules])
    os.close(w)
    with os.fdopen(r) as f:
        results[" ".join(argv)] = json.load(f)
    os.waitpid(pid, 0)
print(json.dumps(results))
""" % (HEAVY,)


def probe_all(argvs: list) -> dict:
    """``{" ".join(argv): {"code", "out", "heavy"}}`` for each command line, each run as described above."""
    proc = subprocess.run([sys.executable, "-c", FORKER, json.dumps(argvs)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_version_prints_the_installed_version():
    for flag in ("--version", "-V"):
        proc = subprocess.run([sys.executable, "-m", "policylens.cli", flag], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0 and proc.stdout.strip() == f"policylens {version()}", proc.stderr
    parts = version().split(".")
    assert len(parts) >= 2 and all(p.isdigit() for p in parts[:2]), version()


def names() -> list:
    from policylens.dt.cli import SUBCOMMANDS as DT
    from policylens.sim.cli import SUBCOMMANDS as SIM

    return [[name] for name in COMMANDS] + [["dt", sub] for sub in DT] + [["sim", sub] for sub in SIM]


@pytest.fixture(scope="module")
def helps() -> dict:
    return probe_all([[*argv, "--help"] for argv in names()])


@pytest.mark.parametrize("argv", names(), ids=" ".join)
@pytest.mark.slow
def test_help_imports_no_heavy_library(argv, helps):
    got = helps[" ".join([*argv, "--help"])]
    assert not got["heavy"], f"policylens {' '.join(argv)} --help imported {', '.join(got['heavy'])}"
    assert got["code"] in (0, None), got["code"]
    assert "usage: policylens " + " ".join(argv) in got["out"]
