"""Optimised images against the best dataset examples: does gradient-based feature visualisation excite each
NMF direction at least as much as the strongest frame the agent saw?

``python -m benchmarks.featvis_vs_examples [--run zoo:coinrun-clear] [--layer conv2b] [--k 8] [--threads 1]``
records ``--episodes`` episodes of the agent into a temporary store, takes ``--frames`` frames spread evenly over
it, fits NMF of the layer's activations (``--k`` directions, seeded restarts), and finds each direction's best
dataset example: the (frame, position) of highest score, :func:`policylens.featvis.direction_objective` there.
Then it optimises one image per direction at the layer's centre position (the paper's "activate a neuron in the
center") with the previous settings (Lucid's unit fft amplitude, jitter 4, no redirected ReLU) and with the
current defaults, side by side in one run, and divides each image's objective by its direction's best example
(the example may sit at any position; the image is scored at the centre only). The same for the objective
averaged over positions, against the frame of highest mean. Filed in ``results/featvis_vs_examples.json``
(per direction and their median, with the settings and the command) and ``results/featvis_vs_examples.png``:
for each direction, the best example's patch beside the optimised image's patch at the centre, the whole
optimised images, and every objective.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .common import RESULTS, write


@dataclass
class Settings:
    """One way of optimising: keywords of :func:`policylens.featvis.optimize_batch`."""

    amplitude: float
    jitter: int
    redirect: int
    steps: int = 256
    lr: float = 0.05


BEFORE = Settings(amplitude=1.0, jitter=4, redirect=0)  # Lucid's fft amplitude, no redirected ReLU


def current(steps: int) -> Settings:
    from policylens.featvis.optimize import AMPLITUDE, JITTER, LR, REDIRECT

    return Settings(amplitude=AMPLITUDE, jitter=JITTER, redirect=REDIRECT, steps=steps, lr=LR)


def best_examples(agent, obs: np.ndarray, directions, centre: tuple) -> dict:
    """Per direction: the best (frame, position) and its score, rechecked with ``direction_objective``; and the
    frame of highest mean score."""
    from policylens.featvis import dataset_examples, direction_objective
    from policylens.featvis.examples import iter_scores

    ex = dataset_examples(agent, obs, directions, k=1)
    means = torch.cat([s.flatten(2).mean(2) for _, s in iter_scores(agent, obs, directions)])  # (N, K)
    out = {"score": [], "frame": [], "position": [], "mean": [], "mean_frame": [], "patch": ex.patches[:, 0],
           "receptive_field": ex.receptive_field}
    with torch.no_grad():
        for k in range(len(directions.vectors)):
            i, (y, x) = int(ex.obs_index[k, 0]), ex.position[k, 0].tolist()
            again = direction_objective(agent, directions.layer, torch.as_tensor(obs[i:i + 1]), directions.vectors[k],
                                        (y, x))[0].item()
            if not np.isclose(again, ex.score[k, 0], rtol=1e-4, atol=1e-5):
                raise AssertionError(f"direction {k}: example score {ex.score[k, 0]} but objective {again}")
            j = int(means[:, k].argmax())
            out["score"].append(again)
            out["frame"].append(i)
            out["position"].append([y, x])
            out["mean"].append(float(means[j, k]))
            out["mean_frame"].append(j)
    return out


def run_settings(agent, directions, settings: Settings, position, reference_obs, seed: int) -> dict:
    from policylens.featvis import extremal_share, optimize_batch

    t = time.perf_counter()
    res = optimize_batch(agent, directions.layer, directions.vectors, position=position, reference_obs=reference_obs,
                         seed=seed, **asdict(settings))
    return {"objective": [round(float(v), 4) for v in res.objective], "seconds": round(time.perf_counter() - t, 1),
            "extremal_share": round(extremal_share(res.images), 4), "images": res.images}


def summarise(objective: list, best: list) -> dict:
    ratio = np.asarray(objective) / np.asarray(best)
    return {"ratio": [round(float(r), 3) for r in ratio], "median_ratio": round(float(np.median(ratio)), 3),
            "at_least_best": int((ratio >= 1).sum()), "directions": len(ratio)}


def figure(result: dict, best: dict, images: dict, path: Path) -> Path:
    """Per direction: the best example's patch, the current image's centre patch, both whole images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from policylens.featvis.receptive import crop
    from policylens.featvis.thumbnails import _rgb

    rf, (cy, cx) = best["receptive_field"], result["centre"]
    rows, cols = len(best["score"]), 4
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.0 * rows), squeeze=False)
    for k in range(rows):
        after, before = result["centre_objective"]["after"], result["centre_objective"]["before"]
        cells = [(best["patch"][k], f"best example {best['score'][k]:.2f}"),
                 (crop(images["after"][k], rf, cy, cx), f"optimised, centre {after['objective'][k]:.2f}"),
                 (images["after"][k], f"whole image ({after['ratio'][k]:.2f}x)"),
                 (images["before"][k], f"before: {before['objective'][k]:.2f} ({before['ratio'][k]:.2f}x)")]
        for ax, (img, title) in zip(axes[k], cells):
            ax.imshow(_rgb(img, result["stack"]), interpolation="nearest")
            ax.set_title(title, fontsize=7)
            ax.axis("off")
        axes[k, 0].text(-0.1, 0.5, result["labels"][k], transform=axes[k, 0].transAxes, ha="right", va="center",
                        fontsize=8)
    fig.suptitle(f"{result['run']} {result['layer']}: optimised images against the best dataset examples", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="zoo:coinrun-clear", help="agent (an image-observing one)")
    parser.add_argument("--layer", default="conv2b", help="a spatial layer (the paper's 2b for CoinRun)")
    parser.add_argument("--k", type=int, default=8, help="NMF directions")
    parser.add_argument("--episodes", type=int, default=16, help="episodes recorded for the frames")
    parser.add_argument("--frames", type=int, default=512, help="frames spread evenly over the store")
    parser.add_argument("--restarts", type=int, default=2, help="NMF restarts")
    parser.add_argument("--steps", type=int, default=256, help="optimisation steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="featvis_vs_examples", help="results/NAME.json and NAME.png")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    from policylens.agents import load
    from policylens.envs.render import frame_stack
    from policylens.factors import collect_activations, nmf
    from policylens.featvis.optimize import optimize_position
    from policylens.featvis.sample import sample_frames
    from policylens.rollouts import RecordConfig, open as open_store, record

    t0 = time.time()
    agent = load(args.run)
    with tempfile.TemporaryDirectory() as tmp:
        path = record(RecordConfig(run=args.run, episodes=args.episodes, out=str(Path(tmp) / "rollouts.zarr"),
                                   seed=args.seed, max_steps=500, progress=False))
        store = open_store(path)
        sample = sample_frames(store, args.frames)
        env = store.env
    obs = sample.obs  # (N, H, W, C) uint8
    directions = nmf(collect_activations(agent, torch.as_tensor(obs), args.layer), args.k, layer=args.layer,
                     seed=args.seed, restarts=args.restarts, bootstrap=0)
    centre = optimize_position(agent, args.layer, "centre")
    best = best_examples(agent, obs, directions, centre)
    result = {"command": "python -m benchmarks.featvis_vs_examples " + " ".join(sys.argv[1:] if argv is None else argv),
              "run": args.run, "env": env, "layer": args.layer, "labels": [f"nmf{k}" for k in range(len(directions.vectors))],
              "frames": len(obs), "episodes": args.episodes, "seed": args.seed, "threads": args.threads,
              "stack": frame_stack(env), "centre": list(centre),
              "nmf": {"k": len(directions.vectors), "restarts": args.restarts,
                      "residual": directions.meta.get("residual")},
              "best_example": {k: best[k] for k in ("score", "frame", "position", "mean", "mean_frame")},
              "settings": {"before": asdict(BEFORE), "after": asdict(current(args.steps))}}
    before = Settings(**{**asdict(BEFORE), "steps": args.steps})
    images = {}
    for objective, position, reference in (("centre_objective", centre, best["score"]), ("mean_objective", None,
                                                                                            best["mean"])):
        result[objective] = {}
        for label, settings in (("before", before), ("after", current(args.steps))):
            out = run_settings(agent, directions, settings, position, obs[:1024], args.seed)
            if objective == "centre_objective":
                images[label] = out["images"]
            result[objective][label] = {**{k: v for k, v in out.items() if k != "images"},
                                        **summarise(out["objective"], reference)}
            print(f"{objective} {label}: median ratio {result[objective][label]['median_ratio']}, "
                  f"{result[objective][label]['at_least_best']}/{len(reference)} >= best example")
    result["seconds"] = round(time.time() - t0, 1)
    png = figure(result, best, images, RESULTS / f"{args.name}.png")
    result["figure"] = str(png.relative_to(RESULTS.parent.parent))
    write(args.name, result)
    return result


if __name__ == "__main__":
    main()
