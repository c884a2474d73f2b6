"""Feature visualisation: planted features found at the right place, receptive fields against the formula,
spatial examples against a brute-force argmax, optimisation that raises its objective, and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from policylens import agents, rollouts
from policylens.agents import AgentOutput, build
from policylens.factors import Directions
from policylens.featvis import (
    dataset_examples,
    direction_objective,
    extremal_penalty,
    extremal_share,
    layer_activations,
    optimize,
    optimize_batch,
    receptive_field,
    resize,
    save_grid,
    spatial_examples,
    thumbnails,
)
from policylens.featvis.cli import main as featvis_main
from policylens.featvis.receptive import CHECKER, crop
from policylens.featvis.sample import even_frames, sample_frames
from policylens.hooks import capture

RGB = (56, 56, 3)  # MiniGrid RGB: 7x7 cells of 8 pixels; the cnn's embed is an 8x8 conv with stride 8


def grid_agent(seed=0, **kw):
    torch.manual_seed(seed)
    return build(dict(arch="cnn", obs_shape=RGB, num_actions=3, **kw)).eval()


def red_detector():
    """A cnn whose embed channel 0 fires on red cells (0.5 for a pure red cell, 0 for grey/random ones) and
    whose conv1 channel 0 copies it at the same cell."""
    agent = grid_agent()
    with torch.no_grad():
        w = agent.embed.conv.weight  # (32, 3, 8, 8)
        w[0] = 0
        w[0, 0], w[0, 1:] = 1 / 64, -1 / 64
        agent.embed.conv.bias[0] = -0.5
        agent.conv1.conv.weight[0] = 0
        agent.conv1.conv.weight[0, 0, 1, 1] = 1.0
        agent.conv1.conv.bias[0] = 0
    return agent


def noise_obs(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *RGB), generator=g, dtype=torch.uint8).numpy()  # (N, 56, 56, 3)


def plant(obs, i, cell, red=255):
    y, x = cell
    obs[i, 8 * y:8 * y + 8, 8 * x:8 * x + 8] = (red, 0, 0)


CHANNEL0 = Directions(torch.eye(32)[[0]], "embed", ("red",))


# ------------------------------------------------------------------------------------------- dataset examples


@pytest.mark.parametrize("layer,size", [("embed", 8), ("conv1", 24)])
def test_top_example_is_the_planted_pattern_and_its_patch_shows_it(layer, size):
    obs = noise_obs(10)
    plant(obs, 6, (0, 4))  # top row: conv1's field reaches above the observation
    plant(obs, 2, (5, 1), red=180)  # weaker
    ex = dataset_examples(red_detector(), obs, Directions(CHANNEL0.vectors, layer), k=3)
    assert ex.obs_index[0, 0] == 6 and tuple(ex.position[0, 0]) == (0, 4)
    assert ex.obs_index[0, 1] == 2 and tuple(ex.position[0, 1]) == (5, 1)
    assert ex.score[0, 0] == pytest.approx(0.5, abs=1e-5) and (np.diff(ex.score[0]) <= 0).all()
    patch = ex.patches[0, 0]  # (size, size, 3)
    assert patch.shape == (size, size, 3) and ex.receptive_field.size == (size, size)
    m = (size - 8) // 2  # the planted cell sits in the middle of the field
    assert (patch[m:m + 8, m:m + 8] == (255, 0, 0)).all()
    if m:  # rows above the observation's top edge are the grey-white checkerboard
        assert np.isin(patch[:m], CHECKER).all()
        np.testing.assert_array_equal(patch[m:, :], obs[6, :size - m, 32 - m:32 - m + size])


def _reference_examples(scores, k, cap):
    """Brute force: every (obs, y, x) sorted by score, taken greedily with at most ``cap`` per obs."""
    n, h, w = scores.shape
    entries = sorted(((-scores[i, y, x], i, y, x) for i in range(n) for y in range(h) for x in range(w)))
    picked, used = [], {}
    for s, i, y, x in entries:
        if used.get(i, 0) < cap and len(picked) < k:
            used[i] = used.get(i, 0) + 1
            picked.append((i, y, x, -s))
    return picked


@pytest.mark.parametrize("cap", [1, 2])
def test_examples_agree_with_brute_force_and_respect_the_repetition_cap(cap):
    agent, obs = grid_agent(seed=3), noise_obs(9, seed=4)
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(5))
    ex = dataset_examples(agent, obs, Directions(vectors, "conv1"), k=6, max_per_obs=cap, batch_size=4)
    with torch.no_grad():  # the layer by hand, no hooks
        acts = agent.conv1(agent.embed(agent.scale(torch.as_tensor(obs))))  # (N, 32, 7, 7)
    for d in range(2):
        scores = torch.einsum("nchw,c->nhw", acts, vectors[d]).numpy()
        ref = _reference_examples(scores, 6, cap)
        assert [(i, y, x) for i, y, x, _ in ref] == [(i, *p) for i, p in zip(ex.obs_index[d], ex.position[d].tolist())]
        np.testing.assert_allclose(ex.score[d], [s for *_, s in ref], rtol=1e-5, atol=1e-6)
        assert np.bincount(ex.obs_index[d]).max() <= cap


def test_cap_keeps_one_frame_from_filling_the_row():
    obs = noise_obs(6)
    for cell, red in (((1, 1), 255), ((3, 3), 250), ((5, 5), 245)):
        plant(obs, 0, cell, red)  # frame 0 has the three strongest red cells
    for i, red in ((1, 240), (2, 235), (3, 230)):
        plant(obs, i, (2, 2), red)
    capped = dataset_examples(red_detector(), obs, CHANNEL0, k=4, max_per_obs=1)
    assert capped.obs_index[0].tolist() == [0, 1, 2, 3] and tuple(capped.position[0, 0]) == (1, 1)
    free = dataset_examples(red_detector(), obs, CHANNEL0, k=4, max_per_obs=None)
    assert free.obs_index[0].tolist() == [0, 0, 0, 1]
    assert [tuple(p) for p in free.position[0, :3]] == [(1, 1), (3, 3), (5, 5)]


def test_recurrent_layer_uses_the_recorded_state_and_shows_whole_observations():
    torch.manual_seed(0)
    agent = build(dict(arch="cnn", obs_shape=RGB, num_actions=3, recurrent=True, hidden=16)).eval()
    obs = noise_obs(7)
    state = torch.randn(7, 16, generator=torch.Generator().manual_seed(2))
    directions = Directions(torch.randn(3, 16, generator=torch.Generator().manual_seed(3)), "hx")
    ex = dataset_examples(agent, obs, directions, k=7, state=state, batch_size=3)
    with torch.no_grad():
        ref = (agent(torch.as_tensor(obs), state).state @ directions.vectors.T).numpy()  # (N, K)
    for d in range(3):
        np.testing.assert_array_equal(ex.obs_index[d], np.argsort(-ref[:, d], kind="stable"))
    assert (ex.position == -1).all() and ex.receptive_field is None
    np.testing.assert_array_equal(ex.patches[1, 0], obs[ex.obs_index[1, 0]])
    without = dataset_examples(agent, obs, directions, k=7)  # from h0 instead: other scores
    assert not np.allclose(without.score, ex.score)


# ------------------------------------------------------------------------------------------- receptive fields


class ConvStack(nn.Module):
    """Convs/pools with given (kernel, stride, padding) on float obs; each stage a named, hookable layer."""

    def __init__(self, stages, obs_shape):
        super().__init__()
        self.obs_shape, cin = obs_shape, obs_shape[2]
        for i, (kind, k, s, p) in enumerate(stages):
            layer = nn.MaxPool2d(k, s, p) if kind == "pool" else nn.Sequential(nn.Conv2d(cin, 8, k, s, p), nn.ReLU())
            self.add_module(f"l{i}", layer)
            cin = cin if kind == "pool" else 8
        self.n = len(stages)

    def forward(self, obs, state=None, first=None):
        x = obs.permute(0, 3, 1, 2).float() / 255  # (B, C, H, W)
        for i in range(self.n):
            x = getattr(self, f"l{i}")(x)
        return AgentOutput(x.mean((1, 2, 3))[:, None], x.mean((1, 2, 3)), None)


def formula(stages):
    """(size, stride, offset) after each stage: r += (k - 1) j, offset -= p j, j *= s."""
    r, j, o, out = 1, 1, 0, []
    for _, k, s, p in stages:
        r, o, j = r + (k - 1) * j, o - p * j, j * s
        out.append((r, j, o))
    return out


STACKS = {
    "convs": ([("conv", 5, 1, 2), ("conv", 3, 2, 1), ("conv", 3, 2, 0), ("conv", 3, 1, 1)], (40, 40, 3)),
    "pools": ([("conv", 3, 1, 0), ("pool", 3, 2, 1), ("conv", 4, 2, 1), ("pool", 2, 2, 0)], (48, 40, 3)),
    "wider_than_obs": ([("conv", 5, 1, 2)] * 3, (12, 12, 3)),  # 13-pixel field on a 12-pixel observation
}


@pytest.mark.parametrize("name", list(STACKS))
def test_receptive_field_matches_the_formula(name):
    stages, obs_shape = STACKS[name]
    torch.manual_seed(0)
    stack = ConvStack(stages, obs_shape)
    for i, (r, j, o) in enumerate(formula(stages)):
        rf = receptive_field(stack, f"l{i}")
        assert (rf.size, rf.stride, rf.offset, rf.exact) == ((r, r), (j, j), (o, o), True), f"layer l{i}"


@pytest.mark.slow
def test_receptive_field_of_the_clear_architecture():
    torch.manual_seed(0)
    agent = build(dict(arch="clear", obs_shape=(64, 64, 3), num_actions=3))
    stages = [("conv", 7, 1, 3), ("pool", 2, 2, 0), ("conv", 5, 1, 2), ("conv", 5, 1, 2)]  # conv1a .. conv2b
    r, j, o = formula(stages)[-1]
    rf = receptive_field(agent, "conv2b")
    assert (rf.size, rf.stride, rf.offset) == ((r, r), (j, j), (o, o))


def test_crop_fills_outside_with_checkerboard():
    stack = ConvStack(STACKS["convs"][0][:1], (40, 40, 3))
    rf = receptive_field(stack, "l0")  # 5x5, offset -2
    obs = np.arange(40 * 40 * 3, dtype=np.int64).reshape(40, 40, 3).astype(np.uint8)
    patch = crop(obs, rf, 0, 39)
    np.testing.assert_array_equal(patch[2:, :3], obs[:3, 37:40])
    assert np.isin(patch[:2], CHECKER).all() and np.isin(patch[:, 3:], CHECKER).all()


def test_non_spatial_layer_has_no_receptive_field():
    with pytest.raises(ValueError, match="not spatial"):
        receptive_field(grid_agent(), "fc")


# ------------------------------------------------------------------------------------------- spatial examples


def _layer_scores(agent, obs, vectors):
    with torch.no_grad():
        acts = agent.conv1(agent.embed(agent.scale(torch.as_tensor(obs))))  # (N, 32, 7, 7)
    return torch.einsum("nchw,kc->knhw", acts, vectors).numpy()  # (K, N, 7, 7)


def test_each_cell_comes_from_the_argmax_observation():
    agent, obs = grid_agent(seed=7), noise_obs(11, seed=8)
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(9))
    sp = spatial_examples(agent, obs, Directions(vectors, "conv1"), batch_size=4)
    scores = _layer_scores(agent, obs, vectors)
    np.testing.assert_array_equal(sp.obs_index, scores.argmax(1))
    np.testing.assert_allclose(sp.score, scores.max(1), rtol=1e-5, atol=1e-6)
    assert sp.images.shape == (2, *RGB)
    for d, y, x in np.ndindex(2, 7, 7):
        cell = np.s_[8 * y:8 * y + 8, 8 * x:8 * x + 8]
        np.testing.assert_array_equal(sp.images[d][cell], obs[sp.obs_index[d, y, x]][cell])


def test_spatial_reuse_cap():
    agent, obs = grid_agent(seed=7), noise_obs(10, seed=8)
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(9))
    sp = spatial_examples(agent, obs, Directions(vectors, "conv1"), max_reuse=5, batch_size=3)
    scores = _layer_scores(agent, obs, vectors)
    for d in range(2):
        counts = np.bincount(sp.obs_index[d].ravel(), minlength=10)
        assert counts.max() <= 5
        best = scores[d].argmax(0)  # (7, 7)
        # a cell not from its best frame only because that frame was used up by stronger positions
        for y, x in zip(*np.nonzero(sp.obs_index[d] != best)):
            stronger = scores[d].max(0) >= scores[d].max(0)[y, x]
            assert (sp.obs_index[d][stronger] == best[y, x]).sum() == 5
    with pytest.raises(ValueError, match="max_reuse=4 with 10 observations"):
        spatial_examples(agent, obs, Directions(vectors, "conv1"), max_reuse=4)


# ------------------------------------------------------------------------------------------- hooks and errors


def test_hooks_are_removed_even_after_an_error():
    agent = grid_agent()
    with pytest.raises(RuntimeError):
        with capture(agent, "conv1"):
            raise RuntimeError("boom")
    with pytest.raises(ValueError, match="does not match"):
        layer_activations(agent, "conv1", torch.zeros(2, 7, 7, 3, dtype=torch.uint8))  # wrong obs shape
    dataset_examples(agent, noise_obs(2), Directions(torch.ones(1, 32), "conv1"), k=1)
    assert all(not m._forward_hooks for m in agent.modules())
    with pytest.raises(KeyError, match="embed, conv1, conv2, fc"):
        layer_activations(agent, "conv9", torch.zeros(1, *RGB))
    with pytest.raises(ValueError, match="32 channels|have 32"):
        dataset_examples(agent, noise_obs(2), Directions(torch.ones(1, 5), "conv1"))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        dataset_examples(agent, noise_obs(2)[0], CHANNEL0)


# ------------------------------------------------------------------------------------------- optimisation


def _objective(agent, layer, images, direction, position=None):
    obs = torch.as_tensor(np.asarray(images)).float().reshape(-1, *RGB)
    with torch.no_grad():
        return direction_objective(agent, layer, obs, direction, position).numpy()


@pytest.fixture(scope="module")
def opt_setup():
    agent = grid_agent(seed=11)
    direction = torch.randn(32, generator=torch.Generator().manual_seed(12))
    return agent, direction


@pytest.mark.parametrize("param", ["fft", "pixel"])
def test_optimize_beats_its_start_and_random_images(opt_setup, param):
    agent, direction = opt_setup
    # no jitter: the cnn embeds fixed 8x8 cells, so its features do not survive shifts of a few pixels
    start = optimize(agent, "conv1", direction, steps=0, param=param, jitter=0)
    image = optimize(agent, "conv1", direction, steps=60, param=param, jitter=0)
    assert image.shape == RGB and image.dtype == np.uint8
    randoms = torch.randint(0, 256, (32, *RGB), generator=torch.Generator().manual_seed(13)).numpy()
    ours = _objective(agent, "conv1", image, direction)[0]
    assert ours > _objective(agent, "conv1", start, direction)[0]
    assert ours > _objective(agent, "conv1", randoms, direction).max()


def test_optimized_image_shows_the_planted_feature():
    """The red detector's pre-activation (a named submodule) with jitter, scale and rotation: a red image."""
    agent, red = red_detector(), torch.eye(32)[0]
    image = optimize(agent, "embed.conv", red, steps=60, jitter=4, scale=0.1, rotate=5)
    r, g, b = image.reshape(-1, 3).mean(0)
    assert r > g + 100 and r > b + 100
    randoms = torch.randint(0, 256, (16, *RGB), generator=torch.Generator().manual_seed(13)).numpy()
    assert _objective(agent, "embed.conv", image, red)[0] > _objective(agent, "embed.conv", randoms, red).max()


def test_optimize_is_deterministic_given_the_seed(opt_setup):
    agent, direction = opt_setup
    kw = dict(steps=12, scale=0.1, rotate=10)
    a, b = optimize(agent, "conv1", direction, seed=3, **kw), optimize(agent, "conv1", direction, seed=3, **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, optimize(agent, "conv1", direction, seed=4, **kw))
    assert all(p.grad is None for p in agent.parameters())  # only the image was differentiated


def test_optimize_at_one_position_and_a_channel_index(opt_setup):
    agent, _ = opt_setup
    layer, where, one_hot = "conv1.conv", (1, 5), torch.eye(32)[5]  # pre-ReLU: no dead start
    start = optimize(agent, layer, 5, steps=0, position=where, jitter=0)
    image = optimize(agent, layer, 5, steps=40, position=where, jitter=0)
    ours = _objective(agent, layer, image, one_hot, where)[0]
    assert ours > _objective(agent, layer, start, one_hot, where)[0]
    assert ours > _objective(agent, layer, image, one_hot, (5, 1))[0]  # raised there, not everywhere
    with pytest.raises(ValueError, match="outside"):
        optimize(agent, layer, 5, steps=1, position=(7, 0))


@pytest.mark.slow
def test_colour_penalty_lowers_the_share_of_extremal_pixels():
    agent, red = red_detector(), torch.eye(32)[[0]]  # pure red, an extremal colour, is the optimum
    plain = optimize_batch(agent, "embed.conv", red, steps=120)
    penalised = optimize_batch(agent, "embed.conv", red, steps=120, colour_penalty=5.0)
    assert extremal_share(penalised.images) < extremal_share(plain.images)
    assert penalised.objective[0] > penalised.history[0, 0]  # still optimises the direction


def test_extremal_penalty_is_largest_at_the_extremal_colours():
    corners = torch.tensor([[a, b, c] for a in (0., 1.) for b in (0., 1.) for c in (0., 1.)])  # (8, 3)
    rgb = corners.T.reshape(1, 3, 2, 4)  # the 8 extremal colours as a 2x4 image
    assert extremal_penalty(rgb).item() == pytest.approx(1.0, abs=1e-4)
    assert extremal_penalty(torch.full((1, 3, 2, 2), 0.5)).item() == 0.0
    assert extremal_share(np.array([[[[255, 0, 255], [128, 128, 128]]]], np.uint8)) == 0.5


def test_optimize_a_recurrent_state_direction():
    torch.manual_seed(0)
    agent = build(dict(arch="cnn", obs_shape=RGB, num_actions=3, recurrent=True, hidden=16)).eval()
    d = torch.randn(16, generator=torch.Generator().manual_seed(1))
    res = optimize_batch(agent, "hx", d[None], steps=30)
    assert res.objective[0] > res.history[0, 0]


# ------------------------------------------------------------------------------------------- thumbnails, figures


def test_thumbnails_are_the_best_patches_enlarged(tmp_path):
    obs = noise_obs(5)
    plant(obs, 3, (2, 2))
    ex = dataset_examples(red_detector(), obs, Directions(torch.eye(32)[[0, 1]], "embed"), k=2)
    thumbs = thumbnails(ex, size=16)  # (2, 16, 16, 3) from 8x8 patches
    assert thumbs.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(thumbs[:, ::2, ::2], ex.patches[:, 0])
    assert resize(ex.patches[:, 0], 4).shape == (2, 4, 4, 3)
    import matplotlib.image

    png = save_grid(tmp_path / "grid.png", ex.patches, ["a", "b"])
    assert matplotlib.image.imread(png).ndim == 3
    with pytest.raises(ValueError, match="3 labels for 2 rows"):
        save_grid(tmp_path / "bad.png", ex.patches, ["a", "b", "c"])


def test_results_round_trip_through_files(tmp_path):
    obs = noise_obs(4)
    ex = dataset_examples(grid_agent(), obs, Directions(torch.eye(32)[:2], "conv1"), k=3)
    ex.save(tmp_path)
    back = type(ex).load(tmp_path)
    for name in ("patches", "obs_index", "position", "score"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ex, name))
    assert back.receptive_field == ex.receptive_field and back.labels == ex.labels


# ------------------------------------------------------------------------------------------- store + CLI


ENV = "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0?obs=rgb"


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("featvis") / "run"
    cfg = {"arch": "cnn", "obs_shape": list(RGB), "num_actions": 3}
    torch.manual_seed(0)
    agents.save_agent(agents.build(cfg), cfg, run / "agent", extra={"env": ENV})
    rollouts.record(rollouts.RecordConfig(run=str(run), episodes=3, num_envs=3, max_steps=20, progress=False))
    return run


@pytest.mark.slow
def test_sampled_frames_are_the_stores_frames(recorded_run):
    store = rollouts.open(recorded_run / "rollouts.zarr")
    sample = sample_frames(store, max_frames=7)
    assert len(sample.frames) == 7 and sample.state is None
    np.testing.assert_array_equal(sample.frames, even_frames(store.num_frames, 7))
    for f, o in zip(sample.frames, sample.obs):
        np.testing.assert_array_equal(o, store.read("obs", int(f), int(f) + 1)[0])
    with pytest.raises(ValueError, match="no agent_state"):
        sample_frames(store, with_state=True)


@pytest.mark.slow
def test_cli_writes_examples_spatial_and_optimized(recorded_run, capsys):
    featvis_main([str(recorded_run), "--layer", "conv1", "--channels", "0,3", "--k", "4", "--optimize",
                  "--steps", "4", "--progress", "false"])
    out = recorded_run / "analysis" / "featvis" / "conv1"
    for name in ("examples.npz", "examples.json", "examples.png", "thumbnails.png", "spatial.npz", "spatial.png",
                 "optimized.npz", "optimized.png", "directions.json", "featvis.json"):
        assert (out / name).is_file(), name
    info = json.loads((out / "examples.json").read_text())
    assert info["labels"] == ["ch0", "ch3"]
    store, agent = rollouts.open(recorded_run / "rollouts.zarr"), agents.load(recorded_run)
    rf = receptive_field(agent, "conv1")
    with np.load(out / "examples.npz") as ex:
        assert ex["patches"].shape == (2, 4, 24, 24, 3)
        for d, j in np.ndindex(2, 4):  # each patch is the field of its position in the store frame named
            frame = store.read("obs", info["meta"]["frame"][d][j], info["meta"]["frame"][d][j] + 1)[0]
            np.testing.assert_array_equal(ex["patches"][d, j], crop(frame, rf, *ex["position"][d, j]))
    with np.load(out / "optimized.npz") as opt:
        assert opt["images"].shape == (2, *RGB) and opt["history"].shape == (4, 2)
    assert "examples" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_takes_a_directions_file_and_refuses_bad_input(recorded_run, tmp_path, capsys):
    path = Directions(torch.randn(2, 64, generator=torch.Generator().manual_seed(0)), "conv2", ("a", "b")).save(
        tmp_path / "dirs")
    featvis_main([str(recorded_run), "--directions", str(path), "--spatial", "false", "--out", str(tmp_path / "o"),
                  "--progress", "false"])
    assert json.loads((tmp_path / "o" / "examples.json").read_text())["labels"] == ["a", "b"]
    assert not (tmp_path / "o" / "spatial.npz").exists()
    for args, message in ((["--layer", "conv1", "--channels", "40"], "out of range"),
                          (["--layer", "nope"], "no layer 'nope'"),
                          (["--directions", str(path), "--channels", "1"], "not both"),
                          (["--layer", "conv1", "--store", str(tmp_path / "missing.zarr")], "no rollouts store")):
        with pytest.raises(SystemExit) as exit_info:
            featvis_main([str(recorded_run), *args, "--progress", "false"])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_recurrent_run_reads_recorded_states_and_visualises_hx(tmp_path):
    run, env = tmp_path / "rnn", "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0"
    cfg = {"arch": "cnn", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1, "recurrent": True, "hidden": 8}
    torch.manual_seed(0)
    agents.save_agent(agents.build(cfg), cfg, run / "agent", extra={"env": env})
    rollouts.record(rollouts.RecordConfig(run=str(run), episodes=2, num_envs=2, max_steps=8, progress=False))
    store = rollouts.open(run / "rollouts.zarr")
    sample = sample_frames(store, max_frames=5, with_state=True)
    for f, s in zip(sample.frames, sample.state):
        np.testing.assert_array_equal(s, store.read("agent_state", int(f), int(f) + 1)[0])
    featvis_main([str(run), "--layer", "hx", "--channels", "1,2", "--k", "3", "--progress", "false"])
    out = run / "analysis" / "featvis" / "hx"
    info = json.loads((out / "examples.json").read_text())
    agent = agents.load(run)
    with torch.no_grad():  # the frames named score as stored, from their recorded states
        for d, frames in enumerate(info["meta"]["frame"]):
            obs, hx = (torch.as_tensor(store.read(f, 0, store.num_frames)) for f in ("obs", "agent_state"))
            ref = agent(obs, hx).state[:, d + 1]  # (F,)
            np.testing.assert_allclose(np.load(out / "examples.npz")["score"][d], ref[frames].numpy(), rtol=1e-5)
    assert not (out / "spatial.npz").exists()  # hx is not spatial
