"""Ground-truth entity masks agree with what the env itself encodes and draws."""
from __future__ import annotations

import numpy as np

from policylens import envs
from policylens.envs.masks import minigrid_masks

SPEC = "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs="
BALL, GOAL = 6, 8  # MiniGrid OBJECT_TO_IDX


def frames(obs_mode, steps=120, seed=3):
    env = envs.make(SPEC + obs_mode, num_envs=2, seed=seed)
    obs, rng = env.reset(seed), np.random.default_rng(seed)
    for _ in range(steps):
        ents = env.entities()
        for i in range(env.num_envs):
            yield obs[i], ents[i]
        obs, *_ = env.step(rng.integers(0, 3, env.num_envs))


def test_minigrid_masks_equal_the_symbolic_view_cell_for_cell():
    seen = 0
    for obs, ents in frames("symbolic"):
        m = minigrid_masks(ents, obs.shape)
        empty = np.zeros(obs.shape[:2], bool)
        assert np.array_equal(m.get("ball", empty), obs[..., 0] == BALL)
        assert np.array_equal(m.get("goal", empty), obs[..., 0] == GOAL)
        assert m["agent"].sum() == 1 and m["agent"][3, 6]  # bottom centre of the view, [x, y]
        seen += int(m.get("ball", empty).any())
    assert seen > 50  # balls were in view in many frames


def test_minigrid_rgb_masks_cover_the_drawn_balls():
    for obs, ents in frames("rgb", steps=40):
        m = minigrid_masks(ents, obs.shape)
        blue = (obs[..., 2] > 200) & (obs[..., 0] < 100) & (obs[..., 1] < 100)  # balls are drawn blue
        ball = m.get("ball", np.zeros(obs.shape[:2], bool))
        assert not (blue & ~ball).any()
        assert not ball.any() or blue[ball].mean() > 0.2
