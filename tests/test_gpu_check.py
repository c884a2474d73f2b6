"""benchmarks.gpu_check: without CUDA, a CPU dry run of every part at tiny sizes; a failing part is reported and
the others still run."""
import json

import benchmarks.gpu_check as gpu_check
import pytest
import torch

PARTS = {"ppo_atari", "ppo_procgen_easy", "sim_train", "cuda_tests"}
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the dry run is what a machine without CUDA runs")


@pytest.mark.slow
def test_without_cuda_a_dry_run_of_every_part_is_reported(tmp_path, capsys):
    out = tmp_path / "check.json"
    gpu_check.main(["--out", str(out)])
    assert "no CUDA device here" in capsys.readouterr().out
    filed = json.loads(out.read_text())
    assert filed["dry_run"] and not filed["cuda"] and filed["device"] == "cpu" and filed["failures"] == {}
    assert set(filed["parts"]) == PARTS
    ppo = gpu_check.PPO["cpu"]
    for name in ("ppo_atari", "ppo_procgen_easy"):
        part = filed["parts"][name]
        assert part["updates"] == ppo["updates"] and part["frames"] == ppo["updates"] * ppo["num_envs"] * ppo["num_steps"]
        assert part["frames_per_s"] > 0 and part["bf16"] == filed["bf16"]
    sim, part = gpu_check.SIM["cpu"], filed["parts"]["sim_train"]
    assert part["frames"] == sim["steps"] * sim["batch_size"] * sim["window"] and part["frames_per_s"] > 0
    assert filed["parts"]["cuda_tests"]["files"] == gpu_check.cuda_test_files()


def test_a_failing_part_is_reported_by_name_and_the_others_still_run(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_check.PPO, "cpu", {**gpu_check.PPO["cpu"], "num_minibatches": 10 ** 6})
    monkeypatch.setattr(gpu_check, "SIM_RUN", str(tmp_path / "no-such-run"))
    out = tmp_path / "check.json"
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(["--out", str(out)])
    assert exit_.value.code == 1
    filed = json.loads(out.read_text())
    assert set(filed["failures"]) == {"ppo_atari", "ppo_procgen_easy", "sim_train"}
    assert "--num-minibatches" in filed["failures"]["ppo_atari"] and "no-such-run" in filed["failures"]["sim_train"]
    assert set(filed["parts"]) == {"cuda_tests"}
