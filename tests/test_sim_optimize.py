"""Generative visualisation (policylens sim optimize): maximising raises and minimising lowers each target against
the starting latents, the prior weight bounds |z|, the recorded numbers agree with a fresh unroll of the saved
latents, a direction target equals hand-projected coefficients, the CLI's files, bad targets and windows refused."""
from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from policylens.factors import Directions
from policylens.sim.analyses.optimize.cli import main
from policylens.sim.analyses.optimize.core import load_latents, optimize_latents, save_latents
from policylens.sim.loop import rollout
from policylens.sim.targets import make_target
from sim_runs import tiny_parts

NAMES = ["left", "right", "forward"]
FAST = dict(samples=3, steps=5, iterations=20, lr=0.1)


@pytest.fixture(scope="module")
def run(sim_world):
    return sim_world / "rnn"


@pytest.fixture(scope="module")
def parts(run):
    return tiny_parts(run)


def _target(kind, **kw):
    return make_target(kind, action_names=NAMES, num_actions=3, hidden=8, **kw)


def _hand_directions(seed=0) -> Directions:
    """Two orthonormal z-space directions of the 8-unit hx with a per-unit z-scoring, as `sim hx` saves them."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(8, 2, generator=g))
    meta = {"std": (0.5 + torch.rand(8, generator=g)).tolist(),
            "zscore_mean": (0.1 * torch.randn(8, generator=g)).tolist()}
    return Directions(q.T, "hx", ("speed", "wall"), "pca", meta)


# -------------------------------------------------------------------------------------------------- the core
@pytest.mark.parametrize("kind, kw", [("value", {}), ("neuron", {"index": 2}),
                                      ("actions", {"sequence": "right,forward", "start": 1})])
@pytest.mark.slow
def test_maximising_raises_and_minimising_lowers_the_target(parts, kind, kw):
    sim, agent = parts
    target = _target(kind, **kw)
    up = optimize_latents(sim, agent, target, maximize=True, prior_weight=0.01, **FAST)
    down = optimize_latents(sim, agent, target, maximize=False, prior_weight=0.01, **FAST)
    assert torch.equal(up.before, down.before)  # the same starting latents (one seed)
    assert (up.after > up.before).all() and (down.after < down.before).all()


@pytest.mark.slow
def test_a_larger_prior_weight_keeps_the_latents_nearer_the_origin(parts):
    sim, agent = parts
    norms = {}
    for weight in (0.01, 1.0):
        r = optimize_latents(sim, agent, _target("value"), prior_weight=weight, **FAST)
        norms[weight] = r.z.norm(dim=1)
        if weight == 1.0:
            assert (r.log_prior_after > r.log_prior_before).all()
    assert (norms[1.0] < norms[0.01]).all()


@pytest.mark.slow
def test_the_typical_prior_keeps_the_norm_on_the_shell_where_draws_lie(parts):
    import math

    from policylens.sim.analyses.optimize.core import prior_penalty

    sim, agent = parts
    x = torch.randn(4, 9)
    torch.testing.assert_close(prior_penalty(x, "typical"), (x.norm(dim=1) - 3.0) ** 2)
    torch.testing.assert_close(prior_penalty(x, "map"), 0.5 * (x ** 2).sum(1))
    shell = math.sqrt(sim.config.latent)
    start = torch.randn(3, sim.config.latent, generator=torch.Generator().manual_seed(5)) * 2.0  # off the shell
    kw = {**FAST, "iterations": 60, "z_start": start}
    typical = optimize_latents(sim, agent, _target("value"), prior_weight=10.0, prior="typical", **kw)
    mode = optimize_latents(sim, agent, _target("value"), prior_weight=10.0, prior="map", **kw)
    assert ((typical.z.norm(dim=1) - shell).abs() < 0.25 * shell).all()  # pulled back onto the shell
    assert (mode.z.norm(dim=1) < 0.5 * shell).all()  # pulled towards z = 0, off the shell
    with pytest.raises(ValueError, match="expected one of map, typical"):
        optimize_latents(sim, agent, _target("value"), prior="flat", **FAST)


@pytest.mark.slow
def test_recorded_numbers_agree_with_a_fresh_unroll_of_the_saved_latents(parts, tmp_path):
    sim, agent = parts
    target = _target("value_drop", start=1)
    r = optimize_latents(sim, agent, target, optimize_noise=True, mode="sample", seed=4, **FAST)
    assert not torch.equal(r.noise.s[:, 1:], r.noise_start.s[:, 1:])  # the noise moved too
    save_latents(r, tmp_path / "latents.safetensors")
    z_start, z, noise_start, noise = load_latents(tmp_path / "latents.safetensors")
    with torch.no_grad():
        again = {"before": target(rollout(sim, agent, z_start, 5, "sample", noise=noise_start)),
                 "after": target(rollout(sim, agent, z, 5, "sample", noise=noise))}
    torch.testing.assert_close(again["before"], r.before)
    torch.testing.assert_close(again["after"], r.after)
    rows = torch.arange(3)
    torch.testing.assert_close(r.curve[0], r.before)
    torch.testing.assert_close(r.curve[r.best_iteration, rows], r.after)  # the iterate kept
    assert (r.loss_curve[r.best_iteration, rows] <= r.loss_curve.min(0).values).all()
    hand = -0.5 * z.pow(2).sum(1) - 4 * math.log(2 * math.pi)  # latent 8
    torch.testing.assert_close(r.log_prior_after, hand)
    torch.testing.assert_close(r.noise_log_prior_after, -0.5 * noise.s[:, 1:].pow(2).flatten(1).sum(1)
                               - 0.5 * 4 * 4 * math.log(2 * math.pi))  # 4 steps x 4 stochastic units
    twice = optimize_latents(sim, agent, target, optimize_noise=True, mode="sample", seed=4, **FAST)
    assert torch.equal(twice.z, r.z) and torch.equal(twice.noise.s, r.noise.s)


@pytest.mark.slow
def test_a_direction_target_equals_hand_projected_coefficients(parts):
    sim, agent = parts
    directions = _hand_directions()
    target = _target("direction", index="wall", directions=directions, start=1, stop=4)
    r = optimize_latents(sim, agent, target, **{**FAST, "iterations": 5})
    for result, roll in ((r.after, r.rollout), (r.before, r.start_rollout)):
        produced = torch.cat([roll.hx[:, 1:], roll.hx_last[:, None]], 1)[:, 1:4]  # (S, 3, 8) after steps 1..3
        std, mean = torch.tensor(directions.meta["std"]), torch.tensor(directions.meta["zscore_mean"])
        hand = (((produced - mean) / std) @ directions.vectors[1]).mean(1)
        torch.testing.assert_close(result, hand, atol=1e-5, rtol=1e-5)
    with pytest.raises(KeyError, match="speed, wall"):
        _target("direction", index="jump", directions=directions)


def test_bad_arguments_to_the_core_are_refused(parts):
    sim, agent = parts
    with pytest.raises(ValueError, match="does not fit"):
        optimize_latents(sim, agent, _target("value", start=2, stop=9), **FAST)
    with pytest.raises(ValueError, match="does not fit"):
        optimize_latents(sim, agent, _target("actions", sequence="left,left,left", start=3), **FAST)
    with pytest.raises(ValueError, match="latent='sample'"):
        optimize_latents(sim, agent, _target("value"), optimize_noise=True, latent="mean", **FAST)
    with pytest.raises(ValueError, match="z_start"):
        optimize_latents(sim, agent, _target("value"), z_start=torch.zeros(2, 8), **FAST)


# -------------------------------------------------------------------------------------------------- the command
@pytest.mark.slow
def test_cli_writes_latents_result_curve_and_videos(run, tmp_path):
    out = tmp_path / "opt"
    r = main([str(run), "--target", "neuron", "--index", "3", "--minimize", "--samples", "2", "--steps", "4",
              "--iterations", "6", "--lr", "0.1", "--out", str(out), "--progress", "false"])
    folder = out / "neuron-3-min"
    result = json.loads((folder / "result.json").read_text())
    assert result["goal"] == "minimize" and result["target"]["label"] == "hx[3]" == r["target"]["label"]
    assert len(result["before"]) == len(result["after"]) == 2 and result["mean_after"] <= result["mean_before"]
    assert all(0 <= p <= 1 for p in result["prior_percentile_after"])
    z_start, z, _, _ = load_latents(folder / "latents.safetensors")
    assert z.shape == z_start.shape == (2, 8)
    assert (folder / "curve.png").stat().st_size > 0
    for name in ("sample_000.gif", "sample_001.gif", "grid.gif", "start_grid.gif"):
        assert Image.open(folder / "video" / name).n_frames >= 1


@pytest.mark.slow
def test_cli_refuses_bad_targets_windows_and_directions(run, tmp_path, capsys):
    _hand_directions().save(run / "analysis" / "hx" / "pca")
    base = [str(run), "--out", str(tmp_path), "--steps", "4", "--samples", "1", "--iterations", "1",
            "--video", "false", "--progress", "false"]
    cases = [(["--target", "reward"], "expected one of value"), (["--start", "5"], "does not fit"),
             (["--start", "3", "--stop", "2"], "empty"),
             (["--target", "actions", "--sequence", "left,jump"], "no action named 'jump'"),
             (["--target", "neuron", "--index", "8"], "0-7"),
             (["--maximize", "--minimize"], "contradict"),
             (["--target", "direction", "--directions", "pca", "--index", "jump"], "speed, wall"),
             (["--target", "direction", "--directions", "ica"], "policylens sim hx")]
    for argv, message in cases:
        with pytest.raises(SystemExit) as e:
            main(base + argv)
        assert e.value.code == 2 and message in capsys.readouterr().err, argv
    main(base + ["--target", "direction", "--directions", "pca", "--index", "speed"])  # the saved one works
    assert (tmp_path / "direction-pca-speed-max" / "result.json").is_file()
