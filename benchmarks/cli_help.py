"""``policylens CMD --help`` wall time, this source tree against a git ref's (``git archive REF src``), side by
side in one run: the median of ``--repeat`` fresh processes per command, and the ratio.

    python -m benchmarks.cli_help [--ref main] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

from .common import write

ROOT = Path(__file__).resolve().parents[1]


def commands(groups: bool) -> list:
    from policylens.cli import COMMANDS
    from policylens.dt.cli import SUBCOMMANDS as DT
    from policylens.sim.cli import SUBCOMMANDS as SIM

    top = [[c] for c in COMMANDS if not groups or c not in ("dt", "sim")]
    return top + ([["dt", s] for s in DT] + [["sim", s] for s in SIM] if groups else [])


def seconds(src: Path, argv: list, repeat: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "policylens.cli", *argv, "--help"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="main", help="git ref whose src/ is the baseline")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-groups", action="store_true", help="only the top-level commands, not dt/sim SUB")
    args = parser.parse_args(argv)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tar = subprocess.run(["git", "archive", args.ref, "src"], cwd=ROOT, check=True, capture_output=True).stdout
        tarfile.open(fileobj=BytesIO(tar)).extractall(tmp)
        for argv_ in commands(not args.no_groups):
            name = " ".join(argv_)
            before = seconds(Path(tmp) / "src", argv_, args.repeat)
            after = seconds(ROOT / "src", argv_, args.repeat)
            rows[name] = {"ref_s": round(before, 3), "this_s": round(after, 3), "ratio": round(after / before, 3)}
            print(name, rows[name], flush=True)
    top = [name for name in rows if " " not in name]  # the top-level commands
    summary = {"median_ref_s": round(statistics.median(r["ref_s"] for r in rows.values()), 3),
               "median_this_s": round(statistics.median(r["this_s"] for r in rows.values()), 3),
               "top_max_ref_s": max(rows[n]["ref_s"] for n in top), "top_max_this_s": max(rows[n]["this_s"] for n in top),
               "max_ref_s": max(r["ref_s"] for r in rows.values()), "max_this_s": max(r["this_s"] for r in rows.values()),
               "under_1s": sum(r["this_s"] < 1 for r in rows.values()), "commands": len(rows)}
    write("cli_help", {"ref": args.ref, "repeat": args.repeat, "groups": not args.no_groups, "summary": summary, "rows": rows,
                       "note": "wall seconds of `python -m policylens.cli CMD --help` in a fresh process, median of "
                               "repeat; ref_s: the ref's src, this_s: this tree's; ratio = this_s / ref_s"})


if __name__ == "__main__":
    main()
