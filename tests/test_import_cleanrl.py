"""CleanRL agents imported from the state dicts its scripts save: the same logits and values on the same
observations. The ``Agent`` / ``QNetwork`` classes below re-state the structure of CleanRL's published scripts
(module names, layer order, ``x / 255.0`` and the channel-first frames their envs give); they are written here
for the test, not copied."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from policylens import envs
from policylens.agents import load, read_config
from policylens.agents.importers import from_cleanrl

ATARI_LIKE = "gym:ALE/Breakout-v5?grey=true&resize=84&stack=4"  # (84, 84, 4) frames, stacked channel-last


def nature_trunk(channels: int) -> list:
    return [nn.Conv2d(channels, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU()]


class AtariAgent(nn.Module):
    """ppo_atari / ppo_atari_envpool: ``network`` (Nature CNN), ``actor``, ``critic``; frames ``(N, 4, 84, 84)``."""

    def __init__(self, num_actions: int):
        super().__init__()
        self.network = nn.Sequential(*nature_trunk(4))
        self.actor, self.critic = nn.Linear(512, num_actions), nn.Linear(512, 1)

    def forward(self, x):
        hidden = self.network(x / 255.0)
        return self.actor(hidden), self.critic(hidden)[:, 0]


class QNetwork(nn.Module):
    """dqn_atari: one Sequential, the Nature CNN then the Q-values (``network.9``)."""

    def __init__(self, num_actions: int):
        super().__init__()
        self.network = nn.Sequential(*nature_trunk(4), nn.Linear(512, num_actions))

    def forward(self, x):
        q = self.network(x / 255.0)
        return q, q.max(-1).values


class ClassicAgent(nn.Module):
    """ppo (classic control): separate ``actor`` and ``critic``, each dense 64 -> tanh -> 64 -> tanh -> head."""

    def __init__(self, obs_dim: int, num_actions: int):
        super().__init__()
        self.critic = nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
        self.actor = nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                                   nn.Linear(64, num_actions))

    def forward(self, x):
        return self.actor(x), self.critic(x)[:, 0]


def randomised(net: nn.Module, seed: int = 0) -> nn.Module:
    """Weights large enough that every one of them visibly moves the outputs."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.normal_(0, 0.1) if name.endswith("bias") else p.normal_(0, 1.5 / p[0].numel() ** 0.5)
    return net.eval()


def saved(net: nn.Module, path):
    torch.save(net.state_dict(), path)  # as CleanRL's scripts save their agents
    return path


def frames(spec=ATARI_LIKE, n=12, steps=40):
    env = envs.make(spec, num_envs=n, seed=0)
    obs, rng = env.reset(0), np.random.default_rng(0)
    for _ in range(steps):
        obs = env.step(rng.integers(env.action_space.n, size=n))[0]
    return obs


def assert_same(agent, theirs, obs, channel_first: bool):
    x = torch.as_tensor(obs).float()
    with torch.no_grad():
        logits, value = theirs(x.permute(0, 3, 1, 2) if channel_first else x)
        ours = agent(torch.as_tensor(obs))
    assert logits.std() > 0.05 and value.std() > 1e-3  # the outputs depend on the observation
    scale = logits.abs().max().item() + value.abs().max().item() + 1.0
    torch.testing.assert_close(ours.logits, logits, rtol=1e-5, atol=2e-6 * scale)  # x / 255 vs x * (1 / 255)
    torch.testing.assert_close(ours.value, value, rtol=1e-5, atol=2e-6 * scale)


@pytest.fixture(scope="module")
def atari_frames():
    pytest.importorskip("ale_py")
    return frames()


@pytest.mark.parametrize("script,cls", [("ppo_atari", AtariAgent), ("ppo_atari_envpool", AtariAgent),
                                        ("dqn_atari", QNetwork)])
@pytest.mark.slow
def test_atari_scripts_give_the_same_outputs_on_real_frames(tmp_path, atari_frames, script, cls):
    net = randomised(cls(4))
    ckpt = from_cleanrl(saved(net, tmp_path / f"{script}.cleanrl_model"), tmp_path / "agent", script=script,
                        env=ATARI_LIKE, obs_shape=(84, 84, 4), num_actions=4)
    agent = load(ckpt)
    assert_same(agent, net, atari_frames, channel_first=True)
    cfg = read_config(ckpt)
    assert cfg["agent"]["arch"] == "nature" and cfg["imported_from"]["script"] == script
    assert cfg["agent"]["options"].get("q_values", False) == (script == "dqn_atari")
    assert torch.equal(agent.conv2.conv.weight, net.network[2].weight) and torch.equal(agent.fc[0].bias, net.network[7].bias)


def test_classic_ppo_through_the_cli(tmp_path):
    from pipeline import pl

    net = randomised(ClassicAgent(4, 2), seed=1)
    run = tmp_path / "run"
    pl("import", "cleanrl", saved(net, tmp_path / "ppo.cleanrl_model"), "--script", "ppo", "--env",
       "gym:CartPole-v1", "--out", run)
    agent = load(run)
    assert_same(agent, net, frames("gym:CartPole-v1", steps=8), channel_first=False)
    cfg = read_config(run / "agent")
    assert cfg["agent"]["options"] == {"hidden_sizes": [], "activation": "tanh", "pi_hidden": [64, 64],
                                       "v_hidden": [64, 64]}
    assert cfg["env"] == "gym:CartPole-v1" and len(cfg["imported_from"]["sha256"]) == 64


def test_procgen_through_the_cli_is_the_converter_it_always_was(tmp_path):
    from pipeline import pl
    from test_convert import assert_matches, cleanrl_net, cleanrl_outputs, random_obs

    net = cleanrl_net(seed=2)
    run = tmp_path / "run"
    pl("import", "cleanrl", saved(net, tmp_path / "agent.pt"), "--script", "ppo_procgen", "--env",
       "procgen:coinrun?distribution_mode=easy", "--out", run)
    agent, obs = load(run), random_obs()
    logits, value = cleanrl_outputs(net, obs)
    with torch.no_grad():
        ours = agent(obs)
    assert_matches(ours.logits, logits)
    assert_matches(ours.value, value)
    assert read_config(run / "agent")["imported_from"]["script"] == "ppo_procgen"


# ---------------------------------------------------------------- bad input


def test_a_file_of_another_script_is_named(tmp_path):
    q = saved(randomised(QNetwork(4)), tmp_path / "dqn.pt")
    with pytest.raises(ValueError, match=r"does not look like CleanRL ppo_atari's state dict: missing \['actor.bias', "
                                         r"'actor.weight', 'critic.bias', 'critic.weight'\]"):
        from_cleanrl(q, tmp_path / "a", script="ppo_atari", env=ATARI_LIKE, obs_shape=(84, 84, 4))
    with pytest.raises(ValueError, match="expected actor.N and critic.N dense layers"):
        from_cleanrl(saved(randomised(AtariAgent(4)), tmp_path / "p.pt"), tmp_path / "b", script="ppo",
                     env="gym:CartPole-v1", obs_shape=(4,))
    with pytest.raises(ValueError, match="unknown CleanRL script 'ppo_mujoco'; expected one of ppo_atari"):
        from_cleanrl(q, tmp_path / "c", script="ppo_mujoco", env=ATARI_LIKE, obs_shape=(84, 84, 4))


def test_weights_for_other_frames_name_the_tensor_and_both_shapes(tmp_path):
    path = saved(randomised(AtariAgent(4)), tmp_path / "a.pt")
    with pytest.raises(ValueError, match=r"network\.7\.weight has shape \(512, 3136\) but the inferred "
                                         r"architecture needs \(512, 1024\)"):
        from_cleanrl(path, tmp_path / "out", script="ppo_atari", env="x", obs_shape=(64, 64, 4))
    with pytest.raises(ValueError, match="has 4 actions but env gym:CartPole-v1 has 2"):
        from_cleanrl(path, tmp_path / "out", script="ppo_atari", env="gym:CartPole-v1", obs_shape=(84, 84, 4),
                     num_actions=2)


def test_a_pickled_module_is_refused_unbuilt(tmp_path):
    from test_checkpoints import _Payload as Canary  # unpickling it creates the marker file

    marker = tmp_path / "UNPICKLED"
    whole = tmp_path / "whole.pt"
    torch.save(randomised(ClassicAgent(4, 2)), whole)  # the module itself, not its state dict
    trap = tmp_path / "trap.pt"
    torch.save({"actor.0.weight": Canary(marker)}, trap)
    for path in (whole, trap):
        with pytest.raises(ValueError, match="not a file of tensors that torch.load\\(weights_only=True\\) accepts"):
            from_cleanrl(path, tmp_path / "out", script="ppo", env="gym:CartPole-v1", obs_shape=(4,))
    assert not marker.exists() and not (tmp_path / "out").exists()
    torch.load(trap, weights_only=False)  # control: the payload is live
    assert marker.exists()
