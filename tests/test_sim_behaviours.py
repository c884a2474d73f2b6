"""Behaviours (policylens sim behaviours): cross-causation Jacobians against finite differences with and without
the environment's gradient paths, the two cuts agreeing, the straight-through surrogate, lagged cross-correlation
against numpy, planted behaviours recovered, sign consistency and its null, the CLI end to end, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import adjusted_rand_score

from policylens.agents.base import ScaleObs
from policylens.factors import Directions, ica
from policylens.hidden.hx import cli as hx_cli
from policylens.sim.analyses.behaviours import cli as behaviours_cli
from policylens.sim.analyses.behaviours.core import (
    Readout,
    cluster_windows,
    jacobians,
    lagged_xcorr,
    sign_consistency,
    window_features,
    window_jacobians,
)
from policylens.sim.loop import FrozenAgent, rollout
from sim_runs import tiny_parts

STEPS, LAG, K = 6, 4, 3


@pytest.fixture(scope="module")
def run(sim_world):
    return sim_world / "rnn"


def _directions(hidden: int = 8, seed: int = 0) -> Directions:
    """ICA directions of random mixed states, in a z-space with a non-trivial mean and std."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(400, K, generator=g).sign() * torch.rand(400, K, generator=g) @ torch.randn(K, hidden,
                                                                                                 generator=g)
    x = x + 0.05 * torch.randn(400, hidden, generator=g)
    ics = ica(x, K, layer="hx", seed=seed)
    std, mean = 0.5 + torch.rand(hidden, generator=g), torch.randn(hidden, generator=g)
    return Directions(ics.vectors, "hx", ics.labels, "ica", {**ics.meta, "std": std.tolist(),
                                                             "zscore_mean": mean.tolist()})


@pytest.fixture(scope="module")
def double_parts(run):
    """The tiny simulator and agent in float64 (finite differences to ~1e-8), a readout and start latents."""
    sim, frozen = tiny_parts(run)
    sim.double()
    frozen.net.double()
    frozen.net.scale = _ScaleObs64(frozen.net.scale.scale)  # the agents' ScaleObs casts to float32
    with torch.no_grad():  # sharpen the untrained pair so the environment's path stands out of float32 rounding
        frozen.net.pi.weight *= 10  # (the decoder's softmax is float32): actions follow hx,
        frozen.net.gru.weight_ih *= 3  # hx follows the observations,
        sim.step_input[0].weight[:, -sim.config.num_actions:] *= 10  # the simulator follows the actions
        sim.obs_decoder.deconvs[-1].weight *= 3  # and shows them
    z = torch.randn(3, sim.config.latent, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    readout = Readout.from_directions(_directions())
    return sim, frozen, Readout(*(x.double() for x in (readout.mean, readout.std, readout.offset, readout.unmix,
                                                       readout.shift)), readout.labels), z


class _ScaleObs64(ScaleObs):
    def forward(self, obs):
        return obs.permute(0, 3, 1, 2).double() * self.scale  # (B, C, H, W)


class _SoftPolicy(FrozenAgent):
    """Test reference: the frozen agent remembering its logits, so the test's rollouts can act softly."""

    def __init__(self, agent):
        self.__dict__.update(agent.__dict__)

    def __call__(self, obs, hx):
        out = super().__call__(obs, hx)
        self.logits = out.logits
        return out


def _ic_series(sim, agent, readout, z, t0, i, eps, *, soft, actions=None):
    """Coefficients (B, T, K) of a rollout whose received hx at ``t0`` moved by ``eps`` along direction ``i``;
    ``soft``: the softmax policy drives the simulator; ``actions`` (T, B, A): fixed actions instead."""
    policy = _SoftPolicy(agent)

    def tap(name, t, x):
        if name == "hx" and t == t0:
            return x + eps * readout.shift[i]
        if name == "action":
            return actions[t] if actions is not None else F.softmax(policy.logits, -1) if soft else x
        return x

    with torch.no_grad():
        r = rollout(sim, policy, z, STEPS, latent="mean", straight_through=False if soft else None, intervene=tap)
    return readout.coefficients(r.hx), r


def _finite_differences(sim, agent, readout, z, *, soft, freeze_actions=False, eps=1e-3):
    """Central differences ``(B, T, LAG + 1, K, K)`` like the Jacobians (NaN past the end)."""
    _, base = _ic_series(sim, agent, readout, z, -1, 0, 0.0, soft=soft)
    fixed = base.action.transpose(0, 1) if freeze_actions else None  # (T, B, A)
    out = torch.full((z.shape[0], STEPS, LAG + 1, K, K), float("nan"), dtype=torch.float64)
    for t in range(STEPS):
        for i in range(K):
            up, r_up = _ic_series(sim, agent, readout, z, t, i, eps, soft=soft, actions=fixed)
            down, r_down = _ic_series(sim, agent, readout, z, t, i, -eps, soft=soft, actions=fixed)
            assert torch.equal(r_up.action_index, r_down.action_index)  # no argmax flipped
            for lag in range(min(LAG, STEPS - 1 - t) + 1):
                out[:, t, lag, i] = (up[:, t + lag] - down[:, t + lag]) / (2 * eps)
    return out


# -------------------------------------------------------------------------------------------------- gradients
@pytest.mark.slow
def test_jacobians_match_finite_differences_with_and_without_the_environment(double_parts):
    sim, frozen, readout, z = double_parts
    _, env = jacobians(sim, frozen, readout, z, STEPS, LAG, env=True, actions="soft", latent="mean")
    _, own = jacobians(sim, frozen, readout, z, STEPS, LAG, env=False, actions="soft", latent="mean")
    fd_env = _finite_differences(sim, frozen, readout, z, soft=True)
    fd_own = _finite_differences(sim, frozen, readout, z, soft=True, freeze_actions=True)
    np.testing.assert_allclose(own.numpy(), fd_own.numpy(), atol=1e-7, equal_nan=True)  # all float64
    np.testing.assert_allclose(env.numpy(), fd_env.numpy(), atol=5e-5, equal_nan=True)  # float32 observations
    precision = (env - fd_env).abs().nan_to_num().max()
    # lag 0: moving ic_i by one moves exactly ic_i by one; lag 1: no environment path yet (a_t -> o_{t+1} -> hx_{t+2})
    eye = np.broadcast_to(np.eye(K), env[:, :, 0].shape)
    np.testing.assert_allclose(env[:, :, 0].numpy(), eye, atol=1e-6)  # directions are stored in float32
    np.testing.assert_allclose(own[:, :, 0].numpy(), eye, atol=1e-6)
    np.testing.assert_allclose(env[:, :, 1].numpy(), own[:, :, 1].numpy(), atol=1e-10, equal_nan=True)
    # from lag 2 the agent's hx depends on what the simulator shows it after its action: the two differ
    assert (env[:, :, 2:] - own[:, :, 2:]).abs().nan_to_num().max() > max(20 * precision, 1e-4)
    assert torch.isnan(env[:, STEPS - 1, 1:]).all() and not torch.isnan(env[:, STEPS - 1 - LAG]).any()


def test_cutting_the_actions_or_the_observations_gives_the_same_own_recurrence(double_parts):
    sim, frozen, readout, z = double_parts
    for actions in ("straight_through", "soft"):
        _, by_actions = jacobians(sim, frozen, readout, z, STEPS, LAG, env=False, cut="actions", actions=actions,
                                  latent="mean")
        _, by_obs = jacobians(sim, frozen, readout, z, STEPS, LAG, env=False, cut="obs", actions=actions,
                              latent="mean")
        np.testing.assert_allclose(by_actions.numpy(), by_obs.numpy(), atol=1e-12, equal_nan=True)


@pytest.mark.slow
def test_modal_rollouts_are_piecewise_constant_in_actions_so_their_exact_derivative_is_the_own_one(double_parts):
    sim, frozen, readout, z = double_parts
    _, env = jacobians(sim, frozen, readout, z, STEPS, LAG, env=True, latent="mean")
    _, own = jacobians(sim, frozen, readout, z, STEPS, LAG, env=False, latent="mean")
    fd = _finite_differences(sim, frozen, readout, z, soft=False)  # hard argmax actions, small steps: none flip
    np.testing.assert_allclose(own.numpy(), fd.numpy(), atol=1e-7, equal_nan=True)
    assert (env[:, :, 2:] - fd[:, :, 2:]).abs().nan_to_num().max() > 1e-3  # the straight-through surrogate


def test_readout_refuses_directions_a_probe_cannot_move_one_at_a_time():
    v = torch.randn(2, 8)
    with pytest.raises(ValueError, match="do not invert"):
        Readout.from_directions(Directions(torch.cat([v, v[:1]]), "hx", method="manual"))


# -------------------------------------------------------------------------------------------------- statistics
def test_lagged_xcorr_matches_numpy_and_finds_a_planted_lag():
    rng = np.random.default_rng(0)
    m, length = 40, 12
    driver = rng.normal(size=(m, length + 2))
    series = np.stack([driver[:, 2:], driver[:, :-2] + 0.3 * rng.normal(size=(m, length)),  # x1(t) = x0(t - 2)
                       rng.normal(size=(m, length))], -1)  # (M, L, 3)
    c = lagged_xcorr(series, 5)
    for lag in range(6):
        for i in range(3):
            for j in range(3):
                ref = np.corrcoef(series[:, :length - lag, i].ravel(), series[:, lag:, j].ravel())[0, 1]
                assert c[lag, i, j] == pytest.approx(ref, abs=1e-10)
    assert np.argmax(c[:, 0, 1]) == 2 and c[2, 0, 1] > 0.9 and abs(c[2, 1, 0]) < 0.3
    constant = np.concatenate([series, np.ones((m, length, 1))], -1)
    assert np.all(lagged_xcorr(constant, 2)[:, 3] == 0)  # a direction that never moves correlates with nothing


def test_planted_behaviours_are_recovered_from_joint_windows():
    rng = np.random.default_rng(1)
    n, steps, window = 60, 10, 5
    truth = np.repeat(np.arange(3), n // 3)  # behaviour of each sample's second window
    hx = rng.normal(size=(n, steps, 4))
    h = 40 * rng.normal(size=(n, steps, 12))  # a big block of noise must not drown the small one
    ramp = np.linspace(-1, 1, window)
    hx[truth == 1, window:, 0] += 6 * ramp
    hx[truth == 2, window:, 1] -= 6 * ramp
    features, index, scales = window_features({"hx": hx, "h": h}, window, window)
    assert features.shape == (2 * n, window * 16) and np.all(index[1::2, 1] == window)
    np.testing.assert_allclose(features[:, :window * 4].var(0).sum(), 1.0)  # each block weighs the same
    np.testing.assert_allclose(features[:, window * 4:].var(0).sum(), 1.0)
    labels, centres, rep = cluster_windows(features[1::2], 3, seed=0)
    assert adjusted_rand_score(truth, labels) == 1.0
    for b in range(3):  # the representative belongs to its behaviour and is the member nearest the centre
        members = np.flatnonzero(labels == b)
        distance = np.linalg.norm(features[1::2][members] - centres[b], axis=1)
        assert labels[rep[b]] == b and rep[b] == members[np.argmin(distance)]


def test_window_jacobians_average_the_steps_inside_each_window():
    rng = np.random.default_rng(2)
    jac = rng.normal(size=(3, 9, 3, 2, 2))
    index = np.array([[0, 0], [2, 4], [1, 3]])
    out = window_jacobians(jac, index, 5)
    for m, (n, t0) in enumerate(index):
        for lag in range(3):
            np.testing.assert_allclose(out[m, lag], np.mean([jac[n, t, lag] for t in range(t0, t0 + 5 - lag)], 0))


def test_sign_consistency_is_one_on_equal_signs_zero_on_opposite_and_has_a_fair_null():
    rng = np.random.default_rng(3)
    c = rng.normal(size=(6, 6))
    assert sign_consistency(c, c, corr_min=0, grad_min=0)["share"] == 1.0
    assert sign_consistency(c, -c, corr_min=0, grad_min=0)["share"] == 0.0
    result = sign_consistency(c, 0.5 * c, corr_min=0.5, grad_min=0.1, draws=500)
    big = (np.abs(c) >= 0.5) & ~np.eye(6, dtype=bool)  # the diagonal is left out unless asked for
    assert result["entries"] == big.sum()
    positive = (c[big] > 0).mean()  # random pairing agrees with probability p^2 + (1 - p)^2
    assert result["null_mean"] == pytest.approx(positive ** 2 + (1 - positive) ** 2, abs=0.05)
    assert result["null_low"] <= result["null_mean"] <= result["null_high"] < 1 and result["p"] < 0.05
    assert sign_consistency(c, c, corr_min=0, grad_min=0, diagonal=True)["entries"] == 36
    assert sign_consistency(c, c, corr_min=10)["share"] is None


@pytest.mark.slow
def test_a_constant_null_keeps_its_mean_inside_its_interval_and_a_skewed_one_still_plots(tmp_path):
    """Every shuffle of one-signed G agrees equally often: a constant null, whose float mean (0.33333333333333326
    for 1/3) fell below its own 2.5% quantile and made matplotlib refuse the negative error bar."""
    from policylens.sim.analyses.behaviours.plots import plot_consistency

    for positive, n in ((1, 3), (2, 3), (3, 5), (4, 5), (7, 9), (10, 11)):
        c = np.full((n + 1, n + 1), -1.0)
        c[0, 1:positive + 1] = 1.0  # off-diagonal entries: row 0 holds n of them
        g = np.zeros((n + 1, n + 1))
        g[0, 1:] = 1.0  # G > 0 on row 0 only: every shuffle of it is the same
        r = sign_consistency(c, g, corr_min=0.5, grad_min=0.5, draws=1000)
        assert r["entries"] == n and r["null_low"] <= r["null_mean"] <= r["null_high"], (positive, n, r)
        assert r["null_low"] == r["null_high"] == pytest.approx(positive / n)
    cell = {"lag": 1, "share": 0.5, "null_mean": 0.06, "null_low": 0.0, "null_high": 0.0, "p": 1.0}  # skewed: mean > high
    summary = {"groups": ["all"], "consistency": {"env": [[cell]], "own": [[dict(cell, null_mean=0.3, null_low=0.4,
                                                                                  null_high=0.5)]]}}
    assert plot_consistency(summary, tmp_path / "c.png").is_file()


# -------------------------------------------------------------------------------------------------- the CLI
@pytest.mark.slow
def test_cli_end_to_end(run, capsys):
    hx_cli.run_hx(hx_cli.HxConfig(run=str(run), sim="none", k=K, clusters=2, tsne_frames=0, plots=False,
                                  progress=False))
    argv = [str(run), "--samples", "12", "--steps", "8", "--window", "4", "--stride", "2", "--behaviours", "3",
            "--max-lag", "3", "--null-draws", "50", "--progress", "false"]
    assert behaviours_cli.main(argv) == 0
    assert "sign consistency" in capsys.readouterr().out
    out = run / "analysis" / "behaviours"
    for name in ("behaviours.json", "behaviours.npz", "clusters.png", "matrices.png", "consistency.png",
                 "behaviours.gif"):
        assert (out / name).is_file(), name
    s = json.loads((out / "behaviours.json").read_text())
    arrays = np.load(out / "behaviours.npz")
    windows = 12 * 3  # starts 0, 2, 4 in 8 steps
    assert s["windows"] == windows and sum(b["size"] for b in s["behaviours"]) == windows
    assert arrays["representative_obs"].shape == (3, 4, 7, 7, 3)
    xcorr, env, own = (np.array(s[k]) for k in ("xcorr", "xcaus_env", "xcaus_own"))
    assert xcorr.shape == env.shape == (4, 4, K, K)
    np.testing.assert_allclose(xcorr[-1], lagged_xcorr(arrays["ic"], 3), atol=1e-9)  # "all" is every window
    np.testing.assert_allclose(env[:, 0], np.broadcast_to(np.eye(K), env[:, 0].shape), atol=1e-4)
    np.testing.assert_allclose(env[:, 1], own[:, 1], atol=1e-5)
    for b, row in enumerate(s["behaviours"]):
        assert arrays["label"][row["representative"]["window"]] == b
    assert len(s["consistency"]["env"]) == 4 and [c["lag"] for c in s["consistency"]["own"][0]] == [1, 2, 3]
    # encoded real starts, the observation cut, no figures
    other = run / "analysis" / "behaviours_store"
    assert behaviours_cli.main([*argv, "--starts", "store", "--cut", "obs", "--plots", "false", "--video", "false",
                                "--out", str(other)]) == 0
    assert json.loads((other / "behaviours.json").read_text())["source"]["config"]["starts"] == "store"


@pytest.mark.slow
def test_filtered_starts_read_the_real_context_and_the_agent_acts_from_its_last_frame(run):
    from policylens.sim.analyses.behaviours.core import simulate
    from policylens.sim.data import load_sim_data
    from policylens.sim.loop import Noise, filtered_start

    sim, frozen = tiny_parts(run)
    k = sim.config.context_frames
    data = load_sim_data(run / "rollouts.zarr")
    windows = data.windows(data.start[:4], k)
    readout = Readout.from_directions(_directions())
    got = simulate(sim, frozen, readout, 4, STEPS, 2, seed=3, starts=windows, batch_size=2)
    assert np.array_equal(got["action"][:, :k - 1], windows.action[:, :k - 1].numpy())  # the recorded context
    noise = Noise.draw(2, STEPS, sim, torch.Generator().manual_seed(3))  # the first batch's draws
    with torch.no_grad():
        r = rollout(sim, frozen, windows.rows(slice(0, 2)).context(k), STEPS, latent="sample", noise=noise,
                    **filtered_start(windows.rows(slice(0, 2)), k))
    np.testing.assert_allclose(got["value"][:2], r.value.numpy(), rtol=1e-5, atol=1e-6)  # as a filtered rollout
    recorded = readout.coefficients(windows.agent_state[:2, :1]).numpy()[:, 0]  # (2, K) the recorded state's
    np.testing.assert_allclose(got["ic"][:2, 0], recorded, rtol=1e-5, atol=1e-6)


def test_cli_says_to_run_the_hx_analysis_first_and_refuses_bad_lags(run, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        behaviours_cli.main([str(run), "--directions", str(tmp_path / "hx" / "ica"), "--progress", "false",
                             "--out", str(tmp_path / "b")])
    assert e.value.code == 2 and "policylens sim hx" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        behaviours_cli.main([str(run), "--window", "4", "--max-lag", "4", "--out", str(tmp_path / "b")])
    assert e.value.code == 2 and "--max-lag" in capsys.readouterr().err
