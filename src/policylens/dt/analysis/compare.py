"""``policylens dt compare RUN_A RUN_B ... --out DIR``: Decision Transformer Interpretability's findings side by
side for several decision transformers, from their analyses (``dt calibrate`` and ``dt analyze`` first).

For each model: calibration at the paper's critical points (RTG -1, 0, 0.9), its Table 1 cell by cell, its three
ablation findings (with the side the goal is entered from), its Table 3 readings of the state embedding, the RTG
embedding on forward/right and right/left, and its QK / OV / RTG explanation of obstacle avoidance. Each finding
gets a verdict per model; ``DIR/compare.json`` holds everything, ``DIR/compare.md`` the table and the details,
``DIR/compare.png`` the calibration curves, Table 3 and the ablation findings as figures.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from ...config import add_dataclass_args, from_args
from .circuit_findings import obstacle_circuit, table3
from .findings import ablation_claims, pct, table1
from .paper import QUOTES, RTG_EMBEDDING, TABLE1_RTGS, TABLE3, TITLE

CALIBRATED = 0.25  # a critical point is unbiased when the mean return lies within this of the target
ALPHA = 0.05  # significance of a test inside the comparison
FILES = ("compare.json", "compare.md", "compare.png")


@dataclass
class CompareConfig:
    runs: tuple = ()
    """decision transformers to compare (run directories or zoo:NAME), each analysed by dt calibrate and dt analyze"""
    out: str = ""
    """folder for compare.json and compare.md"""
    overwrite: bool = False
    """replace the comparison already in OUT"""


def _find(run, name: str) -> "Path | None":
    """``name`` in the run's outputs (``runs/NAME`` for a zoo model), else in the model's own folder."""
    from .analyze import outputs
    from .windows import model_folder

    return next((p for p in (outputs(run) / name, model_folder(run) / name) if p.is_file()), None)


def load_summary(run) -> dict:
    """The analysis summary of RUN with its circuits and situations (what ``dt analyze`` wrote), and its
    calibration (``dt calibrate``) under ``calibration``."""
    path = _find(run, "analysis/summary.json")
    if path is None:
        raise FileNotFoundError(f"no analysis of {run}: run `policylens dt analyze {run}` (and `policylens dt "
                                f"calibrate {run}` before it) first")
    summary = json.loads(path.read_text())
    for part in ("circuits", "situations"):
        summary[part] = json.loads((path.parent / f"{part}.json").read_text())
    calibration = _find(run, "calibration.json")
    if calibration is None:
        raise FileNotFoundError(f"no calibration of {run}: run `policylens dt calibrate {run}` first")
    summary["calibration"] = json.loads(calibration.read_text())
    summary["analysis_dir"] = str(path.parent)
    return summary


def calibration_points(calibration: dict) -> dict:
    """Mean return (95% CI) and success rate at each of the paper's critical RTGs; ``unbiased``: within
    :data:`CALIBRATED` of the target."""
    out = {}
    for r in TABLE1_RTGS:
        found = [x for x in calibration["results"] if abs(x["target_rtg"] - r) < 1e-6]
        if found:
            x = found[0]
            out[f"{r:g}"] = {"mean_return": x["mean_return"], "ci95": x["ci95"], "success_rate": x["success_rate"],
                             "episodes": x["episodes"], "unbiased": abs(x["mean_return"] - r) <= CALIBRATED}
    return out


def walls_vs_obstacles(calibration: dict, rtgs=(0.0, 0.9)) -> dict:
    """Episodes ending at a wall and at an obstacle over the target RTGs where both must be avoided, and an exact
    binomial test of the two counts at 1/2 (each episode ends at most one way); ``agrees``: significantly more
    obstacle hits, the paper's “avoids walls much more strongly than it avoids obstacles” (p < ``ALPHA``)."""
    from ...evaluate.compare import mcnemar_exact

    rows = [b for b in calibration.get("behaviours", []) if any(abs(b["target_rtg"] - r) < 1e-6 for r in rtgs)]
    walls, obstacles = sum(b["wall"] for b in rows), sum(b["obstacle"] for b in rows)
    p = mcnemar_exact(walls, obstacles)
    return {"rtgs": list(rtgs), "episodes": sum(b["episodes"] for b in rows), "wall": walls, "obstacle": obstacles,
            "p_value": p, "agrees": obstacles > walls and p < ALPHA, "claim": QUOTES["walls_vs_obstacles"]}


def _pair(projections: dict, a: str, b: str) -> "dict | None":
    """The projection on ``a - b`` from those stored per pair (negated when stored as ``b - a``)."""
    if f"{a} - {b}" in projections:
        return projections[f"{a} - {b}"]
    other = projections.get(f"{b} - {a}")
    if other is None:
        return None
    return {"direct": -other["direct"], "bias": -other["bias"], "ov": [-v for v in other["ov"]]}


def rtg_embedding(summary: dict) -> dict:
    """The RTG embedding per unit RTG on forward - right and right - left, directly and through each head's OV;
    ``agrees``: it pushes forward over right and more than it moves right against left (the paper's reading)."""
    rtg = summary["circuits"]["embeddings"]["rtg"]
    fr, rl = _pair(rtg, "forward", "right"), _pair(rtg, "right", "left")
    out = {"forward_right": fr, "right_left": rl, "paper": dict(RTG_EMBEDDING), "claim": QUOTES["rtg"]}
    if fr and rl:
        out["agrees"] = fr["direct"] > 0 and abs(fr["direct"]) > abs(rl["direct"])
    return out


def model_findings(run) -> dict:
    """Every finding of the paper checked on RUN's analysis (see the module's doc)."""
    from ..checkpoint import read_dt_config

    summary = load_summary(run)
    config, conf = read_dt_config(run)
    claims = ablation_claims(summary) if summary.get("ablation") else []
    return {"run": str(run), "label": f"{run} ({config.state_embedding})", "config": config.to_dict(),
            "data": conf.get("data", {}),
            "train": {k: conf.get("train", {}).get(k) for k in ("steps", "final_step_weight", "batch_size", "lr")},
            "analysis": summary["analysis_dir"], "windows": summary["windows"],
            "calibration": calibration_points(summary["calibration"]),
            "calibration_curve": [{k: r[k] for k in ("target_rtg", "mean_return", "ci95", "success_rate")}
                                  for r in summary["calibration"]["results"]],
            "calibration_episodes": summary["calibration"]["episodes"],
            "table1": table1(summary["calibration"]),
            "walls_vs_obstacles": walls_vs_obstacles(summary["calibration"]),
            "ablation": {"episodes": summary["ablation"]["episodes"] if claims else 0, "claims": claims},
            "table3": table3(summary), "rtg_embedding": rtg_embedding(summary),
            "obstacle_circuit": _plain(obstacle_circuit(summary))}


def _plain(circuit: dict) -> dict:
    """The obstacle circuit without the bulky per-component dicts (kept: the carrier and the three terms)."""
    return {k: v for k, v in circuit.items() if k not in ("edit", "mean")} | {
        "edit_preference": circuit["edit"].get("preference"), "edit_windows": circuit["edit"].get("windows", 0)}


def _yes(ok) -> str:
    return "-" if ok is None else "yes" if ok else "no"


def verdicts(model: dict) -> dict:
    """One short cell per finding for the side-by-side table."""
    cal = model["calibration"]
    t1, t3, circuit = model["table1"], model["table3"], model["obstacle_circuit"]
    cells = {"calibration": ", ".join(f"{r}: {c['mean_return']:+.2f} ({_yes(c['unbiased'])})" for r, c in cal.items()),
             "table1": f"{sum(c['agrees'] for c in t1)} of {len(t1)} cells agree" + (
                 "; differs: " + ", ".join(f"{c['entity']} at {c['rtg']:g} {c['ours']} ({pct(c['share'])})"
                                           for c in t1 if not c["agrees"]) if any(not c["agrees"] for c in t1) else "")}
    wo = model["walls_vs_obstacles"]
    cells["walls_vs_obstacles"] = (f"{_yes(wo['agrees'])}: {wo['wall']} wall and {wo['obstacle']} obstacle hits in "
                                   f"{wo['episodes']} episodes (p={wo['p_value']:.2g})")
    top = cal.get("0.9")
    if top:
        cells["goal_square"] = f"{_yes(top['success_rate'] < 0.5)}: reaches the goal in {pct(top['success_rate'])}"
    for c in model["ablation"]["claims"]:
        cells[c["key"]] = f"{c['verdict']}: {c.get('ours', c['detail'])}"
    if t3:
        checks = ", ".join(f"{k.replace('_', ' ')} {_yes(v)}" for k, v in t3["checks"].items())
        pushes = ", ".join(f"{e} {v:+.2f}" for e, v in t3["minus_empty"].items() if e != "empty")
        cells["table3"] = f"{checks} ({pushes} vs empty)"
    emb = model["rtg_embedding"]
    if "agrees" in emb:
        cells["rtg"] = (f"{_yes(emb['agrees'])}: forward - right {emb['forward_right']['direct']:+.2f}, right - left "
                        f"{emb['right_left']['direct']:+.2f} per unit RTG")
    for term in ("qk", "ov", "rtg_term"):
        if term in circuit:
            cells[term] = f"{_yes(circuit[term]['agrees'])} ({circuit['head']})"
    cells["carrier"] = (f"{circuit['carrier']}" + (" (a head, as in the paper)" if circuit["carrier_is_head"]
                                                   else " (not a head)") if circuit["carrier"] else "-")
    return cells


ROWS = (("calibration", f"Calibration: “{QUOTES['calibration']}” (mean return at RTG -1, 0, 0.9; unbiased within "
         f"{CALIBRATED})"),
        ("table1", "Table 1: wall / obstacle / goal avoidance at RTG -1, 0, 0.9"),
        ("walls_vs_obstacles", "“the model avoids walls much more strongly than it avoids obstacles” (hits at RTG 0 "
         "and 0.9)"),
        ("goal_square", "“agents would successfully avoid the obstacles but also try to avoid the goal square” "
         "(without final-step oversampling; at RTG 0.9)"),
        ("head0", f"“{QUOTES['head0']}”"), ("head1", f"“{QUOTES['head1']}”"), ("mlp", f"“{QUOTES['mlp']}”"),
        ("table3", f"Table 3: “{QUOTES['table3']}” and ambivalent to obstacles"),
        ("rtg", f"RTG embedding: “{QUOTES['rtg']}”; right/left ~ -0.16"),
        ("qk", f"QK: “{QUOTES['qk']}”"), ("ov", f"OV: “{QUOTES['ov']}”"),
        ("rtg_term", f"“{QUOTES['rtg_attention']}”"),
        ("carrier", "Obstacle avoidance at RTG 0.9 carried by a head (the paper: head 1)"))


def _label(model: dict) -> str:
    return f"`{model['run']}` ({model['config']['state_embedding']})"


def side_by_side(result: dict) -> list:
    """Markdown rows: one per finding of :data:`ROWS`, one column per model (what :func:`compare` returns)."""
    models = result["models"]
    lines = ["| finding | " + " | ".join(_label(m) for m in models) + " |", "|---|" + "---|" * len(models)]
    for key, label in ROWS:
        lines.append(f"| {label} | " + " | ".join(result["verdicts"][i].get(key, "-") for i in range(len(models)))
                     + " |")
    return lines


def markdown(result: dict) -> str:
    """The side-by-side table and the per-model details of ``result`` (what :func:`compare` returns)."""
    models = result["models"]
    lines = [f"# {TITLE}'s findings, side by side", "", f"The paper: “{QUOTES['encoding']}”", "",
             *side_by_side(result)]
    for m in models:
        lines += ["", f"## {_label(m)}", "", f"Analysis: `{m['analysis']}` ({m['windows']} windows); ablations "
                  f"{m['ablation']['episodes']} episodes per row; calibration {m['calibration_episodes']} per RTG.", ""]
        for c in m["ablation"]["claims"]:
            lines.append(f"- “{c['claim']}”: {c['verdict']}" + (f"; {c['ours']}" if "ours" in c else "")
                         + (f"; {c['detail']}" if c["detail"] else "") + ".")
        t3 = m["table3"]
        if t3 and t3.get("front_weights") and m["config"]["state_embedding"] == "raw":
            w = t3["front_weights"]
            lines.append(f"- The cell ahead, per unit of its codes: object {w[0]:+.3f}, colour {w[1]:+.3f}, state "
                         f"{w[2]:+.3f} (the paper: object +0.27, colour -0.742).")
        if t3:
            lines.append("- The state token's push on forward - right with each entity ahead: " + ", ".join(
                f"{e} {v:+.2f}" for e, v in t3["absolute"].items()) + " (the paper: " + ", ".join(
                f"{e} {v:+.3g}" for e, v in t3["paper"].items()) + ").")
    return "\n".join(lines) + "\n"


def compare(cfg: CompareConfig) -> dict:
    """Compare the runs' findings; writes ``OUT/compare.json`` and ``OUT/compare.md``; returns the JSON dict."""
    from ...runs import prepare_out
    from .plots import plot_compare

    if len(cfg.runs) < 1:
        raise ValueError("dt compare needs at least one RUN (a decision transformer analysed by dt analyze)")
    if not cfg.out:
        raise ValueError("dt compare needs --out DIR for compare.json and compare.md")
    models = [model_findings(run) for run in cfg.runs]  # every input is read before anything is written
    out = prepare_out(Path(cfg.out), what="comparison", overwrite=cfg.overwrite, parts=FILES)
    result = {"paper": TITLE, "quotes": dict(QUOTES), "calibrated_within": CALIBRATED,
              "paper_table3_minus_empty": {e: v - TABLE3["empty"] for e, v in TABLE3.items()}, "models": models,
              "verdicts": [verdicts(m) for m in models]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(result, indent=1))
    (out / "compare.md").write_text(markdown(result))
    plot_compare(result, out / "compare.png")
    return result


def main(argv=None) -> dict:
    """``policylens dt compare RUN [RUN ...] --out DIR``."""
    parser = argparse.ArgumentParser(prog="policylens dt compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="decision transformers (run directories or zoo:NAME)")
    add_dataclass_args(parser, CompareConfig, skip=("runs",))
    cfg = from_args(CompareConfig, parser.parse_args(argv))
    result = compare(cfg)
    print(markdown(result).split("\n## ")[0])
    print(f"wrote {Path(cfg.out) / 'compare.json'} and {Path(cfg.out) / 'compare.md'}")
    return result
