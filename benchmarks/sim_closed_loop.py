"""Closed-loop agreement of several simulators side by side, from results already filed (no new computation).

    python -m benchmarks.sim_closed_loop [--levers "LABEL,LABEL"]

Reads the closed-loop curves that ``python -m benchmarks.sim_fidelity`` filed: the zoo's simulator in
``results/sim_fidelity.json`` and each named lever in ``results/sim_fidelity_levers.json``; the environment's own
curves (a draw, the best guess) are the zoo run's, the same windows and draws for every simulator. Draws
``results/sim_closed_loop_levers.png``.
"""
from __future__ import annotations

import argparse
import json

from .common import RESULTS

DEFAULT_LEVERS = "obs-balance 0.25,temperature-4 store + obs-balance 0.25"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levers", default=DEFAULT_LEVERS, help="lever labels in sim_fidelity_levers.json")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    zoo = json.loads((RESULTS / "sim_fidelity.json").read_text())
    levers = json.loads((RESULTS / "sim_fidelity_levers.json").read_text())["runs"]
    curves = {"the zoo's simulator (defaults)": zoo["closed_loop"]}
    for label in filter(None, (x.strip() for x in args.levers.split(","))):
        if not (levers.get(label) or {}).get("closed_loop"):
            raise SystemExit(f"lever {label!r} has no closed-loop result in sim_fidelity_levers.json; score it with "
                             "python -m benchmarks.sim_fidelity --sim DIR --lever LABEL")
        curves[label] = levers[label]["closed_loop"]
    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=110)
    env = zoo["closed_loop"]["per_step"]
    for way, ls in (("best guess", "--"), ("a draw", ":")):
        c = env[way]
        x = np.arange(len(c["mean"]))
        ax.plot(x, c["mean"], color="black", ls=ls, label=f"the environment: {way}")
        ax.fill_between(x, c["low"], c["high"], color="black", alpha=0.08)
    for k, (label, closed) in enumerate(curves.items()):
        c = closed["per_step"]["simulator"]
        x = np.arange(len(c["mean"]))
        ax.plot(x, c["mean"], color=f"C{k}", label=label)
        ax.fill_between(x, c["low"], c["high"], color=f"C{k}", alpha=0.15)
    ax.set_xlabel("the agent's action, steps from the last context frame", fontsize=8)
    ax.set_ylabel("agreement with the environment's draws", fontsize=8)
    ax.set_title(f"closed loop: the agent acting on its own ({zoo['closed_loop']['draws']} draws, "
                 f"{zoo['settings']['split']['windows']} held-out windows)", fontsize=9)
    ax.set_xlim(0, 20)
    ax.set_ylim(0.2, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = RESULTS / "sim_closed_loop_levers.png"
    fig.savefig(out)
    plt.close(fig)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
