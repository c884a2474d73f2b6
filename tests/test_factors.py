"""Factors: NMF / PCA / ICA recover known structure, coefficients + residual rebuild the data, activations
from agents and from a real rollouts store, Directions files, and the factorize command."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from policylens import agents, rollouts
from policylens.factors import (
    Directions,
    choose_frames,
    cli as factorize_cli,
    coefficients,
    collect_activations,
    ica,
    nmf,
    nmf_attributions,
    pca,
    reconstruct,
    residual,
    store_activations,
)

AGENT = {"arch": "cnn", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1}


def gen(seed):
    return torch.Generator().manual_seed(seed)


def sparse_nonneg(*shape, seed, density=0.4):
    g = gen(seed)
    return torch.rand(*shape, generator=g) * (torch.rand(*shape, generator=g) < density)


def best_cosines(truth: torch.Tensor, found: torch.Tensor) -> tuple:
    """For each true vector (row), the best |cosine| with a found vector and which one it is."""
    a = truth / truth.norm(dim=1, keepdim=True)
    b = found / found.norm(dim=1, keepdim=True)
    cos = (a.double() @ b.double().T).abs()  # (K_true, K_found)
    return cos.max(1).values, cos.argmax(1)


def sq_share(part, whole) -> float:
    return float(torch.as_tensor(part).double().pow(2).sum() / torch.as_tensor(whole).double().pow(2).sum())


# ---------------------------------------------------------------- synthetic data with known factors

K_TRUE, C = 4, 12
COMPONENTS = sparse_nonneg(K_TRUE, C, seed=0, density=0.5) + torch.eye(K_TRUE, C)  # (K, C), none empty


@pytest.fixture(scope="module")
def spatial_acts():
    """(N, C, 3, 3) non-negative activations made from 4 known channel-space components."""
    weights = sparse_nonneg(300, K_TRUE, 3, 3, seed=1, density=0.35)  # (N, K, 3, 3)
    return torch.einsum("nkhw,kc->nchw", weights, COMPONENTS)


def test_nmf_recovers_known_components_with_no_residual(spatial_acts):
    dirs = nmf(spatial_acts, K_TRUE, layer="conv2")
    assert dirs.vectors.shape == (K_TRUE, C) and dirs.layer == "conv2" and dirs.method == "nmf"
    cos, match = best_cosines(COMPONENTS, dirs.vectors)
    assert (cos > 0.97).all(), cos
    assert len(set(match.tolist())) == K_TRUE  # each true component found by a different direction
    assert dirs.meta["residual"] < 1e-4
    assert dirs.meta["rows"] == 300 * 9
    torch.testing.assert_close(dirs.vectors.norm(dim=1), torch.ones(K_TRUE))


@pytest.mark.slow
def test_nmf_residual_grows_when_k_is_below_the_true_rank(spatial_acts):
    residuals = [nmf(spatial_acts, k, layer="conv2").meta["residual"] for k in (2, 3, 4)]
    assert residuals[0] > residuals[1] > residuals[2]
    assert residuals[0] > 0.01
    # the recorded residual is what is left outside: refitting coefficients to the directions cannot beat it
    dirs = nmf(spatial_acts, 2, layer="conv2")
    refit = sq_share(residual(spatial_acts, dirs), spatial_acts)
    assert refit <= dirs.meta["residual"] + 1e-4 and refit > 0.5 * dirs.meta["residual"]


def test_nmf_refuses_negative_activations_and_bad_k(spatial_acts):
    with pytest.raises(ValueError, match=r"non-negative.*'block2'.*nmf_attributions"):
        nmf(spatial_acts - 0.5, 2, layer="block2")
    with pytest.raises(ValueError, match="k must be"):
        nmf(spatial_acts, 0, layer="conv2")
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        nmf(torch.ones(5), 1, layer="conv2")


@pytest.mark.slow
def test_nmf_attributions_splits_positive_and_negative_parts_along_the_batch():
    """Good-news positions use components 0, 1 (and 3), bad-news positions 2 (and 3): one NMF over both
    parts finds all four, and ``positive_share`` tells which part each one came from."""
    n = 400
    weights = sparse_nonneg(n, K_TRUE, 2, 2, seed=2, density=0.5) + 0.05  # (N, K, 2, 2)
    good = torch.rand(n, 1, 2, 2, generator=gen(3)) < 0.5  # (N, 1, 2, 2)
    in_good = torch.tensor([1.0, 1.0, 0.0, 1.0]).reshape(1, K_TRUE, 1, 1)  # components used in good news
    in_bad = torch.tensor([0.0, 0.0, 1.0, 1.0]).reshape(1, K_TRUE, 1, 1)  # ... and in bad news
    w = torch.where(good, weights * in_good, weights * in_bad)  # (N, K, 2, 2)
    sign = torch.where(good, 1.0, -1.0)
    attr = sign * torch.einsum("nkhw,kc->nchw", w, COMPONENTS)  # (N, C, 2, 2) signed
    dirs = nmf_attributions(attr, K_TRUE, layer="conv2")
    assert dirs.meta["sign_split"] == "batch" and dirs.meta["rows"] == 2 * n * 4
    cos, match = best_cosines(COMPONENTS, dirs.vectors)
    assert (cos > 0.97).all(), cos
    share = torch.tensor(dirs.meta["positive_share"])[match]  # per true component
    assert share[0] > 0.95 and share[1] > 0.95 and share[2] < 0.05 and 0.2 < share[3] < 0.8, share
    assert dirs.meta["residual"] < 1e-3
    # coefficients of signed data: positive minus negative part, both non-negative, rebuild the attributions
    pos, neg = coefficients(attr, dirs, split_sign=True)
    assert pos.shape == (n, K_TRUE, 2, 2) and (pos >= 0).all() and (neg >= 0).all()
    torch.testing.assert_close(coefficients(attr, dirs), pos - neg)
    assert sq_share(residual(attr, dirs), attr) < 1e-3
    assert not ((pos > 1e-3) & (neg > 1e-3)).any()  # a position is good news or bad news, never both here


def test_pca_matches_an_eigendecomposition_of_the_covariance():
    g = gen(4)
    x = torch.randn(500, 6, generator=g) @ torch.randn(6, 6, generator=g) + torch.arange(6.0)  # (N, C)
    dirs = pca(x, 3, layer="hx")
    xc = x.double() - x.double().mean(0)
    evals, evecs = torch.linalg.eigh(xc.T @ xc / (len(x) - 1))  # ascending
    evals, evecs = evals.flip(0), evecs.flip(1)
    np.testing.assert_allclose(dirs.meta["explained_variance_ratio"], (evals[:3] / evals.sum()).numpy(), rtol=1e-4)
    np.testing.assert_allclose(dirs.meta["mean"], x.double().mean(0).numpy(), rtol=1e-5, atol=1e-5)
    cos = (evecs[:, :3].T @ dirs.vectors.double().T).abs().diagonal()
    assert (cos > 0.9999).all()
    torch.testing.assert_close(dirs.vectors @ dirs.vectors.T, torch.eye(3), atol=1e-5, rtol=0)
    assert dirs.meta["residual"] == pytest.approx(1 - sum(dirs.meta["explained_variance_ratio"]), abs=1e-6)
    full = pca(x, 6, layer="hx")
    assert sum(full.meta["explained_variance_ratio"]) == pytest.approx(1.0, abs=1e-6)
    assert full.meta["residual"] < 1e-10


def test_spatial_positions_are_flattened_into_the_batch():
    x = torch.randn(20, 5, 3, 4, generator=gen(5))  # (N, C, H, W)
    rows = torch.stack([x[n, :, i, j] for n in range(20) for i in range(3) for j in range(4)])  # (N*H*W, C)
    a, b = pca(x, 2, layer="block2"), pca(rows, 2, layer="block2")
    torch.testing.assert_close(a.vectors, b.vectors)
    assert a.meta["rows"] == 240
    coef = coefficients(x, a)
    assert coef.shape == (20, 2, 3, 4)
    torch.testing.assert_close(coef[7, :, 1, 2], coefficients(x[7:8, :, 1, 2], a)[0])


def test_ica_recovers_independent_sources_of_a_mixture():
    n, g = 4000, gen(6)
    sources = torch.stack([torch.rand(n, generator=g) * 2 - 1,  # uniform
                           torch.rand(n, generator=g) ** 3,  # skewed
                           torch.sign(torch.randn(n, generator=g)) * torch.rand(n, generator=g).log().neg()],  # laplace
                          1).double()  # (N, 3)
    mixing = torch.randn(6, 3, generator=g).double()  # (C, 3)
    x = sources @ mixing.T + 2.0  # (N, 6): rank-3 data in 6 channels
    dirs = ica(x, 3, layer="hx")
    cos, match = best_cosines(mixing.T, dirs.vectors)
    assert (cos > 0.99).all() and len(set(match.tolist())) == 3, cos
    found = coefficients(x, dirs)  # (N, 3) unmixed sources
    corr = np.corrcoef(np.concatenate([sources.numpy(), found.double().numpy()], 1).T)[:3, 3:]
    assert (np.abs(corr).max(1) > 0.99).all()
    assert dirs.meta["residual"] < 1e-8
    assert sq_share(residual(x, dirs), x - x.mean(0)) < 1e-8


@pytest.mark.parametrize("method", ["nmf", "pca", "ica", "manual"])
def test_coefficients_plus_residual_rebuild_x(method):
    x = torch.rand(40, 8, 2, 2, generator=gen(7))  # (N, C, H, W), not in any 3-d span
    if method == "manual":
        dirs = Directions(torch.randn(3, 8, generator=gen(8)), "conv2")
    else:
        dirs = {"nmf": nmf, "pca": pca, "ica": ica}[method](x, 3, layer="conv2")
    coef, rest = coefficients(x, dirs), residual(x, dirs)
    assert coef.shape == (40, 3, 2, 2) and rest.shape == x.shape
    torch.testing.assert_close(reconstruct(coef, dirs) + rest, x, atol=1e-5, rtol=0)
    assert sq_share(rest, x) > 1e-3  # the data are not in the span: something is left
    if method != "nmf":  # least squares / orthogonal projections: the residual is orthogonal to the span
        q = torch.linalg.qr(dirs.vectors.double().T).Q  # (C, 3)
        assert (rest.movedim(1, -1).double() @ q).abs().max() < 1e-4


def test_nmf_coefficients_are_the_non_negative_least_squares_solution():
    x = torch.rand(30, 6, generator=gen(9))  # (N, C)
    dirs = nmf(x, 3, layer="fc")
    coef = coefficients(x, dirs)
    v = dirs.vectors.double().numpy()  # (K, C)
    for row in range(0, 30, 7):
        expected, _ = nnls(v.T, x[row].double().numpy())
        np.testing.assert_allclose(coef[row].numpy(), expected, atol=2e-4)


def test_directions_round_trip_and_file_errors_name_the_file(tmp_path):
    x = torch.randn(300, 5, generator=gen(10)).pow(3)
    dirs = ica(x, 2, layer="hx", labels=("left", "right"))
    path = dirs.save(tmp_path / "dirs" / "hx-ica")
    back = Directions.load(path)
    assert back.layer == "hx" and back.labels == ("left", "right") and back.method == "ica"
    torch.testing.assert_close(back.vectors, dirs.vectors)
    assert back.meta == dirs.meta
    torch.testing.assert_close(coefficients(x, back), coefficients(x, dirs))
    assert Directions.load(tmp_path / "dirs" / "hx-ica.safetensors").labels == back.labels

    (tmp_path / "dirs" / "hx-ica.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"hx-ica\.safetensors"):
        Directions.load(path)
    (tmp_path / "dirs" / "hx-ica.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"hx-ica\.json"):
        Directions.load(path)
    with pytest.raises(FileNotFoundError, match=r"nothing\.json"):
        Directions.load(tmp_path / "nothing")


@pytest.mark.parametrize("method", ["ica", "pca"])
def test_selected_directions_keep_their_own_meta(method):
    x = torch.randn(300, 5, generator=gen(14)).pow(3)
    full = {"ica": ica, "pca": pca}[method](x, 3, layer="hx")
    some = full.select([2, 0])
    torch.testing.assert_close(coefficients(x, some), coefficients(x, full)[:, [2, 0]])
    if method == "pca":
        ratio = full.meta["explained_variance_ratio"]
        assert some.meta["explained_variance_ratio"] == [ratio[2], ratio[0]]


def test_one_hot_directions_and_basis():
    d = Directions.one_hot("conv1", [2, 0], 4)
    torch.testing.assert_close(d.vectors, torch.tensor([[0.0, 0, 1, 0], [1, 0, 0, 0]]))
    assert d.labels == ("channel 2", "channel 0")
    with pytest.raises(ValueError, match="out of range"):
        Directions.one_hot("conv1", [4], 4)
    dependent = Directions(torch.tensor([[1.0, 1, 0], [2, 2, 0], [0, 0, 3]]), "fc")
    q = dependent.basis()
    assert q.shape == (2, 3)
    torch.testing.assert_close(q @ q.T, torch.eye(2), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="all zero"):
        Directions(torch.zeros(2, 3), "fc").basis()


# ---------------------------------------------------------------- activations from agents and stores


def tiny(recurrent=False, seed=0):
    torch.manual_seed(seed)
    cfg = {**AGENT, "recurrent": recurrent, "hidden": 16} if recurrent else dict(AGENT)
    return agents.build(cfg).eval(), cfg


def test_collect_activations_equals_the_layer_computed_by_hand():
    agent, _ = tiny()
    obs = torch.randint(0, 256, (10, 7, 7, 3), generator=gen(11), dtype=torch.uint8)
    acts = collect_activations(agent, obs, "conv2", batch_size=4)  # 3 batches
    with torch.no_grad():
        by_hand = agent.conv2(agent.conv1(agent.embed(agent.scale(obs))))  # (10, 64, 7, 7)
    torch.testing.assert_close(acts, by_hand)
    assert not agent.conv2._forward_hooks
    with pytest.raises(ValueError, match="observation shape"):
        collect_activations(agent, torch.zeros(2, 7, 7, 20, dtype=torch.uint8), "conv2")
    assert not agent.conv2._forward_hooks  # removed after the error too
    with pytest.raises(KeyError, match="nope"):
        collect_activations(agent, obs, "nope")


def test_collect_activations_passes_the_state_to_a_recurrent_agent():
    agent, _ = tiny(recurrent=True)
    obs = torch.randint(0, 256, (6, 7, 7, 3), generator=gen(12), dtype=torch.uint8)
    state = torch.randn(6, 16, generator=gen(13))
    hx = collect_activations(agent, obs, "hx", state=state, batch_size=4)
    with torch.no_grad():
        expected = agent(obs, state).state
        fresh = agent(obs).state
    torch.testing.assert_close(hx, expected)
    assert not torch.allclose(hx, fresh, atol=1e-4)
    with pytest.raises(ValueError, match="state has 5 rows"):
        collect_activations(agent, obs, "hx", state=state[:5])


@pytest.fixture(scope="module")
def runs(pair):
    """Two recorded runs on MiniGrid 5x5: feed-forward and recurrent cnn agents (``tiny``), 4 episodes each."""
    return pair


@pytest.mark.parametrize("name", ["ff", "rnn"])
@pytest.mark.slow
def test_store_activations_of_the_policy_head_equal_the_recorded_logits(runs, name):
    """Streaming a store's frames through the agent (with the recorded state when recurrent) gives back,
    at layer ``pi``, exactly the logits the agent had while playing."""
    agent = agents.load(runs / name)
    store = rollouts.open(runs / name / "rollouts.zarr")
    frames, logits = store_activations(agent, store, "pi", batch_size=8)
    np.testing.assert_array_equal(frames, np.arange(store.num_frames))
    recorded = store.read("logits", 0, store.num_frames)
    np.testing.assert_allclose(logits.numpy(), recorded, atol=1e-5)
    chosen, some = store_activations(agent, store, "pi", max_frames=5, every=2, batch_size=8)
    np.testing.assert_array_equal(chosen, choose_frames(store.num_frames, 5, 2))
    assert len(chosen) == 5 and (np.diff(chosen) > 0).all() and (chosen % 2 == 0).all()
    np.testing.assert_allclose(some.numpy(), recorded[chosen], atol=1e-5)
    if name == "rnn":  # the recorded state matters: without it the logits differ
        fresh = collect_activations(agent, store.read("obs", 0, store.num_frames), "pi")
        assert not np.allclose(fresh.numpy(), recorded, atol=1e-4)


@pytest.mark.slow
def test_recurrent_agent_on_a_store_without_states_is_refused(runs):
    agent = agents.load(runs / "rnn")
    with pytest.raises(ValueError, match="agent_state"):
        store_activations(agent, runs / "ff" / "rollouts.zarr", "hx")


# ---------------------------------------------------------------- the factorize command


@pytest.mark.slow
def test_factorize_command_writes_the_directions_nmf_finds_in_memory(runs, capsys):
    run = runs / "ff"
    assert factorize_cli.main([str(run), "--layer", "conv2", "--method", "nmf", "--k", "3",
                               "--max-frames", "20"]) == 0
    out = run / "analysis" / "directions" / "conv2-nmf-activations"
    printed = capsys.readouterr().out
    assert str(out) in printed
    saved = Directions.load(out)
    for label, stab in zip(saved.labels, saved.meta["stability"]):  # every direction's stability is printed
        assert f"{label}: stability {stab:.3f}" in printed
    _, acts = store_activations(agents.load(run), run / "rollouts.zarr", "conv2", max_frames=20)
    expected = nmf(acts, 3, layer="conv2")
    torch.testing.assert_close(saved.vectors, expected.vectors)
    assert saved.meta["residual"] == pytest.approx(expected.meta["residual"])
    assert saved.meta["source"]["frames"] == 20 and saved.layer == "conv2"
    assert saved.meta["stability"] == expected.meta["stability"] and len(saved.meta["restarts"]) == 5

    pca_out = runs / "elsewhere" / "hx-pca"
    assert factorize_cli.main([str(runs / "rnn"), "--layer", "hx", "--method", "pca", "--k", "4",
                               "--max-frames", "0", "--out", str(pca_out)]) == 0
    saved = Directions.load(pca_out)
    _, hx = store_activations(agents.load(runs / "rnn"), runs / "rnn" / "rollouts.zarr", "hx")
    torch.testing.assert_close(saved.vectors, pca(hx, 4, layer="hx").vectors)


@pytest.mark.slow
def test_factorize_command_errors_are_clear(runs, capsys):
    run = str(runs / "ff")
    with pytest.raises(SystemExit) as e:
        factorize_cli.main([run, "--layer", "conv2", "--method", "svd"])
    assert e.value.code == 2 and "nmf, pca, ica" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        factorize_cli.main([run, "--layer", "conv9"])
    assert "conv9" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        factorize_cli.main([run, "--layer", "conv2", "--store", str(runs / "missing.zarr")])
    assert "missing.zarr" in capsys.readouterr().err


@pytest.mark.slow
def test_factorize_on_attributions_factorises_integrated_gradients_of_the_value(runs):
    from policylens.attribution import attribute

    run, out = runs / "rnn", runs / "attr" / "conv2-attr"
    assert factorize_cli.main([str(run), "--layer", "conv2", "--on", "attributions", "--k", "3", "--steps", "4",
                               "--max-frames", "10", "--out", str(out)]) == 0
    saved = Directions.load(out)
    assert saved.meta["on"] == "attributions" and len(saved.meta["positive_share"]) == 3
    agent, store = agents.load(run), rollouts.open(run / "rollouts.zarr")
    chosen = choose_frames(store.num_frames, 10)
    obs = torch.as_tensor(store.read("obs", 0, store.num_frames)[chosen])
    state = torch.as_tensor(store.read("agent_state", 0, store.num_frames)[chosen])
    attr = attribute(agent, obs, target="value", layer="conv2", method="ig", steps=4, state=state)
    expected = nmf_attributions(attr, 3, layer="conv2")
    torch.testing.assert_close(saved.vectors, expected.vectors, atol=1e-4, rtol=1e-4)
