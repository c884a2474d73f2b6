"""Hidden-state analysis (policylens sim hx): z-scoring + PCA against numpy's SVD, projections of other states
with the real z-scoring, planted clusters recovered, seeded t-SNE, directions usable by factors and swaps,
the produced hx of a real recording, the CLI end to end (with a simulator), bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from policylens import agents
from policylens.edit import swap_matrix
from policylens.factors import Directions, coefficients, reconstruct
from policylens.hidden.hx import cli as hx_cli
from policylens.hidden.hx.core import analyze, load_analysis, project, save_analysis, simulated_frames, store_frames
from policylens.rollouts import RecordConfig, record

ENV = "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0"
AGENT = {"arch": "cnn", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1}
FAST = dict(k=4, clusters=3, tsne_frames=40, tsne_iter=250, perplexity=8.0)


def _mixed_states(n=300, d=10, seed=0):
    """States with unit scales from 0.01 to 100 and correlated units: z-scoring matters."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 4)) * [3.0, 2.0, 1.0, 0.5]
    x = latent @ rng.normal(size=(4, d)) + 0.1 * rng.normal(size=(n, d))
    return (x * np.logspace(-2, 2, d) + rng.normal(size=d) * 5).astype(np.float32)  # (N, D)


@pytest.fixture(scope="module")
def mixed():
    x = _mixed_states()
    colours = {"value": x[:, 0] * 0.1, "action": np.arange(len(x)) % 3}
    return x, analyze(x, colours, **FAST, seed=0)


# -------------------------------------------------------------------------------------------------- the core
@pytest.mark.slow
def test_pca_of_z_scored_states_matches_numpy_svd(mixed):
    x, a = mixed
    z = (x - x.mean(0)) / x.std(0)  # population std, as the analysis uses
    s = np.linalg.svd(z - z.mean(0), compute_uv=False)
    reference = s ** 2 / (s ** 2).sum()
    np.testing.assert_allclose(a.variance_ratio.numpy(), reference, rtol=1e-4, atol=1e-6)
    ratio = np.array(a.summary["pca"]["explained_variance_ratio"])
    assert ratio.sum() <= 1 + 1e-6 and np.all(np.diff(ratio) <= 1e-7)
    np.testing.assert_allclose(a.summary["pca"]["cumulative"][-1], reference[:4].sum(), rtol=1e-4)
    # PCA coefficients are the z-scored states on the orthonormal directions
    v = a.directions["pca"].vectors.numpy()  # (k, D)
    np.testing.assert_allclose(v @ v.T, np.eye(4), atol=1e-5)
    np.testing.assert_allclose(a.frames["pca"], z @ v.T, rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_project_uses_the_real_z_scoring_and_reproduces_the_saved_projections(mixed, tmp_path):
    x, a = mixed
    save_analysis(a, tmp_path / "hx")
    loaded = load_analysis(tmp_path / "hx")
    again = project(x, loaded)
    for name in ("pca", "ica", "nmf", "cluster"):
        np.testing.assert_allclose(again[name], a.frames[name], rtol=1e-4, atol=1e-4, err_msg=name)
    # other states are z-scored with the real mean and std, not their own
    other = 3 * x[:50] + 7
    z_real = (other - x.mean(0)) / x.std(0)
    np.testing.assert_allclose(project(other, loaded)["pca"], z_real @ loaded.directions["pca"].vectors.numpy().T,
                               rtol=1e-3, atol=1e-3)
    # nearest-centre labels of the real states are k-means' own labels
    np.testing.assert_array_equal(again["cluster"], a.frames["cluster"])


@pytest.mark.slow
def test_directions_are_in_z_space_for_factors_and_swaps(mixed):
    x, a = mixed
    z = torch.as_tensor((x - x.mean(0)) / x.std(0))
    for method, dirs in a.directions.items():
        assert dirs.layer == "hx" and dirs.method == method and len(dirs) == 4
        np.testing.assert_allclose(dirs.meta["std"], x.std(0), rtol=1e-4)
        np.testing.assert_allclose(dirs.meta["zscore_mean"], x.mean(0), rtol=1e-4, atol=1e-4)
    ics = a.directions["ica"]
    sources = coefficients(z, ics).double()  # (N, k) unit-variance, uncorrelated independent components
    np.testing.assert_allclose(torch.corrcoef(sources.T).numpy(), np.eye(4), atol=1e-3)
    nmf = a.directions["nmf"]  # z = shift + coefficients @ V, shift the per-unit minimum
    assert (nmf.vectors >= 0).all()
    np.testing.assert_allclose(nmf.meta["mean"], z.min(0).values.numpy(), rtol=1e-4, atol=1e-4)
    rest = ((reconstruct(coefficients(z, nmf), nmf) - z) ** 2).sum() / ((z - z.min(0).values) ** 2).sum()
    assert float(rest) < nmf.meta["residual"] + 0.02
    # a swap of PC1 -> PC2 done through meta["std"] equals doing it by hand in z-space
    pcs = a.directions["pca"]
    delta = torch.as_tensor(x[1] - x[0])[None]  # (1, D)
    v, std = pcs.vectors.double(), torch.as_tensor(pcs.meta["std"], dtype=torch.float64)
    dz = delta.double() / std
    by_hand = (dz + (dz @ v[0]) * (v[1] - v[0])) * std
    torch.testing.assert_close(delta @ swap_matrix(pcs, [(0, 1)]), by_hand.float(), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_planted_clusters_are_recovered():
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 12)) * 6
    truth = rng.integers(0, 4, 400)
    x = centres[truth] + rng.normal(size=(400, 12))
    a = analyze(x, {"value": truth.astype(float)}, k=3, clusters=4, tsne_frames=0, seed=0)
    assert adjusted_rand_score(truth, a.frames["cluster"]) > 0.95
    table = a.summary["clusters"]
    assert sum(c["size"] for c in table) == 400
    for c in table:  # the per-cluster mean value is its planted label
        assert c["mean_value"] == pytest.approx(np.bincount(truth[a.frames["cluster"] == c["cluster"]]).argmax())


@pytest.mark.slow
def test_tsne_is_deterministic_given_the_seed(mixed):
    x, a = mixed
    b = analyze(x, **FAST, seed=0)
    c = analyze(x, **FAST, seed=1)
    np.testing.assert_array_equal(a.frames["tsne_index"], b.frames["tsne_index"])
    np.testing.assert_array_equal(a.frames["tsne"], b.frames["tsne"])
    assert a.frames["tsne"].shape == (40, 2) and not np.array_equal(a.frames["tsne_index"], c.frames["tsne_index"])


@pytest.mark.slow
def test_a_constant_unit_gets_z_zero_not_a_division_by_zero():
    x = _mixed_states(n=80)
    x[:, 3] = 2.5
    a = analyze(x, k=3, clusters=2, tsne_frames=0)
    assert a.summary["constant_units"] == 1 and np.isfinite(a.frames["pca"]).all()
    assert abs(a.directions["pca"].vectors[:, 3]).max() < 1e-5


@pytest.mark.parametrize("states, kw, match", [
    (np.zeros((10,)), {}, r"\(N, D\)"),
    (np.full((10, 4), np.nan), {}, "NaN"),
    (np.ones((10, 4)), {"k": 5}, r"k=5 .*\[1, 4\]"),
    (np.ones((10, 4)), {"clusters": 11}, "clusters=11"),
    (np.ones((10, 4)), {"colours": {"value": np.ones(3)}}, "value.*one value per frame"),
])
def test_bad_input_to_the_core(states, kw, match):
    with pytest.raises(ValueError, match=match):
        analyze(states, **{"k": 2, "clusters": 2, "tsne_frames": 0, **kw})


# -------------------------------------------------------------------------------------------------- a store
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for k, (name, extra) in enumerate((("rnn", {"recurrent": True, "hidden": 12}), ("other", {"recurrent": True,
                                       "hidden": 12}), ("ff", {}))):
        torch.manual_seed(k)
        cfg = {**AGENT, **extra}
        agents.save_agent(agents.build(cfg), cfg, root / name / "agent", extra={"env": ENV})
    for name in ("rnn", "ff"):
        record(RecordConfig(run=str(root / name), episodes=6, num_envs=2, progress=False))
    return root


@pytest.mark.slow
def test_store_frames_are_the_states_the_agent_produced(runs):
    agent = agents.load(runs / "rnn")
    frames = store_frames(runs / "rnn" / "rollouts.zarr", agent)
    from policylens import rollouts

    store = rollouts.open(runs / "rnn" / "rollouts.zarr")
    for i in range(len(store)):  # replay each episode step by step: the state after the GRU at every frame
        ep, h, produced = store.episode(i), None, []
        with torch.no_grad():
            for obs in torch.as_tensor(ep["obs"]):
                h = agent(obs[None], h).state
                produced.append(h[0])
        pick = frames["episode"] == i
        np.testing.assert_allclose(frames["hx"][pick], torch.stack(produced).numpy(), atol=1e-5)
        np.testing.assert_allclose(frames["progress"][pick], np.arange(ep.length) / ep.length)
        np.testing.assert_allclose(frames["value"][pick], ep["value"])
    p = torch.softmax(torch.as_tensor(store.read("logits", 0, store.num_frames)).double(), -1)
    np.testing.assert_allclose(frames["entropy"], -(p * p.log()).sum(-1).numpy(), rtol=1e-5)
    few = store_frames(store, agent, max_frames=int(store.index["length"][:2].sum()))  # whole episodes only
    assert set(few["episode"]) == {0, 1}


@pytest.mark.slow
def test_store_of_another_or_a_feed_forward_agent_is_refused(runs):
    with pytest.raises(ValueError, match="another agent"):
        store_frames(runs / "rnn" / "rollouts.zarr", agents.load(runs / "other"))
    with pytest.raises(ValueError, match="record one with policylens record zoo:minigrid-do8-recurrent"):
        store_frames(runs / "ff" / "rollouts.zarr", agents.load(runs / "rnn"))


def _save_tiny_sim(runs):
    from policylens.sim.checkpoint import save_sim
    from policylens.sim.config import SimConfig, for_data
    from policylens.sim.loop import agent_sha256
    from policylens.sim.model import Simulator

    cfg = for_data(SimConfig(context_frames=2, latent=6, deter=8, stoch=3, hidden=16, embed=16, channels=4),
                   ENV, (7, 7, 3), 3, 12)
    agent = agents.load(runs / "rnn")
    info = {"run": str(runs / "rnn"), "sha256": agent_sha256(agent), "config": AGENT}
    save_sim(Simulator(cfg, seed=0), runs / "rnn" / "sim", {"agent": info, "env": ENV})


@pytest.mark.slow
def test_cli_end_to_end_with_a_simulator(runs, capsys):
    _save_tiny_sim(runs)
    out = runs / "rnn" / "analysis" / "hx"
    argv = [str(runs / "rnn"), "--k", "3", "--clusters", "3", "--tsne-frames", "30", "--tsne-iter", "250",
            "--sim-samples", "4", "--sim-steps", "5", "--progress", "false"]
    assert hx_cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "frames of 12-unit hx" in printed and "4 x 5 simulated states" in printed
    for name in ("pca", "ica", "nmf"):
        dirs = Directions.load(out / name)
        assert dirs.layer == "hx" and len(dirs) == 3 and len(dirs.meta["std"]) == 12
    for png in ("pcs", "variance", "tsne", "loadings"):
        assert (out / f"{png}.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["source"]["store"].endswith("rollouts.zarr") and summary["tsne"]["frames"] == 30
    real = load_analysis(out)
    np.testing.assert_allclose(project(real.frames["states"], real)["pca"], real.frames["pca"], atol=1e-4)
    # simulated hx: what project() gives for the simulator's rollouts, same seed
    from policylens.sim.checkpoint import load_sim

    sim, frozen = load_sim(runs / "rnn" / "sim")
    again = simulated_frames(sim, frozen, samples=4, steps=5, seed=0)
    with np.load(out / "sim" / "projected.npz") as saved:
        np.testing.assert_allclose(saved["hx"], again["hx"], atol=1e-6)
        np.testing.assert_allclose(saved["pca"], project(again["hx"], real)["pca"], atol=1e-5)
        assert saved["pca"].shape == (20, 3)
    state = json.loads((out / "sim" / "state" / "summary.json").read_text())
    assert state["layer"] == "sim_state" and state["units"] == 8 + 3 and state["frames"] == 20
    assert (out / "sim" / "simulated.png").is_file() and (out / "sim" / "state" / "pcs.png").is_file()
    # from filtered real starts: the agent reads the recorded state at the first context frame and the recorded
    # actions drive the context
    from policylens.sim.data import load_sim_data
    from policylens.sim.sample import real_windows

    filtered = runs / "rnn" / "analysis" / "hx-filtered"
    assert hx_cli.main(argv + ["--sim-start", "filtered", "--out", str(filtered), "--plots", "false"]) == 0
    assert json.loads((filtered / "sim" / "summary.json").read_text())["start"] == "filtered"
    windows, _ = real_windows(load_sim_data(runs / "rnn" / "rollouts.zarr"), 4, 2, 0, context_frames=2)
    frames = simulated_frames(sim, frozen, samples=4, steps=5, seed=0, starts=windows)
    assert np.array_equal(frames["action"].reshape(4, 5)[:, 0], windows.action[:, 0].numpy())
    with np.load(filtered / "sim" / "projected.npz") as saved:
        np.testing.assert_allclose(saved["hx"], frames["hx"], atol=1e-6)
    from policylens.sim.loop import filtered_start, rollout

    g = torch.Generator().manual_seed(0)
    torch.randn(4, sim.config.latent, generator=g)  # the prior's z, drawn and not used
    with torch.no_grad():
        r = rollout(sim, frozen, windows.context(2), 5, mode="sample", generator=g, **filtered_start(windows, 2))
    assert torch.equal(r.hx[:, 0], windows.agent_state[:, 0])  # the recorded state at the first frame
    np.testing.assert_allclose(frames["hx"].reshape(4, 5, -1)[:, :-1], r.hx[:, 1:].numpy(), atol=1e-6)


@pytest.mark.slow
def test_cli_bad_input_is_a_clean_error(runs, capsys, tmp_path):
    for argv, match in (([str(runs / "ff")], "recurrent"),
                        ([str(runs / "rnn"), "--k", "40", "--sim", "none"], "k=40"),
                        ([str(runs / "rnn"), "--sim-start", "z"], "expected prior or filtered"),
                        ([str(runs / "rnn"), "--store", str(runs / "nowhere.zarr")], "no rollouts store")):
        with pytest.raises(SystemExit) as e:
            hx_cli.main(argv + ["--progress", "false", "--out", str(tmp_path / "hx")])  # not an earlier output
        assert e.value.code == 2
        assert match in capsys.readouterr().err
