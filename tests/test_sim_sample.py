"""Sampling the simulator (policylens sim sample): decoded observations are exactly what the agent saw and replay
its outputs, samples end at their first predicted done, GAE against a direct sum, seeded determinism, real starts,
the CLI's arrays, videos and explorer, bad input."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from policylens.explorer.encode import read_js
from policylens.sim.analyses.sample.cli import main
from policylens.sim.data import load_sim_data
from policylens.sim.obs import network_input
from policylens.sim.sample import env_obs, real_windows, sample, to_trajectories
from sim_runs import tiny_parts


@pytest.fixture(scope="module")
def run(sim_world):
    return sim_world / "rnn"


@pytest.fixture(scope="module")
def parts(run):
    return tiny_parts(run)


def _ends(r, where: dict):
    """``r`` with done_logit +5 at the given {sample: [steps]} and -5 elsewhere."""
    logit = torch.full_like(r.done_logit, -5.0)
    for b, steps in where.items():
        logit[b, steps] = 5.0
    return dataclasses.replace(r, done_logit=logit)


def _reference_gae(reward, value, done, gamma, lam, last_value):
    """A_t = sum_k (gamma lam)^k delta_{t+k}, the sum stopping after a done, written out directly."""
    t_max = len(reward)
    nxt = np.append(value[1:], last_value)
    delta = reward + gamma * nxt * (1 - done) - value
    out = np.zeros(t_max)
    for t in range(t_max):
        weight = 1.0
        for k in range(t, t_max):
            out[t] += weight * delta[k]
            if done[k]:
                break
            weight *= gamma * lam
    return out


# -------------------------------------------------------------------------------------------------- the core
def test_env_obs_round_trips_symbolic_and_onehot_codes(parts):
    sim, _ = parts
    cfg = sim.config
    g = torch.Generator().manual_seed(0)
    codes = torch.stack([torch.randint(0, n, (5, 7, 7), generator=g) for n in cfg.planes], -1)  # (5, 7, 7, 3)
    logits = network_input(codes, cfg) * 4 + 0.5 * torch.rand(5, 7, 7, sum(cfg.planes), generator=g)
    np.testing.assert_array_equal(env_obs(logits, cfg), codes.numpy())
    onehot = dataclasses.replace(cfg, obs_kind="onehot", obs_shape=(7, 7, sum(cfg.planes)))
    planes = network_input(codes, cfg).to(torch.uint8)  # (5, 7, 7, 20) MiniGrid's onehot view of those codes
    np.testing.assert_array_equal(env_obs(logits, onehot), planes.numpy())
    pixels = dataclasses.replace(cfg, obs_kind="pixels", obs_shape=(7, 7, 3), planes=())
    np.testing.assert_array_equal(env_obs(torch.tensor([[0.4, 254.6, 300.0]]), pixels), [[0, 255, 255]])


def test_trajectories_show_what_the_agent_saw_and_replay_its_value_and_logits(parts):
    sim, agent = parts
    r = sample(sim, agent, 3, 6, seed=1)
    trajectories = to_trajectories(r, sim.config, cut=False)
    assert [len(t) for t in trajectories] == [6, 6, 6]
    for b, traj in enumerate(trajectories):
        assert traj.obs.dtype == np.uint8 and traj.obs.shape == (6, 7, 7, 3)
        np.testing.assert_array_equal(traj.obs, r.obs[b].numpy())  # straight-through: the argmax codes exactly
        with torch.no_grad():  # the real agent on the uint8 frames and the received states
            out = agent.net(torch.as_tensor(traj.obs), torch.as_tensor(traj.state))
        np.testing.assert_allclose(out.value.numpy(), traj.value, atol=1e-5)
        np.testing.assert_allclose(out.logits.numpy(), traj.logits, atol=1e-5)
        np.testing.assert_array_equal(traj.action, traj.logits.argmax(-1))  # modal actions


def test_samples_are_cut_at_their_first_predicted_done_with_gae_of_what_is_kept(parts):
    sim, agent = parts
    r = _ends(sample(sim, agent, 3, 7, seed=2), {0: [3, 5], 2: [0]})
    trajectories = to_trajectories(r, sim.config, gamma=0.9, lam=0.8)
    assert [len(t) for t in trajectories] == [4, 7, 1]
    assert [t.done.tolist() for t in trajectories] == [[False] * 3 + [True], [False] * 7, [True]]
    for b, traj in enumerate(trajectories):
        n = len(traj)
        reward, value = r.reward[b, :n].numpy(), r.value[b, :n].numpy()
        bootstrap = 0.0 if traj.done[-1] else value[-1]  # one that runs on: its last value stands for the next
        want = _reference_gae(reward, value, traj.done.astype(float), 0.9, 0.8, bootstrap)
        np.testing.assert_allclose(traj.advantages, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(traj.reward, reward)
    assert [len(t) for t in to_trajectories(r, sim.config, cut=False)] == [7, 7, 7]


def test_the_same_seed_gives_the_same_samples_in_any_batches(parts, run):
    sim, agent = parts
    a = sample(sim, agent, 5, 4, seed=3, mode="sample")
    again = sample(sim, agent, 5, 4, seed=3, mode="sample")
    b = sample(sim, agent, 5, 4, seed=3, mode="sample", batch_size=2)  # the same draws, other float sums
    for name in ("z", "obs", "value", "logits", "action", "reward", "done_logit", "hx"):
        assert torch.equal(getattr(a, name), getattr(again, name)), name
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=1e-5, rtol=1e-5)
    assert torch.equal(a.obs, b.obs) and torch.equal(a.action, b.action)
    assert not torch.equal(a.z, sample(sim, agent, 5, 4, seed=4, mode="sample").z)
    data = load_sim_data(run / "rollouts.zarr")
    windows, starts = real_windows(data, 4, 5, seed=0, context_frames=2)
    real = [sample(sim, agent, None, 5, windows, seed=7, batch_size=k) for k in (4, 4, 3)]
    assert torch.equal(real[0].obs, real[1].obs) and torch.equal(real[0].z, real[1].z)
    torch.testing.assert_close(real[0].z, real[2].z, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # latent="mean": z is the encoder's mean for each real start
        q = sim.encode(windows.obs[:, :2], windows.agent_state[:, 0], windows.mask[:, :2])
    torch.testing.assert_close(sample(sim, agent, 4, 5, windows, latent="mean").z, q.mean)
    assert np.all(np.isin(starts, data.window_starts(np.arange(data.num_episodes), 2)))


def test_filtered_real_starts_replay_their_context_and_the_agent_acts_from_its_last_frame(parts, run):
    sim, agent = parts
    k = sim.config.context_frames
    windows, _ = real_windows(load_sim_data(run / "rollouts.zarr"), 4, 6, seed=1, context_frames=k)
    r = sample(sim, agent, None, 6, windows, mode="modal", seed=2, filtered=True)
    assert torch.equal(r.action_index[:, :k - 1], windows.action[:, :k - 1])  # the recorded history
    assert torch.equal(r.action_index[:, k - 1:], r.logits[:, k - 1:].argmax(-1))  # then the agent's own
    assert torch.equal(r.hx[:, 0], windows.agent_state[:, 0])  # the recorded state, not the converter's
    unfiltered = sample(sim, agent, None, 6, windows, mode="modal", seed=2)
    assert not torch.equal(r.s[:, 1:k], unfiltered.s[:, 1:k])  # the posterior read the context frames
    with pytest.raises(ValueError, match="needs real starts as Windows"):
        sample(sim, agent, 2, 3, start="prior", filtered=True)


def test_bad_starts_and_counts_are_refused(parts, run):
    sim, agent = parts
    with pytest.raises(ValueError, match="prior"):
        sample(sim, agent, 2, 3, start="dream")
    with pytest.raises(ValueError, match=">= 1"):
        sample(sim, agent, 0, 3)
    windows, _ = real_windows(load_sim_data(run / "rollouts.zarr"), 3, 4, context_frames=2)
    with pytest.raises(ValueError, match="real starts hold 3"):
        sample(sim, agent, 5, 4, windows)


# -------------------------------------------------------------------------------------------------- the command
@pytest.mark.slow
def test_cli_writes_samples_videos_and_an_explorer_of_them(run, tmp_path):
    out = tmp_path / "sample"
    summary = main([str(run), "--n", "3", "--steps", "5", "--start", "real", "--out", str(out), "--k", "2",
                    "--ig-steps", "2", "--seed", "5", "--progress", "false"])
    arrays = np.load(out / "samples.npz")
    assert arrays["obs"].dtype == np.uint8 and arrays["obs"].shape == (3, 5, 7, 7, 3)
    lengths = arrays["length"]
    done = arrays["done"]
    for b, n in enumerate(lengths):  # cut at the first predicted done, or all steps
        assert n == (done[b].argmax() + 1 if done[b].any() else 5)
        assert np.isnan(arrays["advantages"][b, n:]).all() and np.isfinite(arrays["advantages"][b, :n]).all()
    np.testing.assert_array_equal(done, arrays["done_logit"] > 0)
    # real starts: the windows' first frames are the store's frames at (episode, frame)
    data = load_sim_data(run / "rollouts.zarr")
    for b, (e, f) in enumerate(zip(arrays["episode"], arrays["frame"])):
        np.testing.assert_array_equal(arrays["real_obs"][b, 0], data.obs[data.start[e] + f])
    for b, n in enumerate(lengths):
        assert Image.open(out / "video" / f"sample_{b:03d}.gif").n_frames == n
    assert Image.open(out / "video" / "grid.gif").n_frames == max(lengths)
    assert (out / "explorer" / "index.html").is_file()
    _, manifest = read_js(out / "explorer" / "data" / "manifest.js")
    assert len(manifest["trajectories"]) == 3 and manifest["layers"][0]["name"] == "conv2"
    for b, n in enumerate(lengths):
        _, traj = read_js(out / "explorer" / "data" / f"t{b}.js")
        assert traj["length"] == n and traj["info"]["episode"] == arrays["episode"][b]
        np.testing.assert_allclose(traj["value"], arrays["value"][b, :n], atol=1e-4)
        assert (out / "explorer" / "data" / f"t{b}-l0.js").is_file()
    saved = json.loads((out / "summary.json").read_text())
    assert saved["lengths"] == lengths.tolist() == summary["lengths"]


def test_cli_filtered_start_keeps_each_windows_recorded_actions_before_its_last_context_frame(run, tmp_path):
    out = tmp_path / "filtered"
    main([str(run), "--n", "3", "--steps", "4", "--start", "filtered", "--out", str(out), "--video", "false",
          "--explorer", "false", "--seed", "2", "--progress", "false"])
    arrays = np.load(out / "samples.npz")
    data = load_sim_data(run / "rollouts.zarr")
    k = tiny_parts(run)[0].config.context_frames
    for b, (e, f) in enumerate(zip(arrays["episode"], arrays["frame"])):
        first = data.start[e] + f
        np.testing.assert_array_equal(arrays["action"][b, :k - 1], data.action[first:first + k - 1])


def test_cli_refuses_bad_options_cleanly(run, tmp_path, capsys):
    for argv, message in ((["--start", "dream"], "--start 'dream'"), (["--n", "0"], "--n must be >= 1"),
                          (["--layer", "nowhere"], "nowhere")):
        with pytest.raises(SystemExit) as e:
            main([str(run), "--out", str(tmp_path / "x"), "--steps", "2", "--n", "1", "--video", "false",
                  "--progress", "false", *argv])
        assert e.value.code == 2 and message in capsys.readouterr().err
