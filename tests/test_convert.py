"""The CleanRL ppo_procgen converter: identical outputs after conversion, clear errors on bad input.

``CleanRLProcgenNet`` below re-states the *structure* of CleanRL's ppo_procgen ``Agent`` (module names and
forward order: ``network`` = 3 x ConvSequence(conv, max-pool 3/2, res_block0, res_block1), Flatten, ReLU,
Linear(->256), ReLU; heads ``actor`` / ``critic``; obs ``permute(0, 3, 1, 2) / 255.0``), so its
``state_dict()`` has CleanRL's keys. It is written here for the test, not copied.
"""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn import functional

from policylens.agents import load, read_config
from policylens.agents.convert import cleanrl_procgen_key, from_cleanrl_procgen


class _Residual(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv1(functional.relu(self.conv0(functional.relu(x))))


class _ConvSequence(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.res_block0 = _Residual(cout)
        self.res_block1 = _Residual(cout)

    def forward(self, x):
        x = functional.max_pool2d(self.conv(x), kernel_size=3, stride=2, padding=1)
        return self.res_block1(self.res_block0(x))


class CleanRLProcgenNet(nn.Module):
    def __init__(self, obs_shape=(64, 64, 3), num_actions=15, channels=(16, 32, 32)):
        super().__init__()
        h, w, c = obs_shape
        seqs, cin = [], c
        for cout in channels:
            seqs.append(_ConvSequence(cin, cout))
            cin, h, w = cout, (h + 1) // 2, (w + 1) // 2
        self.network = nn.Sequential(*seqs, nn.Flatten(), nn.ReLU(), nn.Linear(cin * h * w, 256), nn.ReLU())
        self.actor = nn.Linear(256, num_actions)
        self.critic = nn.Linear(256, 1)

    def forward(self, obs):  # obs: (B, H, W, C) as float, like CleanRL's torch.Tensor(next_obs)
        hidden = self.network(obs.permute((0, 3, 1, 2)) / 255.0)  # "bhwc" -> "bchw"
        return self.actor(hidden), self.critic(hidden)


def cleanrl_net(seed=0, **kw):
    torch.manual_seed(seed)
    net = CleanRLProcgenNet(**kw).eval()
    with torch.no_grad():  # larger-than-default random weights: every parameter visibly moves the output
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
            else:
                p.normal_(0, 1.0 / p[0].numel() ** 0.5)
    return net


def random_obs(batch=6, shape=(64, 64, 3), seed=1):
    return torch.randint(0, 256, (batch, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def cleanrl_outputs(net, obs_uint8):
    with torch.no_grad():
        logits, value = net(obs_uint8.float())
    return logits, value.squeeze(-1)


def assert_matches(ours, theirs):
    """CleanRL divides by 255, policylens multiplies by 1/255: the inputs may differ in the last bit, which
    the network amplifies a little; allow float32 rounding relative to the outputs' scale, nothing more."""
    scale = theirs.abs().max().item() + 1.0
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=2e-6 * scale)


def test_state_dict_keys_are_cleanrls():
    keys = set(CleanRLProcgenNet().state_dict())
    for k in ("network.0.conv.weight", "network.0.res_block0.conv0.weight", "network.2.res_block1.conv1.bias",
              "network.5.weight", "network.5.bias", "actor.weight", "critic.bias"):
        assert k in keys
    assert len(keys) == 3 * 5 * 2 + 2 + 4  # per sequence: conv + 4 residual convs, each weight + bias


def test_converted_agent_gives_identical_logits_and_value(tmp_path):
    net = cleanrl_net()
    out = from_cleanrl_procgen(net.state_dict(), tmp_path / "agent")
    assert out == tmp_path / "agent"
    cfg = read_config(out)
    assert cfg["env"] == "procgen:coinrun?distribution_mode=easy"
    assert cfg["agent"]["arch"] == "impala" and cfg["agent"]["num_actions"] == 15
    assert cfg["agent"]["obs_shape"] == [64, 64, 3] and cfg["agent"]["recurrent"] is False
    agent = load(tmp_path)  # a run dir holding agent/
    obs = random_obs()
    logits, value = cleanrl_outputs(net, obs)
    with torch.no_grad():
        ours = agent(obs)  # uint8 NHWC: the agent scales and permutes itself
    assert logits.std() > 0.1 and value.std() > 0.01  # the outputs depend on the observation
    assert_matches(ours.logits, logits)
    assert_matches(ours.value, value)
    # given the very same float input, CleanRL's network and ours agree bit for bit
    with torch.no_grad():
        hidden = net.network(agent.scale(obs))  # (B, 256)
    assert torch.equal(ours.logits, net.actor(hidden)) and torch.equal(ours.value, net.critic(hidden)[:, 0])
    # the converted layers are the documented, hookable ones
    assert agent.block1.res2.conv1.weight.data_ptr() != net.network[0].res_block1.conv1.weight.data_ptr()
    assert torch.equal(agent.block1.res2.conv1.weight, net.network[0].res_block1.conv1.weight)
    assert torch.equal(agent.fc.weight, net.network[5].weight)
    assert torch.equal(agent.pi.weight, net.actor.weight) and torch.equal(agent.v.bias, net.critic.bias)


def test_a_wrong_mapping_would_be_caught(tmp_path):
    """The output comparison has teeth: swapping two same-shaped tensors (res_block0 <-> res_block1)
    changes the outputs far beyond the tolerance used above."""
    net = cleanrl_net()
    sd = dict(net.state_dict())
    a, b = "network.1.res_block0.conv0.weight", "network.1.res_block1.conv0.weight"
    sd[a], sd[b] = sd[b], sd[a]
    agent = load(from_cleanrl_procgen(sd, tmp_path / "swapped"))
    obs = random_obs()
    logits, _ = cleanrl_outputs(net, obs)
    with torch.no_grad():
        assert (agent(obs).logits - logits).abs().max() > 1e-2


def test_other_action_counts_and_envs_and_wrapped_keys(tmp_path):
    net = cleanrl_net(seed=3, num_actions=9)
    wrapped = {"module._orig_mod." + k: v for k, v in net.state_dict().items()}  # DataParallel + compile
    out = from_cleanrl_procgen(wrapped, tmp_path / "ckpt", env="procgen:starpilot?distribution_mode=easy")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["env"] == "procgen:starpilot?distribution_mode=easy" and cfg["agent"]["num_actions"] == 9
    agent = load(out)
    obs = random_obs(batch=3, seed=4)
    logits, value = cleanrl_outputs(net, obs)
    with torch.no_grad():
        out = agent(obs)
    assert_matches(out.logits, logits)
    assert_matches(out.value, value)


def test_other_channels_are_read_from_the_weights(tmp_path):
    net = cleanrl_net(seed=5, channels=(8, 16, 16), obs_shape=(64, 64, 3))
    agent = load(from_cleanrl_procgen(net.state_dict(), tmp_path))
    obs = random_obs(batch=2)
    logits, value = cleanrl_outputs(net, obs)
    with torch.no_grad():
        out = agent(obs)
    assert_matches(out.logits, logits)
    assert_matches(out.value, value)


def test_key_mapping_table():
    assert cleanrl_procgen_key("network.0.conv.weight") == "block1.conv.weight"
    assert cleanrl_procgen_key("network.2.res_block1.conv0.bias") == "block3.res2.conv0.bias"
    assert cleanrl_procgen_key("network.5.weight") == "fc.weight"
    assert cleanrl_procgen_key("actor.bias") == "pi.bias"
    assert cleanrl_procgen_key("critic.weight") == "v.weight"
    assert cleanrl_procgen_key("network.3.weight") is None and cleanrl_procgen_key("optimizer.lr") is None


# ---------------------------------------------------------------- errors


def test_missing_key_is_named(tmp_path):
    sd = dict(cleanrl_net().state_dict())
    del sd["network.1.res_block1.conv0.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['network\.1\.res_block1\.conv0\.bias'\], unexpected keys \[\]"):
        from_cleanrl_procgen(sd, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_unexpected_key_is_named(tmp_path):
    sd = dict(cleanrl_net().state_dict())
    sd["network.7.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"missing keys \[\], unexpected keys \['network\.7\.weight'\]"):
        from_cleanrl_procgen(sd, tmp_path / "out")


def test_wrong_shape_is_named(tmp_path):
    sd = dict(cleanrl_net().state_dict())
    sd["critic.weight"] = torch.zeros(2, 256)
    with pytest.raises(ValueError, match=r"critic\.weight: \(2, 256\), expected \(1, 256\)"):
        from_cleanrl_procgen(sd, tmp_path / "out")


def test_not_a_cleanrl_state_dict(tmp_path):
    with pytest.raises(ValueError, match="does not look like a CleanRL ppo_procgen state dict"):
        from_cleanrl_procgen({"fc1.weight": torch.zeros(2, 2)}, tmp_path)
    with pytest.raises(ValueError, match="non-empty state dict"):
        from_cleanrl_procgen({}, tmp_path)


def test_obs_shape_is_checked_against_the_dense_layer(tmp_path):
    sd = cleanrl_net(obs_shape=(32, 32, 3)).state_dict()
    with pytest.raises(ValueError, match=r"network\.5 takes 512 inputs.*\(64, 64, 3\).*2048"):
        from_cleanrl_procgen(sd, tmp_path / "a")
    net = cleanrl_net(obs_shape=(32, 32, 3))
    agent = load(from_cleanrl_procgen(net.state_dict(), tmp_path / "b", obs_shape=(32, 32, 3)))
    obs = random_obs(batch=2, shape=(32, 32, 3))
    with torch.no_grad():
        assert_matches(agent(obs).logits, cleanrl_outputs(net, obs)[0])
    with pytest.raises(ValueError, match=r"first conv takes 3 channels"):
        from_cleanrl_procgen(net.state_dict(), tmp_path / "c", obs_shape=(32, 32, 1))
