"""Optimisation-based feature visualisation on real agents and non-RGB observations: the optimised image beats
the best dataset example it is compared with, a dead start gets going through redirected ReLU gradients, the
fft parameterisation decorrelates a grey frame stack, and the same seed gives the same image."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from policylens import agents, rollouts
from policylens.agents import build
from policylens.factors import collect_activations, nmf
from policylens.featvis import dataset_examples, direction_objective, optimize_batch
from policylens.featvis.optimize import optimize_position
from policylens.featvis.param import ImageParam, channel_basis

STACK = (84, 84, 4)  # Atari: 4 grey frames, oldest first


@pytest.fixture(scope="module")
def minigrid(tmp_path_factory):
    """The zoo's MiniGrid agent and frames it played (a few short episodes)."""
    out = tmp_path_factory.mktemp("fv") / "rollouts.zarr"
    rollouts.record(rollouts.RecordConfig(run="zoo:minigrid-do8-rgb", out=str(out), episodes=4, num_envs=4,
                                          max_steps=12, progress=False))
    store = rollouts.open(out)
    obs = store.read("obs", 0, store.num_frames)  # (N, 56, 56, 3)
    return agents.load("zoo:minigrid-do8-rgb"), obs


@pytest.mark.slow
def test_optimised_image_beats_the_best_dataset_example_of_a_real_agent(minigrid):
    agent, obs = minigrid
    torch.set_num_threads(1)
    directions = nmf(collect_activations(agent, torch.as_tensor(obs), "conv1"), 3, layer="conv1", restarts=1,
                     bootstrap=0)
    best = dataset_examples(agent, obs, directions, k=1).score[:, 0]  # (K,) best (frame, position) of each
    centre = optimize_position(agent, "conv1", "centre")
    assert centre == (3, 3)
    res = optimize_batch(agent, "conv1", directions.vectors, steps=48, jitter=0, position=centre,
                         reference_obs=obs)
    assert (res.objective >= best).all(), (res.objective, best)
    with torch.no_grad():  # the objective filed is the image's own, as the agent sees it
        again = direction_objective(agent, "conv1", torch.as_tensor(res.images), directions.vectors, centre)
    np.testing.assert_allclose(res.objective, again.numpy(), rtol=1e-5, atol=1e-6)


def dead_detector():
    """A MiniGrid cnn whose embed channel 0 is dead on any image but a red one (bias -0.5 after a red-minus-rest
    filter): at the grey start of the optimisation its gradient is zero."""
    torch.manual_seed(0)
    agent = build(dict(arch="cnn", obs_shape=(56, 56, 3), num_actions=3)).eval()
    with torch.no_grad():
        w = agent.embed.conv.weight  # (32, 3, 8, 8)
        w[0] = 0
        w[0, 0], w[0, 1:] = 1 / 64, -1 / 64
        agent.embed.conv.bias[0] = -0.5
    return agent


def test_redirected_relu_gets_a_dead_direction_going_and_leaves_no_hook():
    agent, red = dead_detector(), torch.eye(32)[[0]]
    kw = dict(steps=24, jitter=0, position=(3, 3))
    stuck = optimize_batch(agent, "embed", red, redirect=0, **kw)
    assert stuck.objective[0] == 0 and (stuck.history == 0).all()  # no gradient ever reaches the image
    going = optimize_batch(agent, "embed", red, **kw)
    assert going.objective[0] > 0.1
    r, g, b = going.images[0, 24:32, 24:32].reshape(-1, 3).mean(0)  # the centre cell turned red
    assert r > g + 50 and r > b + 50
    assert all(not m._forward_hooks for m in agent.modules())


def grey_stack_agent():
    torch.manual_seed(0)
    return build(dict(arch="nature", obs_shape=STACK, num_actions=4)).eval()


def stack_frames(n=6, seed=0):
    """Grey stacks whose 4 frames are nearly the same picture (a slowly moving scene), uint8 (N, 84, 84, 4)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 84, 84, 1, generator=g) * 200
    return (base + torch.rand(n, 84, 84, 4, generator=g) * 30).round().to(torch.uint8).numpy()


def test_fft_decorrelates_the_frames_of_a_grey_stack():
    ref = stack_frames()
    basis = channel_basis(ref, 4)  # (4, 4)
    pixels = torch.as_tensor(ref, dtype=torch.float64).reshape(-1, 4) / 255
    cov = torch.cov(pixels.T)
    assert torch.allclose(basis, basis.T, atol=1e-6)
    square = (basis @ basis).double()  # the square root of the covariance, up to the scale
    assert torch.allclose(square / square.norm(), cov / cov.norm(), atol=1e-3)
    gens = [torch.Generator().manual_seed(0)]
    image = ImageParam("fft", 1, (84, 84), 4, gens, basis, "cpu").image()  # (1, 4, 84, 84)
    assert image.shape == (1, 4, 84, 84)
    with pytest.raises(ValueError, match=r"\(N, H, W, 4\)"):
        channel_basis(ref[..., :3], 4)


@pytest.mark.slow
def test_optimize_a_grey_frame_stack_direction():
    agent, ref = grey_stack_agent(), stack_frames()
    d = torch.randn(2, 64, generator=torch.Generator().manual_seed(1))
    res = optimize_batch(agent, "conv2.conv", d, steps=30, reference_obs=ref)  # pre-ReLU: a signed score
    assert res.images.shape == (2, *STACK) and res.images.dtype == np.uint8
    with torch.no_grad():
        randoms = direction_objective(agent, "conv2.conv", torch.as_tensor(ref), d[0]).numpy()
    assert res.objective[0] > randoms.max() and (res.objective > res.history[0]).all()
    assert not np.array_equal(res.images[0, ..., 0], res.images[0, ..., 3])  # each frame its own


def test_same_seed_same_image_on_a_grey_stack():
    agent, ref = grey_stack_agent(), stack_frames()
    d = torch.randn(1, 64, generator=torch.Generator().manual_seed(2))
    kw = dict(steps=8, reference_obs=ref, position=(4, 4), scale=0.1, rotate=5)
    a, b = (optimize_batch(agent, "conv2", d, seed=5, **kw) for _ in range(2))
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.history, b.history)
    assert not np.array_equal(a.images, optimize_batch(agent, "conv2", d, seed=6, **kw).images)


def test_position_choices():
    agent = grey_stack_agent()
    assert optimize_position(agent, "conv3", "centre") == (3, 3)  # 7x7
    assert optimize_position(agent, "conv3", "mean") is None
    assert optimize_position(agent, "conv3", "1,2") == (1, 2)
    assert optimize_position(agent, "fc", "centre") is None  # not spatial: the whole layer
    with pytest.raises(ValueError, match="centre, mean or Y,X"):
        optimize_position(agent, "conv3", "middle")
    with pytest.raises(ValueError, match=r"optimize makes images \(H, W, C\)"):
        optimize_batch(build(dict(arch="mlp", obs_shape=(8,), num_actions=2)), "fc1", torch.ones(1, 256), steps=1)
