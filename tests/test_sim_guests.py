"""Any agent inside the simulator: scripted and untrained stand-ins, a guest agent's actions driving the imagined
rollout, the trained agent's rollouts unchanged, spaces that differ refused, ``sim sample --agent``."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from policylens import agents
from policylens.agents.scripted import ScriptedAgent, load_stand_in, untrained_agent
from policylens.sim.analyses.sample.cli import main as sample_main
from policylens.sim.data import load_sim_data
from policylens.sim.guests import load_guest
from policylens.sim.loop import FrozenAgent, Noise, filtered_start, rollout
from sim_runs import AGENT, tiny_parts

NAMES = ["left", "right", "forward"]


@pytest.fixture(scope="module")
def run(sim_world):
    return sim_world / "rnn"


@pytest.fixture(scope="module")
def parts(run):
    return tiny_parts(run)


def _windows(run, k: int, n: int = 4):
    data = load_sim_data(run / "rollouts.zarr")
    return data.windows(data.start[:n], k)


# ------------------------------------------------------------------------------------------------ stand-ins
def test_a_scripted_agent_puts_all_its_mass_on_its_action_and_random_on_none():
    obs = torch.zeros(5, 7, 7, 3, dtype=torch.uint8)
    for script, index in (("forward", 2), ("left", 0), ("1", 1)):
        agent = ScriptedAgent(script, (7, 7, 3), 3, NAMES)
        p = torch.softmax(agent(obs).logits, -1)
        assert torch.equal(p, torch.nn.functional.one_hot(torch.full((5,), index), 3).float())
    p = torch.softmax(ScriptedAgent("random", (7, 7, 3), 3, NAMES)(obs).logits, -1)
    assert torch.allclose(p, torch.full((5, 3), 1 / 3))
    with pytest.raises(ValueError, match="scripted agent 'jump'.*left, right, forward"):
        ScriptedAgent("jump", (7, 7, 3), 3, NAMES)
    with pytest.raises(ValueError, match=r"observation shape \(5, 5, 3\)"):
        ScriptedAgent("left", (7, 7, 3), 3, NAMES)(torch.zeros(1, 5, 5, 3))


def test_an_untrained_agent_has_the_architecture_and_fresh_seeded_weights(run):
    trained = agents.load(run)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    fresh, again, other = untrained_agent(run, 7), untrained_agent(run, 7), untrained_agent(run, 8)
    assert torch.equal(torch.rand(1), before)  # the global random state is untouched
    sd, sd_trained = fresh.state_dict(), trained.state_dict()
    assert sd.keys() == sd_trained.keys() and all(sd[k].shape == sd_trained[k].shape for k in sd)
    assert any(not torch.equal(sd[k], sd_trained[k]) for k in sd if sd[k].numel() > 1)  # (that one: seed 0)
    assert all(torch.equal(sd[k], again.state_dict()[k]) for k in sd)
    assert any(not torch.equal(sd[k], other.state_dict()[k]) for k in sd if sd[k].numel() > 1)
    assert isinstance(load_stand_in(f"untrained:{run}"), type(trained))
    with pytest.raises(ValueError, match="untrained:RUN"):
        load_stand_in("untrained:")


# ------------------------------------------------------------------------------------------------ in the loop
@pytest.mark.parametrize("mode", ["modal", "sample"])
def test_a_scripted_guest_drives_every_imagined_step_with_its_action(parts, run, mode):
    sim, _ = parts
    k, steps = sim.config.context_frames, 9
    windows = _windows(run, k)
    for script, index in (("forward", 2), ("left", 0)):
        _, guest, _ = load_guest(f"scripted:{script}", str(run), sim, NAMES)
        assert guest.guest and guest.hidden == 0
        noise = Noise.draw(4, steps, sim, torch.Generator().manual_seed(0))
        r = rollout(sim, guest, windows.context(k), steps, mode=mode, noise=noise, **filtered_start(windows, k))
        taken = r.action_index
        assert torch.equal(taken[:, :k - 1], windows.action[:, :k - 1])  # the recorded history
        assert (taken[:, k - 1:] == index).all()  # then the script, at every step
        assert r.hx.shape == (4, steps, 0)


def test_a_guest_starts_from_its_own_state_of_any_size_and_sees_the_decoded_view(parts, run, tmp_path):
    sim, trained = parts
    config = {**AGENT, "hidden": 16}
    torch.manual_seed(5)
    agents.save_agent(agents.build(config), config, tmp_path / "wide" / "agent", extra={"action_names": NAMES})
    module, guest, _ = load_guest(str(tmp_path / "wide"), str(run), sim, NAMES)
    assert guest.guest and guest.hidden == 16 != trained.hidden
    z = torch.randn(3, sim.config.latent, generator=torch.Generator().manual_seed(1))
    r = rollout(sim, guest, z, 5, mode="modal", latent="mean",
                agent_state=torch.full((3, trained.hidden), 9.0))  # the trained agent's: a guest ignores it
    assert r.hx.shape == (3, 5, 16)
    assert torch.equal(r.hx[:, 0], module.initial_state(3))
    with torch.no_grad():  # replaying the guest on what it saw gives its logits and the actions that drove
        state, logits = module.initial_state(3), []
        for t in range(5):
            out = module(r.obs[:, t], state)
            logits.append(out.logits)
            state = out.state
    assert torch.allclose(torch.stack(logits, 1), r.logits, atol=1e-5)
    assert torch.equal(r.action_index, r.logits.argmax(-1))


def test_the_trained_agent_by_name_is_not_a_guest_and_a_filtered_start_is_as_before(parts, run):
    sim, trained = parts
    k, steps = sim.config.context_frames, 7
    sha = json.loads((run / "sim" / "config.json").read_text())["agent"]["sha256"]
    _, same, _ = load_guest("trained", str(run), sim, NAMES, trained_sha256=sha)
    _, named, _ = load_guest(str(run), str(run), sim, NAMES, trained_sha256=sha)
    assert not same.guest and not named.guest and same.sha256 == trained.sha256
    windows = _windows(run, k)
    state = windows.agent_state[:, 0]
    noise = Noise.draw(4, steps, sim, torch.Generator().manual_seed(3))
    before = rollout(sim, trained, windows.context(k), steps, mode="sample", noise=noise,
                     intervene=lambda name, t, x: state if name == "hx" and t == 0 else x,
                     actions=windows.action[:, :k - 1], obs=windows.obs[:, :k], mask=windows.mask[:, :k])
    for agent in (trained, same):
        now = rollout(sim, agent, windows.context(k), steps, mode="sample", noise=noise, **filtered_start(windows, k))
        for name in ("obs", "logits", "value", "hx", "action", "h", "reward", "done_logit"):
            assert torch.equal(getattr(now, name), getattr(before, name)), name


def test_an_agent_with_other_spaces_is_refused(parts, run, tmp_path):
    sim, _ = parts
    for name, change in (("small", {"obs_shape": [5, 5, 3]}), ("four", {"num_actions": 4})):
        config = {**AGENT, **change}
        agents.save_agent(agents.build(config), config, tmp_path / name / "agent")
    with pytest.raises(ValueError, match=r"observations of shape \(5, 5, 3\); the simulator shows \(7, 7, 3\)"):
        load_guest(str(tmp_path / "small"), str(run), sim, NAMES)
    with pytest.raises(ValueError, match="has 4 actions; the simulator takes 3"):
        load_guest(str(tmp_path / "four"), str(run), sim, NAMES)
    with pytest.raises(ValueError, match="needs the same observation and action spaces"):
        rollout(sim, FrozenAgent(agents.load(tmp_path / "four"), guest=True), torch.zeros(1, sim.config.latent), 2)
    renamed = ScriptedAgent("a", (7, 7, 3), 3, ["a", "b", "c"])
    from policylens.sim.guests import check_spaces
    with pytest.raises(ValueError, match=r"actions are \['a', 'b', 'c'\]; the simulator's are"):
        check_spaces(renamed, sim.config, NAMES, "renamed")
    with pytest.raises(ValueError, match="no recurrent state"):
        FrozenAgent(renamed)  # only a guest may be stateless


@pytest.mark.slow
def test_sim_sample_with_agent_drives_the_samples_and_without_it_is_unchanged(run, tmp_path):
    common = [str(run), "--n", "3", "--steps", "6", "--explorer", "false", "--video", "false", "--progress", "false"]
    base = sample_main(common + ["--out", str(tmp_path / "base")])
    named = sample_main(common + ["--out", str(tmp_path / "named"), "--agent", "trained"])
    forward = sample_main(common + ["--out", str(tmp_path / "fwd"), "--agent", "scripted:forward",
                                    "--explorer", "true"])
    assert not base["guest"] and not named["guest"] and forward["guest"]
    a, b = (np.load(tmp_path / d / "samples.npz") for d in ("base", "named"))
    for key in a.files:
        assert np.array_equal(a[key], b[key], equal_nan=True), key
    f = np.load(tmp_path / "fwd" / "samples.npz")
    assert (f["action"] == 2).all() and forward["action_counts"] == {"left": 0, "right": 0, "forward": 18}
    assert "explorer" not in forward["files"]  # a scripted agent has no layers to attribute
    with pytest.raises(SystemExit):
        sample_main(common + ["--out", str(tmp_path / "bad"), "--agent", "scripted:jump"])
