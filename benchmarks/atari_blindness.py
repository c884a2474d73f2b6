"""Understanding RL Vision's blindness edit on an Atari hazard: the control first, then NMF directions projected out.

    python -m benchmarks.atari_blindness --run RUN --entity ghost --control-only     # does it avoid them by sight?
    python -m benchmarks.atari_blindness --run RUN --entity ghost [--layer conv3] [--k 8] [--episodes 1000]
    python -m benchmarks.atari_blindness --quick                                    # a smoke run

Every episode is one life from a game's start (``one_life=true``, cut after ``--max-frames`` emulator frames,
cause ``timeout``) on held-out level seeds, so the original, the control and each edit play the same levels and
their episodes pair, as CoinRun's do. The control is the paper's: the original agent with the ``--entity``
objects left out of its frames (``invisible=``) while the game runs unchanged; ``ratio`` is how many times more
often the entity's cause ends an episode then (Wilson 95% intervals on both rates). A game is worth the edit
only where that ratio is large: ``--control-only`` stops there. Then the paper's method: NMF directions of
``--layer`` over recorded frames, on its activations and on its attributions (integrated gradients of the value,
positive and negative parts together), each scored against OCAtari's masks; the entity's direction(s)
projected out (:func:`policylens.demo_vision.blind_experiment`: the best one keeping the others, the paper's plain
projection, every direction whose best entity it is), each edit played on the same levels. Each edit's blindness
share is its rise in the entity's cause over the control's (paired bootstrap 95%), with its range over the NMF
restarts. Filed in ``results/atari_blindness.json`` (``--quick``: ``atari_blindness_quick.json``).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from . import common

#: Understanding RL Vision's buzzsaw edit (CoinRun): buzzsaw deaths 0.37% for the original, 12.76% edited,
#: 32.20% with buzzsaws invisible; its text: "was not able to achieve more than around 50%".
PAPER = {"original": 0.37, "edited": 12.76, "control": 32.20, "share": round((12.76 - 0.37) / (32.20 - 0.37), 3)}


def rates(evaluation: dict, cause: str) -> dict:
    """How often ``cause`` ended an episode, with its Wilson 95% interval."""
    from policylens.evaluate.stats import wilson_interval

    n, k = evaluation["episodes"], evaluation["causes"].get(cause, 0)
    return {"count": k, "episodes": n, "rate": k / n, "ci95": list(wilson_interval(k, n))}


def edit_rows(results: dict, entity: str, cause: str) -> dict:
    """Each edit of :func:`~policylens.demo_vision.blind_experiment`, as the result file keeps it."""
    return {name: {"chosen": r["chosen"], "nmi": r["nmi"], "stability": r["stability"],
                   "deaths": {c: x["b"]["count"] for c, x in r["compare"]["causes"].items()},
                   "cause_p_holm": (r["compare"]["causes"].get(cause) or {}).get("p_holm"),
                   "blindness_share": r["compare"]["control"]["blindness"].get(entity),
                   "share_spread": r["share_spread"], "restarts": r["restarts"]}
            for name, r in results.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="the agent (a run directory or zoo:NAME)")
    parser.add_argument("--entity", default="ghost", help="the hazard's OCAtari category (ghost, bullet, ...)")
    parser.add_argument("--layer", default=None, help="the layer to factorise and edit (default: the last spatial)")
    parser.add_argument("--k", type=int, default=8, help="NMF directions")
    parser.add_argument("--on", default="activations,attributions", help="what NMF factorises, comma-separated")
    parser.add_argument("--episodes", type=int, default=1000, help="paired one-life episodes per agent")
    parser.add_argument("--max-frames", type=int, default=4000, help="emulator frames before an episode is cut")
    parser.add_argument("--record-episodes", type=int, default=8, help="episodes whose frames choose directions")
    parser.add_argument("--start-level", type=int, default=1_000_000, help="first held-out level seed")
    parser.add_argument("--control-only", action="store_true", help="only the original and the control")
    parser.add_argument("--force", action="store_true", help="edit even where no direction locates the entity "
                        "(else that factorisation files why it was refused)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--quick", action="store_true", help="an untrained agent on MsPacman, tiny sizes")
    args = parser.parse_args(argv)
    import torch

    from policylens import agents
    from policylens.demo_vision import blind_experiment
    from policylens.envs import parse_spec
    from policylens.evaluate import evaluate
    from policylens.evaluate.compare import cause_of
    from policylens.evaluate.run import run_env_spec
    from policylens.rollouts import RecordConfig, open as open_store, record
    from policylens.scores import score_layer, store_frames

    torch.set_num_threads(args.threads)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.quick:
            args.run, args.episodes, args.max_frames, args.record_episodes, args.k = str(work / "untrained"), 4, 400, 1, 2
            args.force = True  # an untrained agent's directions locate little
            torch.manual_seed(0)
            cfg = {"arch": "nature", "obs_shape": [84, 84, 4], "num_actions": 9}
            agents.save_agent(agents.build(cfg), cfg, work / "untrained" / "agent", extra={"env": "atari:ms_pacman"})
        if not args.run:
            parser.error("--run is required (or --quick)")
        agent = agents.load(args.run)
        spec = parse_spec(run_env_spec(args.run)).replace(episodic_life=None, clip_reward=None, one_life=True,
                                                         max_frames=args.max_frames, ground_truth=True)
        if spec.family != "atari":
            sys.exit(f"{args.run} plays {spec}: this benchmark is for Atari agents")
        env, cause = str(spec), cause_of(args.entity, str(spec))
        play = lambda a, e: evaluate(a, e, args.episodes, start_level=args.start_level, seed=0,  # noqa: E731
                                     progress=not args.quick)
        original = play(agent, env)
        hidden = str(spec.replace(invisible=args.entity))
        control = play(agent, hidden)
        o, c = rates(original, cause), rates(control, cause)
        ended = lambda e: {k: n for k, n in e["causes"].items() if n}  # noqa: E731
        result = {"setup": {"run": str(args.run), "env": env, "entity": args.entity, "cause": cause,
                            "episodes": args.episodes, "max_frames": args.max_frames, "start_level": args.start_level},
                  "original": {"deaths": ended(original), "cause": o, "mean_length": original["mean_length"]},
                  "control": {"env": hidden, "deaths": ended(control), "cause": c,
                              "mean_length": control["mean_length"],
                              "ratio": c["rate"] / o["rate"] if o["count"] else None},
                  "paper": PAPER}
        if not args.control_only:
            store = record(RecordConfig(run=str(args.run), episodes=args.record_episodes, out=str(work / "r.zarr"),
                                        env=str(spec.replace(start_level=0)), seed=0, progress=False))
            obs, masks = store_frames(open_store(store))
            if args.entity not in masks:
                sys.exit(f"no {args.entity!r} in the recorded frames' masks (kinds seen: {', '.join(masks)})")
            layer = args.layer or list(agents.spatial_layers(agent))[-1]
            result["setup"].update(layer=layer, k=args.k, record_episodes=args.record_episodes, frames=len(obs))
            for on in args.on.split(","):
                found = score_layer(agent, obs, masks, layer, args.k, on=on)
                out = work / on
                (out / "analysis").mkdir(parents=True)
                try:
                    edits = blind_experiment(agent, obs, found, out, original, SimpleNamespace(
                        eval_start_level=args.start_level, seed=0), entity=args.entity, force=args.force)
                except ValueError as e:  # no direction locates the entity: a finding, filed as such
                    result[on] = {"refused": str(e)}
                    continue
                result[on] = {"directions": [{k: d[k] for k in ("label", "best_entity", "stability", "unstable")}
                                             for d in found.scores["directions"]],
                              "interpretable_share": found.scores["interpretable_share"],
                              "edits": edit_rows(edits, args.entity, cause)}
    result["setup"]["seconds"] = round(time.time() - t0, 1)
    given = sys.argv[1:] if argv is None else argv
    result["command"] = " ".join(["python -m benchmarks.atari_blindness", *map(shlex.quote, given)])
    common.write("atari_blindness_quick" if args.quick else "atari_blindness", result)
    ratio = result["control"]["ratio"]
    print(f"{cause}: original {o['count']}/{o['episodes']}, control {c['count']}/{c['episodes']}"
          + (f" ({ratio:.1f}x)" if ratio is not None else ""))


if __name__ == "__main__":
    main()
