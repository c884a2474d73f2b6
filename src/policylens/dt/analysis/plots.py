"""Figures of the decision-transformer analyses, drawn from the dicts the analyses return (what the JSON
holds): precompute and plot are separate. Maps over the view are drawn as the agent sees it: the observation
is ``[x, y]``-indexed, so row y of the picture is ``map[:, y]``; the agent (triangle) sits at the bottom
centre facing up, the cell in front of it is outlined."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plots import _pyplot

LETTERS = {0: "?", 2: "W", 6: "O", 8: "G"}  # MiniGrid objects worth marking: unseen, wall, ball, goal


def _view(ax, grid: np.ndarray, title: str, vmax: "float | None" = None, obs: "np.ndarray | None" = None):
    """Draw one (W, H) ``[x, y]`` map with a diverging colour scale centred on 0; returns the image."""
    vmax = vmax or float(np.abs(grid).max()) or 1.0
    im = ax.imshow(grid.T, cmap="RdBu", vmin=-vmax, vmax=vmax)
    w, h = grid.shape
    ax.plot(w // 2, h - 1, marker="^", color="black", markersize=9)
    ax.add_patch(_pyplot().Rectangle((w // 2 - 0.5, h - 2.5), 1, 1, fill=False, lw=1.5, ec="black"))
    if obs is not None:
        for x in range(w):
            for y in range(h):
                letter = LETTERS.get(int(obs[x, y, 0]))
                if letter:
                    ax.text(x, y, letter, ha="center", va="center", fontsize=8, color="dimgray")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    return im


def _save(fig, png) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return Path(png)


def plot_contributions(contrib: dict, png, preference=("forward", "right")) -> Path:
    """Bars: each component's contribution to every action logit and to ``preference`` (one window)."""
    plt = _pyplot()
    names, values = contrib["components"], np.asarray(contrib["values"])  # (C, A)
    actions = contrib["action_names"]
    a, b = actions.index(preference[0]), actions.index(preference[1])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 0.32 * len(names) + 1.5), dpi=120, sharey=True)
    y = np.arange(len(names))
    for i, action in enumerate(actions):
        ax1.barh(y + (i - 1) * 0.27, values[:, i], 0.27, label=action)
    ax1.set_yticks(y, names, fontsize=7)
    ax1.invert_yaxis()
    ax1.axvline(0, color="black", lw=0.5)
    ax1.legend(fontsize=7)
    ax1.set_title("contribution to each action logit", fontsize=9)
    pref = values[:, a] - values[:, b]
    ax2.barh(y, pref, color=np.where(pref >= 0, "tab:blue", "tab:red"))
    ax2.axvline(0, color="black", lw=0.5)
    ax2.set_title(f"contribution to {preference[0]} - {preference[1]} (sum {pref.sum():.2f})", fontsize=9)
    return _save(fig, png)


def plot_state_map(state_map: dict, png) -> Path:
    """The state token's contribution per cell: object, colour and state channels and their sum."""
    plt = _pyplot()
    planes, cells, obs = np.asarray(state_map["planes"]), np.asarray(state_map["cells"]), np.asarray(state_map["obs"])
    vmax = float(max(np.abs(planes).max(), np.abs(cells).max())) or 1.0
    fig, axes = plt.subplots(1, 4, figsize=(11, 3.2), dpi=120)
    for ax, grid, title in zip(axes, [*planes, cells], [*state_map["plane_names"], "all channels"]):
        im = _view(ax, grid, f"{title} channel" if title != "all channels" else title, vmax, obs)
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.suptitle(f"state token's direct contribution to {state_map['target']}: cells {cells.sum():.2f} + bias "
                 f"{state_map['bias']:.2f} = {state_map['total']:.2f}", fontsize=9)
    fig.savefig(png)
    plt.close(fig)
    return Path(png)


def plot_ablation(table: dict, png) -> Path:
    """Decision Transformer Interpretability's Figure 7 as bars: outcome rates per target RTG for the model and
    each ablation, Wilson 95% intervals, * where the paired test against the unablated model is significant (Holm)."""
    plt = _pyplot()
    rtgs, labels = table["rtgs"], ["none"] + table["ablations"]
    outcomes = ["success", "obstacle", "wall", "timeout"]
    fig, axes = plt.subplots(1, len(rtgs), figsize=(4.2 * len(rtgs), 3.8), dpi=120, sharey=True, squeeze=False)
    width = 0.8 / len(labels)
    for ax, rtg in zip(axes[0], rtgs):
        rows = {r["ablation"]: r for r in table["rows"] if r["rtg"] == rtg}
        for k, label in enumerate(labels):
            row = rows[label]
            rates = np.array([row["rates"][o]["rate"] for o in outcomes])
            ci = np.array([row["rates"][o]["ci95"] for o in outcomes])  # (4, 2)
            xs = np.arange(len(outcomes)) + (k - (len(labels) - 1) / 2) * width
            ax.bar(xs, rates, width, yerr=[rates - ci[:, 0], ci[:, 1] - rates], capsize=2,
                   label="unablated" if label == "none" else f"ablate {label}")
            for x, o, top in zip(xs, outcomes, ci[:, 1]):
                if row.get("vs_unablated", {}).get(o, {}).get("significant"):
                    ax.text(x, top + 0.01, "*", ha="center", fontsize=10)
        ax.set_xticks(range(len(outcomes)), outcomes)
        ax.set_ylim(0, 1.12)
        ax.set_title(f"target RTG {rtg:g}", fontsize=9)
    axes[0, 0].set_ylabel(f"share of {table['episodes']} episodes")
    axes[0, -1].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{table['mode']} ablation: how episodes ended (* paired McNemar, Holm, p < {table['alpha']})",
                 fontsize=9)
    return _save(fig, png)


def plot_rtg_scan(scan: dict, png, preference=("forward", "right"), top: int = 6) -> Path:
    """Logits, preferences, and the ``top`` components with the widest swing on ``preference``, against RTG
    (the training data's RTG range shaded)."""
    plt = _pyplot()
    rtgs, names = np.asarray(scan["rtgs"]), scan["action_names"]
    logits, contrib = np.asarray(scan["logits"]), np.asarray(scan["contributions"])  # (R, A), (C, R, A)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=120)
    for i, name in enumerate(names):
        axes[0].plot(rtgs, logits[:, i], label=name)
    for label, values in scan["preferences"].items():
        axes[1].plot(rtgs, values, label=label)
    a, b = names.index(preference[0]), names.index(preference[1])
    pref = contrib[..., a] - contrib[..., b]  # (C, R)
    swing = pref.max(1) - pref.min(1)  # (C,) components constant in the RTG are left out
    for c in [c for c in np.argsort(-swing)[:top] if swing[c] > 1e-6]:
        axes[2].plot(rtgs, pref[c], label=scan["components"][c])
    titles = ("action logits", "preferences", f"components on {preference[0]} - {preference[1]}")
    for ax, title in zip(axes, titles):
        if scan.get("rtg_range"):
            ax.axvspan(*scan["rtg_range"], color="tab:green", alpha=0.07)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xlabel("RTG")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=6)
    return _save(fig, png)


def plot_circuits(maps: dict, png) -> Path:
    """Rows: the state token's direct path, each head's OV and each head's QK score toward the RTG; columns:
    wall, obstacle, goal at each cell (minus an empty cell)."""
    plt = _pyplot()
    entities = [e for e in maps["entities"] if e != "empty"]
    idx = [maps["entities"].index(e) for e in entities]
    ov, qk = np.asarray(maps["ov"]), np.asarray(maps["qk_to_rtg"])
    rows = [(f"state token direct\n-> {maps['preference']}", np.asarray(maps["direct"]))]
    rows += [(f"head {h} OV\n-> {maps['preference']}", ov[h]) for h in range(len(ov))]
    rows += [(f"head {h} QK score\nstate -> RTG {maps['rtg']:.2g}", qk[h]) for h in range(len(qk))]
    fig, axes = plt.subplots(len(rows), len(entities), figsize=(2.2 * len(entities) + 2.2, 2.1 * len(rows)), dpi=110,
                             squeeze=False, layout="constrained")
    for r, (label, grids) in enumerate(rows):
        vmax = float(np.abs(grids[idx]).max()) or 1.0
        for c, (e, i) in enumerate(zip(entities, idx)):
            im = _view(axes[r, c], grids[i], f"{e} (vs empty) at each cell" if r == 0 else "", vmax)
        axes[r, 0].set_ylabel(label, fontsize=8)
        fig.colorbar(im, ax=list(axes[r]), shrink=0.8)
    fig.suptitle("an entity at each cell of the view (minus an empty cell), through the weights", fontsize=9)
    fig.savefig(png)
    plt.close(fig)
    return Path(png)


def plot_embeddings(proj: dict, png) -> Path:
    """RTG embedding on each preference (directly and via each head's OV) and the time embedding over steps."""
    plt = _pyplot()
    pairs = list(proj["rtg"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6), dpi=120)
    n_heads = len(proj["rtg"][pairs[0]]["ov"])
    kinds = ["direct"] + [f"head {h} OV" for h in range(n_heads)]
    width = 0.8 / len(kinds)
    for k, kind in enumerate(kinds):
        values = [proj["rtg"][p]["direct"] if k == 0 else proj["rtg"][p]["ov"][k - 1] for p in pairs]
        ax1.bar(np.arange(len(pairs)) + (k - (len(kinds) - 1) / 2) * width, values, width, label=kind)
    ax1.set_xticks(range(len(pairs)), pairs, fontsize=8)
    ax1.axhline(0, color="black", lw=0.5)
    ax1.set_title("RTG embedding (per unit RTG) on each preference", fontsize=9)
    ax1.legend(fontsize=7)
    for p in pairs:
        ax2.plot(proj["time"][p]["direct"], label=p, lw=0.8)
    ax2.axhline(0, color="black", lw=0.5)
    ax2.set_xlabel("episode step")
    ax2.set_title("time embedding on each preference (direct)", fontsize=9)
    ax2.legend(fontsize=7)
    return _save(fig, png)


def plot_patching(result: dict, png) -> Path:
    """Share of the clean-vs-corrupt preference restored by patching each position (and head)."""
    plt = _pyplot()
    restored = np.asarray(result["restored"])
    restored = restored[:, None] if restored.ndim == 1 else restored  # (P, H)
    fig, ax = plt.subplots(figsize=(1.2 * restored.shape[1] + 2.5, 0.45 * restored.shape[0] + 1.6), dpi=120)
    im = ax.imshow(restored, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(restored):
        ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=8)
    ax.set_yticks(range(len(result["positions"])), result["positions"])
    ax.set_xticks(range(restored.shape[1]), result["heads"] or ["all"])
    ax.set_title(f"{result['hook']}: restored {result['preference'][0]} - {result['preference'][1]}\n"
                 f"(all at once: {result['restored_all']:.0%})", fontsize=8)
    fig.colorbar(im, ax=ax)
    return _save(fig, png)


def plot_situations(situations: dict, png, components: list) -> Path:
    """Mean contribution of each component to the preference per front entity, one panel per target RTG."""
    plt = _pyplot()
    rtgs, entities = list(situations["rows"]), situations["entities"]
    fig, axes = plt.subplots(1, len(rtgs), figsize=(2.6 * len(rtgs) + 3, 0.4 * len(components) + 1.6), dpi=120,
                             squeeze=False, sharey=True, layout="constrained")
    grids = [np.array([[situations["rows"][r][e]["components"][c] for e in entities] for c in components])
             for r in rtgs]
    vmax = max(float(np.abs(g).max()) for g in grids) or 1.0
    for ax, r, grid in zip(axes[0], rtgs, grids):
        im = ax.imshow(grid, cmap="RdBu", vmin=-vmax, vmax=vmax, aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(entities)), entities, fontsize=7)
        ax.set_xlabel("ahead of the agent", fontsize=7)
        ax.set_yticks(range(len(components)), components, fontsize=7)
        ax.set_title(f"target RTG {r}", fontsize=8)
    fig.suptitle(f"mean direct contribution to {situations['preference']}", fontsize=9)
    fig.colorbar(im, ax=list(axes[0]))
    fig.savefig(png)
    plt.close(fig)
    return Path(png)



def plot_compare(result: dict, png) -> Path:
    """Decision Transformer Interpretability's findings for several models (``policylens dt compare``'s dict):
    calibration curves, the state embedding's push with each entity ahead (minus empty, the paper's Table 3
    beside), and the rate each ablation finding is about, unablated and ablated."""
    plt = _pyplot()
    models = result["models"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), dpi=110)
    ax = axes[0]
    ax.plot([-1, 1], [-1, 1], color="gray", lw=0.8, ls="--", label="calibrated")
    for m in models:
        curve = m["calibration_curve"]
        x = np.array([c["target_rtg"] for c in curve])
        y = np.array([c["mean_return"] for c in curve])
        ci = np.array([c["ci95"] for c in curve])  # (R, 2)
        ax.errorbar(x, y, yerr=[y - ci[:, 0], ci[:, 1] - y], marker="o", capsize=3, label=m["label"])
    ax.set(xlabel="target return-to-go", ylabel="achieved return", xlim=(-1.1, 1.1), ylim=(-1.1, 1.1))
    ax.set_title("calibration (the paper's Figure 5)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax = axes[1]
    entities = ["wall", "obstacle", "goal"]
    rows = [(m["label"], m["table3"]["minus_empty"]) for m in models if m["table3"]]
    rows.append(("the paper (raw)", result["paper_table3_minus_empty"]))
    width = 0.8 / len(rows)
    for i, (label, values) in enumerate(rows):
        ax.bar(np.arange(3) + i * width, [values[e] for e in entities], width, label=label)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(np.arange(3) + 0.4 - width / 2, entities)
    ax.set_ylabel("state token's direct push on forward - right, minus empty")
    ax.set_title("the cell ahead (the paper's Table 3)", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[2]
    claims = ["head0", "head1", "mlp"]
    width = 0.8 / len(models)
    for i, m in enumerate(models):
        found = {c["key"]: c for c in m["ablation"]["claims"] if "unablated" in c}
        before = [found[k]["unablated"]["rate"] if k in found else np.nan for k in claims]
        after = [found[k]["ablated"]["rate"] if k in found else np.nan for k in claims]
        x = np.arange(3) + i * width
        bars = ax.bar(x, after, width, label=f"{m['label']}: ablated", alpha=0.8)
        ax.scatter(x, before, color=bars.patches[0].get_facecolor(), edgecolor="black", zorder=3, marker="_", s=200)
    ax.set_xticks(np.arange(3) + 0.4 - width / 2, ["head 0, RTG -1:\ngoal from the top", "head 1, RTG 0.9:\nobstacle",
                                                   "MLP, RTG -1:\ngoal from the left"], fontsize=7)
    ax.set_ylabel("share of episodes (bar: ablated, line: unablated)")
    ax.set_title("the paper's ablation findings (Figure 7)", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, png)
