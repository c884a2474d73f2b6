"""Draw the README's benchmark figure from the JSON results: ``python -m benchmarks.plot``."""
from __future__ import annotations

import json

from .common import RESULTS


def main():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    ppo = RESULTS / "ppo_overhead.json"
    if ppo.is_file():
        setups = json.loads(ppo.read_text())["setups"]
        panels.append(("PPO vs raw env (frames/s, log)", list(setups),
                       [[s["raw_env_steps_per_s"] for s in setups.values()], [s["ppo_frames_per_s"] for s in setups.values()]],
                       ["raw env, random actions", "PPO training"]))
    store = RESULTS / "store.json"
    if store.is_file():
        s = json.loads(store.read_text())
        panels.append(("rollout store (bytes/frame, log)", ["raw uint8 obs", "stored obs", "whole store"],
                       [[s["raw_obs_bytes_per_frame"], s["obs_bytes_per_frame"], s["store_bytes_per_frame"]]], [None]))
    app = RESULTS / "dt_app_latency.json"
    if app.is_file():
        rows = json.loads(app.read_text())["rows"]
        labels = [("browser" if r["setting"].startswith("browser") else r["setting"])
                  + (" (big model)" if "random" in r["model"] else "") for r in rows]
        panels.append(("DT app: one step, ms (budget 200)", labels,
                       [[r["median_ms"] for r in rows], [r["p95_ms"] for r in rows]], ["median", "95th percentile"]))
    evaluation = RESULTS / "evaluate_coinrun_10000.json"
    if evaluation.is_file():
        e = json.loads(evaluation.read_text())
        if "agent_forward_bound_frames_per_s" in e:
            panels.append(("CoinRun evaluation, 10k levels (frames/s, log)",
                           ["env steps alone", "agent forward alone", "both (bound)", "evaluation"],
                           [[e["env_step_bound_frames_per_s"], e["agent_forward_bound_frames_per_s"],
                             e["combined_bound_frames_per_s"], e["eval_frames_per_s"]]], [None]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), dpi=110, squeeze=False)
    for ax, (title, labels, series, names) in zip(axes[0], panels):
        width = 0.8 / len(series)
        for k, (values, name) in enumerate(zip(series, names)):
            xs = [i + k * width for i in range(len(values))]
            bars = ax.bar(xs, values, width, label=name)
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(labels))], labels, rotation=15, fontsize=7)
        ax.set_title(title, fontsize=9)
        if "log" in title:
            ax.set_yscale("log")
        if names[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    out = RESULTS / "overview.png"
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
