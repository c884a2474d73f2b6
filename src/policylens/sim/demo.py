"""The simulator section of the demo (``policylens demo --sim``): the whole suite on small sizes, minutes on a CPU.

``sim_demo(out)`` makes ``OUT/recurrent/`` a run of the zoo's recurrent MiniGrid agent and runs every ``sim``
command on it through its command line, so the demo exercises what users type: record -> sim train -> fidelity
(against the VAE+LSTM baseline at equal time) -> hx -> sample -> optimize -> saliency -> behaviours -> swap (in the
environment and in the simulator). Returns the report section (markdown, links relative to ``OUT``).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

AGENT = "zoo:minigrid-do8-recurrent"
# a small simulator: a few minutes of training on 2 cores
SMALL = ["--latent", "32", "--deter", "64", "--stoch", "16", "--hidden", "128", "--embed", "128", "--channels", "16"]


def sim_demo(out, agent: str = AGENT, seed: int = 0, threads: int = 1, quick: bool = False) -> str:
    """Run the suite on small sizes under ``OUT/recurrent``; returns the report section (markdown). ``quick``:
    tiny sizes (the pipeline's test, not its results).

    ``threads``: torch CPU threads meanwhile (the models are small: on 2 busy cores, two threads made training
    12 times slower than one)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(Path(out), agent, QUICK if quick else FULL, seed)
    finally:
        torch.set_num_threads(before)


# the demo's sizes; QUICK is the same pipeline in about a minute (the test of the section)
FULL = {"episodes": 300, "steps": 400, "swap": 300, "windows": 256, "tsne": 1000, "samples": 4, "iterations": 60,
        "smooth": 4, "behaviour_samples": 48}
QUICK = {"episodes": 24, "steps": 8, "swap": 8, "windows": 32, "tsne": 0, "samples": 2, "iterations": 3,
         "smooth": 2, "behaviour_samples": 8}


def _run(out: Path, agent: str, size: dict, seed: int) -> str:
    from ..agents.files import copy_agent
    from ..hidden.hx import cli as hx_cli
    from ..hidden.swap import cli as swap_cli
    from ..rollouts.record import RecordConfig, record
    from . import train_cli
    from .analyses.behaviours import cli as behaviours_cli
    from .analyses.fidelity import cli as fidelity_cli
    from .analyses.optimize import cli as optimize_cli
    from .analyses.saliency import cli as saliency_cli
    from .analyses.sample import cli as sample_cli

    run = out / "recurrent"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    copy_agent(agent, run)
    quiet, times = ["--progress", "false"], {}

    def step(name, fn):
        t = time.time()
        result = fn()
        times[name] = time.time() - t
        print(f"[demo] sim: {name} ({times[name]:.0f} s)")
        return result

    r, s, n = str(run), str(seed), {k: str(v) for k, v in size.items()}
    step("record", lambda: record(RecordConfig(run=r, episodes=size["episodes"], seed=seed, progress=False)))
    step("train", lambda: train_cli.main([r, "--steps", n["steps"], "--batch-size", "16", "--window", "12",
                                          "--eval-every", n["steps"], "--checkpoint-every", n["steps"],
                                          "--val-windows", "128", "--seed", s, *SMALL, *quiet]))
    step("fidelity", lambda: fidelity_cli.main([r, "--horizon", "9", "--windows", n["windows"], "--bootstrap",
                                                "500", "--seed", s, *quiet]))
    step("hx", lambda: hx_cli.main([r, "--tsne-frames", n["tsne"], "--sim-samples", "64", "--seed", s, *quiet]))
    ica = str(run / "analysis" / "hx" / "ica")
    swap, hypothesis = _hypothesis(run)
    step("sample", lambda: sample_cli.main([r, "--n", n["samples"], "--steps", "16", "--start", "real", "--seed",
                                            s, *quiet]))
    step("optimize", lambda: optimize_cli.main([r, "--target", "value", "--minimize", "true", "--samples",
                                                n["samples"], "--steps", "12", "--iterations", n["iterations"],
                                                "--seed", s, *quiet]))
    step("saliency", lambda: saliency_cli.main([r, "--target", "value", "--t", "10", "--samples", "0,1",
                                                "--smooth", n["smooth"], "--seed", s, *quiet]))
    step("behaviours", lambda: behaviours_cli.main([r, "--samples", n["behaviour_samples"], "--steps", "16",
                                                    "--behaviours", "4", "--directions", ica, "--seed", s, *quiet]))
    step("swap", lambda: swap_cli.main([r, "--directions", swap, "--swap", "ball:clear", "--episodes", n["swap"],
                                        "--sim-samples", n["swap"], "--sim-steps", "24",
                                        "--out", str(run / "analysis" / "swap"), "--seed", s, *quiet]))
    return "\n".join(_section(run, times, hypothesis))


def _hypothesis(run: Path) -> tuple:
    """A hypothesis from ground truth, as Saliency as causality made its buzzsaw one by eye: the ICA direction whose
    coefficient tracks *a ball is in the cell ahead* best (``ball``) and the one that tracks *a wall is ahead*
    best, oriented so that its positive side means *the cell ahead is clear* (``clear``). Swapping ball -> clear
    should make the agent walk into balls. Returns (oriented directions path, the hypothesis in words)."""
    import numpy as np
    import torch

    from ..factors import Directions
    from ..rollouts import open as open_store

    hx = run / "analysis" / "hx"
    frames = np.load(hx / "frames.npz")
    store = open_store(run / "rollouts.zarr")
    obs = np.concatenate([store.episode(int(e))["obs"] for e in np.unique(frames["episode"])])  # (N, 7, 7, 3)
    ahead = obs[:, obs.shape[1] // 2, obs.shape[2] - 2, 0]  # the object code in front of the agent
    ica = frames["ica"]  # (N, K)

    def corr(flag):
        x = (flag - flag.mean()) / max(flag.std(), 1e-9)
        return ((ica - ica.mean(0)) / np.maximum(ica.std(0), 1e-9) * x[:, None]).mean(0)  # (K,)

    ball_corr, wall_corr = corr((ahead == 6).astype(float)), corr((ahead == 2).astype(float))
    a = int(np.abs(ball_corr).argmax())
    b = int(np.abs(np.where(np.arange(len(wall_corr)) == a, 0, wall_corr)).argmax())
    d = Directions.load(hx / "ica")
    sign = np.ones(len(d))
    sign[a], sign[b] = np.sign(ball_corr[a]), -np.sign(wall_corr[b])  # + = ball ahead; + = clear ahead
    meta = dict(d.meta)
    if "unmixing" in meta:
        meta["unmixing"] = (np.asarray(meta["unmixing"]) * sign[:, None]).tolist()
    labels = list(d.labels)
    labels[a], labels[b] = "ball", "clear"
    path = hx / "ica-oriented"
    Directions(d.vectors * torch.as_tensor(sign, dtype=torch.float32)[:, None], d.layer, tuple(labels), d.method, meta).save(path)
    words = (f"{d.labels[a]} tracks a ball ahead (r = {abs(ball_corr[a]):.2f}), {d.labels[b]} a wall ahead "
             f"(r = {abs(wall_corr[b]):.2f}); routing the ball signal into the 'clear ahead' side of {d.labels[b]} "
             "should make the agent walk into balls")
    return str(path), words


def _section(run: Path, times: dict, hypothesis: str) -> list:
    import os

    from .analyses.report.core import report_lines

    def link(path: Path) -> str:  # relative to OUT, where report.md is
        return os.path.relpath(path, run.parent)

    return ["## Simulator", "",
            f"The zoo's recurrent agent (`{AGENT}`, a GRU over the symbolic view) in `recurrent/`: its recorded "
            "episodes, a small simulator trained on them and every `policylens sim` command on it; imagined "
            "episodes in `recurrent/analysis/sample/` (videos and the trajectory explorer), latents optimised to "
            "lower the value in `recurrent/analysis/optimize/`.", "",
            *report_lines(run, run / "sim", link, hypothesis=hypothesis),
            "Time: " + " | ".join(f"{k} {v:.0f} s" for k, v in times.items()), ""]
