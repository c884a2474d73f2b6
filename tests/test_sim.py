"""The simulator: the frozen agent in the loop, straight-through actions and observations, the KL terms,
episode-respecting windows, training (resume bit-for-bit, DDP on gloo equal to one process), checkpoints
tied to their agent and env, bad input."""
from __future__ import annotations

import json
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from policylens import agents, rollouts
from policylens.rollouts import RecordConfig, record
from policylens.sim import cli as sim_cli
from policylens.sim.checkpoint import load_sim, read_sim_config
from policylens.sim.config import SimConfig, for_data, obs_kind
from policylens.sim.data import load_sim_data
from policylens.sim.loop import Context, FrozenAgent, Noise, choose_action, rollout
from policylens.sim.model import Gaussian, Simulator, balanced_kl, kl_divergence, standard_normal_kl
from policylens.sim.objective import SimObjective, seen_mask
from policylens.sim.obs import agent_view, obs_loss
from policylens.sim.train import SimTrainConfig, _Setup, fit, train

ENV = "minigrid:MiniGrid-Empty-Random-5x5-v0?num_actions=3"  # a random agent wanders: episodes of tens of steps
AGENT = {"arch": "cnn", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1}
TINY = SimConfig(context_frames=2, latent=8, deter=16, stoch=4, hidden=16, embed=16, channels=4)


@pytest.fixture(scope="module")
def runs(sim_world):
    """The shared tiny world (recurrent ``rnn`` with a 6-episode store, ``other``) and a feed-forward ``ff``."""
    torch.manual_seed(2)
    agents.save_agent(agents.build(AGENT), AGENT, sim_world / "ff" / "agent", extra={"env": ENV})
    return sim_world


def _train_cfg(runs, out, **kw) -> SimTrainConfig:
    base = dict(run=str(runs / "rnn"), out=str(out), window=5, steps=2, batch_size=4, eval_every=2,
                checkpoint_every=2, val_windows=8, progress=False, sim=TINY, lr=1e-3)
    return SimTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def data(runs):
    return load_sim_data(runs / "rnn" / "rollouts.zarr")


@pytest.fixture(scope="module")
def parts(runs, data):
    """A tiny simulator, the frozen agent and some windows of real frames."""
    agent = agents.load(runs / "rnn")
    cfg = for_data(TINY, data.env, data.obs.shape[1:], 3, 8)
    return Simulator(cfg, seed=0), FrozenAgent(agent), agent, data.windows(data.window_starts(np.arange(6), 5)[::3], 5)


# -------------------------------------------------------------------------------------------------- the loop
@pytest.mark.slow
def test_frozen_agent_gets_no_grad_and_stays_bit_identical_while_gradients_pass_through_it(parts):
    sim, frozen, agent, batch = parts
    sim = Simulator(sim.config, seed=1)
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    # only the agent-in-the-loop terms: the decoder learns solely through the agent's hx and logits
    cfg = _train_cfg(Path("."), "x", obs_weight=0, reward_weight=0, done_weight=0, kl_weight=0, z_kl_weight=0)
    loss, _ = SimObjective(sim, frozen, cfg)(batch, Noise.draw(len(batch.mask), 5, sim, torch.Generator()))
    opt = torch.optim.AdamW(sim.parameters(), lr=1e-2)
    loss.backward()
    opt.step()
    assert all(p.grad is None and not p.requires_grad for p in frozen.net.parameters())
    assert all(torch.equal(v, before[k]) for k, v in frozen.net.state_dict().items())
    assert all(torch.equal(v, before[k]) for k, v in agent.state_dict().items())
    assert all(p.requires_grad for p in agent.parameters())  # the original is not modified
    decoder_grad = sum(p.grad.abs().sum() for p in sim.obs_decoder.parameters())
    assert decoder_grad > 0  # reached the decoder only through the frozen agent
    with pytest.raises(ValueError, match="recurrent"):
        FrozenAgent(agents.build(AGENT))


@pytest.mark.slow
def test_the_prior_learns_from_the_kl_open_loop_unrolls_or_prior_frames_and_from_nothing_else(parts):
    sim, frozen, _, batch = parts
    noise = Noise.draw(len(batch.mask), 5, sim, torch.Generator().manual_seed(0))
    grads = {}
    for weights in np.eye(4).tolist() + [[0.0] * 4]:
        kl, open_loop, prior_obs, prior_step = weights
        model = Simulator(sim.config, seed=1)
        cfg = _train_cfg(Path("."), "x", kl_weight=kl, open_loop_weight=open_loop, prior_obs_weight=prior_obs,
                         prior_step_weight=prior_step, free_nats=0.0)
        loss, sums = SimObjective(model, frozen, cfg)(batch, noise)
        loss.backward()
        grads[tuple(weights)] = sum(p.grad.abs().sum() for p in model.prior.parameters() if p.grad is not None)
        assert (sums["open_loop"] > 0) == (open_loop > 0) and (sums["prior_obs"] > 0) == (prior_obs > 0)
        assert (sums["prior_step"] > 0) == (prior_step > 0)
    assert grads[0.0, 0.0, 0.0, 0.0] == 0 and all(g > 0 for key, g in grads.items() if any(key))


@pytest.mark.slow
def test_the_prior_frame_term_decodes_each_frame_from_the_prior_one_step_after_the_posterior(parts):
    sim, frozen, _, batch = parts
    b, t = batch.mask.shape
    noise = Noise.draw(b, t, sim, torch.Generator().manual_seed(0))
    with torch.no_grad():
        off, _ = SimObjective(sim, frozen, _train_cfg(Path("."), "x", prior_step_latent="sample"))(batch, noise)
        on, sums = SimObjective(sim, frozen, _train_cfg(Path("."), "x", prior_obs_weight=2.0,
                                                        prior_step_latent="sample"))(batch, noise)
        r = rollout(sim, frozen, batch.context(sim.config.context_frames), t, actions=batch.action, obs=batch.obs,
                    mask=batch.mask, noise=noise)
        total = 0.0
        for k in range(1, t):  # o_k from p(s_k | h_k), h_k after the posterior state at k-1
            prior = sim.prior(r.h[:, k])
            decoded = sim.decode_obs(r.h[:, k], prior.mean + prior.std * noise.s[:, k])
            total = total + (obs_loss(decoded, batch.obs[:, k], sim.config) * batch.mask[:, k]).sum()
    torch.testing.assert_close(sums["prior_obs"], total)
    torch.testing.assert_close(on - off, 2.0 * total / (b * t))


@pytest.mark.parametrize("latent", ["sample", "mean"])
@pytest.mark.slow
def test_the_prior_step_term_scores_the_frame_reward_and_end_one_prior_step_after_the_posterior(parts, latent):
    sim, frozen, _, batch = parts
    b, t = batch.mask.shape
    batch = replace(batch, reward=torch.rand(b, t), done=(torch.rand(b, t) < 0.3).float())  # a reward to score
    noise = Noise.draw(b, t, sim, torch.Generator().manual_seed(0))
    weights = dict(obs_weight=0.5, reward_weight=2.0, done_weight=3.0, prior_step_latent=latent)
    with torch.no_grad():
        off, _ = SimObjective(sim, frozen, _train_cfg(Path("."), "x", prior_step_weight=0.0, **weights))(batch, noise)
        on, sums = SimObjective(sim, frozen, _train_cfg(Path("."), "x", prior_step_weight=4.0, **weights))(batch,
                                                                                                          noise)
        r = rollout(sim, frozen, batch.context(sim.config.context_frames), t, actions=batch.action, obs=batch.obs,
                    mask=batch.mask, noise=noise)
        total = 0.0
        for k in range(1, t):  # from h_k (after the posterior state at k-1) and s_k from the prior: o_k, r_k, d_k
            prior = sim.prior(r.h[:, k])
            s = prior.mean + (prior.std * noise.s[:, k] if latent == "sample" else 0)  # (B, stoch)
            h_next = sim.cell(sim.step_input(torch.cat([s, F.one_hot(batch.action[:, k].long(), 3).float()], -1)),
                              r.h[:, k])
            obs = obs_loss(sim.decode_obs(r.h[:, k], s), batch.obs[:, k], sim.config)
            reward = (sim.reward_head(h_next)[:, 0] - batch.reward[:, k]).pow(2)
            done = F.binary_cross_entropy_with_logits(sim.done_head(h_next)[:, 0], batch.done[:, k], reduction="none")
            total = total + ((0.5 * obs + 2.0 * reward + 3.0 * done) * batch.mask[:, k]).sum()
    torch.testing.assert_close(sums["prior_step"], total)
    assert float(sums["prior_obs"]) == 0.0
    torch.testing.assert_close(on - off, 4.0 * total / (b * t))


@pytest.mark.slow
def test_prior_terms_can_train_the_dynamics_alone_with_the_readouts_read_detached(parts):
    sim, frozen, _, batch = parts
    b, t = batch.mask.shape
    batch = replace(batch, reward=torch.rand(b, t), done=(torch.rand(b, t) < 0.3).float())
    noise = Noise.draw(b, t, sim, torch.Generator().manual_seed(0))
    only = dict(obs_weight=0.0, hx_weight=0.0, logits_weight=0.0, kl_weight=0.0, z_kl_weight=0.0, open_loop_weight=0.0,
                prior_step_weight=1.0, prior_obs_weight=1.0)  # the loss is the prior terms alone (+ reward, done)
    grads, sums = {}, {}
    for trains in (True, False):
        model = Simulator(sim.config, seed=1)
        loss, sums[trains] = SimObjective(model, frozen, _train_cfg(Path("."), "x", prior_trains_readouts=trains,
                                                                    **only))(batch, noise)
        loss.backward()
        grads[trains] = {name: sum(float(p.grad.abs().sum()) for p in getattr(model, name).parameters()
                                   if p.grad is not None) for name in ("obs_decoder", "prior", "cell")}
    torch.testing.assert_close(sums[True]["prior_step"], sums[False]["prior_step"])
    torch.testing.assert_close(sums[True]["prior_obs"], sums[False]["prior_obs"])
    assert grads[False]["obs_decoder"] == 0 < grads[True]["obs_decoder"]  # obs_weight 0: only the prior terms
    assert grads[False]["prior"] > 0 and grads[False]["cell"] > 0


@pytest.mark.slow
def test_open_loop_term_can_train_the_dynamics_alone_with_the_readouts_read_detached(parts):
    sim, frozen, _, batch = parts
    b, t = batch.mask.shape
    batch = replace(batch, reward=torch.rand(b, t), done=(torch.rand(b, t) < 0.3).float())
    noise = Noise.draw(b, t, sim, torch.Generator().manual_seed(0))
    readouts = ("obs_decoder", "reward_head", "done_head")
    grads, sums = {}, {}
    for name, kw in {"trained": dict(open_loop_detaches="none"), "detached": dict(open_loop_detaches="readouts"),
                     "decoder": dict(open_loop_detaches="decoder"), "off": dict(open_loop_weight=0.0)}.items():
        model = Simulator(sim.config, seed=1)
        loss, sums[name] = SimObjective(model, frozen, _train_cfg(Path("."), "x", **kw))(batch, noise)
        loss.backward()
        grads[name] = {k: v.grad.clone() for k, v in model.named_parameters() if v.grad is not None}
    for name in ("detached", "decoder"):
        torch.testing.assert_close(sums["trained"]["open_loop"], sums[name]["open_loop"])
    assert float(sums["detached"]["open_loop"].detach()) > 0
    for k, g in grads["detached"].items():  # the readouts learn what they learn without the term; the rest more
        module = k.split(".")[0]
        if module in readouts:
            torch.testing.assert_close(g, grads["off"][k])
            assert not torch.allclose(grads["trained"][k], g)
        # with the decoder alone detached, the heads learn as when the term trains everything
        torch.testing.assert_close(grads["decoder"][k], grads["off" if module == "obs_decoder" else "trained"][k])
    cell = [k for k in grads["detached"] if k.startswith("cell.")]
    assert cell and all(not torch.allclose(grads["detached"][k], grads["off"][k]) for k in cell)
    for v in model.parameters():  # functional_call leaves the module's own weights in place
        assert isinstance(v, torch.nn.Parameter)


@pytest.mark.slow
def test_open_loop_detaches_names_a_readout_set_or_is_refused_before_training(runs, tmp_path):
    from policylens.sim.train import fit
    with pytest.raises(ValueError, match=r"open_loop_detaches 'heads'; expected one of \('none', 'decoder', "):
        fit(_train_cfg(runs, tmp_path / "sim", open_loop_detaches="heads"))
    assert not (tmp_path / "sim").exists()


@pytest.mark.slow
def test_open_loop_starts_read_their_seen_frames_through_the_posterior_and_no_more(parts):
    sim, frozen, _, batch = parts
    b, t = batch.mask.shape
    assert seen_mask(torch.ones(2, 4), torch.tensor([1, 3])).tolist() == [[True, False, False, False],
                                                                           [True, True, True, False]]
    noise = Noise.draw(b, t, sim, torch.Generator().manual_seed(0))
    objective = SimObjective(sim, frozen, _train_cfg(Path("."), "x"))
    with torch.no_grad():
        z_alone = objective(batch, noise)[1]["open_loop"]
        ones = objective(batch, noise, seen=torch.ones(b, dtype=torch.long))[1]["open_loop"]
        context = objective(batch, noise, seen=torch.full((b,), 3))[1]["open_loop"]
        _, whole = objective(batch, noise, seen=torch.full((b,), t))
    assert torch.equal(z_alone, ones) and not torch.allclose(context, z_alone)
    # reading every frame through the posterior, the open-loop unroll is the teacher-forced one
    teacher = sum(whole[k] for k in ("obs", "reward", "done", "hx", "logits"))
    torch.testing.assert_close(whole["open_loop"], teacher)


@pytest.mark.slow
def test_agent_in_the_loop_reproduces_the_recording_when_the_decoder_shows_the_recorded_frames(parts):
    """If the decoder gave exactly the recorded frames and the converter the recorded state, the agent in the
    loop must give the recorded hidden states (the state *received* at each step) and logits."""
    sim, frozen, _, batch = parts
    codes = batch.obs.long()  # (B, T, 7, 7, 3)
    exact = torch.cat([F.one_hot(codes[..., k], n) for k, n in enumerate(sim.config.planes)], -1) * 50.0
    steps = iter(range(codes.shape[1]))

    class Replay(Simulator):
        def decode_obs(self, h, s):
            if h.shape[0] == exact.shape[0] * exact.shape[1]:  # all steps at once (recorded actions)
                return exact.flatten(0, 1)
            return exact[:, next(steps)]  # (B, 7, 7, 20) logits whose argmax are the recorded codes

        def initial(self, z):
            h0, s0, _ = super().initial(z)
            return h0, s0, batch.agent_state[:, 0]

    replay = Replay(sim.config, seed=0)
    with torch.no_grad():
        r = rollout(replay, frozen, batch.context(2), 5, actions=batch.action, obs=batch.obs, mask=batch.mask)
    valid = batch.mask
    torch.testing.assert_close(r.hx[valid], batch.agent_state[valid], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r.logits[valid], batch.logits[valid], atol=1e-5, rtol=1e-5)
    assert torch.equal(r.obs[valid], batch.obs[valid].float())  # straight-through: exactly the codes forward


def test_detached_actions_give_the_gradient_of_fixed_actions_and_attached_ones_do_not(parts):
    sim, frozen, _, _ = parts
    z = torch.randn(3, sim.config.latent, generator=torch.Generator().manual_seed(0), requires_grad=True)
    imagined = rollout(sim, frozen, z, 6, latent="mean")
    fixed = rollout(sim, frozen, z, 6, latent="mean", actions=imagined.action_index.detach())
    detached = rollout(sim, frozen, z, 6, latent="mean", detach_actions=True)
    assert torch.equal(detached.action, fixed.action) and torch.equal(detached.h, fixed.h)
    grads = [torch.autograd.grad(r.value[:, -1].sum(), z)[0] for r in (imagined, fixed, detached)]
    assert grads[0].abs().sum() > 0  # through time back to the latent
    torch.testing.assert_close(grads[2], grads[1])
    assert not torch.allclose(grads[0], grads[1])  # the environment path through the agent's actions


def test_gradient_probes_see_the_past_not_the_future_and_edits_take_effect(parts):
    sim, frozen, _, _ = parts
    z = torch.randn(2, sim.config.latent, generator=torch.Generator().manual_seed(3))
    probes = {(name, t): torch.zeros((), requires_grad=True) for name in ("obs", "hx", "h") for t in range(5)}
    r = rollout(sim, frozen, z, 5, latent="mean",
                intervene=lambda name, t, x: x + probes[name, t] if (name, t) in probes else x)
    grads = dict(zip(probes, torch.autograd.grad(r.logits[:, 2].sum(), list(probes.values()), allow_unused=True)))
    for (name, t), g in grads.items():  # the logits at step 2 depend on every step up to 2 and on none after
        assert (g is not None and g != 0) if t <= 2 else (g is None or g == 0), (name, t)
    zeroed = rollout(sim, frozen, z, 3, latent="mean", intervene=lambda name, t, x: x * 0 if name == "hx" else x)
    assert zeroed.hx.abs().max() == 0
    plain = rollout(sim, frozen, z, 3, latent="mean")
    assert not torch.equal(plain.logits, zeroed.logits)


def test_straight_through_actions():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    w = torch.randn(5, 4)
    modal = choose_action(logits, "modal")
    assert torch.equal(modal.detach(), F.one_hot(logits.argmax(-1), 4).float())
    (grad,) = torch.autograd.grad((modal * w).sum(), logits)
    (expected,) = torch.autograd.grad((F.softmax(logits, -1) * w).sum(), logits)
    torch.testing.assert_close(grad, expected)
    # Gumbel: forward is the argmax of perturbed logits; the samples follow softmax(logits)
    probe = torch.tensor([[1.0, 0.0, -1.0]]).expand(40000, 3)
    g = Noise.draw(40000, 1, _StubSim(), torch.Generator().manual_seed(1)).gumbel[:, 0]
    freq = choose_action(probe, "sample", g).mean(0)
    torch.testing.assert_close(freq, F.softmax(probe[0], -1), atol=0.01, rtol=0)
    with pytest.raises(ValueError, match="mode"):
        choose_action(logits, "greedy")


class _StubSim:
    config = replace(TINY, num_actions=3)


def test_symbolic_view_and_loss_against_hand_computations():
    cfg = for_data(TINY, "minigrid:MiniGrid-Empty-5x5-v0", (7, 7, 3), 3, 8)
    pred = torch.randn(2, 7, 7, 20, generator=torch.Generator().manual_seed(0), requires_grad=True)
    soft = agent_view(pred, cfg, straight_through=False)
    hard = agent_view(pred, cfg, straight_through=True)
    planes = pred.split([11, 6, 3], -1)
    expected = torch.stack([(p.softmax(-1) * torch.arange(p.shape[-1])).sum(-1) for p in planes], -1)
    torch.testing.assert_close(soft, expected)
    assert torch.equal(hard, torch.stack([p.argmax(-1) for p in planes], -1).float())
    w = torch.randn(2, 7, 7, 3)
    g_hard, g_soft = (torch.autograd.grad((v * w).sum(), pred, retain_graph=True)[0] for v in (hard, soft))
    torch.testing.assert_close(g_hard, g_soft)  # straight-through: the expected code's gradient
    codes = torch.stack([torch.randint(0, n, (2, 7, 7), generator=torch.Generator().manual_seed(n)) for n in
                         (11, 6, 3)], -1)
    reference = sum(F.cross_entropy(p.reshape(-1, p.shape[-1]), codes[..., k].reshape(-1), reduction="sum")
                    for k, p in enumerate(planes)) / 2
    torch.testing.assert_close(obs_loss(pred, codes, cfg).mean(), reference)


@pytest.mark.slow
def test_balanced_obs_loss_weighs_each_cell_by_its_object_types_rarity(parts):
    from policylens.sim.obs import object_weights

    cfg = for_data(TINY, "minigrid:MiniGrid-Empty-5x5-v0", (7, 7, 3), 3, 8)
    codes = torch.ones(4, 7, 7, 3, dtype=torch.long)  # empty cells...
    codes[:, 0] = 2  # ...a row of wall in each frame (7 of 49 cells)...
    codes[0, 3, 3, 0] = 6  # ...and one ball in all 196 cells
    share = torch.tensor([0.0] * 11).index_put_((torch.tensor([1, 2, 6]),), torch.tensor([167, 28, 1]) / 196.0)
    w = object_weights(codes.numpy(), cfg, 0.5)
    raw = torch.where(share > 0, share.clamp_min(1e-12) ** -0.5, torch.zeros(11))
    torch.testing.assert_close(w, (raw / (raw * share).sum()).float())
    torch.testing.assert_close((w * share).sum(), torch.tensor(1.0))  # the mean weight over the cells
    assert w[6] > w[2] > w[1] > 0 and object_weights(codes.numpy(), cfg, 0) is None
    with pytest.raises(ValueError, match=">= 0"):
        object_weights(codes.numpy(), cfg, -1)
    pred = torch.randn(4, 7, 7, 20, generator=torch.Generator().manual_seed(1))
    per_cell = sum(-p.log_softmax(-1).gather(-1, codes[..., k:k + 1]).squeeze(-1)
                   for k, p in enumerate(pred.split([11, 6, 3], -1)))  # (4, 7, 7)
    torch.testing.assert_close(obs_loss(pred, codes, cfg, w), (per_cell * w[codes[..., 0]]).flatten(1).sum(-1))
    sim, frozen, _, batch = parts  # in the objective every observation term scales with the weights
    noise = Noise.draw(batch.mask.shape[0], batch.mask.shape[1], sim, torch.Generator().manual_seed(0))
    train = _train_cfg(Path("."), "x")
    with torch.no_grad():
        plain = SimObjective(sim, frozen, train)(batch, noise)[1]
        double = SimObjective(sim, frozen, train, torch.full((sim.config.planes[0],), 2.0))(batch, noise)[1]
    for k in ("obs", "prior_step"):
        assert double[k] > plain[k]
    torch.testing.assert_close(double["obs"], 2 * plain["obs"])


def test_obs_kinds_and_a_pixel_simulator_unrolls():
    assert obs_kind("minigrid:MiniGrid-Empty-5x5-v0", (7, 7, 3))[0] == "symbolic"
    assert obs_kind("minigrid:MiniGrid-Empty-5x5-v0?obs=onehot", (7, 7, 20))[0] == "onehot"
    assert obs_kind("minigrid:MiniGrid-Empty-5x5-v0?obs=rgb", (56, 56, 3))[0] == "pixels"
    assert obs_kind("procgen:coinrun", (64, 64, 3))[0] == "pixels"
    torch.manual_seed(0)
    agent = agents.build({**AGENT, "obs_shape": [56, 56, 3], "obs_scale": 1 / 255, "recurrent": True, "hidden": 8})
    cfg = for_data(TINY, "minigrid:MiniGrid-Empty-5x5-v0?obs=rgb", (56, 56, 3), 3, 8)
    sim = Simulator(cfg, seed=0)
    obs = torch.randint(0, 256, (2, 2, 56, 56, 3), dtype=torch.uint8)
    r = rollout(sim, FrozenAgent(agent), Context(obs, torch.zeros(2, 8)), 3, mode="sample",
                generator=torch.Generator().manual_seed(0))
    assert r.obs.shape == (2, 3, 56, 56, 3) and 0 <= r.obs.min() and r.obs.max() <= 255
    assert obs_loss(obs.float(), obs, cfg).abs().max() == 0
    onehot = agents.build({**AGENT, "obs_shape": [7, 7, 20], "obs_scale": 1.0, "recurrent": True, "hidden": 8})
    cfg = for_data(TINY, "minigrid:MiniGrid-Empty-5x5-v0?obs=onehot", (7, 7, 20), 3, 8)
    r = rollout(Simulator(cfg, seed=0), FrozenAgent(onehot), torch.randn(2, cfg.latent), 2)
    sums = torch.stack([p.sum(-1) for p in r.obs.split([11, 6, 3], -1)], -1)  # each plane: a one-hot
    assert torch.equal(sums, torch.ones_like(sums)) and set(r.obs.unique().tolist()) == {0.0, 1.0}
    with pytest.raises(ValueError, match="56, 56"):
        rollout(sim, FrozenAgent(agents.build({**AGENT, "recurrent": True, "hidden": 8})), r.z, 2)


def test_a_sampled_rollout_after_a_recorded_prefix_draws_the_noise_its_own_actions_need():
    """``mode="sample"`` with recorded actions for the first steps only and ``latent="mean"``: the agent picks the
    later actions, so Gumbel noise is drawn (from ``generator``, as every sampled rollout draws it)."""
    onehot = agents.build({**AGENT, "obs_shape": [7, 7, 20], "obs_scale": 1.0, "recurrent": True, "hidden": 8})
    cfg = for_data(TINY, "minigrid:MiniGrid-Empty-5x5-v0?obs=onehot", (7, 7, 20), 3, 8)
    sim, frozen = Simulator(cfg, seed=0), FrozenAgent(onehot)
    z, prefix = torch.randn(4, cfg.latent, generator=torch.Generator().manual_seed(0)), torch.tensor([[2, 1]] * 4)
    drawn = rollout(sim, frozen, z, 6, mode="sample", actions=prefix, latent="mean",
                    generator=torch.Generator().manual_seed(3))
    given = rollout(sim, frozen, z, 6, mode="sample", actions=prefix, latent="mean",
                    noise=Noise.draw(4, 6, sim, torch.Generator().manual_seed(3)))
    assert torch.equal(drawn.action_index[:, :2], prefix)
    assert torch.equal(drawn.action_index, given.action_index)


def test_kl_terms_against_torch_distributions_and_the_balance_of_their_gradients():
    gen = torch.Generator().manual_seed(0)
    qm, pm = torch.randn(4, 5, generator=gen, requires_grad=True), torch.randn(4, 5, generator=gen, requires_grad=True)
    qs, ps = torch.rand(4, 5, generator=gen) + 0.2, torch.rand(4, 5, generator=gen) + 0.2
    q, p = Gaussian(qm, qs), Gaussian(pm, ps)
    normal = torch.distributions.Normal
    reference = torch.distributions.kl_divergence(normal(qm, qs), normal(pm, ps)).sum(-1)
    torch.testing.assert_close(kl_divergence(q, p), reference)
    prior = torch.distributions.kl_divergence(normal(qm, qs), normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(standard_normal_kl(q), prior)
    g_q, g_p = torch.autograd.grad(reference.sum(), (qm, pm))
    b_q, b_p = torch.autograd.grad(balanced_kl(q, p, 0.8).sum(), (qm, pm))
    torch.testing.assert_close(b_q, 0.2 * g_q)  # the posterior moves with weight 1 - alpha
    torch.testing.assert_close(b_p, 0.8 * g_p)  # the prior with weight alpha
    free = balanced_kl(q, p, 0.8, free_nats=1e6)  # below the free nats: the floor, and no gradient
    assert torch.all(free == 1e6)
    assert all(g.abs().sum() == 0 for g in torch.autograd.grad(free.sum(), (qm, pm)))


# -------------------------------------------------------------------------------------------------- data
@pytest.mark.slow
def test_windows_stay_in_their_episode_and_the_split_is_by_episode(runs, data):
    store = rollouts.open(runs / "rnn" / "rollouts.zarr")
    train_eps, val_eps = data.split(0.34, seed=0)
    assert len(val_eps) == 2 and sorted(np.concatenate([train_eps, val_eps]).tolist()) == list(range(6))
    starts = data.window_starts(val_eps, 5)
    assert set(data.start[np.searchsorted(data.start, starts, side="right") - 1]) <= set(data.start[val_eps])
    w = data.windows(np.concatenate([starts, [data.start[0] + data.length[0] - 2]]), 5)  # the last one runs out
    for i, a in enumerate(np.concatenate([starts, [data.start[0] + data.length[0] - 2]])):
        n = int(w.mask[i].sum())
        assert w.mask[i, :n].all() and not w.mask[i, n:].any()
        np.testing.assert_array_equal(w.obs[i, :n].numpy(), store.read("obs", int(a), int(a) + n))
        np.testing.assert_array_equal(w.agent_state[i, :n].numpy(), store.read("agent_state", int(a), int(a) + n))
        assert not w.done[i, :n - 1].any()  # an episode's end can only be a window's last valid step
    assert w.mask[-1].sum() == 2 and w.done[-1, 1] == 1 and (w.obs[-1, 2:] == 0).all()


@pytest.mark.slow
def test_several_stores_train_together_and_hold_out_only_the_first_stores_episodes(runs, data, tmp_path):
    second = tmp_path / "t2.zarr"
    record(RecordConfig(run=str(runs / "rnn"), episodes=4, num_envs=2, progress=False, out=str(second),
                        policy="temperature", temperature=2.0, seed=7))
    joined = load_sim_data(f"{runs / 'rnn' / 'rollouts.zarr'},{second}")
    assert joined.num_episodes == 10 and joined.num_frames == data.num_frames + rollouts.open(second).num_frames
    train_eps, val_eps = joined.split(0.34, seed=0)
    np.testing.assert_array_equal(val_eps, data.split(0.34, seed=0)[1])  # the first store's held-out episodes
    assert set(range(6, 10)) <= set(train_eps.tolist()) and not set(train_eps) & set(val_eps)
    w = joined.windows(joined.start[6:], 3)  # the second store's episodes read its own frames
    store = rollouts.open(second)
    for i in range(4):
        a = int(store.index["start"][i])
        n = min(3, int(store.index["length"][i]))
        np.testing.assert_array_equal(w.obs[i, :n].numpy(), store.read("obs", a, a + n))
        np.testing.assert_array_equal(w.action[i, :n].numpy(), store.read("action", a, a + n))
    # a simulator trained on both: its config keeps the first store's episode count, so `sim fidelity` on that
    # store rebuilds the same split and scores only episodes no store trained on
    from policylens.sim.analyses.fidelity import cli as fidelity_cli

    sim_dir = train(_train_cfg(runs, tmp_path / "sim2", store=f"{runs / 'rnn' / 'rollouts.zarr'},{second}",
                               val_fraction=0.34))
    conf = json.loads((sim_dir / "config.json").read_text())
    assert conf["data"]["episodes"] == 10 and conf["data"]["split_episodes"] == 6
    report = json.loads(fidelity_cli.main([str(runs / "rnn"), "--sim", str(sim_dir), "--horizon", "2", "--windows",
                                           "8", "--baseline", "none", "--plots", "false", "--progress", "false",
                                           "--out", str(tmp_path / "fid")]).read_text())
    assert set(report["settings"]["split"]["scored_episodes"]) <= set(val_eps.tolist())
    other = tmp_path / "other.zarr"
    record(RecordConfig(run=str(runs / "other"), episodes=2, num_envs=2, progress=False, out=str(other)))
    with pytest.raises(ValueError, match="cannot train one simulator"):
        load_sim_data(f"{runs / 'rnn' / 'rollouts.zarr'},{other}")


def test_tail_windows_end_their_episode_at_every_step_after_the_context(runs, data, tmp_path):
    eps = np.arange(6)
    inside, tail = data.window_starts(eps, 5), data.window_starts(eps, 5, min_frames=3)
    assert all(n > 5 for n in data.length)  # so each episode adds the 2 starts whose windows keep 4 and 3 frames
    assert set(inside) < set(tail) and len(tail) - len(inside) == 2 * len(eps)
    w = data.windows(tail, 5)
    ends = w.done.bool() & w.mask.bool()  # (n, 5) where an episode ends
    assert set(ends.nonzero()[:, 1].tolist()) == {2, 3, 4}  # at every step from the first after a 2-frame context
    assert (w.mask.sum(1) >= 3).all()
    full = data.windows(inside, 5)
    assert set((full.done.bool() & full.mask.bool()).nonzero()[:, 1].tolist()) == {4}  # only at the last step
    setup = _Setup(_train_cfg(runs, tmp_path / "t", tail_windows=True), 0, 1)
    np.testing.assert_array_equal(setup.train_starts, data.window_starts(data.split(0.1, 0)[0], 5, min_frames=3))


@pytest.mark.slow
def test_a_split_seed_keeps_the_held_out_episodes_while_the_seed_changes_the_weights(runs, tmp_path):
    from policylens.sim.analyses.fidelity.cli import training_split

    kw = dict(val_fraction=0.34, val_windows=4)
    base = _Setup(_train_cfg(runs, tmp_path / "a", **kw), 0, 1)
    same_split = _Setup(_train_cfg(runs, tmp_path / "b", seed=1, split_seed=0, **kw), 0, 1)
    other_split = _Setup(_train_cfg(runs, tmp_path / "c", seed=1, **kw), 0, 1)
    assert torch.equal(base.val.obs, same_split.val.obs) and base.extra["data"] == same_split.extra["data"]
    assert not torch.equal(base.val.obs, other_split.val.obs)
    assert not torch.equal(base.sim.obs_decoder.fc[0].weight, same_split.sim.obs_decoder.fc[0].weight)
    assert training_split({"train": same_split.extra["train"]})["seed"] == 0
    assert training_split({"train": other_split.extra["train"]})["seed"] == 1


# -------------------------------------------------------------------------------------------------- training
@pytest.mark.slow
def test_resume_is_bit_for_bit_and_the_checkpoint_loads(runs, tmp_path):
    whole = train(_train_cfg(runs, tmp_path / "whole", steps=4))
    sim_cli.main(["train", str(runs / "rnn"), "--out", str(tmp_path / "parts"), "--steps", "2", "--window", "5",
                  "--batch-size", "4", "--eval-every", "2", "--checkpoint-every", "2", "--val-windows", "8",
                  "--lr", "0.001", "--progress", "false", "--context-frames", "2", "--latent", "8", "--deter", "16",
                  "--stoch", "4", "--hidden", "16", "--embed", "16", "--channels", "4"])
    parts = train(_train_cfg(runs, tmp_path / "parts", steps=4, resume=True))
    a, b = (load_file(str(p / "weights.safetensors")) for p in (whole, parts))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (whole / "train.csv").read_text() == (parts / "train.csv").read_text()
    init = Simulator(read_sim_config(whole)[0], seed=0).state_dict()
    assert any(not torch.equal(init[k], a[k]) for k in a)  # it trained
    sim, frozen = load_sim(whole)
    assert all(torch.equal(v, a[k]) for k, v in sim.state_dict().items()) and not sim.training
    assert frozen.sha256 == read_sim_config(whole)[1]["agent"]["sha256"]
    with pytest.raises(FileExistsError, match="pass --resume to continue it or --overwrite"):
        train(_train_cfg(runs, tmp_path / "whole"))
    with pytest.raises(ValueError, match=r"other settings \(lr"):
        train(_train_cfg(runs, tmp_path / "whole", steps=6, lr=0.5, resume=True))


def _ddp_worker(rank, port, cfg, out):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        sim, _ = fit(cfg)
        save_file({k: v.contiguous() for k, v in sim.state_dict().items()}, str(Path(out) / f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_the_weight_average_is_what_is_saved_and_resumes_bit_for_bit(runs, tmp_path):
    one = train(_train_cfg(runs, tmp_path / "one", steps=1, ema=0.99))
    init = Simulator(read_sim_config(one)[0], seed=0).state_dict()
    raw = load_file(str(one / "trainer" / "weights.safetensors"))  # the weights after the one step
    saved = load_file(str(one / "weights.safetensors"))
    for k, v in saved.items():  # step 0's decay is min(0.99, 1 / 10): 0.1 of the initial weights, 0.9 of the step's
        torch.testing.assert_close(v, 0.1 * init[k] + 0.9 * raw[k])
    assert any(not torch.equal(saved[k], raw[k]) for k in saved)
    whole = train(_train_cfg(runs, tmp_path / "whole", steps=4, ema=0.99))
    train(_train_cfg(runs, tmp_path / "parts", steps=2, ema=0.99))
    parts = train(_train_cfg(runs, tmp_path / "parts", steps=4, ema=0.99, resume=True))
    a, b = (load_file(str(p / "weights.safetensors")) for p in (whole, parts))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (whole / "train.csv").read_text() == (parts / "train.csv").read_text()


@pytest.mark.slow
def test_a_time_budget_stops_training_at_a_checkpoint_and_a_resume_without_time_left_adds_no_step(runs, tmp_path):
    out = tmp_path / "timed"
    train(_train_cfg(runs, out, steps=1000, seconds=1e-9))  # the first step spends the budget
    conf = read_sim_config(out)[1]
    assert conf["trained_steps"] == 1 and conf["trained_seconds"] > 0
    weights = load_file(str(out / "weights.safetensors"))
    train(_train_cfg(runs, out, steps=1000, seconds=1e-9, resume=True))
    assert read_sim_config(out)[1]["trained_steps"] == 1
    assert all(torch.equal(v, weights[k]) for k, v in load_file(str(out / "weights.safetensors")).items())
    train(_train_cfg(runs, out, steps=3, resume=True))  # no time limit: on to the step limit
    assert read_sim_config(out)[1]["trained_steps"] == 3


@pytest.mark.slow
def test_ddp_on_two_gloo_ranks_equals_one_process(runs, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = _train_cfg(runs, tmp_path / "ddp")
    torch.multiprocessing.spawn(_ddp_worker, args=(port, cfg, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)  # identical replicas
    single, _ = fit(replace(cfg, out=str(tmp_path / "single")))
    init = Simulator(single.config, seed=0).state_dict()
    for k, v in single.state_dict().items():  # the same two steps as one process on the whole batch
        torch.testing.assert_close(r0[k], v, atol=1e-5, rtol=1e-4)
    moved = [k for k in r0 if not torch.equal(r0[k], init[k])]
    assert len(moved) > len(r0) // 2


# -------------------------------------------------------------------------------------------------- bad input
@pytest.mark.slow
def test_bad_input_is_refused_with_clear_errors(runs, tmp_path, capsys):
    ff_store = record(RecordConfig(run=str(runs / "ff"), episodes=2, num_envs=2, progress=False))
    with pytest.raises(ValueError, match="needs a recurrent agent"):
        train(_train_cfg(runs, tmp_path / "a", run=str(runs / "ff"), store=str(ff_store)))
    with pytest.raises(ValueError, match="recorded with agent .*rnn.*not .*other"):
        train(_train_cfg(runs, tmp_path / "b", run=str(runs / "other"), store=str(runs / "rnn" / "rollouts.zarr")))
    out = train(_train_cfg(runs, tmp_path / "sim", steps=1))
    with pytest.raises(ValueError, match=r"trained with agent .*rnn.*not .*other"):
        load_sim(out, agent=runs / "other")
    with pytest.raises(ValueError, match=r"trained on env .*Empty-Random.*not .*Empty-8x8"):
        load_sim(out, env="minigrid:MiniGrid-Empty-8x8-v0")
    other_store = record(RecordConfig(run=str(runs / "other"), episodes=2, num_envs=2, progress=False))
    with pytest.raises(ValueError, match=r"trained with agent .*rnn.*not .*other"):
        train(_train_cfg(runs, out, run=str(runs / "other"), store=str(other_store), resume=True))
    with pytest.raises(ValueError, match="window"):
        train(_train_cfg(runs, tmp_path / "c", window=2))
    sim_cli.main(["--help"])
    assert "train" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        sim_cli.main(["train", "--help"])
    assert "--kl-balance" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown sim subcommand"):
        sim_cli.main(["fit"])


@pytest.mark.slow
def test_recorded_actions_batched_over_time_equal_the_step_by_step_loop(parts):
    sim, frozen, _, w = parts
    assert frozen.batches_time
    k, steps = sim.config.context_frames, w.mask.shape[1]
    noise = Noise.draw(w.mask.shape[0], steps, sim, torch.Generator().manual_seed(3))
    for kw in (dict(obs=w.obs, mask=w.mask), {}):  # teacher-forced, and open loop on the prior
        fast = rollout(sim, frozen, w.context(k), steps, actions=w.action, noise=noise, **kw)
        slow = rollout(sim, frozen, w.context(k), steps, actions=w.action, noise=noise,
                       intervene=lambda name, t, x: x, **kw)  # an intervention takes the step-by-step loop
        for name in ("obs", "decoded", "logits", "value", "hx", "hx_last", "action", "h", "s", "reward",
                     "done_logit"):
            torch.testing.assert_close(getattr(fast, name), getattr(slow, name), rtol=1e-4, atol=1e-5, msg=name)
        torch.testing.assert_close(fast.prior.mean, slow.prior.mean, rtol=1e-4, atol=1e-5)
        assert (fast.posterior is None) == (slow.posterior is None)
        fast.value.sum().backward()  # and the gradient reaches the simulator the same way
        grads = [p.grad.clone() for p in sim.parameters() if p.grad is not None]
        sim.zero_grad()
        slow.value.sum().backward()
        for a, b in zip(grads, [p.grad for p in sim.parameters() if p.grad is not None]):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
        sim.zero_grad()


def test_a_recorded_prefix_is_teacher_forced_and_the_agent_acts_after_it(parts):
    sim, frozen, _, w = parts
    b, steps = w.mask.shape
    n, m = 2, 3  # actions drive steps 0, 1; frames 0..2 are filtered
    noise = Noise.draw(b, steps, sim, torch.Generator().manual_seed(4))
    with torch.no_grad():
        whole = rollout(sim, frozen, w.context(2), steps, actions=w.action, obs=w.obs, mask=w.mask, noise=noise)
        prefix = rollout(sim, frozen, w.context(2), steps, mode="modal", actions=w.action[:, :n], obs=w.obs[:, :m],
                         mask=w.mask[:, :m], noise=noise)
    assert torch.equal(prefix.action_index[:, :n], w.action[:, :n])
    assert torch.equal(prefix.action_index[:, n:], prefix.logits[:, n:].argmax(-1))  # its own after the prefix
    for name in ("h", "s", "obs"):  # the same states and frames as teacher forcing up to the first free action
        torch.testing.assert_close(getattr(prefix, name)[:, :m], getattr(whole, name)[:, :m], rtol=1e-5, atol=1e-6)
    assert prefix.posterior.mean.shape[1] == m - 1 and whole.posterior.mean.shape[1] == steps - 1
    torch.testing.assert_close(prefix.posterior.mean, whole.posterior.mean[:, :m - 1])
    # past the recorded frames s comes from the prior: the same noise through p(s | h), not q(s | h, o)
    expected = sim.prior(prefix.h[:, m]).sample(noise.s[:, m])
    torch.testing.assert_close(prefix.s[:, m], expected)
    with pytest.raises(ValueError, match="1 <= n <= steps"):
        rollout(sim, frozen, w.context(2), 3, actions=w.action)
    with pytest.raises(ValueError, match="need the 3 recorded actions"):
        rollout(sim, frozen, w.context(2), steps, actions=w.action[:, :2], obs=w.obs[:, :4])


def test_symbolic_cells_decode_to_codes_the_env_shows_not_plane_by_plane():
    from policylens.sim.config import cell_codes
    from policylens.sim.obs import cell_choice, obs_score

    obs = np.zeros((2, 7, 7, 3), np.uint8)
    obs[..., 0] = 1  # empty (colour 0)
    obs[0, 3, 5] = (6, 2, 0)  # a blue ball
    cfg = for_data(TINY, ENV, (7, 7, 3), 3, 8, obs=obs)
    assert cfg.cells == cell_codes(obs) == ((1, 0, 0), (6, 2, 0))
    assert SimConfig.from_dict(cfg.to_dict()) == cfg
    pred = torch.full((1, 7, 7, 20), -30.0)
    types, colours = pred[..., :11], pred[..., 11:17]
    pred[..., 17] = 0.0  # state 0
    types[..., 1], colours[..., 0] = 0.0, 0.0  # empty everywhere, surely
    types[0, 3, 5, 1], types[0, 3, 5, 6] = np.log(0.4), np.log(0.6)  # the ball is likelier by type...
    colours[0, 3, 5, 0], colours[0, 3, 5, 2] = np.log(0.9), np.log(0.1)  # ...but its colour says empty
    plane_by_plane = replace(cfg, cells=())
    assert agent_view(pred, plane_by_plane)[0, 3, 5].tolist() == [6, 0, 0]  # a red ball: no such thing here
    codes, probs, _ = cell_choice(pred, cfg)
    assert codes[0, 3, 5].tolist() == [1, 0, 0]  # 0.4 * 0.9 > 0.6 * 0.1: empty
    torch.testing.assert_close(probs[0, 3, 5], torch.tensor([0.36, 0.06]) / 0.42)
    pred.requires_grad_(True)
    view = agent_view(pred, cfg)
    assert torch.equal(view.detach(), codes.float())  # forward: exactly the chosen codes
    soft = agent_view(pred, cfg, straight_through=False)
    g1, = torch.autograd.grad(view[0, 3, 5, 0], pred)
    g2, = torch.autograd.grad(soft[0, 3, 5, 0], pred)
    torch.testing.assert_close(g1, g2)  # backward: the expected code's gradient
    assert obs_score(pred.detach(), torch.as_tensor(obs[1:]), cfg).item() == 1.0


def test_a_sampled_view_draws_each_cells_code_as_often_as_the_simulator_gives_it():
    from policylens.sim.obs import cell_choice, drawn_index

    probs = torch.tensor([[0.2, 0.0, 0.5, 0.3]]).expand(40_000, 4)  # (N, 4)
    u = torch.rand(40_000, generator=torch.Generator().manual_seed(0))
    picks = drawn_index(probs, u)
    assert set(picks.tolist()) == {0, 2, 3}  # never a category of probability 0
    torch.testing.assert_close(torch.bincount(picks, minlength=4) / 40_000., probs[0], atol=0.01, rtol=0)
    assert drawn_index(probs[:1], torch.tensor([0.0])).item() == 0
    assert drawn_index(probs[:1], torch.tensor([1.0 - 1e-7])).item() == 3
    cfg = for_data(TINY, ENV, (7, 7, 3), 3, 8, obs=np.array([[[[1, 0, 0]] * 7] * 7, [[[6, 2, 0]] * 7] * 7],
                                                            np.uint8))
    pred = torch.randn(500, 7, 7, 20, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    draw = torch.rand(500, 7, 7, 3, generator=torch.Generator().manual_seed(2))
    for plain in (cfg, replace(cfg, cells=())):  # chosen among the env's codes, and plane by plane
        modal, sampled = agent_view(pred, plain), agent_view(pred, plain, draw=draw)
        assert not torch.equal(modal, sampled)
        if plain.cells:
            codes, p, _ = cell_choice(pred.detach(), plain)
            ball = (sampled.detach()[..., 0] == 6).float().mean()  # as often as the simulator gives a ball
            torch.testing.assert_close(ball, p[..., 1].mean(), atol=0.01, rtol=0)
            assert torch.equal(modal.detach()[..., 0] == 6, p[..., 1] > p[..., 0])  # the modal view: the likelier
        g1, = torch.autograd.grad(sampled.sum(), pred)
        g2, = torch.autograd.grad(modal.sum(), pred)
        torch.testing.assert_close(g1, g2)  # the same straight-through gradient as the modal view


@pytest.mark.slow
def test_a_sampled_view_is_drawn_up_front_and_the_other_draws_stay_the_same(parts):
    sim, frozen, _, w = parts
    b, steps = w.mask.shape
    plain = Noise.draw(b, steps, sim, torch.Generator().manual_seed(5))
    noise = Noise.draw(b, steps, sim, torch.Generator().manual_seed(5), view=True)
    assert noise.view.shape == (b, steps, 7, 7, 3) and plain.view is None
    for name in ("z", "s", "gumbel"):
        assert torch.equal(getattr(noise, name), getattr(plain, name))
    with torch.no_grad():
        modal = rollout(sim, frozen, w.context(2), steps, mode="sample", noise=noise)
        once = rollout(sim, frozen, w.context(2), steps, mode="sample", noise=noise, view="sample")
        again = rollout(sim, frozen, w.context(2), steps, mode="sample", noise=noise.rows(slice(None)),
                        view="sample")
        forced = rollout(sim, frozen, w.context(2), steps, actions=w.action, noise=noise, view="sample")
        stepwise = rollout(sim, frozen, w.context(2), steps, actions=w.action, noise=noise, view="sample",
                           intervene=lambda name, t, x: x)
    assert torch.equal(once.obs, again.obs) and not torch.equal(once.obs, modal.obs)
    expected = agent_view(once.decoded, sim.config, draw=noise.view)
    assert torch.equal(once.obs, expected)  # each step's view drawn with that step's uniforms
    torch.testing.assert_close(forced.obs, stepwise.obs)  # batched over time as step by step
    with pytest.raises(ValueError, match="view uniforms"):
        rollout(sim, frozen, w.context(2), steps, noise=plain, view="sample")
    with pytest.raises(ValueError, match="expected one of"):
        rollout(sim, frozen, w.context(2), steps, view="mean")
