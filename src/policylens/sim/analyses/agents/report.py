"""What ``policylens sim agents`` shows: the table of real against imagined outcomes per agent (markdown), the
same as bars with their intervals, and videos of imagined episodes beside the real ones from the same start."""
from __future__ import annotations

from pathlib import Path

import numpy as np

SIDES = (("real", "#4c72b0", "real"), ("imagined", "#dd8452", "imagined"),
         ("imagined_view", "#f2c9a8", "imagined end, as its view shows it"))


def _pct(r: dict) -> str:
    return f"{100 * r['rate']:.1f}% [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]"


def shown_causes(row: dict) -> list:
    """The causes that happened, really or in imagination, in the order of the table."""
    return [c for c in row["real"] if any(row[side][c]["count"] for side, _, _ in SIDES)]


def table_rows(result: dict) -> list:
    """Markdown rows: per agent, each outcome's rate real and imagined (Wilson 95%), the imagined ends as their
    views show them, the mean steps from the last context frame to the end, and the share of paired episodes
    with the same outcome in both."""
    rows = ["| agent | outcome | real | imagined | imagined end, as its view shows it |", "|---|---|---|---|---|"]
    for name, row in result["agents"].items():
        head = f"`{name}` ({row['paired']} paired)"
        for cause in shown_causes(row):
            rows.append(f"| {head} | {cause} | {_pct(row['real'][cause])} | {_pct(row['imagined'][cause])} | "
                        f"{_pct(row['imagined_view'][cause])} |")
            head = ""
        rows.append(f"| | mean steps to the end | {row['steps']['real']:.1f} | {row['steps']['imagined']:.1f} | |")
        rows.append(f"| | same outcome in both | | {_pct(row['agree'])} | |")
    return rows


def markdown(result: dict, figure: str = "") -> str:
    k = result["context_frames"]
    early = {n: r["in_context"]["count"] for n, r in result["agents"].items() if r["in_context"]["count"]}
    lines = ["### Agents inside the simulator", "",
             f"Each agent played {result['episodes']} levels of `{result['env']}` (levels from "
             f"{result['start_level']}, actions: {result['policy']}); the simulator `{result['simulator']}` imagined "
             f"each episode from its first {k} frames (filtered with the agent's own first {k - 1} actions), the "
             f"agent acting from the last one, up to {result['horizon']} steps in all, the same noise for every "
             "agent. An imagined episode ends where the simulator predicts an end; its cause is read from the "
             "predicted reward and what the agent moved into in the view it saw (beside it, what the view alone "
             "shows the agent walking into at that end). Rates over the paired episodes with Wilson 95% intervals."]
    if early:
        lines += ["", "Decided within the context (real history, not imagined): "
                  + ", ".join(f"`{n}` {c}" for n, c in early.items()) + "."]
    lines += ["", *table_rows(result), ""]
    if figure:
        lines += [f"![real against imagined outcomes]({figure})", ""]
    return "\n".join(lines)


def plot(result: dict, path) -> Path:
    """One panel per agent: each outcome's rate real, imagined and as the imagined views show the ends, with its
    interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agents = list(result["agents"].items())
    fig, axes = plt.subplots(1, len(agents), figsize=(3.2 * len(agents) + 0.6, 3.5), dpi=120, squeeze=False)
    for ax, (name, row) in zip(axes[0], agents):
        causes = shown_causes(row)
        for j, (side, colour, name_) in enumerate(SIDES):
            rates = np.array([100 * row[side][c]["rate"] for c in causes])
            lo = np.array([100 * row[side][c]["ci95"][0] for c in causes])
            hi = np.array([100 * row[side][c]["ci95"][1] for c in causes])
            xs = np.arange(len(causes)) + (j - 1) * 0.27
            ax.bar(xs, rates, 0.27, yerr=[rates - lo, hi - rates], capsize=2, color=colour, label=name_)
        ax.set_xticks(range(len(causes)), causes, rotation=30, fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_title(f"{name}\n({row['paired']} paired)", fontsize=8)
    axes[0][0].set_ylabel("% of episodes")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(f"Outcomes in the environment and in the simulator ({result['env'].split('?')[0]})", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _captioned(obs, actions, obs_kind: str, where: str, cause: str, names, steps: int, context: int = 0) -> np.ndarray:
    """Frames drawn and captioned ``WHERE t action`` (``ctx`` on the shared context), the end named last."""
    from ...video import caption, render_obs

    n = min(len(obs), steps)
    lines = []
    for t in range(n):
        a = int(actions[t]) if t < len(actions) else None
        text = f"{where}{' ctx' if t < context else ''} {t} {names[a] if a is not None and a < len(names) else a}"
        lines.append(text + (f" END {cause}" if t == len(obs) - 1 and cause != "timeout" else ""))
    return caption(render_obs(obs[:n], obs_kind, tile=32), lines, fit=False)  # one size for every stack


def write_video_pairs(real: list, imagined: list, obs_kind: str, action_names, path, count: int, context: int,
                      steps: int = 48, fps: float = 4.0) -> "Path | None":
    """A GIF of the first ``count`` imagined episodes that kept their frames, each beside the real episode from
    the same start (rows of real | imagined; the first ``context`` frames, K - 1, are the shared history), at most
    ``steps`` frames; None when there is none."""
    from ...video import grid, write_video

    kept = [i for i in imagined if "obs" in i][:count]
    if not kept:
        return None
    by_episode = {r["episode"]: r for r in real}
    stacks = []
    for i in kept:
        r = by_episode[i["episode"]]
        stacks.append(_captioned(r["obs"], r["actions"], obs_kind, "real", r["cause"], action_names, steps, context))
        stacks.append(_captioned(i["obs"], i["actions"], obs_kind, "sim", i["cause"], action_names, steps, context))
    return write_video(grid(stacks, columns=2), path, fps)
