"""Saliency through time in the simulator (policylens sim saliency): per-step gradients against finite
differences, causality (nothing after t), detached actions against a teacher-forced reference with the same
actions, the environment path, SmoothGrad/VarGrad in latent space against hand averages, refusals, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from policylens.sim.analyses.saliency.cli import main, sample_latents, sample_seed
from policylens.sim.analyses.saliency.core import PROBES, saliency
from policylens.sim.loop import Noise, rollout
from policylens.sim.targets import make_target
from sim_runs import tiny_parts

STEPS, T = 5, 3


@pytest.fixture(scope="module")
def run(sim_world):
    return sim_world / "rnn"


@pytest.fixture(scope="module")
def parts(run):
    sim, agent = tiny_parts(run)
    z = torch.randn(3, sim.config.latent, generator=torch.Generator().manual_seed(0))
    return sim, agent, z


def _noise(sim, batch=3, seed=1):
    return Noise.draw(batch, STEPS, sim, torch.Generator().manual_seed(seed))


def _probed(sim, agent, z, target, **run):
    """An independent reference: gradients of ``target`` w.r.t. every step's tensors by zero probes keyed by
    (name, step), and w.r.t. z."""
    probes = {}

    def probe(name, step, x):
        probes[name, step] = torch.zeros_like(x, requires_grad=True)
        return x + probes[name, step]

    z = z.clone().requires_grad_(True)
    value = target(rollout(sim, agent, z, STEPS, intervene=probe, **run))
    keys = list(probes)
    found = torch.autograd.grad(value.sum(), [z] + [probes[k] for k in keys], allow_unused=True)
    grads = {k: torch.zeros_like(probes[k]) if g is None else g for k, g in zip(keys, found[1:])}
    return {name: torch.stack([grads[name, k] for k in range(STEPS)], 1) for name in PROBES}, found[0]


# -------------------------------------------------------------------------------------------------- the core
@pytest.mark.slow
def test_per_step_gradients_equal_finite_differences(parts):
    """Without the environment path (detached actions) and with soft observations every path is smooth, so each
    step's gradient along a random direction equals a central difference of an edited rollout."""
    sim, agent, z = parts
    s = saliency(sim, agent, z, STEPS, make_target("value"), T, through_env=False, latent="mean",
                 straight_through=False)
    reference = make_target("value", start=T, stop=T + 1)
    run = dict(detach_actions=True, latent="mean", straight_through=False)
    eps, g = 1e-2, torch.Generator().manual_seed(1)
    for name in ("obs", "hx", "h", "s"):
        exact, numeric = [], []
        for k in range(T + 1):
            d = torch.randn(s.grads[name][:, k].shape, generator=g)  # (B, ...)

            def bumped(sign):
                edit = lambda n, step, x: x + sign * eps * d if (n, step) == (name, k) else x  # noqa: E731
                with torch.no_grad():
                    return reference(rollout(sim, agent, z, STEPS, intervene=edit, **run))

            exact.append((s.grads[name][:, k] * d).flatten(1).sum(1))
            numeric.append((bumped(1) - bumped(-1)) / (2 * eps))
        exact, numeric = torch.stack(exact), torch.stack(numeric)  # (T+1, B)
        assert (numeric - exact).norm() < 0.03 * exact.norm(), name
        assert exact.abs().min() > 0, name


def test_causality_nothing_after_t_and_the_readout_of_the_produced_state(parts):
    sim, agent, z = parts
    for through_env in (True, False):
        s = saliency(sim, agent, z, STEPS, make_target("value"), T, through_env=through_env)
        for name in PROBES:
            assert torch.count_nonzero(s.grads[name][:, T + 1:]) == 0, name
            assert s.grads[name][:, 0].abs().sum() > 0 or name == "action", name
        assert s.grads["obs"][:, T].abs().sum() > 0
        assert torch.count_nonzero(s.grads["action"][:, T]) == 0  # a_t acts after the value at t is read
        assert torch.count_nonzero(s.norms()["hx"][:, T + 1:]) == 0
    # a hidden unit read at t is the state produced there: received at t + 1, d/d hx_{t+1} = e_k, nothing later
    s = saliency(sim, agent, z, STEPS, make_target("neuron", index=5, hidden=agent.hidden), T - 1)
    unit = torch.zeros(3, agent.hidden)
    unit[:, 5] = 1
    torch.testing.assert_close(s.grads["hx"][:, T], unit, rtol=0, atol=0)
    for name in PROBES:
        assert torch.count_nonzero(s.grads[name][:, T + 1:]) == 0, name
    # an action sequence is read so that it ends at t
    seq = saliency(sim, agent, z, STEPS, make_target("actions", sequence="0,2", num_actions=3), T)
    assert torch.count_nonzero(seq.grads["obs"][:, T + 1:]) == 0 and seq.grads["obs"][:, T - 1].abs().sum() > 0


def test_detached_actions_equal_the_recorded_actions_fed_as_fixed_inputs(parts):
    sim, agent, z = parts
    noise = _noise(sim)
    target = make_target("action", index=2, num_actions=3)
    s = saliency(sim, agent, z, STEPS, target, T, through_env=False, mode="sample", noise=noise)
    with torch.no_grad():
        recorded = rollout(sim, agent, z, STEPS, mode="sample", noise=noise).action_index  # (B, T)
    torch.testing.assert_close(s.rollout.action_index, recorded)
    ref, ref_z = _probed(sim, agent, z, make_target("action", start=T, stop=T + 1, index=2, num_actions=3),
                         actions=recorded, noise=noise)
    for name in PROBES:
        torch.testing.assert_close(s.grads[name], ref[name], rtol=1e-5, atol=1e-7, msg=name)
    torch.testing.assert_close(s.z_grad, ref_z, rtol=1e-5, atol=1e-7)


def test_the_environment_path_adds_to_earlier_steps_only_and_probes_change_nothing(parts):
    sim, agent, z = parts
    noise = _noise(sim)
    env, cut = (saliency(sim, agent, z, STEPS, make_target("value"), T, through_env=e, noise=noise)
                for e in (True, False))
    torch.testing.assert_close(env.target, cut.target, rtol=0, atol=0)  # the same rollout forward
    torch.testing.assert_close(env.grads["obs"][:, T], cut.grads["obs"][:, T])  # o_t reaches v_t by the agent alone
    assert not torch.allclose(env.grads["h"][:, :T], cut.grads["h"][:, :T], rtol=1e-4, atol=0)
    assert not torch.allclose(env.grads["obs"][:, :T], cut.grads["obs"][:, :T], rtol=1e-4, atol=0)
    # d value_t / d z with the environment path is plain autograd through an unprobed rollout
    leaf = z.clone().requires_grad_(True)
    value = rollout(sim, agent, leaf, STEPS, noise=noise).value[:, T]
    torch.testing.assert_close(env.z_grad, torch.autograd.grad(value.sum(), leaf)[0], rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(env.target, value.detach())


@pytest.mark.slow
def test_a_context_start_is_its_encoded_latent(parts, run):
    from policylens.sim.data import load_sim_data

    sim, agent, _ = parts
    data = load_sim_data(run / "rollouts.zarr")
    context = data.windows(data.window_starts(np.arange(2), 4), 4).context(sim.config.context_frames)
    with torch.no_grad():
        z = sim.encode(context.obs, context.agent_state, context.mask).mean
    a, b = (saliency(sim, agent, start, STEPS, make_target("value"), T, latent="mean") for start in (context, z))
    for name in PROBES:
        torch.testing.assert_close(a.grads[name], b.grads[name], msg=name)


# -------------------------------------------------------------------------------------------------- SmoothGrad
def test_smoothgrad_with_no_noise_is_the_plain_gradient(parts):
    sim, agent, z = parts
    plain = saliency(sim, agent, z, STEPS, make_target("value"), T)
    smooth = saliency(sim, agent, z, STEPS, make_target("value"), T, smooth=3, sigma=0.0)
    for name in PROBES:
        torch.testing.assert_close(smooth.grads[name], plain.grads[name], msg=name)
        assert torch.count_nonzero(smooth.vargrad[name]) == 0
    torch.testing.assert_close(smooth.z_grad, plain.z_grad)


@pytest.mark.slow
def test_smoothgrad_and_vargrad_are_the_mean_and_variance_over_the_same_noised_latents(parts):
    sim, agent, z = parts
    noise, sigma, target = _noise(sim), 0.5, make_target("value")
    s = saliency(sim, agent, z, STEPS, target, T, smooth=4, sigma=sigma, noise=noise, seed=3)
    assert s.latent_noise.shape == (4, *z.shape)
    hand = [saliency(sim, agent, z + sigma * eps, STEPS, target, T, noise=noise) for eps in s.latent_noise]
    for name in PROBES:
        stack = torch.stack([h.grads[name] for h in hand])  # (n, B, T, ...)
        torch.testing.assert_close(s.grads[name], stack.mean(0), rtol=1e-5, atol=1e-8, msg=name)
        torch.testing.assert_close(s.vargrad[name], stack.var(0, correction=0), rtol=1e-4, atol=1e-12, msg=name)
    torch.testing.assert_close(s.z_grad, torch.stack([h.z_grad for h in hand]).mean(0), rtol=1e-5, atol=1e-8)
    assert s.vargrad["hx"].sum() > 0
    # the target and rollout are the un-noised latent's; the noise comes from the seed
    torch.testing.assert_close(s.target, saliency(sim, agent, z, STEPS, target, T, noise=noise).target)
    again = saliency(sim, agent, z, STEPS, target, T, smooth=4, sigma=sigma, noise=noise, seed=3)
    other = saliency(sim, agent, z, STEPS, target, T, smooth=4, sigma=sigma, noise=noise, seed=4)
    assert torch.equal(again.latent_noise, s.latent_noise) and not torch.equal(other.latent_noise, s.latent_noise)


# -------------------------------------------------------------------------------------------------- refusals
def test_bad_targets_steps_and_settings_are_refused(parts):
    sim, agent, z = parts
    value = make_target("value")
    for t in (STEPS, -1, 1.5):
        with pytest.raises(ValueError, match="t must be a step"):
            saliency(sim, agent, z, STEPS, value, t)
    for bad in ("value", 3, None):
        with pytest.raises(ValueError, match="target must be"):
            saliency(sim, agent, z, STEPS, bad, T)
    with pytest.raises(ValueError, match="one number per sample"):
        saliency(sim, agent, z, STEPS, lambda r: r.value, T)
    with pytest.raises(ValueError, match="not finite"):
        saliency(sim, agent, z, STEPS, lambda r: r.value[:, 0] / 0, T)
    with pytest.raises(ValueError, match="start before t"):
        saliency(sim, agent, z, STEPS, make_target("value_drop", start=T), T)
    with pytest.raises(ValueError, match="cannot end at step"):
        saliency(sim, agent, z, STEPS, make_target("actions", sequence="0,1,2", num_actions=3), 1)
    with pytest.raises(ValueError, match="smooth"):
        saliency(sim, agent, z, STEPS, value, T, smooth=-1)
    with pytest.raises(ValueError, match="sigma"):
        saliency(sim, agent, z, STEPS, value, T, smooth=2, sigma=-0.1)
    with pytest.raises(ValueError, match="latent z"):
        saliency(sim, agent, z[:, :-1], STEPS, value, T)


# -------------------------------------------------------------------------------------------------- the CLI
@pytest.mark.slow
def test_cli_end_to_end(run, parts, tmp_path, capsys):
    sim, agent, _ = parts
    main([str(run), "--t", str(T), "--samples", "0,2", "--smooth", "2", "--through-env", "both", "--target",
          "action", "--index", "forward", "--progress", "false"])
    out = run / "analysis" / "saliency"
    assert "wrote" in capsys.readouterr().out
    info = json.loads((out / "saliency.json").read_text())
    assert info["samples"] == [0, 2] and info["steps"] == T + 1 and info["target"]["label"] == "log p(forward)"
    assert set(info["settings"]) == {"with_env", "without_env"} and info["steps_before_t"] == [3, 2, 1, 0]
    with np.load(out / "saliency.npz") as data:
        arrays = {k: data[k] for k in data.files}
    # sample 2 is its own latent whichever others are asked for; the arrays are saliency()'s
    torch.testing.assert_close(torch.as_tensor(arrays["z"][1]), sample_latents([2], sim.config.latent)[0])
    direct = saliency(sim, agent, sample_latents([2], sim.config.latent), T + 1,
                      make_target("action", index=2, num_actions=3), T, through_env=False, smooth=2,
                      seed=sample_seed(0, 2))
    for name in PROBES:
        np.testing.assert_allclose(arrays[f"without_env_grad_{name}"][1:], direct.grads[name].numpy(), rtol=1e-5,
                                   atol=1e-9, err_msg=name)
        np.testing.assert_allclose(info["settings"]["without_env"]["norms"][name][1],
                                   direct.norms()[name][0].numpy(), rtol=1e-5, atol=1e-9)
    assert arrays["with_env_vargrad_obs"].shape == arrays["obs"].shape == (2, T + 1, 7, 7, 3)
    assert (out / "norms.png").stat().st_size > 0
    video = Image.open(out / "sample_2.gif")
    assert video.n_frames == T + 1 and video.size[0] > 2 * 7 * 16  # two columns of 7x7 MiniGrid tiles

    # latents from a file, one setting, nothing drawn
    latents = torch.randn(3, sim.config.latent)
    np.savez(tmp_path / "z.npz", z=latents.numpy())
    main([str(run), "--t", "2", "--samples", "1", "--latents", str(tmp_path / "z.npz"), "--through-env", "no",
          "--video", "false", "--plots", "false", "--out", str(tmp_path / "o"), "--progress", "false"])
    with np.load(tmp_path / "o" / "saliency.npz") as data:
        np.testing.assert_array_equal(data["z"], latents[1:2].numpy())
        assert not any(k.startswith("with_env") for k in data.files)

    for argv, message in ((["--target", "nope"], "target 'nope'"), (["--t", "-1"], "--t -1"),
                          (["--samples", "a"], "--samples"), (["--through-env", "maybe"], "--through-env"),
                          (["--index", "jump", "--target", "action"], "no action named"),
                          (["--latents", str(tmp_path / "none.npz")], "no latents file")):
        with pytest.raises(SystemExit) as stop:
            main([str(run), "--progress", "false", "--out", str(tmp_path / "bad"), *argv])
        assert stop.value.code == 2 and message in capsys.readouterr().err, argv
