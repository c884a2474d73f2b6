"""The trajectory explorer's Python side: bookmarks, feature maps, quantisation, the export against the store
and against the agent itself (IG completeness through the whole pipeline), attention maps, clear errors."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch

from policylens import agents, rollouts
from policylens.agents import get_layer
from policylens.envs.render import render_obs
from policylens.explorer import bookmarks, export, parse_episodes
from policylens.explorer.bundle import LayerView, Output, Trajectory, probabilities, write_explorer
from policylens.explorer.encode import display_rgb, inflate_b64, read_js
from policylens.explorer.export import check_layer, default_layers
from policylens.explorer.maps import dequantise, feature_maps, pool_factor, pool_sum, quantise
from policylens.factors import Directions, nmf_attributions, residual

ENV = "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0"  # symbolic 7x7x3 observations


def tiny_agent(arch="cnn", recurrent=False, obs_shape=(7, 7, 3), seed=0, **options):
    torch.manual_seed(seed)
    cfg = {"arch": arch, "obs_shape": list(obs_shape), "num_actions": 3, "obs_scale": 0.1, "recurrent": recurrent,
           "options": options}
    return agents.build(cfg).eval(), cfg


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A recurrent cnn agent's run with a 3-episode store."""
    root = tmp_path_factory.mktemp("explore")
    agent, cfg = tiny_agent(recurrent=True)
    with torch.no_grad():  # outputs far from the baseline, so the sums below are a sharp check
        agent.v.weight.mul_(30.0)
        agent.pi.weight.mul_(10.0)
    agents.save_agent(agent, cfg, root / "run" / "agent", extra={"env": ENV})
    store = rollouts.record(rollouts.RecordConfig(run=str(root / "run"), episodes=3, num_envs=3, max_steps=12,
                                                  progress=False))
    return root / "run", store


# ------------------------------------------------------------------------------------------------ bookmarks
def reference_bookmarks(adv, k, separation):
    """Independent: repeatedly take the most extreme step not within `separation` of one already taken."""
    chosen = []
    for _ in range(k):
        free = [t for t in range(len(adv)) if all(abs(t - c) >= separation for c in chosen)]
        if not free:
            break
        chosen.append(max(free, key=lambda t: (abs(adv[t]), -t)))
    return chosen


@pytest.mark.parametrize("separation", [1, 2, 5])
def test_bookmarks_are_the_most_extreme_advantages(separation):
    rng = np.random.default_rng(separation)
    for trial in range(20):
        adv = rng.normal(size=rng.integers(1, 60)).round(1)  # rounding makes ties
        k = int(rng.integers(0, 12))
        got = bookmarks(adv, k, separation=separation)
        assert got.tolist() == reference_bookmarks(adv.tolist(), k, separation)


def test_bookmarks_reject_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        bookmarks([0.1, float("nan")], 1)
    with pytest.raises(ValueError, match=r"\(T,\)"):
        bookmarks(np.zeros((2, 3)), 1)
    with pytest.raises(ValueError, match="separation"):
        bookmarks([1.0, 2.0], 1, separation=0)


# ------------------------------------------------------------------------------------------------ maps
def test_feature_maps_split_the_attribution_exactly():
    g = torch.Generator().manual_seed(0)
    attr = torch.randn(6, 5, 4, 3, generator=g) * (torch.rand(6, 5, 4, 3, generator=g) > 0.6)  # sparse, signed
    dirs = nmf_attributions(attr, 3, layer="conv")
    maps = feature_maps(attr, dirs)  # (N, 2, K + 1, h, w)
    assert maps.shape == (6, 2, 4, 4, 3) and (maps >= 0).all()
    # good news minus bad news over all features is the attribution at each position
    torch.testing.assert_close((maps[:, 0] - maps[:, 1]).sum(1), attr.sum(1), atol=1e-5, rtol=1e-5)
    # the residual feature is what factors.residual leaves outside the directions
    torch.testing.assert_close(maps[:, 0, -1] - maps[:, 1, -1], residual(attr, dirs).sum(1), atol=1e-4, rtol=1e-4)


def test_one_hot_directions_give_each_channel_its_own_signed_parts():
    g = torch.Generator().manual_seed(1)
    attr = torch.zeros(4, 6, 3, 3)
    attr[:, :3] = torch.randn(4, 3, 3, 3, generator=g)  # only channels 0..2 carry attribution
    dirs = Directions.one_hot("conv", [0, 1, 2], 6)
    dirs = Directions(dirs.vectors, "conv", dirs.labels, "nmf")
    maps = feature_maps(attr, dirs)
    torch.testing.assert_close(maps[:, 0, :3], attr[:, :3].clamp_min(0), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(maps[:, 1, :3], (-attr[:, :3]).clamp_min(0), atol=1e-4, rtol=1e-4)
    assert maps[:, :, 3].abs().max() < 1e-4  # nothing left for the residual


def test_nan_attributions_are_refused_not_drawn():
    attr = torch.ones(2, 3, 2, 2)
    attr[1, 0, 0, 0] = float("nan")
    dirs = Directions(torch.eye(3)[:2], "conv", method="nmf")
    with pytest.raises(ValueError, match=r"NaN or infinite.*frames \[1\]"):
        feature_maps(attr, dirs)


def test_pooling_sums_blocks_of_positions():
    maps = np.random.default_rng(2).random((3, 2, 7, 5)).astype(np.float32)
    pooled = pool_sum(maps, 3)  # (3, 2, 3, 2): blocks of 3x3, the last ones cut by the edge
    assert pooled.shape == (3, 2, 3, 2)
    for y, x in np.ndindex(3, 2):
        np.testing.assert_allclose(pooled[..., y, x], maps[..., 3 * y:3 * y + 3, 3 * x:3 * x + 3].sum((-2, -1)),
                                   rtol=1e-6)
    assert pool_factor((32, 32), 16) == 2 and pool_factor((7, 7), 16) == 1 and pool_factor((32, 32), 0) == 1
    assert pool_factor((33, 8), 16) == 3


def test_quantisation_error_is_bounded_by_half_a_level():
    maps = np.random.default_rng(0).random((5, 2, 4, 6, 6)).astype(np.float32) ** 3 * 7.0
    q, scale = quantise(maps)
    assert q.dtype == np.uint8 and q.max() == 255 and scale == pytest.approx(float(maps.max()))
    assert np.abs(dequantise(q, scale) - maps).max() <= scale / 510 * 1.0001
    assert quantise(np.zeros((2, 2)))[1] == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        quantise(-maps)


def test_write_explorer_refuses_maps_of_the_wrong_shape(tmp_path):
    t = 4
    traj = Trajectory(np.zeros((t, 7, 7, 3), np.uint8), np.zeros(t), np.zeros((t, 3)), np.zeros(t, int), np.zeros(t),
                      np.zeros(t, bool), np.zeros(t), maps={"conv": {"value": np.zeros((t, 2, 3, 7, 7))}})
    view = LayerView("conv", "nmf", (7, 7), ("a", "b", "residual"), (Output("value", "value"), Output("action", "a")))
    with pytest.raises(ValueError, match="output 'action'.*expected"):
        write_explorer(tmp_path, [view], [traj], title="x")


# ------------------------------------------------------------------------------------------------ the export
def output_at_zero(agent, obs, state, layer):
    """The agent's output with ``layer``'s activation replaced by zeros: IG's baseline F(0), independently."""
    handle = get_layer(agent, layer).register_forward_hook(lambda m, i, out: torch.zeros_like(out))
    try:
        with torch.no_grad():
            return agent(torch.as_tensor(obs), None if state is None else torch.as_tensor(state))
    finally:
        handle.remove()


def check_completeness(totals, change, gap):
    """Good minus bad news over every feature (incl. the residual), ``totals`` (T, 2, F), equals the output's
    change from IG's baseline, ``change`` (T,), up to IG's own Riemann error ``gap``."""
    signed = np.asarray(totals)[:, 0].sum(1) - np.asarray(totals)[:, 1].sum(1)  # (T,)
    np.testing.assert_allclose(signed, np.asarray(change), rtol=0, atol=gap + 2e-4)


def decode_sheet(payload, n):
    from PIL import Image

    sheet = np.asarray(Image.open(io.BytesIO(__import__("base64").b64decode(payload["sheet"].split(",", 1)[1]))))
    h, w = payload["tile"]
    cols = payload["columns"]
    return np.stack([sheet[(t // cols) * h:(t // cols + 1) * h, (t % cols) * w:(t % cols + 1) * w] for t in range(n)])


@pytest.fixture(scope="module")
def exported(recorded):
    run, store_path = recorded
    out = run / "explorer"
    summary = export(run, episodes="0-2", steps=10, k=3, ig_steps=64, nmf_frames=30, bookmarks=4,
                     bookmark_separation=1, map_size=4, progress=False)  # conv2's 7x7 stored as 4x4 blocks
    return run, store_path, out, summary


@pytest.mark.slow
def test_export_shows_the_store_and_its_maps_add_up_to_the_agents_output(exported):
    run, store_path, out, summary = exported
    assert summary["layers"] == ["conv2"] and summary["index"] == out / "index.html" and summary["index"].is_file()
    kind, manifest = read_js(out / "data" / "manifest.js")
    store = rollouts.open(store_path)
    assert kind == "manifest" and manifest["action_names"] == store.action_names
    layer = manifest["layers"][0]
    assert layer["name"] == "conv2" and [f["label"] for f in layer["features"]][-1] == "residual"
    assert layer["grid"] == [4, 4] and layer["meta"]["pool"] == 2 and layer["meta"]["layer_grid"] == [7, 7]
    assert all(f["thumbnail"].startswith("data:image/png;base64,") for f in layer["features"][:-1])
    agent = agents.load(run)
    gaps = layer["meta"]["ig_completeness_gap"]  # per output, IG's own Riemann error (largest over all frames)
    moves = {"value": [], "action": []}
    for i, entry in enumerate(manifest["trajectories"]):
        ep = store.episode(i)
        t = min(ep.length, 10)
        _, traj = read_js(out / entry["file"])
        # the timeline is the store's
        np.testing.assert_allclose(traj["value"], ep["value"][:t], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(traj["probs"], probabilities(ep["logits"][:t]), atol=6e-4)
        assert traj["action"] == ep["action"][:t].tolist()
        assert [b["t"] for b in traj["bookmarks"]] == bookmarks(ep["advantages"][:t], 4).tolist()
        np.testing.assert_array_equal(decode_sheet(traj["frames"], t), render_obs(ep["obs"][:t], "symbolic"))
        # the maps: dequantised within half a level of their exact totals, which add up to F(x) - F(0)
        _, maps = read_js(out / entry["maps"][0])
        obs, state = ep["obs"][:t], ep["agent_state"][:t]
        with torch.no_grad():
            full = agent(torch.as_tensor(obs), torch.as_tensor(state))
        zero = output_at_zero(agent, obs, state, "conv2")
        actions = torch.as_tensor(ep["action"][:t]).long()[:, None]
        expected = {"value": full.value - zero.value,
                    "action": (full.logits.gather(1, actions) - zero.logits.gather(1, actions))[:, 0]}
        for name, change in expected.items():
            o = maps["outputs"][name]
            q = inflate_b64(o["data"], maps["shape"])  # (T, 2, K + 1, h, w)
            totals = np.asarray(o["totals"])  # (T, 2, K + 1)
            cells = np.prod(maps["shape"][3:])
            assert np.abs(dequantise(q, o["scale"]).sum((-2, -1)) - totals).max() <= cells * o["scale"] / 510 + 1e-4
            check_completeness(totals, change, gaps[name])
            moves[name].append(change.abs())
    for name, changes in moves.items():  # the check above is sharp: the outputs move far more than the gap
        assert torch.cat(changes).max() > 20 * (gaps[name] + 2e-4)


@pytest.mark.slow
def test_export_has_the_saliency_tree_of_the_first_and_bookmarked_frames(exported):
    from policylens.attribution import saliency_tree, tree_nodes

    run, store_path, out, _ = exported
    _, manifest = read_js(out / "data" / "manifest.js")
    store, agent = rollouts.open(store_path), agents.load(run)
    for i, entry in enumerate(manifest["trajectories"]):
        _, traj = read_js(out / entry["file"])
        assert sorted(map(int, traj["trees"])) == sorted({0, *(b["t"] for b in traj["bookmarks"])})
        ep = store.episode(i)
        for t, shown in traj["trees"].items():
            t = int(t)
            assert shown["activation"] == pytest.approx(float(ep["value"][t]), rel=1e-3, abs=1e-4)
            truth = saliency_tree(agent, ep["obs"][t:t + 1], k=2, state=ep["agent_state"][t:t + 1])
            assert shown["layers"] == truth["layers"] == ["hx", "fc", "conv2", "conv1", "embed", "input"]
            for a, b in zip(tree_nodes(shown), tree_nodes(truth)):  # same units, numbers to 4 digits
                assert (a["layer"], a["unit"]) == (b["layer"], b["unit"])
                assert a["share"] == pytest.approx(b["share"], rel=1e-3, abs=1e-6)


@pytest.mark.slow
def test_an_export_with_the_same_agent_store_and_settings_is_kept_and_any_change_recomputes(exported, tmp_path):
    from policylens.explorer.export import written_key

    run, store_path, out, summary = exported
    same = dict(episodes="0-2", steps=10, k=3, ig_steps=64, nmf_frames=30, bookmarks=4, bookmark_separation=1,
                map_size=4, progress=False)
    key = written_key(out)
    assert key["settings"]["k"] == 3 and key["store"]["episodes"] == len(rollouts.open(store_path))
    mtime = (out / "data" / "t0-l0.js").stat().st_mtime_ns
    kept = export(run, reuse=True, **same)
    assert kept["reused"] and kept["index"] == summary["index"] and kept["bytes"] == summary["bytes"]
    assert (out / "data" / "t0-l0.js").stat().st_mtime_ns == mtime  # nothing rewritten
    elsewhere = tmp_path / "copy"
    shutil.copytree(out, elsewhere)
    with pytest.raises(FileExistsError, match="explorer .*already exists"):  # another setting: replaced only if told
        export(run, reuse=True, out=elsewhere, **{**same, "k": 2})
    assert not export(run, reuse=True, out=elsewhere, overwrite=True, **{**same, "k": 2})["reused"]
    assert written_key(elsewhere)["settings"]["k"] == 2
    assert not export(run, reuse=False, out=elsewhere, overwrite=True, **{**same, "k": 2})["reused"]  # recomputed


@pytest.mark.slow
def test_attention_agent_gets_its_attention_maps_as_a_layer(recorded, tmp_path):
    run, store_path = recorded
    agent, cfg = tiny_agent("attention", base="cnn", heads=2)
    agents.save_agent(agent, cfg, tmp_path / "att" / "agent", extra={"env": ENV})
    assert default_layers(agent) == ["trunk.conv2", "attention"]
    out = tmp_path / "explorer"
    export(tmp_path / "att", store=store_path, episodes="1", steps=6, layers="attention", out=out, progress=False)
    _, manifest = read_js(out / "data" / "manifest.js")
    layer = manifest["layers"][0]
    assert layer["kind"] == "attention" and [f["label"] for f in layer["features"]] == ["head 1", "head 2"]
    _, maps = read_js(out / manifest["trajectories"][0]["maps"][0])
    o = maps["outputs"]["attention"]
    shown = dequantise(inflate_b64(o["data"], maps["shape"]), o["scale"])[:, 0]  # (T, heads, h, w)
    obs = rollouts.open(store_path).episode(1)["obs"][:6]
    from policylens.factors import collect_activations

    truth = collect_activations(agent, obs, "attention").numpy()
    assert np.abs(shown - truth).max() <= o["scale"] / 510 * 1.0001
    np.testing.assert_allclose(truth.sum((-2, -1)), 1.0, atol=1e-5)


@pytest.mark.slow
def test_live_session_analyses_each_new_frame_like_the_export(exported):
    from policylens.attribution import saliency_tree, tree_nodes
    from policylens.explorer.server import load_session

    run, _, out, _ = exported
    session = load_session(run, out, seed=5)
    agent = session.agent
    first = session.reset()["frame"]
    frames = [(first, session.obs.copy(), session.state)]
    taken = session.step(1)
    assert taken["taken"]["t"] == 0 and taken["taken"]["action"] == 1 and taken["frame"]["t"] == 1
    frames.append((taken["frame"], session.obs.copy(), session.state))
    for frame, obs, state in frames:
        with torch.no_grad():
            full = agent(torch.as_tensor(obs), state)
        assert frame["value"] == pytest.approx(float(full.value[0]), abs=1e-5)
        preferred = int(full.logits.argmax())
        assert frame["preferred"] == preferred
        zero = output_at_zero(agent, obs, state, "conv2")
        maps = frame["maps"][0]
        check_completeness(np.asarray(maps["value"]["totals"])[None], (full.value - zero.value).numpy(), 2e-3)
        change = (full.logits - zero.logits)[:, preferred].numpy()
        check_completeness(np.asarray(maps["action"]["totals"])[None], change, 2e-3)
        truth = saliency_tree(agent, obs, k=2, state=state)  # the export's tree_k, read from its manifest
        assert [(n["layer"], n["unit"]) for n in tree_nodes(frame["tree"])] == \
            [(n["layer"], n["unit"]) for n in tree_nodes(truth)]
        assert frame["tree"]["activation"] == pytest.approx(float(full.value[0]), rel=1e-3, abs=1e-4)
    # the state carried into the second frame is the one the agent produced at the first (recurrent agent)
    with torch.no_grad():
        carried = agent(torch.as_tensor(frames[0][1]), frames[0][2]).state
    if taken["taken"]["done"]:  # an episode that ended starts again from the learned initial state
        carried = agent.initial_state(1)
    torch.testing.assert_close(frames[1][2], carried)
    # the same seed and actions replay the same frames
    again = load_session(run, out, seed=5)
    assert again.reset()["frame"]["image"] == first["image"]
    assert again.step(1)["frame"]["image"] == taken["frame"]["image"]
    with pytest.raises(ValueError, match=r"action must be an integer in \[0, 3\)"):
        session.step(7)


# ------------------------------------------------------------------------------------------------ choices and errors
def test_default_layers_per_architecture():
    assert default_layers(tiny_agent("cnn")[0]) == ["conv2"]
    assert default_layers(tiny_agent("clear", obs_shape=(64, 64, 3))[0]) == ["conv2b"]
    assert default_layers(tiny_agent("impala", obs_shape=(64, 64, 3))[0]) == ["block3_relu"]
    assert default_layers(tiny_agent("mlp")[0]) == ["fc2"]  # no spatial layer: the last hidden one, one position
    # separate towers, no shared layer: the value tower's last (the explorer's NMF is of value attributions)
    assert default_layers(tiny_agent("mlp", obs_shape=(4,), hidden_sizes=(), pi_hidden=(8, 8))[0]) == ["v_fc2"]
    assert default_layers(tiny_agent("mlp", obs_shape=(4,), hidden_sizes=(5,), pi_hidden=(8,))[0]) == ["fc1"]
    with pytest.raises(ValueError, match="no hidden layer"):
        default_layers(tiny_agent("mlp", obs_shape=(4,), hidden_sizes=())[0])


def test_episode_ranges():
    assert parse_episodes("0-3", 10) == [0, 1, 2, 3]
    assert parse_episodes("4, 0-1,1", 10) == [4, 0, 1]
    assert parse_episodes("all", 3) == [0, 1, 2]
    with pytest.raises(ValueError, match="holds 3"):
        parse_episodes("0-7", 3)
    with pytest.raises(ValueError, match="expected indices"):
        parse_episodes("first", 3)


def test_bad_layers_and_episodes_are_clear_errors(recorded, tmp_path):
    from policylens.explorer.cli import main

    run, _ = recorded
    args = [str(run), "--out", str(tmp_path / "x"), "--progress", "false", "--steps", "4"]
    with pytest.raises(KeyError, match="no layer 'conv9'.*conv1.*conv2"):
        main(args + ["--layer", "conv9"])
    from policylens.agents import load

    assert check_layer(load(run), "fc") == (256, 1, 1)  # a flat layer is drawn as one position
    with pytest.raises(ValueError, match="episode 9.*holds 3"):
        main(args + ["--episodes", "9"])
    with pytest.raises(FileNotFoundError, match="no rollouts store"):
        main(args + ["--store", str(tmp_path / "none.zarr")])


def test_vector_observations_are_drawn_as_a_strip_red_above_zero_blue_below():
    obs = np.array([[1.0, -2.0, 0.0], [0.5, 1.0, 0.0]], np.float32)  # (T, D)
    frames, how = display_rgb(obs)
    assert how == "vector" and frames.shape == (2, 1, 3, 3) and frames.dtype == np.uint8
    assert frames[0, 0, 0].tolist() == [255, 0, 0]  # the feature's largest magnitude, positive: full red
    assert frames[0, 0, 1].tolist() == [0, 0, 255]  # largest magnitude, negative: full blue
    assert frames[0, 0, 2].tolist() == [255, 255, 255] == frames[1, 0, 2].tolist()  # zero: white
    assert frames[1, 0, 0].tolist() == [255, 128, 128]  # half the largest: half-way to red
