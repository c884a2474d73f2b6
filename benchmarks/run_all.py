"""``make bench``: the benchmarks that need nothing trained beyond the zoo, each at its defaults, then the figure.

    python -m benchmarks.run_all [--skip NAME,...]

The others need a recorded store or a trained simulator, or run for an hour (``sim_fidelity``, ``sim_training``,
``sim_swap_starts``, ``sim_episode_ends``, ``sim_closed_loop`` (after ``sim_fidelity``), ``sim_balls``, ``dt_training``,
``evaluate_coinrun``, ``minigrid_time_to_95``): run them one by one as their docstrings and benchmarks/README.md say.
"""
from __future__ import annotations

import argparse
import importlib

QUICK = ("ppo_overhead", "store", "attribution_ig", "explorer_export", "dt_app_latency", "edit_blindness",
         "featvis_vs_examples", "import_time", "gym_cartpole")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip", default="", help="comma-separated benchmark names to leave out")
    args = parser.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    unknown = skip - set(QUICK)
    if unknown:
        parser.error(f"--skip {', '.join(sorted(unknown))}: expected some of {', '.join(QUICK)}")
    for name in QUICK:
        if name not in skip:
            print(f"== benchmarks.{name}")
            importlib.import_module(f"benchmarks.{name}").main([])
    importlib.import_module("benchmarks.plot").main()


if __name__ == "__main__":
    main()
