"""The PPO benchmarks run end to end at smoke-test sizes and file what their READMEs read."""
from __future__ import annotations

import json

import benchmarks.common as common
import pytest


@pytest.mark.slow
def test_ppo_vs_reference_quick_files_both_trainers_and_the_bounds(tmp_path, monkeypatch):
    import benchmarks.ppo_vs_reference as bench

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    bench.main(["--quick", "--setups", "minigrid-mlp,coinrun-impala"])
    filed = json.loads((tmp_path / "ppo_vs_reference_quick.json").read_text())["runs"]
    assert set(filed) == {"minigrid-mlp", "coinrun-impala"}
    for name, r in filed.items():
        s = r["summary"]
        assert s["frames"] == 2 * 4 * 16 and s["seeds"] == [1]
        assert s["fps_ours"] > 0 and s["fps_reference"] > 0 and s["fps_ratio_ours_over_reference"] > 0
        b = r["bounds_frames_per_s"]
        a, n = b["env_random_actions"], b["net_ours"]
        assert b["combined_ours"] <= min(a, n)  # 1 / (1/a + 1/b) < each (equal once rounded to 0.1)
        assert abs(b["combined_ours"] - 1 / (1 / a + 1 / n)) <= 0.1
        for who in ("ours", "reference"):
            assert [run["frames"] for run in r["runs"][who]] == [128]
        # the reference trains with our resolved hyperparameters
        assert (r["reference_config"]["num_envs"], r["reference_config"]["num_steps"]) == (4, 16)


@pytest.mark.slow
def test_minigrid_time_to_95_quick_trains_evaluates_and_plots(tmp_path, monkeypatch):
    import benchmarks.minigrid_time_to_95 as bench

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(bench, "RUNS", tmp_path / "runs")
    bench.main(["--quick", "--setups", "mlp,recurrent", "--threads", "1"])
    filed = json.loads((tmp_path / "minigrid_time_to_95_quick.json").read_text())
    runs = filed["runs"]
    assert set(runs) == {"mlp", "recurrent"} and filed["target"] == 0.95
    assert runs["mlp"]["held_out"]["episodes"] == 4 and runs["mlp"]["held_out"]["start_level"] == 1_000_000
    assert "reference" in runs["mlp"] and "reference" not in runs["recurrent"]  # CleanRL has no recurrent ppo.py
    assert runs["mlp"]["beside"]["before"]["cpus"] >= 1 and "loadavg_1_5_15" in runs["mlp"]["beside"]["after"] and runs["mlp"]["threads"] == 1
    assert (tmp_path / "minigrid_time_to_95_quick.png").stat().st_size > 5000
    assert (tmp_path / "runs" / "mlp" / "agent" / "config.json").is_file()


@pytest.mark.slow
def test_diversity_sweep_quick_files_the_sweep_its_groups_and_the_paper(tmp_path, monkeypatch):
    import benchmarks.diversity_sweep as bench

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    bench.main(["--quick", "--out", str(tmp_path / "sweep"), "--threads", "1"])
    filed = json.loads((tmp_path / "diversity_sweep_quick.json").read_text())
    assert [r["name"] for r in filed["runs"]] == ["levels-3-seed1", "levels-0-seed1"]
    assert [g["num_levels"] for g in filed["groups"]] == [3, 0]
    assert filed["command"].startswith("python -m benchmarks.diversity_sweep --quick")
    assert len(filed["paper"]["levels"]) == len(filed["paper"]["test"]["run 1"]) == 7
    assert (tmp_path / "diversity_sweep_quick.png").stat().st_size > 5000
    assert filed["planned"] == ["levels-3-seed1", "levels-0-seed1"]
    # --report files what has finished and trains nothing
    (tmp_path / "sweep" / "levels-0-seed1" / "sweep.json").unlink()
    bench.main(["--quick", "--out", str(tmp_path / "sweep"), "--report"])
    filed = json.loads((tmp_path / "diversity_sweep_quick.json").read_text())
    assert [r["name"] for r in filed["runs"]] == ["levels-3-seed1"] and len(filed["planned"]) == 2
    assert [g["num_levels"] for g in filed["groups"]] == [3]
    assert not (tmp_path / "sweep" / "levels-0-seed1" / "sweep.json").exists()


@pytest.mark.slow
def test_atari_attention_sweep_quick_files_each_run_then_reports_without_training(tmp_path, monkeypatch):
    import math

    import benchmarks.atari_attention_sweep as bench

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    out = tmp_path / "sweep"
    bench.main(["--quick", "--out", str(out), "--threads", "1"])
    filed = json.loads((tmp_path / "atari_attention_sweep_quick.json").read_text())
    assert filed["planned"] == ["attention-0-seed1", "attention-0.005-seed1"]
    assert [(r["coef"], r["seed"]) for r in filed["runs"]] == [(0.0, 1), (0.005, 1)]
    for r in filed["runs"]:
        assert r["frames"] == 4 * r["agent_steps"] == 2048 and r["games"] == 2 and r["score"] >= 0
        assert 0 < r["attention_entropy"] <= 2 * math.log(49) + 1e-6  # two 7x7 maps: at most uniform
        config = json.loads((out / r["name"] / "agent" / "config.json").read_text())
        assert config["agent"]["arch"] == "attention" and config["agent"]["options"]["base"] == "nature"
    assert "reducd but also reduces performance" in filed["paper"]["findings"]  # the write-up, verbatim
    assert (tmp_path / "atari_attention_sweep_quick.png").stat().st_size > 5000
    assert (tmp_path / "atari_attention_strip_quick.png").stat().st_size > 5000
    # --report files what is there and trains nothing: a run without its sweep.json is left out
    (out / "attention-0.005-seed1" / "sweep.json").unlink()
    bench.main(["--quick", "--out", str(out), "--report"])
    filed = json.loads((tmp_path / "atari_attention_sweep_quick.json").read_text())
    assert [r["name"] for r in filed["runs"]] == ["attention-0-seed1"]
    assert not (out / "attention-0.005-seed1" / "sweep.json").exists()
