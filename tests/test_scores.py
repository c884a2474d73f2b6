"""Quantitative interpretability: entity scores, attribution mass, sparsity, deletion/insertion, sanity check."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from policylens import agents, rollouts
from policylens.agents import AgentOutput
from policylens.rollouts import RecordConfig, record
from policylens.scores import (
    attribution_entity_mass,
    deletion_insertion,
    direction_entity_scores,
    episode_masks,
    mutual_information,
    pool_masks,
    randomisation_check,
    sparsity,
)


def blobs(n=20, size=8, seed=0):
    """Random sparse boolean masks (N, size, size) of a made-up entity."""
    return np.random.default_rng(seed).random((n, size, size)) < 0.06


def test_mutual_information_of_identical_and_independent_arrays():
    a = blobs(200, seed=1)
    p = a.mean()
    h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    assert mutual_information(a, a) == pytest.approx(h)
    assert mutual_information(a, blobs(200, seed=2)) < 0.01 * h


def test_a_direction_that_fires_on_an_entity_is_interpretable_and_noise_is_not():
    ball, goal = blobs(seed=3), blobs(seed=4)
    rng = np.random.default_rng(5)
    maps = np.stack([ball * 2.0, rng.random(ball.shape)], axis=1)  # (N, 2, h, w): on-ball, noise
    s = direction_entity_scores(maps, {"ball": ball.astype(float), "goal": goal.astype(float)}, labels=["a", "b"])
    on, noise = s["directions"]
    assert on["best_entity"] == "ball" and on["interpretable"]
    assert on["entities"]["ball"]["precision"] == pytest.approx(1.0)
    assert on["entities"]["ball"]["nmi"] == pytest.approx(1.0)
    assert on["entities"]["ball"]["lift"] == pytest.approx(1 / ball.mean())
    assert not noise["interpretable"] and noise["entities"]["ball"]["lift"] < 1.5
    assert s["interpretable_share"] == 0.5


def test_an_entity_smaller_than_half_a_cell_is_there_where_it_covers_most():
    """An Atari ball covers a sliver of a coarse layer's cell (here at most 0.2): "covers half the cell" would
    never hold and leave every direction with NMI 0; it counts as there where it covers at least half its most,
    and a direction firing exactly there locates it perfectly. Entities that fill half a cell keep 0.5."""
    ball = blobs(seed=3)
    cover = ball * 0.2  # the ball's share of each cell it is in
    cover[ball] -= 0.15 * (np.arange(ball.sum()) % 2)  # half of its cells hold only 0.05 (a cell it grazes)
    maps = np.stack([(cover >= 0.1) * 2.0, np.random.default_rng(5).random(ball.shape)], axis=1)
    s = direction_entity_scores(maps, {"ball": cover, "goal": blobs(seed=4).astype(float)})
    on = s["directions"][0]["entities"]["ball"]
    assert on["present_at"] == pytest.approx(0.1) and s["directions"][0]["entities"]["goal"]["present_at"] == 0.5
    assert on["nmi"] == pytest.approx(1.0) and s["directions"][0]["interpretable"]
    assert s["directions"][1]["entities"]["ball"]["nmi"] < 0.05


def test_attribution_mass_splits_between_entities_and_background():
    ball = blobs(seed=6).astype(float)
    attr = np.where(ball > 0, -3.0, 0.0)[:, None].repeat(4, 1)  # (N, C, h, w): all mass on the ball, signed
    attr[:, :, 0, 0] += np.where(ball[:, 0, 0] > 0, 0, 1.0)[:, None]
    mass = attribution_entity_mass(attr, {"ball": ball})
    assert mass["ball"]["mass"] + mass["background"]["mass"] == pytest.approx(1.0)
    assert mass["ball"]["mass"] > 0.9 and mass["ball"]["ratio"] > 10


def test_sparsity_of_one_hot_and_uniform_attributions():
    one = torch.zeros(3, 4, 5, 5)
    one[:, 1, 2, 2] = -2.0
    assert sparsity(one) == pytest.approx(1.0)
    assert sparsity(torch.ones(3, 4, 5, 5)) == pytest.approx(10 / 100)


class LinearAgent(nn.Module):
    """value = sum(w * obs): the exact attribution of position p is w_p * obs_p."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float32))  # (H, W, C)
        self.pi = nn.Linear(1, 2)

    def forward(self, obs, state=None, first=None):
        v = (obs.float() * self.w).sum((1, 2, 3))  # (N,)
        return AgentOutput(self.pi(v[:, None]), v, None)


def test_deletion_of_the_true_attribution_beats_a_random_order():
    torch.manual_seed(0)
    agent = LinearAgent(torch.rand(6, 6, 1))
    obs = torch.rand(5, 6, 6, 1)
    attr = agent.w.detach() * obs  # (N, H, W, C): exact contributions
    c = deletion_insertion(agent, obs, attr, fractions=6)
    for mode, start, end in (("deletion", 1, 0), ("insertion", 0, 1)):
        for order in ("attribution", "random"):
            curve = c[f"{mode}_{order}"]
            assert curve[0] == pytest.approx(start, abs=1e-5) and curve[-1] == pytest.approx(end, abs=1e-5)
    assert c["deletion_attribution_auc"] < c["deletion_random_auc"]
    assert c["insertion_attribution_auc"] > c["insertion_random_auc"]
    assert np.all(np.diff(c["deletion_attribution"]) <= 1e-6)  # removing positive contributions only lowers it


def test_deletion_on_a_hidden_layer_runs_and_ends_at_the_zeroed_layer():
    torch.manual_seed(0)
    agent = agents.build(dict(arch="cnn", obs_shape=(7, 7, 3), num_actions=3, obs_scale=0.1)).eval()
    obs = torch.randint(0, 10, (4, 7, 7, 3), dtype=torch.uint8)
    from policylens.attribution import attribute

    attr = attribute(agent, obs, layer="conv1", method="ig")
    c = deletion_insertion(agent, obs, attr, layer="conv1", fractions=4)
    assert c["deletion_attribution"][0] == pytest.approx(1, abs=1e-5)
    assert c["deletion_attribution"][-1] == pytest.approx(0, abs=1e-5)


def test_randomisation_check_decorrelates_and_leaves_the_agent_alone():
    torch.manual_seed(0)
    agent = agents.build(dict(arch="cnn", obs_shape=(7, 7, 3), num_actions=3, obs_scale=0.1)).eval()
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    obs = torch.randint(0, 10, (4, 7, 7, 3), dtype=torch.uint8)
    r = randomisation_check(agent, obs, layer="conv1", method="grad_x_act")
    names = [s["randomised_down_to"] for s in r["stages"]]
    assert names[0] in ("v", "pi") and len(names) >= 4
    assert r["stages"][-1]["spearman"] < 0.9
    assert all(torch.equal(before[k], v) for k, v in agent.state_dict().items())


@pytest.mark.slow
def test_episode_masks_of_a_recorded_minigrid_store(tmp_path):
    cfg = dict(arch="cnn", obs_shape=[7, 7, 3], num_actions=3, obs_scale=0.1)
    agents.save_agent(agents.build(cfg), cfg, tmp_path / "run" / "agent",
                      extra={"env": "minigrid:MiniGrid-Dynamic-Obstacles-6x6-v0"})
    store = rollouts.open(record(RecordConfig(run=str(tmp_path / "run"), episodes=3, num_envs=1, progress=False)))
    ep = store.episode(0)
    masks = episode_masks(store, 0)
    assert np.array_equal(masks["ball"], ep["obs"][..., 0] == 6)  # the symbolic view's ball cells, frame by frame
    pooled = pool_masks(masks, (3, 3))
    assert pooled["ball"].shape == (len(ep["obs"]), 3, 3) and pooled["ball"].max() <= 1
