"""``policylens compare RUN_A RUN_B``: two agents on the same levels, failure rate by cause, tested.

Both agents play episode k on level ``start_level + k`` with the same env and action seeds, so their outcomes
pair up level by level. For each cause the rate of each agent gets a Wilson 95% interval, and the difference
is tested with McNemar's exact test on the discordant levels (A ended by that cause and B not, or the
reverse), which uses the pairing; the p-values are Holm-corrected over the causes compared. Understanding RL Vision's
figure to beat: after blinding the agent to buzzsaws, buzzsaw failures rose from 0.37% to 12.76% while the
other causes stayed flat — here that reads as one cause significant, the others not.

``invisible=KINDS`` adds Understanding RL Vision's control: RUN_A plays the same levels once more with those entities drawn
transparent (``procgen:coinrun?invisible=saw``), the blindness an edit could at most reach. For each hidden
kind that is a cause, the *blindness share* is how much of that rise the edit reaches,
``(rate_B - rate_A) / (rate_control - rate_A)``, with a paired bootstrap 95% interval over levels. Understanding RL Vision's
edit: (12.76 - 0.37) / (32.20 - 0.37) = 0.39 of full blindness ("were not able to achieve more than around
50%").
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import add_dataclass_args, clear_errors, from_args
from ..envs.spec import option_list
from ..runs import prepare_out
from .stats import wilson_interval


@dataclass
class CompareConfig:
    run_a: str = ""
    """the reference agent (run directory, checkpoint folder or zoo:NAME)"""
    run_b: str = ""
    """the agent compared with it (e.g. an edited copy)"""
    episodes: int = 1000
    """levels to play, the same for both agents"""
    start_level: Optional[int] = None
    """first level (default: the env spec's start_level, else 0); use a high one for held-out levels"""
    env: Optional[str] = None
    """env spec (default: RUN_A's training env)"""
    env_b: Optional[str] = None
    """env spec RUN_B plays (default: the same as RUN_A's), e.g. with invisible=saw"""
    invisible: str = ""
    """also play RUN_A with these entities invisible (CoinRun: saw, enemy, crate; MiniGrid: ball, key, box, goal, lava; comma-separated) and report the share of that full blindness RUN_B reaches, per cause"""
    policy: str = "sample"
    """how actions are picked: sample | greedy | temperature"""
    seed: int = 0
    """env and action seed, shared by both agents"""
    workers: int = 1
    """worker processes per evaluation"""
    alpha: float = 0.05
    """significance level after Holm's correction over causes"""
    out: str = ""
    """folder for compare.json and compare.png (default: runs/compare/A-vs-B)"""
    overwrite: bool = False
    """replace a comparison already in OUT"""
    progress: bool = True
    """show progress bars on stderr"""


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (a binomial test of only_a vs only_b at 1/2)."""
    from scipy.stats import binomtest

    n = only_a + only_b
    return 1.0 if n == 0 else float(binomtest(only_a, n, 0.5).pvalue)


def holm(pvalues: dict) -> dict:
    """Holm-Bonferroni adjusted p-values (``{name: p}`` -> ``{name: adjusted p}``)."""
    order = sorted(pvalues, key=lambda name: pvalues[name])
    adjusted, running = {}, 0.0
    for rank, name in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[name]))
        adjusted[name] = running
    return adjusted


def compare_records(records_a: list, records_b: list, alpha: float = 0.05) -> dict:
    """Failure rate by cause of two paired evaluations (episode k of each played the same level)."""
    levels_a, levels_b = [r["level"] for r in records_a], [r["level"] for r in records_b]
    if levels_a != levels_b:
        raise ValueError("the two evaluations did not play the same levels in the same order; cannot pair them")
    n = len(records_a)
    causes = sorted({r["cause"] for r in records_a + records_b} - {"success"})
    rows, pvalues = {}, {}
    for cause in causes:
        a = [r["cause"] == cause for r in records_a]
        b = [r["cause"] == cause for r in records_b]
        only_a = sum(x and not y for x, y in zip(a, b))
        only_b = sum(y and not x for x, y in zip(a, b))
        pvalues[cause] = mcnemar_exact(only_a, only_b)
        rows[cause] = {"a": {"count": sum(a), "rate": sum(a) / n, "ci95": list(wilson_interval(sum(a), n))},
                       "b": {"count": sum(b), "rate": sum(b) / n, "ci95": list(wilson_interval(sum(b), n))},
                       "only_a": only_a, "only_b": only_b, "p_value": pvalues[cause]}
    for cause, p in holm(pvalues).items():
        rows[cause]["p_holm"] = p
        rows[cause]["significant"] = p < alpha
    wins_a, wins_b = (sum(bool(r["success"]) for r in recs) for recs in (records_a, records_b))
    return {"episodes": n, "alpha": alpha, "test": "McNemar exact (paired by level), Holm-corrected",
            "success": {"a": wins_a / n, "b": wins_b / n, "ci95_a": list(wilson_interval(wins_a, n)),
                        "ci95_b": list(wilson_interval(wins_b, n))},
            "causes": rows}


#: The cause of the episode ends an entity kind brings about, where it is not the kind's own name.
CAUSE_OF = {"ball": "obstacle"}  # MiniGrid: walking into a moving ball


def cause_of(kind: str, env: str = "") -> str:
    """The cause ``kind`` brings about in ``env``: Atari causes are the category of the object (a Breakout
    ``ball`` is the cause ``ball``), elsewhere :data:`CAUSE_OF` or the kind's own name."""
    return kind if str(env).startswith("atari:") else CAUSE_OF.get(kind, kind)


def blindness_share(records_a: list, records_b: list, records_control: list, cause: str,
                    resamples: int = 2000, seed: int = 0) -> dict:
    """How much of the control's rise in ``cause`` B reaches: ``(rate_B - rate_A) / (rate_control - rate_A)``
    over paired levels, with a percentile bootstrap 95% interval (levels resampled together; resamples where
    the control does not rise are dropped). ``share`` is None when the control does not rise at all."""
    a, b, c = (np.array([r["cause"] == cause for r in recs], np.float64) for recs in
               (records_a, records_b, records_control))  # (N,) each
    rise_b, rise_c = float(b.mean() - a.mean()), float(c.mean() - a.mean())
    idx = np.random.default_rng(seed).integers(0, len(a), (resamples, len(a)))  # (R, N)
    boot_b, boot_c = (b - a)[idx].mean(1), (c - a)[idx].mean(1)  # (R,)
    keep = boot_c > 0
    shares = boot_b[keep] / boot_c[keep]
    ci = [float(q) for q in np.percentile(shares, [2.5, 97.5])] if keep.any() else None
    return {"cause": cause, "rise_b": rise_b, "rise_control": rise_c,
            "share": rise_b / rise_c if rise_c > 0 else None, "ci95": ci, "resamples": int(keep.sum())}


def compare(run_a, run_b, episodes: int = 1000, *, alpha: float = 0.05, env=None, env_b=None,
            invisible: str = "", **kwargs) -> dict:
    """Evaluate both agents on the same levels (``kwargs`` as :func:`evaluate`) and compare by cause; with
    ``invisible`` (entity kinds, comma-separated) also RUN_A with them invisible, and the blindness shares."""
    from ..envs import make, parse_spec
    from .run import evaluate

    if env is None:
        from .run import run_env_spec

        env = run_env_spec(run_a)
    plays = [(run_a, env), (run_b, env_b or env)]
    if invisible:
        hidden = str(parse_spec(env).replace(invisible=invisible))
        make(hidden, num_envs=1, seed=0).close()  # a bad list is refused before anything is played
        plays.append((run_a, hidden))
    results = [evaluate(run, spec, episodes, **kwargs) for run, spec in plays]
    records = [r["per_episode"] for r in results]
    out = compare_records(records[0], records[1], alpha)
    out.update(run_a=str(run_a), run_b=str(run_b), setup=results[0]["setup"], env_b=results[1]["setup"]["env"])
    if invisible:
        out["control"] = control_section(records[0], records[1], records[2], invisible, results[2]["setup"]["env"],
                                         alpha)
    return out


def control_section(records_a: list, records_b: list, records_control: list, invisible: str, env: str,
                    alpha: float = 0.05) -> dict:
    """A against the control (A with the ``invisible`` kinds hidden, played on the same levels), plus B's
    :func:`blindness_share` of the cause each hidden kind brings about (:func:`cause_of`), where it ended an
    episode."""
    kinds = list(option_list(invisible))
    control = compare_records(records_a, records_control, alpha)
    ended = {r["cause"] for r in records_a + records_b + records_control}
    control.update(invisible=kinds, env=env, blindness={
        k: blindness_share(records_a, records_b, records_control, cause_of(k, env)) for k in kinds
        if cause_of(k, env) in ended})
    return control


def plot(result: dict, path, others: tuple = ()) -> Path:
    """Grouped bars of failure rate by cause with 95% intervals, significant differences (of ``result``)
    starred; ``others``: more comparisons against the same A whose B's are drawn beside; and the
    invisible-entity control of ``result`` when there is one."""
    control = result.get("control")
    causes = sorted(set(result["causes"]).union(*(o["causes"] for o in others), control["causes"] if control else ()))
    n = result["episodes"]

    def rates(rows: dict, side: str) -> dict:  # causes one comparison never saw happened 0 times
        zero = {"rate": 0.0, "ci95": list(wilson_interval(0, n))}
        return {c: rows[c][side] if c in rows else zero for c in causes}

    groups = [(result["run_a"], rates(result["causes"], "a"))]
    groups += [(r["run_b"], rates(r["causes"], "b")) for r in (result, *others)]
    if control:
        groups.append((f"{result['run_a']}, {'+'.join(control['invisible'])} invisible",
                       rates(control["causes"], "b")))
    labels = [c + (" *" if result["causes"].get(c, {}).get("significant") else "") for c in causes]
    title = f"Failure rate by cause, {result['episodes']} paired levels (* p < {result['alpha']}, Holm)"
    return plot_rates(groups, causes, labels, title, path)


def plot_rates(groups: list, causes: list, labels: list, title: str, path) -> Path:
    """Bars of rate by cause for each group ``(name, {cause: {"rate", "ci95"}})`` with their 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(0.65 * len(groups) * max(len(causes), 2) + 2, 3.4), dpi=120)
    width = 0.8 / len(groups)
    for k, (name, rates_by_cause) in enumerate(groups):
        rates = [100 * rates_by_cause[c]["rate"] for c in causes]
        err = [[100 * (rates_by_cause[c]["rate"] - rates_by_cause[c]["ci95"][0]) for c in causes],
               [100 * (rates_by_cause[c]["ci95"][1] - rates_by_cause[c]["rate"]) for c in causes]]
        xs = [i + (k - (len(groups) - 1) / 2) * width for i in range(len(causes))]
        bars = ax.bar(xs, rates, width, yerr=err, capsize=3, label=name)
        ax.bar_label(bars, labels=[f"{r:.2f}%" for r in rates], fontsize=7, padding=2)
    ax.set_xticks(range(len(causes)), labels)
    ax.set_ylabel("failure rate (% of episodes)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def format_table(result: dict) -> str:
    lines = [f"A = {result['run_a']}", f"B = {result['run_b']}", f"{result['episodes']} paired levels; "
             f"success A {result['success']['a']:.3f}, B {result['success']['b']:.3f}", "",
             f"{'cause':<10}{'A rate':>9}{'95% CI':>17}{'B rate':>9}{'95% CI':>17}{'p (Holm)':>11}"]
    for cause, r in result["causes"].items():
        ci = lambda s: f"[{r[s]['ci95'][0]:.4f},{r[s]['ci95'][1]:.4f}]"  # noqa: E731
        star = " *" if r["significant"] else ""
        lines.append(f"{cause:<10}{r['a']['rate']:>9.4f}{ci('a'):>17}{r['b']['rate']:>9.4f}{ci('b'):>17}"
                     f"{r['p_holm']:>11.2g}{star}")
    if not result["causes"]:
        lines.append("(no failures by either agent)")
    control = result.get("control")
    if control:
        lines += ["", f"control: A with {', '.join(control['invisible'])} invisible"]
        for kind, share in control["blindness"].items():
            cause = share["cause"]
            r = control["causes"][cause]
            reach = ("n/a (the control does not raise it)" if share["share"] is None else
                     f"{share['share']:.2f}" + (f" [{share['ci95'][0]:.2f}, {share['ci95'][1]:.2f}]"
                                                 if share["ci95"] else ""))
            lines.append(f"{cause:<10}control rate {r['b']['rate']:.4f} [{r['b']['ci95'][0]:.4f},"
                         f"{r['b']['ci95'][1]:.4f}]; B reaches {reach} of that blindness")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="policylens compare", description=(
        "Evaluate two agents on the same levels and compare their failure rates by cause (Wilson 95% "
        "intervals, McNemar's exact test paired by level, Holm-corrected); writes compare.json and a bar chart."))
    parser.add_argument("run_a", help="the reference agent (run directory, checkpoint or zoo:NAME)")
    parser.add_argument("run_b", help="the agent compared with it")
    add_dataclass_args(parser, CompareConfig, skip=("run_a", "run_b"))
    cfg = from_args(CompareConfig, parser.parse_args(argv))
    name = lambda run: Path(str(run).replace("zoo:", "zoo-")).name or "run"  # noqa: E731
    out = Path(cfg.out or f"runs/compare/{name(cfg.run_a)}-vs-{name(cfg.run_b)}")
    with clear_errors(parser), contextlib.redirect_stdout(sys.stderr):
        prepare_out(out, what="comparison", overwrite=cfg.overwrite, parts=("compare.json", "compare.png"))
        result = compare(cfg.run_a, cfg.run_b, cfg.episodes, alpha=cfg.alpha, env=cfg.env, env_b=cfg.env_b,
                         invisible=cfg.invisible, start_level=cfg.start_level, policy=cfg.policy, seed=cfg.seed, workers=cfg.workers,
                         progress=cfg.progress)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "compare.png")
    print(format_table(result))
    print(f"\nwrote {out / 'compare.json'} and {out / 'compare.png'}")
    return 0
