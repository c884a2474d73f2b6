"""rl-attention's attention maps over frames: the maps as the layer gives them, a strip per run, and the attention
sweep's figure from its runs' recorded frames."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from policylens import agents
from policylens.attention_strip import attention_maps, attention_strip, frame_pictures
from policylens.hooks import capture

ENV = "minigrid:MiniGrid-Empty-5x5-v0?obs=symbolic"


def attention_agent(seed, obs_shape=(7, 7, 3), num_actions=3):
    torch.manual_seed(seed)
    cfg = dict(arch="attention", obs_shape=obs_shape, num_actions=num_actions, options={"base": "cnn"})
    return agents.build(cfg).eval(), cfg


def test_maps_are_the_layers_own_averaged_over_heads():
    agent, _ = attention_agent(0)
    obs = torch.randint(0, 6, (4, 7, 7, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    maps = attention_maps(agent, obs)
    with torch.no_grad(), capture(agent, "attention") as cache:
        agent(obs)
    np.testing.assert_allclose(maps, cache["attention"].mean(1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(maps.reshape(4, -1).sum(1), 1, rtol=1e-5)
    with pytest.raises(ValueError, match="an attention map is"):
        attention_maps(agent, obs, layer="fc")


def test_frames_are_drawn_as_the_agent_sees_them():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(frame_pictures(rgb), rgb)
    stack = np.zeros((2, 8, 8, 4), np.uint8)
    stack[..., 3] = 200  # the newest frame
    assert frame_pictures(stack).shape == (2, 8, 8, 3) and (frame_pictures(stack) == 200).all()


@pytest.mark.slow
def test_a_strip_has_a_row_per_run_and_a_column_per_frame(tmp_path):
    obs = np.random.default_rng(2).integers(0, 256, (3, 28, 28, 3), dtype=np.uint8)
    runs = {"coef 0": attention_agent(0, (28, 28, 3))[0], "coef 0.005": attention_agent(1, (28, 28, 3))[0]}
    path = attention_strip(runs, obs, tmp_path / "strip.png", title="two runs")
    import matplotlib.image

    picture = matplotlib.image.imread(path)  # (H, W, 4)
    assert picture.shape[0] == int(1.9 * 2 * 120) and picture.shape[1] == int(1.6 * 3 * 120)
    with pytest.raises(ValueError, match="at least one agent"):
        attention_strip({}, obs, tmp_path / "none.png")


@pytest.mark.slow
def test_the_attention_sweep_draws_its_runs_over_the_first_runs_frames(tmp_path):
    from policylens.rollouts import RecordConfig, record
    from policylens.sweep import attention_figure

    rows = []
    for seed, coef in ((0, 0.0), (1, 0.005)):
        name = f"attention-{coef:g}"
        agent, cfg = attention_agent(seed, num_actions=7)
        agents.save_agent(agent, cfg, tmp_path / name / "agent", extra={"env": ENV})
        rows.append({"name": name, "attention_entropy_coef": coef})
    assert attention_figure(tmp_path, rows) is None  # nothing recorded: no strip
    record(RecordConfig(run=str(tmp_path / rows[0]["name"]), episodes=1, out=str(tmp_path / rows[0]["name"] /
                                                                                "rollouts.zarr"), progress=False))
    path = attention_figure(tmp_path, rows, frames=4)
    assert path == tmp_path / "attention_strip.png" and path.stat().st_size > 1000
