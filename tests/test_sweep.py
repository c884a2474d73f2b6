"""policylens sweep: one run per setting, train vs held-out evaluation, resumable, plotted."""
from __future__ import annotations

import json

import pytest

from policylens.sweep import SweepConfig, main, settings, train_config

TRAIN = ("--preset minigrid --env minigrid:MiniGrid-Empty-5x5-v0?obs=symbolic --arch cnn --total-frames 512 "
         "--num-envs 4 --num-steps 64 --num-minibatches 2 --update-epochs 1")


@pytest.mark.slow
def test_levels_sweep_trains_evaluates_both_splits_and_skips_done_runs(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["levels", "--levels", "2,0", "--train-args", TRAIN, "--episodes", "6", "--out", str(out),
            "--progress", "false", "--score-episodes", "2", "--score-k", "3"]
    main(argv)
    result = json.loads((out / "sweep.json").read_text())
    assert [r["name"] for r in result["runs"]] == ["levels-2", "levels-0"]
    two = result["runs"][0]
    assert "num_levels=2" in two["env"] and "start_level=0" in two["env"]
    assert two["train"]["episodes"] == two["held_out"]["episodes"] == 6
    scored = two["interpretability"]  # NMF of the first conv layer scored against the entity masks
    assert scored["layer"] == "embed" and 0 <= scored["interpretable_share"] <= 1 and scored["frames"] > 0
    assert (out / "sweep.png").stat().st_size > 1000
    assert "held-out" in capsys.readouterr().out
    weights = out / "levels-2" / "agent" / "weights.safetensors"
    before = weights.stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="sweep already exists.*--resume"):
        main(argv)  # an existing sweep is not touched unless told
    assert weights.stat().st_mtime_ns == before
    main([*argv, "--resume"])  # done runs are read back, not retrained
    assert weights.stat().st_mtime_ns == before
    assert json.loads((out / "sweep.json").read_text())["runs"] == result["runs"]


@pytest.mark.slow
def test_an_interrupted_setting_resumes(tmp_path):
    cfg = SweepConfig(train_args=TRAIN, out=str(tmp_path))
    name, setting = settings(cfg)[0]
    run_dir = tmp_path / name
    assert not train_config(cfg, run_dir, setting).resume
    from policylens.train.ppo import train

    train(train_config(cfg, run_dir, setting))  # trained but never evaluated: no sweep.json
    assert train_config(cfg, run_dir, setting).resume


def test_attention_settings_and_bad_values():
    cfg = SweepConfig(kind="attention", coefs="0,0.005")
    assert settings(cfg) == [("attention-0", {"arch": "attention", "attention_entropy_coef": 0.0}),
                             ("attention-0.005", {"arch": "attention", "attention_entropy_coef": 0.005})]
    with pytest.raises(ValueError, match="--levels"):
        settings(SweepConfig(levels="10,many"))
    with pytest.raises(ValueError, match="unknown sweep kind"):
        settings(SweepConfig(kind="colours"))


def _row(name, n, seed, train, held_out, share=None):
    row = {"name": name, "num_levels": n, "seed": seed, "train": {"success_rate": train, "ci95": [train - .1, train + .1]},
           "held_out": {"success_rate": held_out, "ci95": [held_out - .1, held_out + .1]}}
    if share is not None:
        row["interpretability"] = {"interpretable_share": share, "interpretable_share_spread": {"min": share - .05, "max": share + .05}}
    return row


@pytest.mark.slow
def test_seeds_multiply_the_settings_and_group_joins_them(tmp_path):
    cfg = SweepConfig(levels="10,0", seeds="1,2")
    assert settings(cfg) == [("levels-10-seed1", {"num_levels": 10, "seed": 1}),  # every value's first seed first
                             ("levels-0-seed1", {"num_levels": 0, "seed": 1}),
                             ("levels-10-seed2", {"num_levels": 10, "seed": 2}),
                             ("levels-0-seed2", {"num_levels": 0, "seed": 2})]
    assert train_config(SweepConfig(train_args=TRAIN, seeds="3"), tmp_path / "r", settings(SweepConfig(seeds="3"))[0][1]).seed == 3
    with pytest.raises(ValueError, match="--seeds"):
        settings(SweepConfig(seeds="1,x"))
    from policylens.sweep import group, plot

    rows = [_row("a", 10, 1, 1.0, 0.4, 0.2), _row("b", 10, 2, 0.8, 0.6, 0.4), _row("c", 0, 1, 0.9, 0.9, 0.7),
            _row("d", 0, 2, 0.7, 0.7)]
    groups = group(rows, "num_levels")
    assert [g["num_levels"] for g in groups] == [10, 0] and groups[0]["seeds"] == [1, 2]
    assert groups[0]["train"]["success_rate"] == pytest.approx(0.9) and groups[0]["held_out"]["range"] == [0.4, 0.6]
    assert groups[0]["interpretable_share"]["mean"] == pytest.approx(0.3)
    assert groups[1]["interpretable_share"]["per_seed"] == [0.7]  # an unscored run leaves the mean alone
    assert groups[0]["held_out"]["ci95_envelope"] == pytest.approx([0.3, 0.7])  # seed 1's low end, seed 2's high end
    assert groups[0]["interpretable_share"]["restart_envelope"] == pytest.approx([0.15, 0.45])
    assert plot({"kind": "levels", "runs": rows}, tmp_path / "s.png").stat().st_size > 1000
