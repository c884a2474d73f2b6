"""The swap experiment's figure: rates by cause, the original, the swapped agent and the random control side by
side, with the paired tests' marks."""
from __future__ import annotations

from pathlib import Path


def plot(compared: dict, names: list, alpha: float, setting: str, path: Path) -> None:
    from ...evaluate.compare import plot_rates

    causes = sorted(set(compared["swapped"]["causes"]) | set(compared["control"]["causes"]))
    edits = {k: compared[k] for k in ("swapped", "control")}
    groups = [("original", {c: _side(edits, c, "a") for c in causes}),
              ("swapped", {c: _side({"x": compared["swapped"]}, c, "b") for c in causes}),
              ("random control", {c: _side({"x": compared["control"]}, c, "b") for c in causes})]
    labels = [c + "".join(m for m, k in (("*", "swapped"), ("†", "control"))
                          if compared[k]["causes"].get(c, {}).get("significant")) for c in causes]
    where = "levels" if setting.startswith("real") else "imagined episodes"
    title = (f"Swap {', '.join(f'{a} -> {b}' for a, b in names)} ({setting}): {compared['swapped']['episodes']} "
             f"paired {where} (* swapped, † control differ from the original, p < {alpha} Holm)")
    plot_rates(groups, causes, labels, title, path)


def _side(comparisons: dict, cause: str, side: str) -> dict:
    """A cause's rate on one side of whichever comparison has it (rate 0 when none does)."""
    for comparison in comparisons.values():
        if cause in comparison["causes"]:
            return comparison["causes"][cause][side]
    return {"rate": 0.0, "ci95": [0.0, 0.0]}
