"""Blinding by ground truth: the direction chosen locates the entity, and only it is removed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from policylens import agents, rollouts
from policylens.edit import blind
from policylens.rollouts import RecordConfig, record
from policylens.scores import episode_masks


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    out = tmp_path_factory.mktemp("blind") / "r.zarr"
    store = rollouts.open(record(RecordConfig(run="zoo:minigrid-do8-rgb", episodes=6, num_envs=2, out=str(out),
                                              progress=False)))
    obs = np.concatenate([store.episode(i)["obs"] for i in range(len(store))])
    per = [episode_masks(store, i, kinds=["agent", "ball", "goal"]) for i in range(len(store))]
    return obs, {k: np.concatenate([m[k] for m in per]) for k in per[0]}


def conv1_of(agent, x):  # what the consumer of `embed` makes of an embedding (B, 32, 7, 7)
    with torch.no_grad():
        return agent.conv1(x)


def test_blind_removes_the_ball_direction_and_passes_the_others(recorded):
    obs, masks = recorded
    agent = agents.load("zoo:minigrid-do8-rgb")
    edited, info = blind(agent, obs, masks, "ball", layer="embed", k=6)
    chosen = info["scores"]["directions"][info["chosen"]]
    assert chosen["best_entity"] == "ball" and chosen["entities"]["ball"]["nmi"] > 0.5
    assert info["edit"]["how"] == "fold" and info["edit"]["keep"] is not None
    d = info["directions"]
    grid = lambda v: v[None, :, None, None].expand(1, -1, 7, 7).contiguous()  # noqa: E731
    bias_only = conv1_of(agent, torch.zeros(1, 32, 7, 7))
    torch.testing.assert_close(conv1_of(edited, grid(d[info["chosen"]])), bias_only, atol=1e-4, rtol=0)
    for j in range(len(d)):
        if j != info["chosen"]:
            torch.testing.assert_close(conv1_of(edited, grid(d[j])), conv1_of(agent, grid(d[j])), atol=1e-4, rtol=1e-4)
    # seed 001's orthogonal projection of the same direction disturbs some of the others
    plain, _ = blind(agent, obs, masks, "ball", layer="embed", k=6, keep_others=False)
    moved = max(float((conv1_of(plain, grid(d[j])) - conv1_of(agent, grid(d[j]))).abs().max())
                for j in range(len(d)) if j != info["chosen"])
    assert moved > 1e-2


def test_blind_names_the_entities_it_has(recorded):
    obs, masks = recorded
    with pytest.raises(KeyError, match="ball"):
        blind(agents.load("zoo:minigrid-do8-rgb"), obs, masks, "saw", layer="embed")
