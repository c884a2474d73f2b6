"""Decompositions give the same answer at any thread count, choose among restarts by a fixed rule, and say
how stable each direction is; findings built on them (the blind edit) agree at 1 and 2 threads."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from policylens.factors import Directions, ica, nmf, pca
from policylens.factors.stable import UNSTABLE, canonical_clusters, choose, kmeans, matched_cosines


def run_at(threads_list, code: str) -> list:
    """Run ``code`` (which prints one JSON line last) in fresh interpreters side by side, one per entry of
    ``threads_list``, each with that many BLAS/OpenMP and torch threads; their JSON in that order."""
    procs = []
    for threads in threads_list:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
               "MKL_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
        prelude = f"import torch; torch.set_num_threads({threads})\n"
        procs.append(subprocess.Popen([sys.executable, "-c", prelude + textwrap.dedent(code)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=900)
        assert p.returncode == 0, stderr[-3000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    return outs


FINDINGS = """
import json, numpy as np, torch
from policylens import agents, rollouts
from policylens.edit import blind
from policylens.evaluate import evaluate
from policylens.factors import collect_activations, ica, nmf, pca
from policylens.scores import store_frames
store = rollouts.open("{store}")
obs, masks = store_frames(store, kinds=["agent", "ball", "goal"])
agent = agents.load("zoo:minigrid-do8-rgb")
out = {{}}
for layer in ("embed", "conv1"):
    acts = collect_activations(agent, torch.as_tensor(obs), layer).clamp_min(0)
    for name, d in (("nmf", nmf(acts, 8, layer=layer)), ("pca", pca(acts, 4, layer=layer)),
                    ("ica", ica(acts, 3, layer=layer))):
        out[layer + "-" + name] = {{"vectors": d.vectors.tolist(), "stability": d.meta["stability"]}}
for top in ("1", "all"):
    edited, info = blind(agent, obs, masks, "ball", layer="embed", k=8, top=top)
    ev = evaluate(edited, "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs=rgb", 16, start_level=1_000_000, seed=0)
    out["blind-" + top] = {{"chosen": info["chosen"], "vectors": info["directions"].vectors.tolist(),
                           "outcomes": [(r["level"], r["cause"], r["length"]) for r in ev["per_episode"]]}}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    from policylens.rollouts import RecordConfig, record

    out = tmp_path_factory.mktemp("stable") / "r.zarr"
    return record(RecordConfig(run="zoo:minigrid-do8-rgb", episodes=16, num_envs=2, out=str(out), seed=0,
                               progress=False))


@pytest.mark.slow
def test_decompositions_and_the_blind_edit_are_identical_at_one_and_two_threads(store_path):
    """The demo's NMF of `embed` (activations of rank 5) used to come out different at 1 and 2 BLAS threads
    (matched cosines down to 0.08), and the edit followed whichever direction came out. Now NMF, PCA and ICA
    of two real layers, their stability scores, the directions the blind edit chooses and how each level
    then ends are the same at 1 and 2 threads."""
    one, two = run_at([1, 2], FINDINGS.format(store=store_path))
    assert one.keys() == two.keys()
    for key in one:
        assert one[key] == two[key], key
    assert one["blind-1"]["outcomes"] and len(one["blind-1"]["chosen"]) == 1


# ---------------------------------------------------------------- the choice among restarts


def test_choose_takes_the_lowest_objective_then_the_medoid_then_the_first():
    e = np.eye(3)
    a, b = e, e[[1, 0, 2]]  # b: the same directions, permuted
    c = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]]) / np.sqrt(2)  # a different basis
    assert choose([0.3, 0.1, 0.2], [a, b, c]) == 1  # a clear winner on the objective
    # a, b, c tied: b and a agree with each other, c with neither; a and b tie on agreement -> the first
    assert choose([0.1, 0.1, 0.1], [c, a, b]) == 1
    assert choose([0.1, 0.1 + 5e-5, 0.2], [c, a, b]) == 1  # within TIE the medoid wins over the lowest
    assert choose([0.1, 0.1 + 5e-3, 0.2], [c, a, b]) == 0  # beyond TIE it does not


def test_matched_cosines_pair_each_direction_with_one_other():
    a = np.eye(3)
    b = np.array([[0, 2, 0], [0, 0, -1], [1, 0.1, 0]])  # a permuted, rescaled, one sign flipped
    got = matched_cosines(a, b)
    np.testing.assert_allclose(got, [1 / np.sqrt(1.01), 1, 1], atol=1e-12)
    np.testing.assert_allclose(matched_cosines(a, b[:2]), [0, 1, 1], atol=1e-12)  # one direction unmatched


def _parts(seed=0, n=400, noise=0.01):
    """Non-negative rows mixing 3 sparse, distinct parts (a unique NMF) plus a little noise, (n, 6)."""
    g = np.random.default_rng(seed)
    parts = np.array([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1.0]])
    coef = g.exponential(1, (n, 3)) * (g.random((n, 3)) < 0.5)
    return torch.tensor(coef @ parts + noise * g.random((n, 6)), dtype=torch.float32), parts


def test_nmf_of_data_with_one_answer_is_stable_and_finds_the_parts():
    x, parts = _parts()
    d = nmf(x, 3, layer="l")
    assert min(matched_cosines(parts, d.vectors.numpy())) > 0.99
    assert min(d.meta["stability"]) > 0.99 and not any(d.meta["unstable"])
    assert len(d.meta["restarts"]) == 5 and 0 <= d.meta["restart"] < 5 and d.meta["bootstrap"] == 5
    best = min(r["objective"] for r in d.meta["restarts"])
    assert d.meta["residual"] <= best + 1e-4


@pytest.mark.slow
def test_restarts_fitted_side_by_side_give_what_they_give_one_by_one():
    """With two torch threads the restarts and bootstrap fits run two at a time: the same directions, bit for
    bit, and the same choice and stability as one at a time."""
    x, _ = _parts(noise=0.3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = nmf(x, 4, layer="l", restarts=3, bootstrap=3)
        torch.set_num_threads(2)
        two = nmf(x, 4, layer="l", restarts=3, bootstrap=3)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one.vectors, two.vectors) and one.meta == two.meta


def test_with_two_torch_threads_the_fits_do_run_two_at_a_time():
    """settle() reads the thread count before it limits BLAS to one thread (which sets torch's to 1 too): each
    pair of fits meets at a barrier, which only a second thread running beside the first can pass."""
    import threading

    from policylens.factors.decompose import Fit, settle

    barrier, seen = threading.Barrier(2, timeout=20), set()

    def fit_once(rows, restart):
        seen.add(threading.get_ident())
        barrier.wait()  # broken (BrokenBarrierError) when the fits run one after another
        return Fit(torch.eye(2, 3), float(restart), {})

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        chosen, meta, fits = settle(fit_once, torch.rand(10, 3), lambda x: x, seed=0, restarts=2, bootstrap=2)
    finally:
        torch.set_num_threads(before)
    assert len(seen) == 2 and meta["restart"] == 0 and len(fits) == 2


def test_nmf_in_float32_finds_the_float64_directions():
    from policylens.factors import nmf_attributions

    x, _ = _parts(noise=0.05)
    signed = x - x.mean(0)  # attributions of both signs
    d64 = nmf_attributions(signed, 3, layer="l", restarts=2, bootstrap=1)
    d32 = nmf_attributions(signed, 3, layer="l", restarts=2, bootstrap=1, dtype="float32")
    assert min(matched_cosines(d64.vectors.numpy(), d32.vectors.numpy())) > 0.999
    assert d32.meta["dtype"] == "float32" and "dtype" not in d64.meta
    assert abs(d32.meta["residual"] - d64.meta["residual"]) < 1e-3
    with pytest.raises(ValueError, match="NMF dtype 'float16'"):
        nmf_attributions(signed, 3, layer="l", dtype="float16")


@pytest.mark.slow
def test_nmf_of_data_with_many_answers_flags_its_directions_unstable():
    g = np.random.default_rng(0)
    x = torch.tensor(g.random((200, 20)), dtype=torch.float32)  # uniform noise, no parts: many near-equal NMFs
    d = nmf(x, 6, layer="l")
    assert min(d.meta["stability"]) < UNSTABLE and any(d.meta["unstable"])
    assert d.meta["unstable"] == [s < UNSTABLE for s in d.meta["stability"]]


def test_nmf_caps_k_at_the_rank_of_the_data():
    x, _ = _parts(noise=0.0)  # exactly rank 3
    with pytest.warns(UserWarning, match="rank 3.*3 of the 6"):
        d = nmf(x, 6, layer="l")
    assert len(d) == 3 and d.meta["k_requested"] == 6 and len(d.meta["stability"]) == 3


def test_pca_stability_tells_distinct_variances_from_equal_ones():
    g = np.random.default_rng(0)
    distinct = torch.tensor(g.normal(size=(2000, 3)) * [3.0, 1.0, 0.3], dtype=torch.float32)
    angle = 2 * np.pi * np.arange(400) / 400  # a ring: the sample variance is the same in every in-plane direction
    equal = torch.tensor(np.stack([np.cos(angle), np.sin(angle), 0.3 * g.normal(size=400)], 1), dtype=torch.float32)
    assert min(pca(distinct, 3, layer="l").meta["stability"]) > 0.99
    s = pca(equal, 3, layer="l").meta["stability"]
    assert min(s[:2]) < UNSTABLE and s[2] > 0.99  # the two equal variances rotate freely, the third does not


def test_ica_stability_is_high_for_independent_sources():
    g = np.random.default_rng(0)
    sources = g.laplace(size=(3000, 3))
    mixing = np.array([[1, 0.5, 0, 0.2], [0, 1, 0.7, 0], [0.3, 0, 1, 1.0]])
    d = ica(torch.tensor(sources @ mixing, dtype=torch.float32), 3, layer="l")
    assert min(d.meta["stability"]) > 0.98
    assert min(matched_cosines(mixing, d.vectors.numpy())) > 0.98


def test_select_keeps_the_stability_in_step():
    x, _ = _parts()
    d = nmf(x, 3, layer="l")
    picked = d.select([2, 0])
    assert picked.meta["stability"] == [d.meta["stability"][2], d.meta["stability"][0]]
    assert picked.meta["unstable"] == [d.meta["unstable"][2], d.meta["unstable"][0]]


# ---------------------------------------------------------------- k-means


def test_kmeans_numbers_clusters_largest_first_whatever_the_start():
    g = np.random.default_rng(0)
    x = np.concatenate([g.normal(0, 0.1, (50, 2)), g.normal(5, 0.1, (200, 2)), g.normal(-5, 0.1, (100, 2))])
    for seed in range(3):
        labels, centres = kmeans(x, 3, seed=seed)
        assert np.bincount(labels).tolist() == [200, 100, 50]
        np.testing.assert_allclose(centres[:, 0], [5, -5, 0], atol=0.1)


def test_canonical_clusters_breaks_size_ties_by_the_centres():
    labels, centres = canonical_clusters(np.array([0, 0, 1, 1, 2]), np.array([[3.0, 0], [1.0, 0], [2.0, 0]]))
    assert labels.tolist() == [1, 1, 0, 0, 2] and centres[:, 0].tolist() == [1.0, 3.0, 2.0]


# ---------------------------------------------------------------- indices


def test_negative_and_out_of_range_direction_indices_are_refused():
    d = Directions(torch.eye(3), "l")
    for bad in (-1, 3, -4):
        with pytest.raises(IndexError, match="numbered 0 to 2"):
            d.index(bad)
    with pytest.raises(KeyError):
        d.index("-1")
    assert d.index(2) == 2 and d.index("1") == 1


# ---------------------------------------------------------------- findings by direction, over restarts


def test_matched_spread_reads_each_restart_at_the_direction_matched_to_each_chosen_one():
    from policylens.factors.stable import matched_spread

    chosen = np.eye(3)
    fits = [np.eye(3), np.eye(3)[[2, 0, 1]], np.eye(3)[[1, 2, 0]]]  # the same directions, permuted
    finding = [[10, 20, 30], [30, 10, 20], [20, 30, 10]]  # direction k's finding is 10 * (k + 1) in every fit
    got = matched_spread(chosen, fits, lambda r, j: finding[r][j])
    assert [g["min"] for g in got] == [10, 20, 30] and [g["max"] for g in got] == [10, 20, 30]
    assert all(g["n"] == 3 for g in got)


def test_attribution_nmf_reports_each_directions_positive_share_over_the_restarts():
    from policylens.factors import nmf_attributions

    g = np.random.default_rng(0)
    attr = torch.tensor(g.normal(size=(60, 6, 3, 3)) + [[[0]], [[0]], [[1]], [[1]], [[-1]], [[0]]],
                        dtype=torch.float32)
    d = nmf_attributions(attr, 3, layer="l")
    for share, s in zip(d.meta["positive_share"], d.meta["positive_share_spread"]):
        assert s["n"] == 5 and s["min"] <= share <= s["max"]


@pytest.mark.slow
def test_layer_scores_carry_each_directions_nmi_over_the_restarts(store_path):
    from policylens import agents, rollouts
    from policylens.scores import score_layer, store_frames

    obs, masks = store_frames(rollouts.open(store_path), kinds=["agent", "ball", "goal"])
    found = score_layer(agents.load("zoo:minigrid-do8-rgb"), obs, masks, "embed", 8)
    for row in found.scores["directions"]:
        nmi = row["entities"][row["best_entity"]]["nmi"]
        assert row["nmi_spread"]["n"] == 5 and row["nmi_spread"]["min"] <= nmi <= row["nmi_spread"]["max"]
    shares = found.scores["interpretable_share_restarts"]
    assert len(shares) == 5 and shares[found.directions.meta["restart"]] == found.scores["interpretable_share"]


@pytest.mark.slow
def test_layer_scores_on_attributions_are_the_nmf_of_both_signs_scored_where_they_matter(store_path):
    from policylens import agents, rollouts
    from policylens.attribution import attribute
    from policylens.factors import coefficients, nmf_attributions
    from policylens.scores import score_layer, store_frames
    from policylens.scores.entities import score_directions

    obs, masks = store_frames(rollouts.open(store_path), kinds=["agent", "ball", "goal"])
    obs, masks = obs[:48], {k: v[:48] for k, v in masks.items()}
    agent = agents.load("zoo:minigrid-do8-rgb")
    found = score_layer(agent, obs, masks, "embed", 4, on="attributions", steps=8)
    attr = attribute(agent, torch.as_tensor(obs), target="value", layer="embed", method="ig", steps=8)
    assert (attr < 0).any() and (attr > 0).any()  # signed: both parts take part
    direct = nmf_attributions(attr, 4, layer="embed")
    assert torch.allclose(found.directions.vectors, direct.vectors)  # the same stable choice
    assert found.directions.meta["on"] == "attributions" and found.scores["on"] == "attributions"
    np.testing.assert_allclose(found.maps, coefficients(attr.abs(), direct).numpy(), rtol=1e-5, atol=1e-6)
    direct_scores = score_directions(attr.abs(), masks, direct)[0]
    same = lambda rows: [(r["label"], r["best_entity"], r["entities"]) for r in rows]  # noqa: E731
    assert same(found.scores["directions"]) == same(direct_scores["directions"])
    assert found.scores["interpretable_share"] == direct_scores["interpretable_share"]
    for row in found.scores["directions"]:
        assert {"stability", "unstable", "nmi_spread"} <= set(row)
    with pytest.raises(ValueError, match="on='gradients'"):
        score_layer(agent, obs, masks, "embed", 4, on="gradients")
