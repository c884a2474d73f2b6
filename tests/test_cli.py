"""End-to-end smoke test: every command of the CLI on tiny sizes, as a user runs it."""
import json
import subprocess
import sys

import pytest

from policylens.cli import COMMANDS

ENV = "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0"


def pl(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "policylens.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_help_lists_every_command_and_each_command_explains_its_options(capsys):
    top = pl("--help").stdout  # the installed entry point, once
    from policylens.cli import main

    for name in COMMANDS:  # each command's --help, in process (a subprocess each costs a torch import)
        assert name in top
        try:
            main([name, "--help"])
            code = 0
        except SystemExit as e:
            code = e.code
        text = capsys.readouterr().out
        assert code in (0, None) and "usage: policylens " + name in text and "--" in text, name


@pytest.mark.slow
def test_unknown_command_and_bad_input_are_clear_errors(tmp_path):
    proc = pl("trian", check=False)
    assert proc.returncode == 2 and "train" in proc.stderr
    proc = pl("train", "--preset", "nope", "--out", tmp_path / "x", check=False)
    assert proc.returncode == 2 and "procgen-easy" in proc.stderr and "Traceback" not in proc.stderr
    proc = pl("train", "--env", "minigrid:MiniGrid-Nope-v0", "--out", tmp_path / "x", check=False)
    assert proc.returncode == 2 and "MiniGrid-Dynamic-Obstacles-8x8-v0" in proc.stderr
    proc = pl("train", "--arch", "resnet", "--env", ENV, "--out", tmp_path / "x", check=False)
    assert proc.returncode == 2 and "impala" in proc.stderr
    proc = pl("layers", tmp_path / "missing", check=False)
    assert proc.returncode == 2 and "config.json" in proc.stderr


@pytest.mark.slow
def test_train_record_evaluate_layers_demo(tmp_path):
    run = tmp_path / "run"
    pl("train", "--env", ENV, "--arch", "mlp", "--num-envs", 2, "--num-steps", 16, "--total-frames", 64,
       "--out", run, "--progress", "false")
    assert (run / "agent" / "weights.safetensors").is_file() and (run / "curve.png").is_file()

    layers = pl("layers", run).stdout
    assert "fc1" in layers and "(B, 256)" in layers

    pl("record", run, "--episodes", 3, "--num-envs", 2, "--progress", "false")
    from policylens.rollouts import open as open_store

    assert len(open_store(run / "rollouts.zarr")) == 3

    out = pl("evaluate", run, "--episodes", 6, "--json", "--progress", "false").stdout
    result = json.loads(out)
    assert result["episodes"] == 6 and sum(result["causes"].values()) == 6

    demo = tmp_path / "demo"
    pl("demo", "--out", demo, "--agent", run, "--record-episodes", 2, "--eval-episodes", 5, "--workers", 1)
    report = (demo / "report.md").read_text()
    assert "success rate" in report and "## Training curve" in report and (demo / "evaluation.json").is_file()
    assert "no spatial (conv) layer" in report  # an MLP agent: the vision section says why it is skipped


@pytest.mark.slow
def test_demo_vision_section_on_the_zoo_agent(tmp_path):
    demo = tmp_path / "demo"
    pl("demo", "--out", demo, "--record-episodes", 3, "--eval-episodes", 8, "--workers", 1)
    report = (demo / "report.md").read_text()
    for part in ("## Directions, scored against ground truth", "| direction | best entity |", "## Attribution",
                 "## Editing: blind the agent to balls", "| keep-others |", "| plain |", "## The trajectory explorer"):
        assert part in report
    for name in ("explorer/index.html", "directions.png", "edit-compare.png", "analysis/scores.json", "analysis/edit.json",
                 "analysis/directions/embed-nmf.safetensors"):
        assert (demo / name).is_file(), name
    edit = json.loads((demo / "analysis" / "edit.json").read_text())
    assert edit["keep-others"]["compare"]["episodes"] == 8
    control = edit["keep-others"]["compare"]["control"]  # the original with balls invisible, same levels
    assert control["invisible"] == ["ball"] and "invisible=ball" in control["env"] and control["episodes"] == 8
    assert "The control (Understanding RL Vision's invisible buzzsaws)" in report
    for name in ("keep-others", "plain"):  # each edit's share over every NMF restart
        assert len(edit[name]["restarts"]) == 5 and edit[name]["share_spread"]["n"] <= 5
