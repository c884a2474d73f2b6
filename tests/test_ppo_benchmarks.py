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
