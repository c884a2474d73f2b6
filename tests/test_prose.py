"""The product describes the tool as it is: no development history ("session 7") and papers named by title, never
by their number in the project's reading list ("seed 001"), in the README, docs/, benchmarks/README, the zoo's
README, notes and reports, the notebooks, the package's and the benchmarks' sources (docstrings, comments and help
strings alike) and the benchmarks' committed results (their labels are read as much as the prose)."""
from __future__ import annotations

import glob
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# "session 7", "sessions 12 to 14", "Session 13's"; "seed 001", "seeds 000/002" (a random seed is written otherwise)
HISTORY = re.compile(r"\bsessions? \d|\bseeds? 00\d", re.I)


def offending_lines(text: str) -> list:
    return [f"{i}: {line.strip()[:120]}" for i, line in enumerate(text.splitlines(), 1) if HISTORY.search(line)]


def product_files() -> list:
    md = ["README.md", "benchmarks/README.md", *sorted(glob.glob("docs/**/*.md", root_dir=ROOT, recursive=True)),
          *sorted(glob.glob("zoo/**/*.md", root_dir=ROOT, recursive=True))]
    py = sorted(glob.glob("src/policylens/**/*.py", root_dir=ROOT, recursive=True))
    rest = [*sorted(glob.glob("benchmarks/*.py", root_dir=ROOT)), *sorted(glob.glob("benchmarks/results/*.json", root_dir=ROOT)),
            *sorted(glob.glob("docs/**/*.ipynb", root_dir=ROOT, recursive=True))]
    return [f for f in md + py + rest if (ROOT / f).is_file()]


def test_the_pattern_catches_history_and_paper_numbers_but_not_random_seeds():
    assert offending_lines("until session 14 the default was\nas seed 001 did\nSessions 12 to 14 measure")
    assert offending_lines("Seeds 000/002 say")
    assert not offending_lines("--seed 0 fixes the random seed; seed 11 and seeds 1, 2, 3; a training session")
    assert not offending_lines("Understanding RL Vision's interface (Saliency as causality's baseline)")


def test_no_product_file_narrates_sessions_or_numbers_a_paper():
    files = product_files()
    assert "benchmarks/README.md" in files and any(f.endswith("sim/train_config.py") for f in files)
    assert "benchmarks/quote.py" in files and any(f.endswith(".json") for f in files) and any(f.endswith(".ipynb") for f in files)
    found = {f: lines for f in files if (lines := offending_lines((ROOT / f).read_text()))}
    assert found == {}
