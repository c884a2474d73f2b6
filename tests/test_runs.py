"""Nothing lost, overwritten or written where it does not belong (policylens.runs).

Every command that writes refuses an output that is already there unless told (``--resume`` where it continues
one, ``--overwrite``), leaving every file byte-for-byte as it was; ``--overwrite`` replaces the output cleanly;
the outputs of a zoo agent go to ``runs/NAME`` and nothing under the zoo changes.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch

from policylens import agents
from policylens.cli import main as cli_main
from policylens.factors import Directions
from policylens.rollouts import RecordConfig, record
from policylens.runs import prepare_out, run_dir, zoo_dir
from sim_runs import copy_world

ENV = "minigrid:MiniGrid-Empty-Random-5x5-v0?num_actions=3"
AGENT = {"arch": "cnn", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1}
REAL_ZOO = zoo_dir()


def pl(capsys, *args) -> tuple:
    """``(exit code, stdout, stderr)`` of ``policylens ARGS`` run in this process."""
    capsys.readouterr()
    try:
        cli_main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(root) -> dict:
    """Every file under ``root`` with its bytes."""
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory, _sim_world):
    """A tiny agent with a recorded store, a recurrent agent with store and simulator, hx directions."""
    root = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    agents.save_agent(agents.build(AGENT), AGENT, root / "run" / "agent", extra={"env": ENV})
    record(RecordConfig(run=str(root / "run"), episodes=3, num_envs=2, progress=False))
    copy_world(_sim_world, root / "sim")
    Directions.one_hot("hx", [0, 1], 8).save(root / "hx-dirs")
    return root


# ------------------------------------------------------------------------------------------------ the helper
def test_prepare_out_refuses_an_existing_output_unless_told(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert prepare_out(out) == out and not out.exists()  # nothing there: nothing to refuse
    out.mkdir()
    prepare_out(out)  # an empty folder is no output
    (out / "a.txt").write_text("first")
    with pytest.raises(FileExistsError, match=r"rollouts store already exists: .*out; pass --overwrite"):
        prepare_out(out, what="rollouts store")
    with pytest.raises(FileExistsError, match="pass --resume to continue it or --overwrite to replace it"):
        prepare_out(out, resume=False)
    assert prepare_out(out, resume=True) == out and (out / "a.txt").read_text() == "first"
    with pytest.raises(ValueError, match="exclude each other"):
        prepare_out(out, resume=True, overwrite=True)
    (out / "mine.json").write_text("{}")
    prepare_out(out, parts=("mine.json", "mine.png"), overwrite=True)  # only this command's parts go
    assert not (out / "mine.json").exists() and (out / "a.txt").read_text() == "first"
    prepare_out(out, overwrite=True)
    assert not out.exists()
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="working directory"):
        prepare_out(".", overwrite=True)
    assert (tmp_path / "keep.txt").is_file()


def test_the_zoo_is_read_only_and_its_outputs_go_to_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("POLICYLENS_ZOO", str(tmp_path / "zoo"))
    (tmp_path / "zoo" / "thing" / "agent").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert run_dir("zoo:thing") == Path("runs/thing")
    assert run_dir(tmp_path / "zoo" / "thing") == Path("runs/thing")  # a path into the zoo, too
    assert run_dir(tmp_path / "zoo" / "thing" / "agent") == Path("runs/thing")
    assert run_dir(tmp_path / "mine" / "agent", tmp_path / "mine" / "agent") == tmp_path / "mine"
    with pytest.raises(ValueError, match="inside the zoo .* read-only"):
        prepare_out(tmp_path / "zoo" / "thing" / "report.md", overwrite=True)


# ------------------------------------------------------------------------------------------------ train
def _rows(path) -> list:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_train_refuses_a_finished_run_and_overwrite_replaces_it(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--env", ENV, "--arch", "mlp", "--num-envs", 2, "--num-steps", 8, "--progress", "false",
            "--out", run]
    assert pl(capsys, *args, "--total-frames", 48)[0] == 0
    assert len(_rows(run / "train.csv")) == 3
    before = snapshot(tmp_path)
    code, _, err = pl(capsys, *args, "--total-frames", 32)
    assert code == 2 and f"run already exists: {run / 'agent'}" in err and "--resume" in err and "--overwrite" in err
    assert snapshot(tmp_path) == before  # the finished agent and its train.csv, byte for byte
    assert pl(capsys, *args, "--total-frames", 32, "--overwrite")[0] == 0
    rows = _rows(run / "train.csv")
    assert [int(r["update"]) for r in rows] == [1, 2]  # only the new run's rows: nothing stale appended
    assert agents.read_config(run / "agent")["train"]["total_frames"] == 32


@pytest.mark.slow
def test_record_refuses_a_store_tops_it_up_with_resume_and_overwrite_replaces_it(world, tmp_path, capsys):
    store = tmp_path / "s.zarr"
    args = ["record", world / "run", "--num-envs", 2, "--progress", "false", "--out", store]
    assert pl(capsys, *args, "--episodes", 2)[0] == 0
    before = snapshot(tmp_path)
    code, _, err = pl(capsys, *args, "--episodes", 3)
    assert code == 2 and f"rollouts store already exists: {store}" in err and "--resume" in err
    assert snapshot(tmp_path) == before
    from policylens.rollouts import open as open_store

    assert pl(capsys, *args, "--episodes", 3, "--resume")[0] == 0 and len(open_store(store)) == 3
    assert pl(capsys, *args, "--episodes", 1, "--overwrite")[0] == 0 and len(open_store(store)) == 1


# ------------------------------------------------------------------------------------------------ every command
def _commands(w: Path, t: Path) -> dict:
    """name -> (argv, {file: text} standing for an earlier run's output); ``w`` the world, ``t`` this test's
    folder. A zoo model's outputs land in ``runs/`` of the working directory (``t``)."""
    run, rnn, sim = w / "run", w / "sim" / "rnn", ["--progress", "false"]
    dt = "zoo:dt-minigrid-do8"
    return {
        "train": (["train", "--env", ENV, "--out", t / "o"], {"o/train.csv": "update\n"}),
        "record": (["record", run, "--out", t / "o.zarr"], {"o.zarr/zarr.json": "{}"}),
        "attribute": (["attribute", run, "--out", t / "a.npz"], {"a.npz": "earlier"}),
        "factorize": (["factorize", run, "--layer", "conv1", "--out", t / "d" / "dirs"], {"d/dirs.json": "{}"}),
        "featvis": (["featvis", run, "--layer", "conv1", "--out", t / "f"], {"f/featvis.json": "{}"}),
        "explore": (["explore", run, "--out", t / "e"], {"e/index.html": "earlier"}),
        "explore-no-reuse": (["explore", run, "--out", t / "e", "--reuse", "false"], {"e/index.html": "earlier"}),
        "edit": (["edit", run, "--layer", "conv1", "--channel", "0", "--out", t / "o"], {"o/agent/config.json": "{}"}),
        "compare": (["compare", run, run, "--episodes", 2, "--out", t / "c"], {"c/compare.json": "{}"}),
        "sweep": (["sweep", "levels", "--out", t / "s"], {"s/sweep.json": "{}"}),
        "demo": (["demo", "--out", t / "m"], {"m/report.md": "earlier"}),
        "dt collect": (["dt", "collect", run, "--out", t / "tr.zarr"], {"tr.zarr/zarr.json": "{}"}),
        "dt train": (["dt", "train", "--store", t / "tr.zarr", "--out", t / "o"], {"o/agent/config.json": "{}"}),
        "dt calibrate": (["dt", "calibrate", dt], {"runs/dt-minigrid-do8/calibration.json": "{}"}),
        "dt analyze": (["dt", "analyze", dt, "--windows", 64], {"runs/dt-minigrid-do8/report.md": "earlier"}),
        "dt ablate": (["dt", "ablate", dt, "--windows", 64], {"runs/dt-minigrid-do8/ablate/ablation.json": "{}"}),
        "sim train": (["sim", "train", rnn, "--out", t / "o"], {"o/config.json": "{}"}),
        **{f"sim {c}": (["sim", c, rnn, "--out", t / "o", *sim], {"o/earlier.json": "{}"})
           for c in ("fidelity", "hx", "sample", "saliency", "behaviours", "report")},
        "sim optimize": (["sim", "optimize", rnn, "--name", "mine", "--out", t / "o", *sim], {"o/mine/x.json": "{}"}),
        "sim swap": (["sim", "swap", rnn, "--directions", w / "hx-dirs", "--swap", "0:1", "--out", t / "o", *sim],
                     {"o/swap.json": "{}"}),
    }


COMMANDS = list(_commands(Path("w"), Path("t")))


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.slow
def test_every_command_refuses_an_earlier_output_and_leaves_it_as_it_was(name, world, tmp_path, capsys,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, earlier = _commands(world, tmp_path)[name]
    for rel, text in earlier.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    before, world_before = snapshot(tmp_path), snapshot(world)
    code, _, err = pl(capsys, *argv)
    assert code == 2 and "already exists" in err and "--overwrite" in err and "Traceback" not in err, err
    assert snapshot(tmp_path) == before and snapshot(world) == world_before


@pytest.mark.slow
def test_overwrite_replaces_a_folder_output_whole(world, tmp_path, capsys):
    out = tmp_path / "f"
    out.mkdir()
    (out / "stale.npz").write_text("from an earlier run")
    args = ["featvis", world / "run", "--layer", "conv1", "--k", 2, "--max-frames", 32, "--out", out,
            "--progress", "false"]
    code, stdout, _ = pl(capsys, *args, "--overwrite")
    assert code == 0 and not (out / "stale.npz").exists() and (out / "featvis.json").is_file()
    assert str(out) in stdout  # it says where it wrote


# ------------------------------------------------------------------------------------------------ the zoo
@pytest.fixture
def zoo_copy(tmp_path, monkeypatch):
    """A copy of the zoo's MiniGrid agent and decision transformer as the zoo, the working directory beside it."""
    for name in ("minigrid-do8-rgb", "dt-minigrid-do8", "minigrid-do8-recurrent/agent"):
        shutil.copytree(REAL_ZOO / name, tmp_path / "zoo" / name)
    monkeypatch.setenv("POLICYLENS_ZOO", str(tmp_path / "zoo"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "zoo"


@pytest.mark.slow
def test_commands_on_zoo_agents_write_to_runs_and_leave_the_zoo_unchanged(zoo_copy, capsys):
    before = snapshot(zoo_copy)
    agent, dt, quiet = "zoo:minigrid-do8-rgb", "zoo:dt-minigrid-do8", ["--progress", "false"]
    runs = Path("runs").resolve()
    steps = [
        (["record", agent, "--episodes", 2, *quiet], runs / "minigrid-do8-rgb" / "rollouts.zarr"),
        (["attribute", agent, "--episodes", 0, "--method", "saliency", *quiet],
         runs / "minigrid-do8-rgb" / "analysis" / "attribution" / "input-saliency-value.zarr"),
        (["factorize", agent, "--layer", "embed", "--k", 2, "--max-frames", 64],
         runs / "minigrid-do8-rgb" / "analysis" / "directions" / "embed-nmf-activations.json"),
        (["featvis", agent, "--layer", "embed", "--k", 2, "--max-frames", 32, *quiet],
         runs / "minigrid-do8-rgb" / "analysis" / "featvis" / "embed" / "featvis.json"),
        (["explore", agent, "--episodes", 0, "--steps", 8, "--k", 2, "--tree-k", 0, "--nmf-frames", 16, *quiet],
         runs / "minigrid-do8-rgb" / "explorer" / "index.html"),
        (["dt", "collect", agent, "--episodes", 2, *quiet], runs / "minigrid-do8-rgb" / "trajectories.zarr"),
        (["record", "zoo:minigrid-do8-recurrent", "--episodes", 2, *quiet],
         runs / "minigrid-do8-recurrent" / "rollouts.zarr"),
        (["sim", "hx", "zoo:minigrid-do8-recurrent", "--sim", "none", "--k", 2, "--clusters", 2, "--tsne-frames", 0,
          "--plots", "false", *quiet], runs / "minigrid-do8-recurrent" / "analysis" / "hx" / "summary.json"),
        (["dt", "calibrate", dt, "--episodes", 1, "--rtgs", "0.9", "--table-rtgs", "0.9", *quiet],
         runs / "dt-minigrid-do8" / "calibration.json"),
        (["dt", "calibrate", zoo_copy / "dt-minigrid-do8", "--episodes", 1, "--rtgs", "0.9", "--table-rtgs", "0.9",
          "--overwrite", *quiet], runs / "dt-minigrid-do8" / "behaviours.md"),  # a path into the zoo, too
        (["dt", "analyze", dt, "--episodes", 0, "--windows", 64, *quiet], runs / "dt-minigrid-do8" / "report.md"),
        (["dt", "ablate", dt, "--episodes", 1, "--rtgs", "0.9", "--components", "blocks.0.mlp", "--windows", 64,
          *quiet], runs / "dt-minigrid-do8" / "ablate" / "ablation.json"),
    ]
    for argv, written in steps:
        code, out, err = pl(capsys, *argv)
        assert code == 0, (argv, err[-2000:])
        assert written.exists(), argv
        assert f"runs/{written.relative_to(runs).parts[0]}" in out, (argv, out)  # it says where it wrote
    assert snapshot(zoo_copy) == before
    code, _, err = pl(capsys, "record", agent, "--episodes", 1, "--out", zoo_copy / "minigrid-do8-rgb" / "r.zarr")
    assert code == 2 and "read-only" in err and snapshot(zoo_copy) == before


# ------------------------------------------------------------------------------------------------ dt on the zoo
@pytest.mark.slow
@pytest.mark.parametrize("name", ["dt-minigrid-do8", "dt-minigrid-do8-raw"])
def test_the_zoo_decision_transformer_analyses_as_shipped(name, tmp_path, monkeypatch, capsys):
    """Its training store is not committed: analyze and (mean) ablate read the windows it ships, write runs/NAME."""
    monkeypatch.chdir(tmp_path)
    model = REAL_ZOO / name
    before = snapshot(model)
    code, out, err = pl(capsys, "dt", "analyze", f"zoo:{name}", "--episodes", 0, "--windows", 500,
                        "--progress", "false")
    assert code == 0, err[-2000:]
    analysis = tmp_path / "runs" / name / "analysis"
    for part in ("situations.json", "examples.json", "patching.json", "circuits.json", "means.safetensors",
                 "windows.safetensors", "summary.json"):
        assert (analysis / part).is_file(), part
    import json

    summary = json.loads((analysis / "summary.json").read_text())
    assert summary["windows"] == 500 and summary["windows_from"] == str(model / "windows.safetensors")
    code, out, err = pl(capsys, "dt", "ablate", f"zoo:{name}", "--episodes", 2, "--rtgs", "0.9",
                        "--components", "blocks.0.attn.head1", "--progress", "false")
    assert code == 0 and f"runs/{name}/ablate/ablation.json" in out, err[-2000:]
    assert snapshot(model) == before


def test_without_store_or_windows_the_error_says_how_to_make_the_store(tmp_path, monkeypatch, capsys):
    shutil.copytree(REAL_ZOO / "dt-minigrid-do8" / "agent", tmp_path / "zoo" / "dt" / "agent")
    monkeypatch.setenv("POLICYLENS_ZOO", str(tmp_path / "zoo"))
    monkeypatch.chdir(tmp_path)
    code, _, err = pl(capsys, "dt", "analyze", "zoo:dt", "--episodes", 0)
    assert code == 2 and "`policylens dt collect AGENT --episodes N --out runs/dt/trajectories.zarr`" in err
