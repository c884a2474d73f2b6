"""The swap experiment as markdown: one table per setting (the environment, the real episodes cut at the simulator's
horizon, the simulator), each cause's rate per agent with its interval and paired test."""
from __future__ import annotations


def markdown(report: dict) -> str:
    """The experiment as tables, one per setting: each cause's rate per agent with its interval and paired test."""
    swaps = ", ".join(f"{a} → {b}" for a, b in report["swap_labels"])
    lines = [f"### Hidden-state swap: {swaps}", ""]
    for setting, compared in report["settings"].items():
        n = compared["swapped"]["episodes"]
        if setting == "real":
            lines += [f"In the environment: {n} held-out levels, each played by the three agents with the same env "
                      "and action seeds; causes from the env's ground truth."]
        elif setting == "real_horizon":
            lines += [f"The same real episodes cut at the simulator's horizon: an episode still running after "
                      f"{compared['horizon']} steps (the context frames and the imagined steps) counts as a "
                      "timeout. Read the simulator's table against this one."]
        else:
            start = {"filtered": "the context frames filtered through the posterior with their recorded actions, "
                                 "the agents acting from the last one",
                     "z": "the agents acting from the first frame, decoded from z alone"}.get(compared.get("start"), "")
            lines += [f"In the simulator (`{compared['simulator']}`): {n} imagined episodes of the context frames + "
                      f"{compared['steps']} steps from encoded real episode beginnings"
                      + (f" ({start})" if start else "") + ", the same latent and action noise for the three "
                      "agents" + (", each view drawn cell by cell from the simulator's distribution (the same draws "
                                  "for the three)" if compared.get("view") == "sample" else "")
                      + "; outcomes read from the views the simulator showed."]
        lines += ["Rates with Wilson 95% intervals; p: McNemar exact against the original, Holm over causes.", "",
                  "| outcome | original | swapped | p | random control | p |", "|---|---|---|---|---|---|"]
        lines += _rows(compared)
        lines += ["", f"![swap ({setting})]({figure(setting)})", ""]
    return "\n".join(lines)


def figure(setting: str) -> str:
    return "swap.png" if setting == "real" else f"swap-{setting.replace('_', '-')}.png"


def _rows(compared: dict) -> list:
    fmt = lambda r: f"{100 * r['rate']:.2f}% [{100 * r['ci95'][0]:.2f}, {100 * r['ci95'][1]:.2f}]"  # noqa: E731
    cell = lambda r: ("–", "–") if r is None else (fmt(r["b"]), f"{r['p_holm']:.2g}" + (" *" if r["significant"] else ""))  # noqa: E731
    rows = []
    for c in sorted(set(compared["swapped"]["causes"]) | set(compared["control"]["causes"])):
        s, k = compared["swapped"]["causes"].get(c), compared["control"]["causes"].get(c)
        rows.append(f"| {c} | {fmt((s or k)['a'])} | {' | '.join(cell(s))} | {' | '.join(cell(k))} |")
    success = compared["success"]
    rows.append(f"| success | {100 * success['original']:.2f}% | {100 * success['swapped']:.2f}% | | "
                f"{100 * success['control']:.2f}% | |")
    return rows
