"""What the explorer's pages show, checked on the data they are written from: a MiniGrid symbolic view's frames
and legend images are MiniGrid's own tiles (not its codes painted as colours), legend labels come from ground
truth, and a simulator's explorer says its rewards are predictions (the pages themselves:
tests/test_explorer_views_browser.py)."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from policylens import agents, rollouts
from policylens.envs.render import TILE, render_obs
from policylens.explorer import export
from policylens.explorer.encode import read_js
from policylens.factors import Directions

ENV = "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0"  # symbolic 7x7x3 views with balls and a goal


def png(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A tiny recurrent agent's explorer of 3 recorded episodes (ground-truth entities in the store), legend
    images at the receptive field's own size (no resizing)."""
    from policylens.featvis import receptive_field

    root = tmp_path_factory.mktemp("views")
    torch.manual_seed(0)
    cfg = {"arch": "cnn", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1, "recurrent": True}
    agents.save_agent(agents.build(cfg), cfg, root / "run" / "agent", extra={"env": ENV})
    rollouts.record(rollouts.RecordConfig(run=str(root / "run"), episodes=3, num_envs=3, max_steps=20, progress=False))
    agent = agents.load(root / "run")
    rf = receptive_field(agent, "conv2", obs_shape=(7, 7, 3))
    assert rf.size[0] == rf.size[1]
    export(root / "run", episodes="0-2", steps=20, k=3, nmf_frames=60, thumbnail=rf.size[0] * TILE, tree_k=0,
           progress=False)
    _, manifest = read_js(root / "run" / "explorer" / "data" / "manifest.js")
    return root / "run", manifest, rf


@pytest.mark.slow
def test_symbolic_frames_are_drawn_with_minigrids_tiles(written):
    run, manifest, _ = written
    assert manifest["view"] == {"kind": "symbolic", "tiles": True, "transposed": True, "tile": TILE, "stack": 1}
    store = rollouts.open(run / "rollouts.zarr")
    _, traj = read_js(run / "explorer" / "data" / "t0.js")
    assert traj["frames"]["display"] == "tiles" and traj["frames"]["tile"] == [7 * TILE, 7 * TILE]
    sheet, cols, n = png(traj["frames"]["sheet"]), traj["frames"]["columns"], traj["length"]
    frames = np.stack([sheet[(t // cols) * 7 * TILE:(t // cols + 1) * 7 * TILE, (t % cols) * 7 * TILE:(t % cols + 1) * 7 * TILE]
                       for t in range(n)])
    np.testing.assert_array_equal(frames, render_obs(store.episode(0)["obs"][:n], "symbolic"))


@pytest.mark.slow
def test_live_frames_equal_the_envs_own_view_rendering(written):
    """MiniGrid's get_pov_render, independent of policylens's renderer, draws what the live page shows."""
    from policylens.explorer.server import load_session

    run, _, _ = written
    session = load_session(run, run / "explorer", seed=4)
    for a in (None, 2, 1, 2, 2, 0, 2):
        frame = session.reset(11)["frame"] if a is None else session.step(a)["frame"]
        truth = session.env.envs[0].get_pov_render(TILE)  # (112, 112, 3)
        np.testing.assert_array_equal(png(frame["image"]), truth)
        assert len(np.unique(truth.reshape(-1, 3), axis=0)) > 3  # tiles, lines, objects: not a few flat codes


@pytest.mark.slow
def test_legend_images_are_the_rendered_patch_each_direction_sees(written):
    from policylens.explorer.export import load_trajectories
    from policylens.featvis import dataset_examples

    run, manifest, rf = written
    layer = manifest["layers"][0]
    directions = Directions.load(run / "explorer" / "directions" / "l0")
    trajectories = load_trajectories(rollouts.open(run / "rollouts.zarr"), [0, 1, 2], 20)
    obs = np.concatenate([t.obs for t in trajectories])
    state = torch.cat([torch.as_tensor(t.state) for t in trajectories])
    examples = dataset_examples(agents.load(run), obs, directions, k=1, state=state)
    for d, feature in enumerate(layer["features"][:-1]):
        thumb = png(feature["thumbnail"])  # (rf * TILE, rf * TILE, 3)
        assert len(np.unique(thumb.reshape(-1, 3), axis=0)) > 1  # not one flat colour
        picture = render_obs(obs[examples.obs_index[d, 0]][None], "symbolic")[0]
        top, left, bottom, right = rf.box(*examples.position[d, 0])  # cells along the obs' [x, y] axes
        x0, x1, y0, y1 = max(top, 0), min(bottom, 7), max(left, 0), min(right, 7)
        inside = thumb[(y0 - left) * TILE:(y1 - left) * TILE, (x0 - top) * TILE:(x1 - top) * TILE]
        np.testing.assert_array_equal(inside, picture[y0 * TILE:y1 * TILE, x0 * TILE:x1 * TILE])  # upright: rows = y


def test_labels_name_the_entity_a_feature_lies_on():
    from policylens.explorer.labels import feature_labels

    rng = np.random.default_rng(0)
    n = 60
    ball, goal = rng.random((n, 7, 7)) < 0.06, rng.random((n, 7, 7)) < 0.04
    attr = torch.zeros(n, 4, 7, 7)
    attr[:, 0] = torch.as_tensor(ball) * 2.0  # channel 0: good news on balls
    attr[:, 1] = -torch.as_tensor(goal).float()  # channel 1: bad news on goals
    attr[:, 2] = torch.as_tensor(rng.random((n, 7, 7)), dtype=torch.float32) * 0.1  # channel 2: everywhere
    directions = Directions(torch.eye(4)[:3], "conv", method="nmf")
    labels, scores = feature_labels(attr, directions, {"ball": ball, "goal": goal})
    assert labels[:2] == ("ball, NMI 1.00", "goal, NMI 1.00")
    assert labels[2].startswith("NMF 3 (best: ") and not scores["directions"][2]["interpretable"]
    assert feature_labels(attr, directions, None) == (("NMF 1", "NMF 2", "NMF 3"), None)


@pytest.mark.slow
def test_explorer_labels_come_from_the_stores_ground_truth(written):
    from policylens.explorer.export import load_trajectories
    from policylens.scores import episode_masks

    run, manifest, _ = written
    layer = manifest["layers"][0]
    scores = layer["meta"]["entities"]
    assert scores is not None and len(scores["directions"]) == 3
    labels = [f["label"] for f in layer["features"]]
    assert labels[-1] == "residual" and not any(label.startswith("NMF") and "best" not in label for label in labels)
    for label, row in zip(labels, scores["directions"]):
        nmi = row["entities"][row["best_entity"]]["nmi"]
        assert (label == f"{row['best_entity']}, NMI {nmi:.2f}") == row["interpretable"]
        assert row["best_entity"] in label and f"NMI {nmi:.2f}" in label
    store = rollouts.open(run / "rollouts.zarr")
    traj = load_trajectories(store, [1], 20)[0]  # the masks the labels were scored against: the store's
    for kind, m in episode_masks(store, 1).items():
        np.testing.assert_array_equal(traj.masks[kind], m[:20])


def test_stability_from_the_directions_meta_reaches_the_legend(tmp_path):
    from policylens.explorer.bundle import LayerView, Output, Trajectory, write_explorer

    t = 3
    directions = Directions(torch.eye(3)[:2], "conv", method="nmf", meta={"stability": [0.97, 0.4213]})
    view = LayerView("conv", "nmf", (7, 7), ("ball, NMI 0.91", "NMF 2", "residual"), (Output("value", "value"),),
                     directions=directions)
    traj = Trajectory(np.ones((t, 7, 7, 3), np.uint8), np.zeros(t), np.zeros((t, 3)), np.zeros(t, int), np.zeros(t),
                      np.zeros(t, bool), np.zeros(t), maps={"conv": {"value": np.zeros((t, 2, 3, 7, 7))}})
    write_explorer(tmp_path, [view], [traj], title="x", env=ENV)
    _, manifest = read_js(tmp_path / "data" / "manifest.js")
    assert [f["stability"] for f in manifest["layers"][0]["features"]] == [0.97, 0.4213, None]


@pytest.mark.slow
def test_sim_sample_explorer_draws_tiles_and_calls_its_rewards_predictions(sim_world, tmp_path):
    from policylens.sim.analyses.sample.cli import main

    run = sim_world / "rnn"
    out = tmp_path / "sample"
    main([str(run), "--n", "2", "--steps", "5", "--out", str(out), "--k", "2", "--ig-steps", "2", "--video", "false",
          "--progress", "false"])
    _, manifest = read_js(out / "explorer" / "data" / "manifest.js")
    assert manifest["predicted"] is True and manifest["view"]["tiles"] is True
    assert manifest["layers"][0]["meta"]["entities"] is not None  # labels from the views' own cell codes
    arrays = np.load(out / "samples.npz")
    _, traj = read_js(out / "explorer" / "data" / "t0.js")
    n, cols = traj["length"], traj["frames"]["columns"]
    sheet = png(traj["frames"]["sheet"])
    frames = np.stack([sheet[(t // cols) * 7 * TILE:(t // cols + 1) * 7 * TILE, (t % cols) * 7 * TILE:(t % cols + 1) * 7 * TILE]
                       for t in range(n)])
    np.testing.assert_array_equal(frames, render_obs(arrays["obs"][0, :n], "symbolic"))
