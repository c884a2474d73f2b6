"""Quote blocks for the PPO benchmarks (see :mod:`benchmarks.quote`): tables written from their JSON files."""
from __future__ import annotations

TIME_TO_95 = "benchmarks/results/minigrid_time_to_95.json"
ABLATION = "benchmarks/results/ppo_ablation.json"
VS_REFERENCE = "benchmarks/results/ppo_vs_reference.json"


def _frames(x) -> str:
    return "not reached" if x is None else f"{x:,}"


def _minutes(seconds) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def _no_reference(run: dict) -> str:
    """Why a run has no reference beside it: CleanRL has no recurrent PPO here; else it ran apart."""
    if "recurrent" in run["preset"]:
        return "no counterpart"
    return run.get("reference_note", "run apart (benchmarks.ppo_vs_reference)")


def time_to_95_table(data: dict) -> list:
    """Per setup run: frames and minutes to 95% training success, ours and the reference's, the held-out success
    with its 95% interval, and the machine's load average around it."""
    rows = ["| setup | preset | target | ours: frames to 95% | ours: minutes | reference, in as many frames as ours "
            "trained: frames to 95% | reference: minutes | ours held-out success (95% CI) | "
            "held-out >= 95% within the target | load average (1 min) before, after |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in data["runs"].items():
        ref = r.get("reference")
        held = r["held_out"]
        last = [c[3] for c in ref["curve"] if c[3] is not None] if ref else []
        ref_success = f" (last 100: {last[-1]:.0%} at {ref['curve'][-1][0]:,})" if ref and last else ""
        load = r["beside"]
        load = (f"{load['before']['loadavg_1_5_15'][0]:.1f}, {load['after']['loadavg_1_5_15'][0]:.1f}"
                if "before" in load else f"-, {load['loadavg_1_5_15'][0]:.1f}")
        rows.append(f"| {name} | `{r['preset']}` | {r['target_minutes']} min | {_frames(r['frames_to_95'])} | "
                    f"{_minutes(r['seconds_to_95'])} | "
                    f"{_frames(ref['frames_to_95']) + ref_success if ref else _no_reference(r)} | "
                    f"{_minutes(ref['seconds_to_95']) if ref else '-'} | {held['success_rate']:.3f} "
                    f"({held['ci95'][0]:.3f}-{held['ci95'][1]:.3f}) on {held['episodes']} | {'yes' if r['met'] else 'no'} | {load} |")
    return rows


def ablation_table(data: dict) -> list:
    """Each change to the reference or to ours: seeds reaching 95% training success, the median frames to it."""
    rows = ["| trainer | change | seeds reaching 95% | median frames to 95% |", "|---|---|---|---|"]
    for r in data["rows"]:
        change = ", ".join(f"`{k}={v}`" for k, v in r["changes"].items()) or "none"
        rows.append(f"| {r['label']} | {change} | {r['seeds_reaching_95']} | {_frames(r['median_frames_to_95'])} |")
    return rows


def vs_reference_table(data: dict) -> list:
    """Per setup: frames, seeds, frames/s of each and their ratio, final return of the last 100 episodes."""
    rows = ["| setup | frames (of the full setting) | seeds | ours frames/s | reference frames/s | ratio | "
            "final return, ours | final return, reference |", "|---|---|---|---|---|---|---|---|"]
    for name, r in data["runs"].items():
        s = r["summary"]
        full = f" (of {s['full_frames']:,})" if "full_frames" in s else ""
        ret = lambda xs: ", ".join(f"{x:.2f}" for x in xs) or "-"  # noqa: E731
        rows.append(f"| {name} | {s['frames']:,}{full} | {', '.join(map(str, s['seeds']))} | {s['fps_ours']:.0f} | "
                    f"{s['fps_reference']:.0f} | {s['fps_ratio_ours_over_reference']:.2f} | "
                    f"{ret(s['final_return_ours'])} | {ret(s['final_return_reference'])} |")
    return rows
