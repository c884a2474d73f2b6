"""Docs quote results: every figure in README and docs is read from a committed JSON file a command wrote.

Two kinds of marks, invisible when the markdown is rendered:

- a value: ``<!--q FILE PATH FORMAT-->0.12<!--/q-->`` is the entry at ``PATH`` (keys and list indices joined
  by ``/``) of ``FILE`` (relative to the repository), written with the Python format spec ``FORMAT`` (``.2f``,
  ``,``, ``.1%``; ``raw`` for the value as it is);
- a block: ``<!--quote NAME-->`` ... ``<!--/quote-->`` is the markdown that ``BLOCKS[NAME]`` writes from its
  JSON (a table, say).

``python -m benchmarks.quote`` rewrites every mark from the files; ``--check`` only says which are stale
(exit 1), as the test suite does. Edit a figure by re-running the command that writes its JSON, then this.
"""
from __future__ import annotations

import argparse
import json
import re
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "docs", "benchmarks/README.md", "zoo/README.md")
VALUE = re.compile(r"<!--q (\S+) (\S+) ([^\s<>]+)-->(.*?)<!--/q-->", re.S)
BLOCK = re.compile(r"(<!--quote (\S+)-->\n)(.*?)(<!--/quote-->)", re.S)


@lru_cache(maxsize=None)
def load(file: str):
    path = ROOT / file
    if not path.is_file():
        raise FileNotFoundError(f"quoted file {file} is not in the repository")
    return json.loads(path.read_text())


def lookup(file: str, path: str):
    """The entry at ``path`` (``a/b/0/c``) of the JSON ``file``."""
    value = load(file)
    for key in path.split("/"):
        try:
            value = value[int(key)] if isinstance(value, list) else value[key]
        except (KeyError, IndexError, ValueError, TypeError):
            raise KeyError(f"{file} has no entry {path!r} (stopped at {key!r})") from None
    return value


def fmt(value, spec: str = "raw") -> str:
    return str(value) if spec == "raw" else format(value, spec)


def value(file: str, path: str, spec: str = "raw") -> str:
    return fmt(lookup(file, path), spec)


# ---------------------------------------------------------------- blocks

EDIT = "benchmarks/results/edit_blindness.json"
EDIT_ROWS = {
    "keep-others": "ball direction out, other directions kept (`--keep others`)",
    "plain": "ball direction out, the paper's orthogonal projection",
    "all-ball-directions": "every ball direction out, others kept (`--top all --keep others`)",
}


def _ci(x: dict) -> str:
    return f"{x['share']:.2f} [{x['ci95'][0]:.2f}, {x['ci95'][1]:.2f}]" if x and x.get("ci95") else "-"


def edit_table() -> list:
    """The MiniGrid editing experiment: each edit's deaths and blindness share, with its spread over NMF
    restarts, beside the original and the control."""
    r = load(EDIT)
    rows = ["| | success | obstacle deaths | wall deaths | blindness share (95% CI) | over NMF restarts: median [min, max] |",
            "|---|---|---|---|---|---|",
            f"| original | {r['original']['success']:.3f} | {r['original']['deaths'].get('obstacle', 0)} | "
            f"{r['original']['deaths'].get('wall', 0)} | | |"]
    for name, label in EDIT_ROWS.items():
        e = r["edits"].get(name)
        if e is None:
            continue
        s = e["share_spread"]
        spread = "-" if s["median"] is None else f"{s['median']:.2f} [{s['min']:.2f}, {s['max']:.2f}]"
        rows.append(f"| {label} | {e['success']:.3f} | {e['deaths'].get('obstacle', 0)} | "
                    f"{e['deaths'].get('wall', 0)} | {_ci(e['blindness_share'])} | {spread} |")
    c = r["control"]
    rows.append(f"| original, balls invisible (the control) | {c['success']:.3f} | {c['deaths'].get('obstacle', 0)} | "
                f"{c['deaths'].get('wall', 0)} | 1 | |")
    return rows


def _env_name(spec: str) -> str:
    family, _, rest = spec.partition(":")
    name, _, options = rest.partition("?")
    opts = dict(o.split("=", 1) for o in options.split("&") if "=" in o)
    extra = [f"{opts['obs']} view"] if "obs" in opts else []
    extra += [opts["distribution_mode"]] if "distribution_mode" in opts else []
    return ", ".join([name.replace("MiniGrid-", "").removesuffix("-v0"), *extra])


def _arch(agent: dict) -> str:
    if agent["arch"] == "decision_transformer":
        layers = f"{agent['n_layers']} layer" + ("s" if agent["n_layers"] > 1 else "")
        return (f"decision transformer ({layers}, {agent['n_heads']} heads, d_model "
                f"{agent['d_model']}, `{agent['state_embedding']}` embedding, context {agent['context']})")
    return f"`{agent['arch']}`" + (f" + GRU ({agent['hidden']})" if agent.get("recurrent") else "")


def zoo_table() -> list:
    """Every zoo agent: env, architecture, frames trained, held-out success with its 95% CI and failure causes
    (its ``evaluation.json``), or a decision transformer's return at each target (its ``calibration.json``)."""
    rows = ["| name | env | agent | frames trained | held-out result |", "|---|---|---|---|---|"]
    for run in sorted(p for p in (ROOT / "zoo").iterdir() if (p / "agent" / "config.json").is_file()):
        config = json.loads((run / "agent" / "config.json").read_text())
        frames = sum(c["frames"] for c in config.get("curriculum", [])) or config.get("frames")
        if (run / "evaluation.json").is_file():
            e = json.loads((run / "evaluation.json").read_text())
            causes = ", ".join(f"{c} {n}" for c, n in e["causes"].items() if n and c != "success")
            if config["env"].startswith("atari:"):  # a game has a score, not a success
                result = (f"score **{e['mean_return']:.2f}** (sd {e['return_std']:.2f}) over {e['episodes']:,} "
                          f"games" + (f"; last life lost to: {causes}" if causes else ""))
            else:
                result = (f"**{e['success_rate']:.3f}** ({e['ci95'][0]:.3f}-{e['ci95'][1]:.3f}) on "
                          f"{e['episodes']:,} levels" + (f"; {causes}" if causes else ""))
        elif (run / "calibration.json").is_file():
            c = json.loads((run / "calibration.json").read_text())
            result = "return " + ", ".join(f"{r['mean_return']:.2f} at RTG {r['target_rtg']:g}" for r in c["results"]
                                            if r["target_rtg"] in (-1, 0, 0.9))
            frames = None
        else:
            result = "-"
        imported = config.get("imported_from")
        agent = _arch(config["agent"]) + (f", imported from {imported['library']} {imported['algorithm']}"
                                          if imported else "")
        trained = f"{frames:,}" if frames else "-"
        if frames and config["env"].startswith("atari:"):  # an agent step is frame_skip emulator frames
            trained = f"{frames:,} steps ({frames * _frame_skip(config['env']):,} frames)"
        rows.append(f"| `{run.name}` | {_env_name(config['env'])} | {agent} | {trained} | {result} |")
    return rows


def _frame_skip(spec: str) -> int:
    from policylens.envs import parse_spec
    from policylens.envs.atari import DEFAULTS

    return int(parse_spec(spec).options.get("frame_skip", DEFAULTS["frame_skip"]))


#: CleanRL's published ppo_atari.py result (docs.cleanrl.dev, PPO, "Experiment results" of ppo_atari.py: "the
#: average episodic returns", the script's default 10M steps, i.e. 40M frames), beside openai/baselines' PPO.
CLEANRL_BREAKOUT = {"ppo_atari.py": "414.66 ± 28.09", "baselines": "406.57 ± 31.554",
                    "steps": 10_000_000}


def atari_breakout() -> list:
    """The zoo's Breakout agent beside CleanRL's published ppo_atari.py result."""
    run = ROOT / "zoo" / "atari-breakout"
    config = json.loads((run / "agent" / "config.json").read_text())
    e = json.loads((run / "evaluation.json").read_text())
    steps = config["frames"]
    frames = steps * _frame_skip(config["env"])
    c = CLEANRL_BREAKOUT
    return ["| agent | trained for | score | measured on |", "|---|---|---|---|",
            f"| `zoo:atari-breakout` (our PPO, `--preset atari`) | {steps:,} steps ({frames:,} frames) | "
            f"**{e['mean_return']:.1f}** (sd {e['return_std']:.1f}) | {e['episodes']:,} held-out games, "
            f"whole games, actions sampled |",
            f"| CleanRL `ppo_atari.py` (published) | {c['steps']:,} steps ({4 * c['steps']:,} frames) | "
            f"{c['ppo_atari.py']} | average episodic return of whole games in training, as published |",
            f"| openai/baselines PPO (as CleanRL publishes it) | {c['steps']:,} steps | {c['baselines']} | "
            f"likewise |"]


def dt_models_table() -> list:
    """Decision Transformer Interpretability's findings side by side for the zoo's decision transformers
    (``python -m benchmarks.dt_models``)."""
    from policylens.dt.analysis.compare import side_by_side

    return side_by_side(load("benchmarks/results/dt_models.json"))


EXPORT = "benchmarks/results/explorer_export.json"


def explorer_table() -> list:
    """Explorer exports (``benchmarks.explorer_export``): per agent and layer, the frames, the export's seconds and
    frames/s (and per CPU second), the earlier code's time on the same store in the same run where measured,
    and the size scaled to 8 x 512 frames."""
    r = load(EXPORT)
    rows = ["| agent, layer (env) | maps stored | frames | export | CPU | before (same store, same run) | speed-up | "
            "size for 8 x 512 |", "|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        env = _env_name(row.get("env", r["env"])).split(",")[0]
        pool = f"summed over {row['pool']}x{row['pool']} blocks" if row.get("pool", 1) > 1 else "at the layer's grid"
        cpu = f"{row['export_cpu_s']} s ({row['export_frames_per_cpu_s']} frames/s)" if "export_cpu_s" in row else "-"
        before = (f"{row['before']['export_s']} s ({row['before']['export_frames_per_s']} frames/s)"
                  if "before" in row else "-")
        rows.append(f"| `{row['arch']}`, `{row['layer']}` ({env}) | {pool} | {row['frames']:,} | {row['export_s']} s "
                    f"(**{row['export_frames_per_s']} frames/s**) | {cpu} | {before} | "
                    f"{str(row['speedup']) + 'x' if 'speedup' in row else '-'} | {row['mb_scaled_to_8x512']} MB |")
    return rows


SIM_AGENTS = "benchmarks/results/sim_agents.json"


def sim_agents_table() -> list:
    """Agents inside the simulator: per agent, each outcome's rate in the environment and in the simulator (and the
    imagined ends as their views show them) with Wilson intervals, as ``policylens sim agents`` writes it."""
    from policylens.sim.analyses.agents.report import table_rows

    return table_rows(load(SIM_AGENTS))


def _ppo(name: str, file_attr: str):
    def block() -> list:
        from . import quote_ppo

        return getattr(quote_ppo, name)(load(getattr(quote_ppo, file_attr)))

    block.__doc__ = f"the PPO benchmark table of :func:`benchmarks.quote_ppo.{name}`"
    return block


SIM_LEVERS = "benchmarks/results/sim_fidelity_levers.json"
SIM_SWAP = "benchmarks/results/sim_swap_imagined.json"
SIM_BALLS = "benchmarks/results/sim_balls.json"
ZOO_SIM = {"fidelity": "open-loop-weight 0.25, decoder detached (5537 steps), 20k test store, 16384 windows",
           "reach": "open-loop-weight 0.25, decoder detached (5537 steps), 20k test store, reach 32",
           "test": "open-loop-weight 0.25, decoder detached (5537 steps), test store of 2000 episodes, 4096 windows",
           "swap": "olw 0.25, decoder detached (the zoo's)",
           "balls": "olw 0.25, decoder detached"}
SIM_METRICS = {"obs_score": ("obs cell accuracy", "{:.3f}"), "action_agreement": ("action agreement", "{:.3f}"),
               "value_error": ("value error", "{:.4f}"), "reward_error": ("reward error", "{:.3f}"),
               "done_accuracy": ("episode-end accuracy", "{:.4f}")}


def _steps(n: int) -> str:
    return f"{n} step" + ("s" if n != 1 else "")


def _pair(run: dict, step: str, metric: str, form: str) -> str:
    """``sim vs baseline, **diff [low, high]**`` (bold where the simulator is better, the interval clear of 0)."""
    sim, base = (run["models"][m]["summary"][step][metric]["mean"] for m in ("simulator", "baseline"))
    d = run["simulator_minus_baseline"][step][metric]
    better = (d["low"] > 0 or d["high"] < 0) and (d["mean"] < 0) == metric.endswith("error")
    diff = f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"
    return f"{form.format(sim)} vs {form.format(base)}, " + (f"**{diff}**" if better else diff)


def sim_fidelity_table() -> list:
    """The zoo simulator against the VAE+LSTM baseline at equal wall time, on a store recorded apart, one and ten
    steps after the context (``sim fidelity --test-store``), simulator minus baseline with bootstrap intervals."""
    run = load(SIM_LEVERS)["runs"][ZOO_SIM["fidelity"]]
    windows = [run["models"]["simulator"]["summary"][s]["obs_score"]["count"] for s in ("1", "10")]
    rows = [f"| simulator vs VAE+LSTM | {_steps(1)} ({windows[0]:,} windows) | {_steps(10)} ({windows[1]:,} windows) |",
            "|---|---|---|"]
    for metric, (label, form) in SIM_METRICS.items():
        rows.append(f"| {label} | {_pair(run, '1', metric, form)} | {_pair(run, '10', metric, form)} |")
    return rows


def sim_reach_table() -> list:
    """The same models on every window with 32 frames after the context (``sim fidelity --reach 32``)."""
    run = load(SIM_LEVERS)["runs"][ZOO_SIM["reach"]]
    rows = ["| simulator vs VAE+LSTM | " + " | ".join(_steps(int(s)) for s in ("1", "10", "32")) + " |", "|---|---|---|---|"]
    for metric in ("obs_score", "action_agreement", "value_error"):
        label, form = SIM_METRICS[metric]
        rows.append(f"| {label} | " + " | ".join(_pair(run, s, metric, form) for s in ("1", "10", "32")) + " |")
    return rows


def sim_closed_loop_table() -> list:
    """The agent acting on its own in the simulator against draws of the environment: agreement per step."""
    loop = load(SIM_LEVERS)["runs"][ZOO_SIM["test"]]["closed_loop"]
    steps = (1, 2, 5, 8, 10, 12)
    rows = ["| outcome agreement at step | " + " | ".join(str(s) for s in steps) + " |", "|---" * (len(steps) + 1) + "|"]
    for who, label in (("simulator", "the simulator"), ("a draw", "another draw of the environment"),
                       ("best guess", "the best guess of the environment's spread")):
        rows.append(f"| {label} | " + " | ".join(f"{loop['per_step'][who]['mean'][s]:.3f}" for s in steps) + " |")
    return rows


def sim_swap_table() -> list:
    """``sim swap`` of IC1 onto IC3: outcomes in the environment and in the zoo simulator, at the simulator's
    horizon and over whole episodes, for the agent, the swapped agent and the random-direction control."""
    d = load(SIM_SWAP)
    imagined, real = d["runs"][ZOO_SIM["swap"]]["steps"], d["environment"]
    horizon = real["real_horizon"]["horizon"]
    rows = ["| agent | success within the horizon, real | imagined | whole episodes, real | imagined | "
            "obstacle deaths, real | imagined |", "|---|---|---|---|---|---|---|"]
    for who in ("original", "swapped", "control"):
        rows.append(f"| {who} | {real['real_horizon']['success'][who]:.1%} | {imagined['32'][who]['success']:.1%} | "
                    f"{real['real']['success'][who]:.1%} | {imagined['253'][who]['success']:.1%} | "
                    f"{real['real']['causes'][who].get('obstacle', 0):.1%} | "
                    f"{imagined['253'][who].get('obstacle', 0):.1%} |")
    rows.append(f"\nWithin the horizon: the first {horizon} frames (the context and the steps imagined after it); "
                f"whole episodes: up to 253 steps; {imagined['253']['original']['episodes']:,} levels each.")
    return rows


def sim_balls_table() -> list:
    """Ball cells per view in recorded frames and in the zoo simulator's imagined frames, steps after the context."""
    run = load(SIM_BALLS)["runs"][ZOO_SIM["balls"]]
    context, steps = load(SIM_BALLS)["runs"][ZOO_SIM["balls"]].get("context_frames", 3), (1, 3, 6)
    rows = ["| ball cells per view | " + " | ".join(_steps(s) for s in steps) + " |",
            "|---" * (len(steps) + 1) + "|"]
    for key, label in (("recorded", "recorded (the environment)"), ("posterior (every frame filtered)", "posterior"),
                       ("prior, drawn", "prior (imagined)")):
        rows.append(f"| {label} | " + " | ".join(f"{run[key]['balls_per_view'][context - 1 + s]:.2f}" for s in steps) + " |")
    return rows


def attention_washout_table() -> list:
    """rl-attention's washout: entropy and Gini of SmoothGrad / VarGrad maps of the attention layer, fewest against
    most samples (:func:`benchmarks.attention_washout.table`)."""
    from .attention_washout import table

    return table(load("benchmarks/results/attention_washout.json"))


BLOCKS = {"edit_table": edit_table, "zoo_table": zoo_table, "atari_breakout": atari_breakout,
          "explorer_table": explorer_table,
          "sim_agents_table": sim_agents_table, "sim_fidelity_table": sim_fidelity_table,
          "sim_reach_table": sim_reach_table, "sim_closed_loop_table": sim_closed_loop_table,
          "sim_swap_table": sim_swap_table, "sim_balls_table": sim_balls_table, "dt_models_table": dt_models_table,
          "ppo_time_to_95": _ppo("time_to_95_table", "TIME_TO_95"), "ppo_ablation": _ppo("ablation_table", "ABLATION"),
          "ppo_vs_reference": _ppo("vs_reference_table", "VS_REFERENCE"),
          "attention_washout_table": attention_washout_table}


# ---------------------------------------------------------------- rewriting and checking


def render(text: str) -> str:
    """``text`` with every mark filled from its file."""
    text = VALUE.sub(lambda m: f"<!--q {m[1]} {m[2]} {m[3]}-->{value(m[1], m[2], m[3])}<!--/q-->", text)

    def block(m):
        if m[2] not in BLOCKS:
            raise KeyError(f"no quote block {m[2]!r}; known: {', '.join(BLOCKS)}")
        return m[1] + "\n".join(BLOCKS[m[2]]()) + "\n" + m[4]

    return BLOCK.sub(block, text)


def documents() -> list:
    out = []
    for name in DOCS:
        path = ROOT / name
        out += sorted(path.rglob("*.md")) if path.is_dir() else [path] if path.is_file() else []
    return out


def stale() -> list:
    """The documents whose marks differ from what their files say now."""
    load.cache_clear()
    return [p for p in documents() if render(p.read_text()) != p.read_text()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only list the documents whose quotes are stale")
    args = parser.parse_args(argv)
    paths = stale()
    for p in paths:
        if args.check:
            print(f"stale quotes: {p.relative_to(ROOT)}")
        else:
            p.write_text(render(p.read_text()))
            print(f"rewrote {p.relative_to(ROOT)}")
    return 1 if args.check and paths else 0


if __name__ == "__main__":
    raise SystemExit(main())
