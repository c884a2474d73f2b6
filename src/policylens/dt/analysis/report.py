"""The analysis section of a decision transformer's ``report.md``, written from the analysis results only.

Every sentence that states a finding is computed: which ablation changes which behaviour (paired tests),
whether each of Decision Transformer Interpretability's claims holds on this model (and if not, what does hold
instead and the numbers that show why), and the QK/OV reading of obstacle avoidance checked term by term against
the paper's, whose words are quoted exactly (:mod:`.paper`).
"""
from __future__ import annotations

import re
from pathlib import Path

from .circuit_findings import attention_lines, edit_attention_lines, obstacle_lines, table3_lines
from .findings import behaviour_lines, paper_claim_rows, pct, table1_lines
from .paper import QUOTES, TITLE

START, END = "<!-- policylens dt analyze: start -->", "<!-- policylens dt analyze: end -->"


def ablation_markdown(table: dict) -> str:
    """Outcome rates with Wilson 95% CIs per target RTG and ablation; changes against the unablated model; the
    goal entries by the side the agent came from, when the table recorded them."""
    outcomes = ("success", "obstacle", "wall", "timeout")
    lines = [f"{table['mode'].capitalize()} ablation, {table['episodes']} episodes per row on the same levels "
             f"({table['test']}; * p < {table['alpha']}):", "",
             "| RTG | ablated | " + " | ".join(outcomes) + " |", "|---|---|" + "---|" * len(outcomes)]
    for row in table["rows"]:
        cells = []
        for o in outcomes:
            rate, (lo, hi) = row["rates"][o]["rate"], row["rates"][o]["ci95"]
            cell = f"{pct(rate)} [{pct(lo)}, {pct(hi)}]"
            test = row.get("vs_unablated", {}).get(o)
            if test and test["delta"]:
                cell += f" ({100 * test['delta']:+.0f} pp, p={test['p_holm']:.2g}{' *' if test['significant'] else ''})"
            cells.append(cell)
        lines.append(f"| {row['rtg']:g} | {row['ablation']} | " + " | ".join(cells) + " |")
    return "\n".join(lines + _side_lines(table))


def _side_lines(table: dict) -> list:
    """Goal entries from the top and from the left per row (the sides the paper's ablation findings name)."""
    rows = [r for r in table["rows"] if "goal_entered_from" in r and r["counts"]["success"]]
    if not rows:
        return []
    lines = ["", "Goal entries by the side the agent came from (the goal sits in the bottom-right corner):", "",
             "| RTG | ablated | from the top | from the left |", "|---|---|---|---|"]
    for row in rows:
        cells = []
        for side in ("top", "left"):
            cell = pct(row["goal_entered_from"]["rates"][side]["rate"])
            test = row["goal_entered_from"].get("vs_unablated", {}).get(side)
            if test and test["delta"]:
                cell += f" ({100 * test['delta']:+.0f} pp, p={test['p_holm']:.2g}{' *' if test['significant'] else ''})"
            cells.append(cell)
        lines.append(f"| {row['rtg']:g} | {row['ablation']} | " + " | ".join(cells) + " |")
    return lines


def calibration_lines(root: Path, fig) -> list:
    """The calibration curve and behaviour table of ``policylens dt calibrate`` (Figure 5, Table 1), the table
    written afresh from ``calibration.json``."""
    import json

    from ..calibrate import behaviour_table

    if not (root / "calibration.json").is_file():
        return ["### Calibration", "", f"Run `policylens dt calibrate {root}` for the calibration curve and the "
                f"behaviour table ({TITLE}'s Figure 5 and Table 1), then this command again.", ""]
    calibration = json.loads((root / "calibration.json").read_text())
    rtgs = [b["target_rtg"] for b in calibration.get("behaviours", [])]
    return [f"### Calibration and behaviours ({TITLE}'s Figure 5 and Table 1)", "",
            f"The paper: “{QUOTES['calibration']}”", "",
            f"![calibration]({fig('calibration.png', '')})", "", behaviour_table(calibration["results"], rtgs), ""]


def _encoding_line(embedding: str) -> str:
    """How the model's state embedding stands to the paper's first model, in the paper's words."""
    if embedding == "raw":
        return (f"This is the encoding of {TITLE}'s first model: the 7x7x3 codes fed linearly. The paper: "
                f"“{QUOTES['encoding']}”")
    return (f"{TITLE}'s findings belong to its first model, which fed the 7x7x3 codes linearly (`raw`); this one "
            f"embeds the view as `{embedding}`. The paper: “{QUOTES['encoding']}” and, of a one-hot model, "
            f"“{QUOTES['one_hot_replication']}”")


def _table1(summary: dict) -> list:
    lines = table1_lines(summary)
    return [f"{TITLE}'s Table 1 against ours:", "", *lines, ""] if lines else []


def analysis_section(summary: dict, prefix: str = "", calibration: bool = True, level: int = 2) -> str:
    """The report section (markdown); figure links are ``prefix + "analysis/..."``; ``calibration``: include
    the run's calibration curve and behaviour table when ``policylens dt calibrate`` wrote them (the comparison
    with the paper's Table 1 comes either way); ``level``: the section's heading level (subsections one deeper)."""
    cfg, fig = summary["config"], lambda name, folder="analysis/": f"{prefix}{folder}{name}"  # noqa: E731
    shape = f"{cfg['n_layers']} layer(s), {cfg['n_heads']} heads"
    lines = [START, "## Decision-transformer analysis", "",
             f"Model: {shape}, d_model {cfg['d_model']}, context {cfg['context']}, `{cfg['state_embedding']}` state "
             f"embedding, LayerNorm {'on' if cfg['layer_norm'] else 'off'}"
             + ("" if (cfg["n_layers"], cfg["n_heads"]) == (1, 2) else f" ({TITLE}'s model has 1 layer and 2 heads: "
                "its head-by-head claims map only loosely)") + f". Windows analysed: {summary['windows']} from "
             f"`{summary['store']}`.", "", _encoding_line(cfg["state_embedding"]), ""]
    lines += (calibration_lines(Path(summary["run"]), fig) if calibration else []) + _table1(summary)
    if summary.get("ablation"):
        lines += [f"### Ablations ({TITLE}'s Figure 7)", "", ablation_markdown(summary["ablation"]), "",
                  f"![ablation]({fig('ablation.png')})", "", "Which components carry which behaviour:", "",
                  *behaviour_lines(summary), "", f"{TITLE}'s ablation findings on this model:", "",
                  f"| {TITLE} | ours | verdict |", "|---|---|---|", *paper_claim_rows(summary), ""]
    lines += ["### Attribution by situation", "",
              f"Recorded states replayed at each target RTG; mean direct contribution of each component to "
              f"{summary['situations']['preference']}, grouped by what is in front of the agent:", "",
              f"![situations]({fig('situations.png')})", "",
              "### QK/OV reading of obstacle avoidance", "",
              "Each head's attention from the state token to the RTG token (the QK circuit's output), by target RTG "
              "and what is ahead:", "", *attention_lines(summary), "", *edit_attention_lines(summary), "",
              "Where obstacle avoidance lives:", "",
              *obstacle_lines(summary), ""]
    if summary["circuits"].get("maps"):
        lines += [f"![circuits]({fig('circuits.png')})", "", "### The state embedding in front of the agent "
                  f"({TITLE}'s Table 3)", "", *table3_lines(summary), ""]
    lines += ["### Embeddings, RTG scans, patching", "", f"![embeddings]({fig('embeddings.png')})", ""]
    for entity in summary["examples"]:
        lines += [f"{entity.capitalize()} ahead: ![rtg scan]({fig(f'rtg_scan_{entity}.png')})"
                  + (f" ![state map]({fig(f'state_map_{entity}.png')})" if summary["circuits"].get("maps") else ""), ""]
    lines += _patching_lines(summary["patching"], fig)
    if level != 2:  # the lines are written at level 2 (##) with subsections at 3 (###)
        lines = [("#" * (len(m.group(1)) + level - 2) + m.group(2)) if (m := re.match(r"^(#+)( .*)", x)) else x
                 for x in lines]
    return "\n".join(lines + [END])


def _patching_lines(patching: dict, fig) -> list:
    z, resid = patching.get("blocks.0.attn.hook_z", {}), patching.get("blocks.0.hook_resid_pre", {})
    if "restored" not in z:
        return [f"Patching skipped: {z.get('skipped', 'no result')}", ""]
    heads = {h: max(column) for h, column in zip(z["heads"], zip(*z["restored"]))}  # best position per head
    lines = [f"Activation patching, {patching['example']} ahead: clean RTG {patching['clean_rtg']:g}, corrupt RTG "
             f"{patching['corrupt_rtg']:g}, metric {' - '.join(z['preference'])} (clean {z['clean']:+.2f}, corrupt "
             f"{z['corrupt']:+.2f}). Share restored by patching one head's output at one position, best position: "
             + ", ".join(f"{h} {pct(v)}" for h, v in heads.items())
             + f"; all heads together {pct(z['restored_all'])}."]
    if "restored" in resid:
        last_rtg = max(i for i, p in enumerate(resid["positions"]) if p.startswith("R"))
        lines[-1] += (f" The residual stream entering block 0, patched at the last RTG token alone: "
                      f"{pct(resid['restored'][last_rtg])}; everywhere: {pct(resid['restored_all'])}.")
    return lines + ["", f"![patching]({fig('patching_blocks_0_attn_hook_z.png')})", ""]


def write_report(root, summary: dict) -> Path:
    """Replace (or append) the analysis section of ``root/report.md``; returns its path."""
    path = Path(root) / "report.md"
    section = analysis_section(summary)
    text = path.read_text() if path.is_file() else f"# Decision transformer `{Path(root).name}`\n"
    if START in text and END in text:
        text = text[:text.index(START)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
    return path
