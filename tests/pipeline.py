"""The analyses a user runs on an agent, in tiny sizes, in process: shared by the smoke tests of agents that
policylens did not train (gym: envs, Stable-Baselines3 and CleanRL imports)."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest


def pl(*args) -> None:
    """``policylens ARGS`` in this process (a bad-input exit fails the test with its message)."""
    from policylens.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as e:
        if e.code not in (0, None):
            pytest.fail(f"policylens {' '.join(map(str, args))} exited with {e.code}")


def pl_error(*args) -> str:
    """``policylens ARGS`` expected to refuse its input: the error message it prints (exit status 2)."""
    from policylens.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    assert exit_.value.code == 2, err.getvalue()
    return err.getvalue()


def run_pipeline(run: Path, layer: str, *, env: str = "", max_steps: int = 40, method: str = "nmf") -> dict:
    """record, evaluate, attribute, factorize (``method``: nmf for a post-ReLU layer, pca for tanh), explore,
    edit and compare on ``run``; returns what they wrote."""
    extra = ["--env", env] if env else []
    pl("layers", run)
    pl("record", run, "--episodes", 2, "--num-envs", 2, "--max-steps", max_steps, "--progress", "false", *extra)
    pl("evaluate", run, "--episodes", 2, "--progress", "false", *extra)
    pl("attribute", run, "--layer", layer, "--episodes", 0, "--progress", "false")
    pl("attribute", run, "--episodes", 0, "--method", "saliency", "--progress", "false")  # the input
    pl("factorize", run, "--layer", layer, "--k", 2, "--max-frames", 64, "--method", method)
    directions = run / "analysis" / "directions" / f"{layer}-{method}-activations"
    pl("explore", run, "--episodes", 0, "--steps", 12, "--k", 2, "--layer", layer, "--nmf-frames", 12,
       "--progress", "false")
    edited = run.parent / f"{run.name}-edited"
    pl("edit", run, "--directions", directions, "--direction", 0, "--out", edited)
    pl("compare", run, edited, "--episodes", 2, "--out", run / "compare", "--progress", "false", *extra)
    return {"store": run / "rollouts.zarr", "explorer": run / "explorer" / "index.html", "edited": edited,
            "compare": json.loads((run / "compare" / "compare.json").read_text())}
