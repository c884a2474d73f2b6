"""policylens train, record and evaluate on atari:breakout at tiny sizes (real ALE, real OCAtari)."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("ale_py")
pytest.importorskip("ocatari")

from policylens.cli import main  # noqa: E402

ENV = "atari:breakout?max_frames=800&episodic_life=true&clip_reward=true"


@pytest.mark.slow
def test_train_record_evaluate_on_breakout_with_the_nature_agent(tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", "--env", ENV, "--arch", "nature", "--num-envs", "2", "--num-steps", "8", "--total-frames", "16",
          "--num-minibatches", "1", "--update-epochs", "1",
          "--out", str(run), "--progress", "false"])
    assert (run / "agent" / "weights.safetensors").is_file()

    main(["record", str(run), "--env", "atari:breakout?max_frames=200", "--episodes", "2", "--num-envs", "2",
          "--progress", "false"])
    from policylens.rollouts import open as open_store
    from policylens.scores.masks import episode_masks

    store = open_store(run / "rollouts.zarr")
    assert len(store) == 2 and store.metadata["obs_shape"] == [84, 84, 4]
    ep = store.episode(0)
    masks = episode_masks(store, 0)  # from the recorded OCAtari entities
    assert {"player", "ball", "block"} <= set(masks) and masks["player"].shape == (len(ep["obs"]), 84, 84)
    assert masks["player"].any(axis=(1, 2)).all()

    capsys.readouterr()
    main(["evaluate", str(run), "--env", ENV.replace("800", "240"), "--episodes", "3", "--json", "--progress", "false",
          "--workers", "1"])
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 3 and sum(result["causes"].values()) == 3
    assert set(k for k, v in result["causes"].items() if v) <= {"ball", "timeout"}
    setup = result["setup"]["env"]  # whole games, scored as the game scores, causes labelled
    assert "ground_truth=true" in setup and "episodic_life" not in setup and "clip_reward" not in setup
