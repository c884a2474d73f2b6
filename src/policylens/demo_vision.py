"""The demo's vision section: attribution, NMF directions with thumbnails, their scores against ground
truth, faithfulness, and the editing experiment (blind the agent to balls, compare failures by cause).

Arrays and JSON go to ``OUT/analysis/``, figures beside the report; :func:`vision_section` returns the
report's markdown. Everything runs on the recorded frames of ``OUT/rollouts.zarr``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .evaluate.compare import CAUSE_OF
from .scores.entities import LayerScores, spread

ENTITIES = ("agent", "ball", "goal")


def _direction_table(scores: dict) -> list:
    rows = ["| direction | best entity | precision | lift | NMI | NMI over restarts | interpretable | stability |",
            "|---|---|---|---|---|---|---|---|"]
    for r in scores["directions"]:
        e = r["entities"][r["best_entity"]]
        best = r["best_entity"] if e["nmi"] > 0 else "-"  # no entity's position tells anything about it
        rows.append(f"| {r['label']} | {best} | {e['precision']:.2f} | {e['lift']:.1f} | {e['nmi']:.2f} "
                    f"| {_range(r['nmi_spread'])} | {'yes' if r['interpretable'] else 'no'} | {r['stability']:.2f}"
                    f"{' (unstable)' if r['unstable'] else ''} |")
    return rows


def _range(x: dict, fmt: str = ".2f") -> str:
    """``median [min, max]`` of a :func:`~policylens.scores.entities.spread`."""
    if x["median"] is None:
        return "-"
    return f"{x['median']:{fmt}} [{x['min']:{fmt}}, {x['max']:{fmt}}]"


def directions_and_scores(agent, obs, masks, out: Path, layer: str, k: int) -> LayerScores:
    """NMF of ``layer``'s activations (the stable choice among restarts), scored against the masks, with
    dataset-example thumbnails labelled by the entity each locates and its stability."""
    from .featvis import dataset_examples, save_grid, thumbnails
    from .scores import score_layer

    found = score_layer(agent, obs, masks, layer, k)
    directions, scores = found.directions, found.scores
    directions.save(out / "analysis" / "directions" / f"{layer}-nmf")
    examples = dataset_examples(agent, obs, directions, k=4, max_per_obs=1)
    labels = [f"{lab}: {r['best_entity'] if r['interpretable'] else '(none)'}, stab. {r['stability']:.2f}"
              for lab, r in zip(directions.labels, scores["directions"])]
    save_grid(out / "directions.png", thumbnails(examples, size=48), labels,
              title=f"NMF directions of {layer}: best dataset example, the entity it locates (if any), stability")
    return found


def attribution_stats(agent, obs, masks, layer: str) -> dict:
    """IG of the value: mass on entities (input pixels), sparsity (hidden layer), deletion/insertion."""
    from .attribution import attribute
    from .scores import attribution_entity_mass, deletion_insertion, sparsity

    x = torch.as_tensor(obs)
    pixels = attribute(agent, x, target="value", method="ig", steps=16)  # (N, H, W, C)
    hidden = attribute(agent, x, target="value", layer=layer, method="ig", steps=16)  # (N, C, h, w)
    mass = attribution_entity_mass(pixels.abs().sum(-1).numpy(), {k: v.astype(float) for k, v in masks.items()})
    curves = deletion_insertion(agent, x[:128], hidden[:128], layer=layer, fractions=10)
    return {"mass": mass, "sparsity": sparsity(hidden), "curves": curves}


EDITS = {  # name: (which of the entity's directions, oblique projection keeping the other directions)
    "keep-others": ("1", True),
    "plain": ("1", False),  # Understanding RL Vision's orthogonal projection
    "all-ball-directions": ("all", True),
}


def blind_experiment(agent, obs, found, out: Path, original: dict, cfg, entity: str = "ball",
                     force: bool = False) -> dict:
    """Project the ``entity`` direction(s) out (keeping the other directions, the paper's plain projection,
    and every direction whose best entity is ``entity``), evaluate each edit on the evaluation's levels and
    compare failures by cause with the original and with the control (``entity`` invisible, the game
    unchanged). ``found``: the layer's scored NMF (:func:`policylens.scores.score_layer`). Every NMF
    restart's choice is edited and evaluated too, so each edit's blindness share is reported with its spread
    over restarts. The cause the entity brings about is :func:`~policylens.evaluate.compare.cause_of`'s
    (a MiniGrid ball: ``obstacle``; an Atari object: its own category). ``force``: edit even where no direction
    locates the entity above :data:`~policylens.edit.blind.MIN_NMI` (else that is refused)."""
    from .edit.blind import edit_chosen, pick, select_entity
    from .envs import parse_spec
    from .evaluate import evaluate
    from .evaluate.compare import cause_of, compare_records, control_section, plot

    env = original["setup"]["env"]
    cause = cause_of(entity, env)
    hidden = str(parse_spec(env).replace(invisible=entity))  # the control: the original, the entity unseen
    control = evaluate(agent, hidden, original["episodes"], start_level=cfg.eval_start_level, seed=cfg.seed)
    found = select_entity(found, entity, force=force)
    done = {}  # (edit, restart) -> comparison; a restart whose chosen vectors equal an earlier one's reuses it

    def outcome(directions, chosen, oblique) -> dict:
        key = (tuple(map(tuple, directions.select(chosen).vectors.round(decimals=4).tolist())), oblique)
        if key not in done:
            edited = edit_chosen(agent, directions, chosen, oblique, obs)
            ev = evaluate(edited, env, original["episodes"], start_level=cfg.eval_start_level, seed=cfg.seed)
            cmp = compare_records(original["per_episode"], ev["per_episode"])
            cmp["control"] = control_section(original["per_episode"], ev["per_episode"], control["per_episode"],
                                             entity, hidden)
            done[key] = cmp
        return done[key]

    results: dict[str, dict] = {}
    for name, (top, oblique) in EDITS.items():
        chosen = pick(found.scores["directions"], entity, top)
        if top == "all" and (len(chosen) < 2 or len(chosen) == len(found.directions)):
            continue  # the balls are in one direction (the first edit), or in every one (nothing to keep)
        per_restart = []
        for r, (directions, scores) in enumerate(found.restarts):
            picked = pick(scores["directions"], entity, top)
            cmp = outcome(directions, picked, oblique)
            share = cmp["control"]["blindness"].get(entity, {})
            per_restart.append({"restart": r, "chosen": ",".join(directions.labels[j] for j in picked),
                                "share": share.get("share"), "ci95": share.get("ci95"),
                                cause: cmp["causes"].get(cause, {}).get("b", {}).get("count", 0)})
        cmp = outcome(found.directions, chosen, oblique)
        cmp.update(run_a="original", run_b=name)
        rows = found.scores["directions"]
        results[name] = {"compare": cmp, "chosen": ",".join(found.directions.labels[j] for j in chosen),
                         "nmi": [rows[j]["entities"][entity]["nmi"] for j in chosen],
                         "stability": [rows[j]["stability"] for j in chosen], "restarts": per_restart,
                         "share_spread": spread([x["share"] for x in per_restart])}
    plot(results["keep-others"]["compare"], out / "edit-compare.png",
         others=tuple(r["compare"] for name, r in results.items() if name != "keep-others"))
    (out / "analysis" / "edit.json").write_text(json.dumps(results, indent=1))
    return results


def _cause_rows(results: dict) -> list:
    causes = sorted({c for r in results.values() for c in r["compare"]["causes"]})
    rows = ["| edit | success | " + " | ".join(f"{c} (A -> B, p Holm)" for c in causes) + " |",
            "|---|---|" + "---|" * len(causes)]
    for name, r in results.items():
        cmp = r["compare"]
        cells = []
        for c in causes:
            x = cmp["causes"].get(c)
            cells.append("-" if x is None else f"{x['a']['count']} -> {x['b']['count']}, {x['p_holm']:.2g}"
                         + (" *" if x["significant"] else ""))
        rows.append(f"| {name} | {cmp['success']['a']:.3f} -> {cmp['success']['b']:.3f} | " + " | ".join(cells) + " |")
    return rows


def _control_lines(results: dict) -> list:
    """Understanding RL Vision's control, read: how often the original dies with balls invisible, and each
    edit's share of it, for the chosen NMF and over every restart."""
    control = results["keep-others"]["compare"]["control"]
    cause = CAUSE_OF["ball"]
    r = control["causes"].get(cause)
    if r is None:
        return ["With balls invisible the original is never ended by an obstacle either.", ""]
    rows = ["| edit | blindness share (95% CI) | over NMF restarts: median [min, max] |", "|---|---|---|"]
    for name, res in results.items():
        share = res["compare"]["control"]["blindness"].get("ball") or {}
        if share.get("share") is None:
            continue
        ci = f" [{share['ci95'][0]:.2f}, {share['ci95'][1]:.2f}]" if share.get("ci95") else ""
        rows.append(f"| {name} | {share['share']:.2f}{ci} | {_range(res['share_spread'])} |")
    return [f"The control (Understanding RL Vision's invisible buzzsaws): the original agent plays the same levels "
            f"with balls left out of its view (`invisible=ball`; the game unchanged), and {r['a']['count']} -> "
            f"{r['b']['count']} episodes end on an obstacle: the most an edit can blind it. Each edit's blindness "
            "share is its rise in obstacle deaths over the control's (paired bootstrap 95% interval), for the "
            "chosen NMF and for the ball direction(s) of every NMF restart:", "", *rows, ""]


def _capped(meta: dict) -> str:
    asked = meta.get("k_requested")
    return f" of the {asked} asked for: the activations have rank {len(meta['stability'])}" if asked else ""


def vision_section(out: Path, store, agent, evaluation: dict, cfg, layer: "str | None" = None,
                   attr_layer: "str | None" = None, k: int = 8) -> tuple:
    """Run the analyses and return ``(markdown lines, {step: seconds})``. ``layer`` (NMF directions and the
    edit; default the first spatial layer) and ``attr_layer`` (attribution statistics; default the last)."""
    from .agents import spatial_layers

    spatial = list(spatial_layers(agent))
    if not spatial:
        return ["## Vision analyses", "", f"Skipped: the agent ({type(agent).__name__}) has no spatial (conv) "
                "layer to factorise and edit.", ""], {}
    layer, attr_layer = layer or spatial[0], attr_layer or spatial[-1]
    times, t = {}, time.time()
    (out / "analysis").mkdir(parents=True, exist_ok=True)
    from .scores import store_frames

    obs, masks = store_frames(store, kinds=list(ENTITIES))
    k = min(k, len(obs))
    found = directions_and_scores(agent, obs, masks, out, layer, k)
    scores = found.scores
    (out / "analysis" / "scores.json").write_text(json.dumps(scores, indent=1))
    times["directions"] = time.time() - t
    t = time.time()
    stats = attribution_stats(agent, obs, masks, attr_layer)
    (out / "analysis" / "attribution.json").write_text(json.dumps(stats, indent=1))
    times["attribution"] = time.time() - t
    t = time.time()
    edits = blind_experiment(agent, obs, found, out, evaluation, cfg)
    times["edit"] = time.time() - t
    t = time.time()
    from .explorer import export

    explorer = export(str(out), store=str(out / "rollouts.zarr"), episodes=f"0-{min(8, len(store)) - 1}", k=k,
                      progress=False)
    times["explorer"] = time.time() - t
    mass, curves = stats["mass"], stats["curves"]
    keep = edits["keep-others"]["compare"]
    lines = [
        "## The trajectory explorer",
        "",
        f"[explorer/index.html](explorer/index.html) (opens from disk, {explorer['bytes'] / 1e6:.1f} MB): "
        f"{min(8, len(store))} recorded "
        f"episodes with the attribution of the value and of the sampled action over NMF features of layer(s) "
        f"{', '.join(f'`{x}`' for x in explorer['layers'])}, good and bad news side by side, the timeline and GAE "
        "bookmarks. `policylens explore runs/demo --serve` plays live.",
        "",
        "## Directions, scored against ground truth",
        "",
        f"NMF ({len(found.directions)} directions{_capped(found.directions.meta)}) of layer `{layer}` over the "
        f"{len(obs)} recorded frames, the stable choice among {len(found.restarts)} restarts; each direction's map "
        "of where it fires is compared with the entity masks from the env's state (precision: share of its mass "
        "on the entity; lift: over chance; NMI: normalised mutual information of where it fires with where the "
        f"entity is). **{scores['interpretable_share']:.0%} of directions are interpretable** by the stated "
        f"criterion (NMI >= {scores['criterion']['min_nmi']}, lift >= {scores['criterion']['min_lift']}); "
        f"median [min, max] over the {len(found.restarts)} restarts: "
        f"{_range(scores['interpretable_share_spread'], '.0%')}. Stability: the median best-matched cosine of the "
        "direction in the other restarts and in fits to bootstrap resamples of the frames.",
        "",
        *_direction_table(scores),
        "",
        "![directions](directions.png)",
        "",
        "## Attribution (integrated gradients of the value)",
        "",
        "| where | share of abs(attribution) | share of the image | ratio |",
        "|---|---|---|---|",
        *[f"| {kind} | {m['mass']:.3f} | {m['area']:.3f} | {m['ratio']:.1f} |" for kind, m in mass.items()],
        "",
        f"Sparsity at `{attr_layer}`: the top-10 (position, channel) pairs hold {stats['sparsity']:.1%} of "
        f"abs(attribution). Deletion at `{attr_layer}` (most-attributed positions zeroed first), area under the "
        f"normalised value curve: {curves['deletion_attribution_auc']:.3f} against "
        f"{curves['deletion_random_auc']:.3f} for a random order (lower is more faithful); insertion "
        f"{curves['insertion_attribution_auc']:.3f} against {curves['insertion_random_auc']:.3f} (higher is).",
        "",
        "## Editing: blind the agent to balls",
        "",
        f"The `{layer}` direction that best locates balls (direction {edits['keep-others']['chosen']}, NMI "
        f"{edits['keep-others']['nmi'][0]:.2f}) is projected out of the agent, and the edited agent plays the same "
        f"{keep['episodes']} held-out levels. `keep-others` removes it while passing the other NMF directions "
        "unchanged (an oblique projection); `plain` is Understanding RL Vision's orthogonal projection, which "
        "also moves every "
        "direction that shares channels with it"
        + (f"; `all-ball-directions` removes every direction whose best entity is the ball (directions "
           f"{edits['all-ball-directions']['chosen']}, NMI "
           f"{', '.join(f'{x:.2f}' for x in edits['all-ball-directions']['nmi'])}: NMF split the balls), keeping "
           "the others" if "all-ball-directions" in edits else "")
        + ". Counts of episodes ended by each cause, McNemar's exact test paired by level, Holm-corrected "
        "(* significant at 0.05):",
        "",
        *_cause_rows(edits),
        "",
        *_control_lines(edits),
        "![failure rate by cause](edit-compare.png)",
        "",
    ]
    return lines, times
