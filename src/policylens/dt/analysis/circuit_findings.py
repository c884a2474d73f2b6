"""The circuit findings of a report, computed from the analysis results: the state embedding in front of the agent
against Decision Transformer Interpretability's Table 3, each head's attention to the RTG by situation, where
obstacle avoidance lives, and the paper's QK / OV / RTG explanation of it checked term by term.

:func:`table3` and :func:`obstacle_circuit` return the verdicts as data (``policylens dt compare`` reads them);
the ``_lines`` functions write them as markdown for ``report.md``.
"""
from __future__ import annotations

from .findings import _a, carriers, informative, pct
from .paper import QUOTES, TABLE3, TABLE3_WEIGHTS, TITLE

MOVED = 0.02  # attention change (share) below which an edit counts as leaving attention unchanged
DROPS = 0.05  # a head whose contribution falls by less than this when an obstacle appears ahead is not involved
AHEAD = ("obstacle", "goal", "wall")  # the things the paper's QK reading says stop attention to the RTG


def table3(summary: dict) -> "dict | None":
    """The state token's direct push on the preference with each entity in the cell ahead (the paper's Table 3),
    absolute and minus the empty cell's, with the paper's three readings of it checked: a strong wall avoider
    (the wall pushes hardest against forward), a weak goal seeker (the goal pushes forward more than an empty
    cell) and ambivalence to obstacles (of wall, obstacle and goal, the obstacle moves the push least). Also the
    front cell's weight per input feature (object and colour codes for ``raw``); None without per-cell maps."""
    maps = summary["circuits"].get("maps")
    if maps is None:
        return None
    x, y = maps["front_cell"]
    absolute = {e: maps["direct_absolute"][i][x][y] for i, e in enumerate(maps["entities"])}
    minus = {e: v - absolute["empty"] for e, v in absolute.items()}
    paper_minus = {e: v - TABLE3["empty"] for e, v in TABLE3.items()}
    others = [e for e in minus if e != "empty"]
    checks = {"strong_wall_avoider": min(others, key=lambda e: minus[e]) == "wall" and minus["wall"] < 0,
              "weak_goal_seeker": minus["goal"] > 0,
              "ambivalent_to_obstacles": min(others, key=lambda e: abs(minus[e])) == "obstacle"}
    weights = maps.get("front_weights")
    return {"preference": maps["preference"], "state_embedding": summary["config"]["state_embedding"],
            "absolute": absolute, "minus_empty": minus, "paper": dict(TABLE3), "paper_minus_empty": paper_minus,
            "checks": checks, "front_weights": weights, "paper_front_weights": dict(TABLE3_WEIGHTS),
            "claim": QUOTES["table3"]}


def table3_lines(summary: dict) -> list:
    """Markdown of :func:`table3`."""
    t = table3(summary)
    if t is None:
        return []
    lines = [f"| entity ahead | ours: direct contribution to {t['preference']} | minus empty | {TITLE} (raw "
             "encoding, forward/right) |", "|---|---|---|---|"]
    for ent, value in t["absolute"].items():
        lines.append(f"| {ent} | {value:+.2f} | {t['minus_empty'][ent]:+.2f} | {t['paper'][ent]:+.3g} |")
    held = [k for k, ok in t["checks"].items() if ok]
    lines += ["", f"The paper reads its Table 3 as “{t['claim']}”, and ambivalent to obstacles. In ours: "
              + ", ".join(f"{k.replace('_', ' ')} {'yes' if ok else 'no'}" for k, ok in t["checks"].items())
              + f" ({len(held)} of 3)."]
    if t["state_embedding"] == "grid":
        lines += ["", "Ours embeds the view one-hot (`grid`): every object and colour has its own weights, so the "
                  f"paper's ordinal bias ({QUOTES['ordinality']}) cannot arise; only the minus-empty column is "
                  "identifiable (one object per cell)."]
    elif t["front_weights"] is not None:
        w = dict(zip(("object", "colour", "state"), t["front_weights"]))
        lines += ["", f"Ours uses the paper's raw encoding, so each entity's value is its codes times the front cell's "
                  f"weights: object {w['object']:+.3f}, colour {w['colour']:+.3f}, state {w['state']:+.3f} per code "
                  f"(the paper: object {TABLE3_WEIGHTS['object']:+.3g}, colour {TABLE3_WEIGHTS['colour']:+.3g})."]
    return lines


def attention_lines(summary: dict) -> list:
    """Each head's attention from the state to the RTG token by target RTG and what is ahead (data)."""
    rows = summary["situations"]["rows"]
    heads = list(next(iter(next(iter(rows.values())).values()))["attention_to_rtg"])
    lines = ["| target RTG | ahead | windows | " + " | ".join(f"{h.split('.')[-1]} -> RTG" for h in heads) + " |",
             "|---|---|---|" + "---|" * len(heads)]
    for rtg, groups in rows.items():
        for entity, row in groups.items():
            lines.append(f"| {rtg} | {entity} | {row['windows']} | "
                         + " | ".join(pct(row["attention_to_rtg"][h]) for h in heads) + " |")
    return lines


def edit_attention_lines(summary: dict, entity: str = "obstacle") -> list:
    """How putting ``entity`` ahead (in views with an empty cell there) moves each head's attention to the RTG."""
    edits = summary["situations"].get("edits", {})
    done = {r: e[entity] for r, e in edits.items() if e.get(entity, {}).get("windows")}
    if not done:
        return []
    heads = list(next(iter(done.values()))["attention_to_rtg"])
    lines = [f"Putting {_a(entity)} {entity} ahead (in the views with an empty cell there) "
             "moves each head's attention to the RTG by:", "",
             "| head | " + " | ".join(f"RTG {r}" for r in done) + " |", "|---|" + "---|" * len(done)]
    for h in heads:
        moves = [f"{round(100 * e['attention_to_rtg'][h]):+d} pp" for e in done.values()]
        lines.append(f"| {h} | " + " | ".join(moves) + " |")
    return lines


def _lowest(values: dict, names: list) -> "str | None":
    return min(names, key=lambda c: values[c]) if names else None


def _rtg_head(summary: dict) -> "str | None":
    """The head whose output alone restores most of the RTG's effect in the patching experiment."""
    z = summary.get("patching", {}).get("blocks.0.attn.hook_z", {})
    if "restored" not in z:
        return None
    best = max(range(len(z["heads"])), key=lambda h: max(row[h] for row in z["restored"]))
    return f"blocks.0.attn.head{best}"


def obstacle_circuit(summary: dict) -> dict:
    """Where obstacle avoidance at the top target RTG lives, and the paper's explanation checked on the head most
    involved (the one whose ablation raises obstacle hits, else whose contribution drops most with an obstacle
    ahead, else the head carrying the RTG in patching): ``qk`` (putting an obstacle, the goal or a wall ahead
    lowers the head's attention to the RTG), ``ov`` (through the head's OV an obstacle or the goal ahead pushes
    against forward), ``rtg`` (the RTG, through the head's OV, pushes forward); each term with ``agrees``."""
    sit, maps, table = summary["situations"], summary["circuits"].get("maps"), summary.get("ablation")
    rtg, pref = max(sit["rtgs"]), sit["preference"]
    edits = sit.get("edits", {}).get(f"{rtg:g}", {})
    edit = edits.get("obstacle", {})
    mean = sit["rows"][f"{rtg:g}"].get("obstacle", {}).get("components", {})
    found = [c for c, _ in carriers(table, rtg, "obstacle", 1)] if table else []
    values = edit.get("components") or mean
    components = informative(values)
    heads = [c for c in components if c.startswith("blocks.0.attn.head")]
    head = next((c for c in found if c in heads), None)
    why_head = "its ablation raises obstacle hits"
    if head is None and heads:
        head, why_head = _lowest(values, heads), "its contribution drops most with an obstacle ahead"
        if values[head] > -DROPS and _rtg_head(summary):
            head, why_head = _rtg_head(summary), ("no head's contribution drops with an obstacle ahead; it carries "
                                                  "most of the RTG in the patching experiment")
    carrier = found[0] if found else _lowest(values, components)
    out = {"rtg": rtg, "preference": pref, "ablation_carriers": found, "edit": edit, "mean": mean,
           "carrier": carrier, "carrier_is_head": bool(carrier and carrier.startswith("blocks.0.attn.head")),
           "head": head, "why_head": why_head}
    if head is None or maps is None:
        return out
    h, (x, y) = heads.index(head), maps["front_cell"]
    at = lambda name, entity: maps[name][h][maps["entities"].index(entity)][x][y]  # noqa: E731
    moves = {e: edits[e]["attention_to_rtg"][head] for e in AHEAD if edits.get(e, {}).get("windows")}
    out["qk"] = {"claim": QUOTES["qk"], "attention_change": moves,
                 "circuit_score": {e: at("qk_to_rtg", e) for e in AHEAD},
                 "agrees": bool(moves) and all(v <= -MOVED for v in moves.values())}
    ov = {e: at("ov", e) for e in AHEAD}
    out["ov"] = {"claim": QUOTES["ov"], "to_preference": ov,
                 "head_change_in_edit": edit.get("components", {}).get(head),
                 "agrees": ov["obstacle"] < 0 and ov["goal"] < 0}
    emb = summary["circuits"]["embeddings"]["rtg"].get(pref)
    if emb:
        out["rtg_term"] = {"claim": QUOTES["rtg_attention"], "direct": emb["direct"], "through_head": emb["ov"][h],
                           "agrees": emb["ov"][h] > 0}
    return out


def obstacle_lines(summary: dict) -> list:
    """Markdown of :func:`obstacle_circuit`."""
    c = obstacle_circuit(summary)
    rtg, pref, edit, mean = c["rtg"], c["preference"], c["edit"], c["mean"]
    agree = lambda ok: f"as in {TITLE}" if ok else f"unlike {TITLE}"  # noqa: E731
    lines = []
    if summary.get("ablation"):
        found = c["ablation_carriers"]
        who = f"ablating {', '.join(found)} raises" if found else "no single ablation raises"
        lines.append(f"- Ablation at RTG {rtg:g}: {who} obstacle hits significantly.")
    if edit.get("windows"):
        ranked = sorted(informative(edit["components"]), key=lambda k: edit["components"][k])[:4]
        lines.append(f"- Input edit: putting an obstacle ahead in the {edit['windows']} views with an empty cell there "
                     f"changes {pref} by {edit['preference']:+.2f}; most against forward: "
                     + ", ".join(f"{k} {edit['components'][k]:+.2f}" for k in ranked) + ".")
    if mean:
        lines.append("- Mean attribution with an obstacle ahead: " + ", ".join(
            f"{k} {mean[k]:+.2f}" for k in sorted(informative(mean), key=lambda k: mean[k])) + ".")
    lines.append("")
    if "qk" not in c:
        return lines + (["(no per-cell circuits for this state embedding)"] if c["head"] else [])
    head, qk, ov = c["head"], c["qk"], c["ov"]
    lines += [f"{TITLE}'s explanation, checked on **{head}** ({c['why_head']}):", ""]
    moves = ", ".join(f"{e} {100 * v:+.0f} pp" for e, v in qk["attention_change"].items())
    lines.append(f"1. **QK** (“{qk['claim']}”) At RTG {rtg:g}, putting each ahead changes the head's attention to "
                 f"the RTG by: {moves} ({agree(qk['agrees'])}). The state-query x RTG-key circuit alone moves that "
                 "score by "
                 f"{qk['circuit_score']['obstacle']:+.2f} for an obstacle ahead, but the softmax weighs it against the "
                 "state's score with itself, which moves too; the edit measures the net.")
    lines.append(f"2. **OV** (“{ov['claim']}”) Through the head's OV circuit an obstacle ahead (vs empty) adds "
                 f"{ov['to_preference']['obstacle']:+.2f} to {pref}, the goal {ov['to_preference']['goal']:+.2f} "
                 f"({agree(ov['agrees'])})" + (f"; in the edit the head's contribution moves by "
                                               f"{ov['head_change_in_edit']:+.2f}" if ov["head_change_in_edit"]
                                               is not None else "") + ".")
    if "rtg_term" in c:
        r = c["rtg_term"]
        lines.append(f"3. **RTG** (“{r['claim']}”) Per unit RTG it adds {r['direct']:+.2f} to {pref} directly (the "
                     f"paper: ~1.13) and {r['through_head']:+.2f} through the head's OV ({agree(r['agrees'])}).")
    lines.append("")
    carrier, maps = c["carrier"], summary["circuits"]["maps"]
    if c["carrier_is_head"]:
        lines.append(f"In ours, as in {TITLE}, a head carries obstacle avoidance: {carrier}.")
    elif carrier:
        values = edit.get("components") or mean
        against = sorted((k for k in informative(values) if values[k] < 0), key=values.get)[:2]
        why = ""
        if "embed.state" in against:
            x, y = maps["front_cell"]
            e = maps["entities"].index("obstacle")
            why = (f" The state token reads the obstacle itself: an obstacle ahead adds {maps['direct'][e][x][y]:+.2f} "
                   f"to {pref} on its direct path (Table 3 below)")
            why += (f", where {TITLE}'s raw encoding gave an obstacle +0.136, next to the empty cell's +0.27, and left "
                    "the inhibition to a head." if summary["config"]["state_embedding"] == "grid" else ".")
        lines.append(f"In ours obstacle avoidance at RTG {rtg:g} is carried mainly by {carrier}, not by a head "
                     f"(unlike {TITLE}).{why}")
    return lines
