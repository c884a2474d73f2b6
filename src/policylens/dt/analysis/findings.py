"""The behavioural findings of a report, computed from the analysis results: which ablation changes which
behaviour, whether each of Decision Transformer Interpretability's ablation findings holds on this model (and if
not, what holds instead, with the numbers that show why), and its Table 1 against ours.

Functions ending in ``_lines``/``_rows`` return markdown; :func:`ablation_claims` and :func:`table1` return the
same verdicts as data (``policylens dt compare`` reads them). Thresholds are named constants, not judgement
calls in the text. The circuit findings (Table 3, QK/OV) are in :mod:`.circuit_findings`.
"""
from __future__ import annotations

import json
from pathlib import Path

from .paper import ABLATIONS, QUOTES, TABLE1, TABLE1_RTGS, TITLE

ENTITY_OF = {"success": "goal", "obstacle": "obstacle", "wall": "wall"}  # outcome -> what is ahead when it happens
OUTCOME_OF = {v: k for k, v in ENTITY_OF.items()}
# (behaviour, target RTG, outcome whose rate moves when the behaviour breaks, +1 rises / -1 falls)
BEHAVIOURS = (("goal avoidance", -1.0, "success", 1), ("goal avoidance", 0.0, "success", 1),
              ("obstacle avoidance", 0.9, "obstacle", 1), ("obstacle avoidance", 0.0, "obstacle", 1),
              ("wall avoidance", 0.9, "wall", 1), ("wall avoidance", 0.0, "wall", 1),
              ("wall avoidance", -1.0, "wall", 1),
              ("goal seeking", 0.9, "success", -1))
WEAK = 0.5  # an avoidance whose outcome already ends half the unablated episodes is too weak to break
YES, NO = 0.9, 0.5  # avoidance share from which a behaviour counts as present / absent (between: partly)
SAME_MIX = 0.15  # wall share of failures within which the model's mix counts as the training data's
# verdicts of an ablation finding, in the order of how much of it holds
VERDICTS = ("reproduced", "reproduced, heads swapped", "reproduced in part", "differs", "weak here",
            "not testable", "not reproduced", "not measured")


def _a(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def informative(components) -> list:
    """The components worth showing: the state token's embedding, the time embedding, heads and MLPs (the RTG
    and action embeddings sit at other positions, so their direct share is 0; biases are constants)."""
    return [c for c in components if c in ("embed.state", "embed.time")
            or (c.startswith("blocks.") and not c.endswith("b_O"))]


def rows_at(table: dict, rtg: float) -> dict:
    return {r["ablation"]: r for r in table["rows"] if abs(r["rtg"] - rtg) < 1e-9}


def carriers(table: dict, rtg: float, outcome: str, sign: int, side: "str | None" = None) -> list:
    """``[(ablation, test)]`` changing ``outcome`` at ``rtg`` significantly in direction ``sign``, largest first;
    with ``side``: the goal entries from that side (tables written before sides were recorded have none)."""
    found = []
    for r in rows_at(table, rtg).values():
        tests = r.get("goal_entered_from", {}).get("vs_unablated", {}) if side else r.get("vs_unablated", {})
        if r["ablation"] != "none" and (side or outcome) in tests:
            found.append((r["ablation"], tests[side or outcome]))
    hits = [(n, t) for n, t in found if t["significant"] and t["delta"] * sign > 0]
    return sorted(hits, key=lambda nt: -abs(nt[1]["delta"]))


def _change(base: float, test: dict) -> str:
    return f"{pct(base)} -> {pct(base + test['delta'])} ({100 * test['delta']:+.0f} pp, p={test['p_holm']:.2g})"


def behaviour_lines(summary: dict) -> list:
    """Per behaviour and RTG: the ablations that break it (significantly), or that none does."""
    table, lines = summary["ablation"], []
    for name, rtg, outcome, sign in BEHAVIOURS:
        rows = rows_at(table, rtg)
        if "none" not in rows:
            continue
        base = rows["none"]["rates"][outcome]["rate"]
        found = carriers(table, rtg, outcome, sign)
        head = f"- **{name} at RTG {rtg:g}** (unablated: {outcome} in {pct(base)} of episodes): "
        if found:
            lines.append(head + "; ".join(f"ablating {c}: {_change(base, t)}" for c, t in found) + ".")
        else:
            lines.append(head + f"no single ablation makes {outcome} {'rise' if sign > 0 else 'fall'} significantly "
                         f"({table['episodes']} episodes each).")
    return lines


def _pushers(summary: dict, rtg: float, entity: str, n: int = 3) -> str:
    """The components pushing hardest against the preference with ``entity`` ahead at ``rtg`` (mean over data)."""
    rows = summary["situations"]["rows"].get(f"{rtg:g}", {})
    if entity not in rows:
        return ""
    comps, pref = rows[entity]["components"], summary["situations"]["preference"]
    ranked = sorted((v, c) for c, v in comps.items() if c in informative(comps) and v < 0)[:n]
    where = f"with {_a(entity)} {entity} ahead at RTG {rtg:g} ({rows[entity]['windows']} windows)"
    if not ranked:
        return f"{where} no component pushes against {pref} on average"
    return f"{where} the components pushing hardest against {pref} are " + ", ".join(f"{c} {v:+.2f}" for v, c in ranked)


def _top_success(table: dict) -> float:
    """The unablated model's success rate at the highest target RTG of the table."""
    return rows_at(table, max(table["rtgs"]))["none"]["rates"]["success"]["rate"]


def _rate(row: dict, outcome: str, side: "str | None") -> dict:
    """``{"rate", "ci95"}`` of ``outcome`` in a table row (goal entries from ``side`` when given)."""
    return row["goal_entered_from"]["rates"][side] if side else row["rates"][outcome]


def _sides(row: dict) -> str:
    """`` (from the top 1%, from the left 44%)``: a row's goal entries by side, the sides with any."""
    rates = row["goal_entered_from"]["rates"]
    return " (" + ", ".join(f"from the {s} {pct(v['rate'])}" for s, v in rates.items() if v["rate"]) + ")"


def _claim(summary: dict, key: str, component: str, rtg: float, outcome: str, side: "str | None") -> dict:
    """One ablation finding checked on the model's ablation table (see :func:`ablation_claims`)."""
    table = summary["ablation"]
    out = {"key": key, "claim": QUOTES[key], "component": component, "rtg": rtg, "outcome": outcome, "side": side,
           "episodes": table["episodes"], "mode": table["mode"]}
    rows = rows_at(table, rtg)
    if component not in rows or "none" not in rows:
        return {**out, "verdict": "not measured", "detail": f"ablate {component} at RTG {rtg:g}"}
    base_row, row = rows["none"], rows[component]
    sided = side if side and "goal_entered_from" in row else None
    what = f"goal entries from the {sided}" if sided else outcome
    tests = row["goal_entered_from"].get("vs_unablated", {}) if sided else row.get("vs_unablated", {})
    base, test = _rate(base_row, outcome, sided)["rate"], tests.get(sided or outcome)
    out.update(what=what, unablated=_rate(base_row, outcome, sided), ablated=_rate(row, outcome, sided),
               test=test, overall={"unablated": base_row["rates"][outcome], "ablated": row["rates"][outcome],
                                   "test": row.get("vs_unablated", {}).get(outcome)})
    out["ours"] = f"{what}: {_change(base, test)}" if test else f"{what}: {pct(base)}, unchanged"
    found = dict(carriers(table, rtg, outcome, 1, sided))
    overall = dict(carriers(table, rtg, outcome, 1))
    heads = [c for c in found if c.startswith("blocks.0.attn.head") and c != component]
    if component in found:
        verdict, detail = "reproduced", ""
    elif "head" in component and heads:
        verdict, detail = "reproduced, heads swapped", (
            f"ablating {heads[0]} gives {what} {_change(base, found[heads[0]])} (head indices are arbitrary: the "
            "heads are interchangeable before training)")
    elif sided and component in overall:
        verdict, detail = "reproduced in part", (
            f"ablating {component} raises {outcome} "
            f"({_change(base_row['rates'][outcome]['rate'], overall[component])}), "
            f"but not from the {sided} significantly{_sides(row)}")
    elif found or overall:
        verdict, detail = "differs", "in ours " + "; ".join(
            f"ablating {c} gives {outcome if c in overall and c not in found else what} "
            f"{_change(base if c in found else base_row['rates'][outcome]['rate'], found.get(c) or overall[c])}"
            + (_sides(rows[c]) if sided and c not in found else "") for c in dict.fromkeys([*found, *overall]))
    elif base_row["rates"][outcome]["rate"] >= WEAK:
        verdict, detail = "weak here", (
            f"the unablated model already shows {outcome} in {pct(base_row['rates'][outcome]['rate'])} of episodes, "
            "so the behaviour an ablation would break is weak or absent here")
    elif outcome == "success" and _top_success(table) < WEAK:
        verdict, detail = "not testable", (
            f"even at RTG {max(table['rtgs']):g} the model reaches the goal in only {pct(_top_success(table))} of "
            f"episodes, so not reaching it at RTG {rtg:g} shows no goal avoidance to break")
    else:
        why = _pushers(summary, rtg, ENTITY_OF[outcome])
        verdict, detail = "not reproduced", (
            f"no single ablation changes it significantly at {table['episodes']} episodes per row (too few "
            "episodes, or the behaviour is spread over components)" + (f"; {why}" if why else ""))
    return {**out, "verdict": verdict, "detail": detail}


def ablation_claims(summary: dict) -> list:
    """Decision Transformer Interpretability's three ablation findings (its Figure 7) on this model's ablation
    table: per finding the rates unablated and ablated (the goal entries from the side it names, when the table
    recorded sides), the paired test, a verdict from :data:`VERDICTS` and the numbers behind it."""
    return [_claim(summary, *claim) for claim in ABLATIONS]


def paper_claim_rows(summary: dict) -> list:
    """``| Decision Transformer Interpretability | ours | verdict |`` rows for its ablation findings."""
    return [f"| “{c['claim']}” | {c.get('ours', '-')} | {c['verdict']}"
            + (f": {c['detail']}" if c["detail"] else "") + " |" for c in ablation_claims(summary)]


def table1(calibration: dict) -> list:
    """Decision Transformer Interpretability's Table 1 against a model's ``calibration.json``: per behaviour and
    target RTG the share of episodes that avoided it (Wilson 95% CI), ours as yes / partly / no (:data:`YES`,
    :data:`NO`) and whether it agrees with the paper's; [] when the calibration lacks a Table 1 RTG."""
    from ...evaluate.stats import wilson_interval

    found = {round(b["target_rtg"], 6): b for b in calibration.get("behaviours", [])}
    if not all(round(r, 6) in found for r in TABLE1_RTGS):
        return []
    out = []
    for entity, paper in TABLE1.items():
        for r, want in zip(TABLE1_RTGS, paper):
            b = found[round(r, 6)]
            avoided = b["episodes"] - b[OUTCOME_OF[entity]]
            share = avoided / b["episodes"]
            ours = "yes" if share >= YES else "no" if share <= NO else "partly"
            out.append({"behaviour": f"{entity} avoidance", "entity": entity, "rtg": r, "paper": want,
                        "episodes": b["episodes"], "avoided": avoided, "share": share,
                        "ci95": list(wilson_interval(avoided, b["episodes"])), "ours": ours,
                        "agrees": ours == want.rstrip("*")})
    return out


def table1_lines(summary: dict) -> list:
    """Decision Transformer Interpretability's Table 1 against ours (from ``RUN/calibration.json``), and the
    training data's failure mix that explains a different way of reaching RTG -1."""
    path = Path(summary["run"]) / "calibration.json"
    if not path.is_file():
        return []
    calibration = json.loads(path.read_text())
    cells = table1(calibration)
    if not cells:
        return []
    lines = ["| behaviour | " + " | ".join(f"RTG {r:g}: paper / ours" for r in TABLE1_RTGS) + " |", "|---|---|---|---|"]
    for entity in TABLE1:
        row = [c for c in cells if c["entity"] == entity]
        lines.append(f"| {entity} avoidance | " + " | ".join(f"{c['paper']} / {c['ours']} ({pct(c['share'])})"
                                                            for c in row) + " |")
    lines += ["", f"(ours: yes when at least {pct(YES)} of episodes avoid it, no when at most {pct(NO)} do; the "
              "paper's * marks that its model could have reached RTG -1 by walking into walls but did not)"]
    differs = [c for c in cells if not c["agrees"]]
    if differs:
        lines += ["", "Where ours differs: " + "; ".join(f"{c['behaviour']} at RTG {c['rtg']:g} is {c['ours']} "
                                                         f"({TITLE}: {c['paper']})" for c in differs) + "."]
        causes = summary.get("data_causes") or {}
        walls, obstacles = causes.get("wall", 0), causes.get("obstacle", 0)
        b = next(x for x in calibration["behaviours"] if abs(x["target_rtg"] + 1) < 1e-6)
        if any(c["rtg"] < 0 for c in differs) and walls + obstacles and b["wall"] + b["obstacle"]:
            data_share, ours_share = walls / (walls + obstacles), b["wall"] / (b["wall"] + b["obstacle"])
            mix = (f"in the store the windows were drawn from (`{summary.get('store', '?')}`, the training data or a "
                   f"collection made the same way) {walls} failed episodes ended at a wall and {obstacles} at an "
                   f"obstacle ({pct(data_share)} walls); at RTG -1 {pct(ours_share)} of ours' failures are at a wall")
            same = abs(data_share - ours_share) <= SAME_MIX
            lines[-1] += (f" A decision transformer imitates the failures it was shown: {mix}." if same
                          else f" The episodes it was shown do not account for it: {mix}.")
    return lines
