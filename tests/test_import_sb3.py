"""Stable-Baselines3 agents, trained here for a few hundred steps with the real library, imported without
unpickling: the same logits and values as SB3 on the same observations, preprocessing included; then the
analyses run on them. Bad zips are refused by name, and a zip's pickles never run (a canary)."""
from __future__ import annotations

import base64
import io
import json
import pickle
import zipfile

import numpy as np
import pytest
import torch

sb3 = pytest.importorskip("stable_baselines3")
from stable_baselines3 import A2C, DQN, PPO  # noqa: E402

from policylens import envs  # noqa: E402
from policylens.agents import layer_names, load, read_config  # noqa: E402
from policylens.agents.importers import SUPPORTED, from_sb3  # noqa: E402
from policylens.envs import gymnasium_env  # noqa: E402
from policylens.explorer.encode import read_js  # noqa: E402
from test_checkpoints import _Payload as Canary  # noqa: E402  unpickling it creates a file

CARTPOLE = "gym:CartPole-v1"
MINIGRID_RGB = "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0?obs=rgb"


def env_obs(spec, n=16, steps=25, seed=0):
    """``n`` observations of the policylens env after some random steps, as it gives them."""
    env = envs.make(spec, num_envs=n, seed=seed)
    obs, rng = env.reset(seed), np.random.default_rng(seed)
    for _ in range(steps):
        obs = env.step(rng.integers(env.action_space.n, size=n))[0]
    return obs


def sb3_outputs(model, obs):
    """SB3's own raw logits (``action_net``'s output, caught by a hook), normalised logits and values, or its
    Q-values, for observations as the env gives them (SB3 transposes and scales them itself)."""
    obs_t = model.policy.obs_to_tensor(obs)[0]
    with torch.no_grad():
        if isinstance(model, DQN):
            q = model.policy.q_net(obs_t)
            return q, torch.log_softmax(q, -1), q.max(-1).values
        caught = {}
        handle = model.policy.action_net.register_forward_hook(lambda m, i, o: caught.setdefault("raw", o))
        try:
            dist = model.policy.get_distribution(obs_t)
        finally:
            handle.remove()
        return caught["raw"], dist.distribution.logits, model.policy.predict_values(obs_t)[:, 0]


def assert_agree(agent, model, obs):
    raw, normalised, value = sb3_outputs(model, obs)
    with torch.no_grad():
        ours = agent(torch.as_tensor(obs))
    assert raw.std() > 1e-3, "the outputs must depend on the observation for the check to mean anything"
    scale = raw.abs().max().item() + value.abs().max().item() + 1.0
    torch.testing.assert_close(ours.logits, raw, rtol=1e-5, atol=2e-6 * scale)  # float precision
    torch.testing.assert_close(torch.log_softmax(ours.logits, -1), normalised, rtol=1e-5, atol=2e-6 * scale)
    torch.testing.assert_close(ours.value, value, rtol=1e-5, atol=2e-6 * scale)


def import_to(tmp, model, spec, name, **kw):
    path = tmp / f"{name}.zip"
    model.save(path)
    env = envs.make(spec, num_envs=1)
    out = from_sb3(path, tmp / name / "agent", env=spec, obs_shape=env.observation_space.shape,
                   num_actions=env.action_space.n, action_names=env.action_names, **kw)
    return path, out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Real SB3 agents, each trained a few hundred steps (weights moved from their initialisation)."""
    tmp = tmp_path_factory.mktemp("sb3")
    image = lambda: gymnasium_env(MINIGRID_RGB, seed=0)  # noqa: E731  56x56x3 frames, SB3 transposes them
    models = {
        "ppo_mlp": (PPO("MlpPolicy", "CartPole-v1", n_steps=128, batch_size=64, n_epochs=2, seed=0), CARTPOLE, 256),
        "a2c_relu": (A2C("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(
            net_arch=dict(pi=[32, 16], vf=[24]), activation_fn=torch.nn.ReLU)), CARTPOLE, 200),
        "dqn_mlp": (DQN("MlpPolicy", "CartPole-v1", learning_starts=64, train_freq=1, buffer_size=1000, seed=0,
                        policy_kwargs=dict(net_arch=[32, 32])), CARTPOLE, 300),
        "ppo_cnn": (PPO("CnnPolicy", image(), n_steps=64, batch_size=64, n_epochs=1, seed=0), MINIGRID_RGB, 128),
        "ppo_cnn_separate": (PPO("CnnPolicy", image(), n_steps=64, batch_size=64, n_epochs=1, seed=0, policy_kwargs=dict(
            share_features_extractor=False, net_arch=dict(pi=[16], vf=[8]), features_extractor_kwargs=dict(
                features_dim=64))), MINIGRID_RGB, 128),
        "dqn_cnn": (DQN("CnnPolicy", image(), learning_starts=32, train_freq=1, buffer_size=500, seed=0),
                    MINIGRID_RGB, 96),
    }
    out = {}
    for name, (model, spec, steps) in models.items():
        before = {k: v.clone() for k, v in model.policy.state_dict().items()}
        model.learn(steps)
        moved = [k for k, v in model.policy.state_dict().items() if not torch.equal(v, before[k])]
        assert moved, f"{name} did not train"
        path, ckpt = import_to(tmp, model, spec, name)
        out[name] = (model, spec, path, ckpt)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ppo_mlp", "a2c_relu", "dqn_mlp", "ppo_cnn", "ppo_cnn_separate", "dqn_cnn"])
def test_imported_agent_gives_sb3s_logits_and_values(trained, name):
    model, spec, _, ckpt = trained[name]
    agent = load(ckpt)
    assert_agree(agent, model, env_obs(spec))


@pytest.mark.slow
def test_the_layout_read_from_the_weights(trained):
    expect = {
        "ppo_mlp": ("mlp", {"pi_hidden": [64, 64], "v_hidden": [64, 64], "activation": "tanh"}),
        "a2c_relu": ("mlp", {"pi_hidden": [32, 16], "v_hidden": [24], "activation": "relu"}),
        "dqn_mlp": ("mlp", {"pi_hidden": [32, 32], "q_values": True, "activation": "relu"}),
        "ppo_cnn": ("nature", {"fc_dim": 512, "pi_hidden": [], "v_hidden": []}),
        "ppo_cnn_separate": ("nature", {"fc_dim": 64, "pi_hidden": [16], "v_hidden": [8], "separate_value": True}),
        "dqn_cnn": ("nature", {"fc_dim": 512, "pi_hidden": [], "q_values": True}),
    }
    algorithms = {"ppo_mlp": "PPO", "a2c_relu": "A2C", "dqn_mlp": "DQN", "ppo_cnn": "PPO", "dqn_cnn": "DQN"}
    for name, (arch, options) in expect.items():
        cfg = read_config(trained[name][3])
        assert cfg["agent"]["arch"] == arch, name
        assert {k: cfg["agent"]["options"].get(k) for k in options} == options, name
        assert cfg["imported_from"]["library"] == "stable-baselines3" and cfg["imported_from"]["version"] == sb3.__version__
        assert cfg["imported_from"]["algorithm"] == algorithms.get(name, "PPO")
    assert read_config(trained["ppo_cnn"][3])["agent"]["obs_scale"] == pytest.approx(1 / 255)
    assert read_config(trained["ppo_mlp"][3])["agent"]["obs_scale"] == 1.0
    names = layer_names(load(trained["ppo_cnn_separate"][3]))
    assert names == ["conv1", "conv2", "conv3", "fc", "value_trunk.conv1", "value_trunk.conv2", "value_trunk.conv3",
                     "value_trunk.fc", "pi_fc1", "v_fc1", "pi", "v"]


@pytest.mark.slow
def test_sb3_atari_frames_stacked_channel_last_give_the_same_outputs(tmp_path):
    """SB3's own Atari preprocessing (AtariWrapper: 84x84 grey, frame skip; VecFrameStack: 4 frames on the last
    axis) gives (84, 84, 4) uint8 frames, as a policylens agent takes them: the imported CnnPolicy agrees on them."""
    pytest.importorskip("ale_py")
    import ale_py
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    venv = VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", n_envs=2, seed=0), n_stack=4)
    model = PPO("CnnPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=0)
    model.learn(64)
    frames = [venv.reset()]
    for _ in range(30):
        frames.append(venv.step(np.array([1, 3]))[0])  # FIRE, LEFT
    obs = np.concatenate(frames[-8:])  # (16, 84, 84, 4) uint8, real frames
    assert obs.shape == (16, 84, 84, 4) and obs.dtype == np.uint8 and obs[..., 3].std() > 0
    path = tmp_path / "breakout.zip"
    model.save(path)
    ckpt = from_sb3(path, tmp_path / "agent", env="atari:breakout", obs_shape=(84, 84, 4), num_actions=4)
    assert_agree(load(ckpt), model, obs)


@pytest.mark.slow
def test_the_analyses_run_on_imported_agents(trained, tmp_path):
    from pipeline import pl, run_pipeline

    for name, layer, method in (("ppo_mlp", "v_fc2", "pca"), ("ppo_cnn_separate", "conv3", "nmf")):  # tanh, ReLU
        _, spec, path, _ = trained[name]
        run = tmp_path / name
        pl("import", "sb3", path, "--env", spec, "--out", run)
        out = run_pipeline(run, layer, max_steps=12, method=method)
        assert out["explorer"].is_file() and out["compare"]["episodes"] == 2
        assert read_config(out["edited"] / "agent")["imported_from"]["library"] == "stable-baselines3"
        meta = read_js(run / "explorer" / "data" / "manifest.js")[1]["layers"][0]["meta"]
        # the separate value trunk does not read conv3: its NMF comes from the action's attributions
        assert meta["nmf_on"].startswith("value" if name == "ppo_mlp" else "sampled-action logit")


@pytest.mark.slow
def test_import_time_is_reported_and_an_existing_run_is_kept(trained, tmp_path, capsys):
    from pipeline import pl, pl_error

    _, spec, path, _ = trained["ppo_mlp"]
    pl("import", "sb3", path, "--env", spec, "--out", tmp_path / "r")
    assert "imported in" in capsys.readouterr().out
    assert "already holds a checkpoint" in pl_error("import", "sb3", path, "--env", spec, "--out", tmp_path / "r")
    pl("import", "sb3", path, "--env", spec, "--out", tmp_path / "r", "--overwrite")


# ---------------------------------------------------------------- bad input


def rewrite(src, dst, data=None, policy=None):
    """A copy of the zip ``src`` with its ``data`` JSON and/or ``policy.pth`` bytes replaced."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for item in z.namelist():
            body = z.read(item)
            if item == "data" and data is not None:
                body = json.dumps(data).encode()
            if item == "policy.pth" and policy is not None:
                body = policy
            out.writestr(item, body)
    return dst


def zip_data(path):
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("data"))


@pytest.mark.slow
def test_an_unsupported_policy_class_is_named_with_the_supported_ones(tmp_path):
    from stable_baselines3 import SAC

    path = tmp_path / "sac.zip"
    SAC("MlpPolicy", "Pendulum-v1", buffer_size=100, seed=0).save(path)
    with pytest.raises(ValueError) as err:
        from_sb3(path, tmp_path / "out", env="gym:Pendulum-v1", obs_shape=(3,))
    text = str(err.value)
    assert "stable_baselines3.sac.policies.SACPolicy is not supported" in text
    assert all(name in text for name in SUPPORTED)
    assert not (tmp_path / "out").exists()


def test_a_continuous_action_space_is_not_supported_yet(tmp_path):
    path = tmp_path / "ppo_pendulum.zip"
    PPO("MlpPolicy", "Pendulum-v1", n_steps=64, seed=0).save(path)
    with pytest.raises(ValueError, match=r"continuous action space \(Box\(1,\)\): not supported yet"):
        from_sb3(path, tmp_path / "out", env="gym:Pendulum-v1", obs_shape=(3,))


@pytest.mark.slow
def test_weights_that_do_not_fit_name_the_tensor_and_both_shapes(trained, tmp_path):
    _, _, path, _ = trained["ppo_mlp"]
    with zipfile.ZipFile(path) as z:
        sd = torch.load(io.BytesIO(z.read("policy.pth")), weights_only=True)
    sd["mlp_extractor.policy_net.2.weight"] = torch.zeros(64, 63)
    buf = io.BytesIO()
    torch.save(sd, buf)
    bad = rewrite(path, tmp_path / "bad.zip", policy=buf.getvalue())
    with pytest.raises(ValueError) as err:
        from_sb3(bad, tmp_path / "out", env=CARTPOLE, obs_shape=(4,), num_actions=2)
    assert "mlp_extractor.policy_net.2.weight has shape (64, 63)" in str(err.value)
    assert "needs (64, 64)" in str(err.value)
    # the env's observations must be the model's too: a CnnPolicy on 56x56 frames against 70x70 ones
    _, _, cnn, _ = trained["ppo_cnn"]
    with pytest.raises(ValueError, match=r"observes Box\(3, 56, 56\) uint8.*\(70, 70, 3\)"):
        from_sb3(cnn, tmp_path / "out2", env="minigrid:...?tile_size=10", obs_shape=(70, 70, 3), num_actions=3)


@pytest.mark.slow
def test_a_zips_pickles_never_run(trained, tmp_path):
    """Every pickled field of ``data`` replaced by a payload that would create a file when unpickled: the import
    reads what it needs from the plain JSON and the weights, and the file never appears."""
    _, _, path, _ = trained["ppo_mlp"]
    marker = tmp_path / "UNPICKLED"
    payload = base64.b64encode(pickle.dumps(Canary(marker))).decode()
    data = zip_data(path)
    swapped = 0
    for value in data.values():
        if isinstance(value, dict) and ":serialized:" in value:
            value[":serialized:"] = payload
            swapped += 1
    data["canary"] = {":type:": "<class 'builtins.object'>", ":serialized:": payload}
    assert swapped >= 4  # policy_class, the spaces, the schedules, ...
    trap = rewrite(path, tmp_path / "trap.zip", data=data)
    ckpt = from_sb3(trap, tmp_path / "out", env=CARTPOLE, obs_shape=(4,), num_actions=2)
    assert not marker.exists()
    assert_agree(load(ckpt), trained["ppo_mlp"][0], env_obs(CARTPOLE))  # and the import is right
    # a policy.pth that is such a pickle is refused by torch.load(weights_only=True), unbuilt
    buf = io.BytesIO()
    torch.save({"action_net.weight": Canary(marker)}, buf)
    with pytest.raises(ValueError, match="not a file of tensors that torch.load\\(weights_only=True\\) accepts"):
        from_sb3(rewrite(path, tmp_path / "trap2.zip", policy=buf.getvalue()), tmp_path / "out2", env=CARTPOLE,
                 obs_shape=(4,))
    assert not marker.exists()
    pickle.loads(base64.b64decode(payload))  # control: the payload is live
    assert marker.exists()


@pytest.mark.parametrize("damage,message", [
    (lambda d: d.pop("policy_class"), "names no policy class"),
    (lambda d: d.__setitem__("observation_space", 3), "no readable 'observation_space'"),
])
@pytest.mark.slow
def test_damaged_data_is_named(trained, tmp_path, damage, message):
    _, _, path, _ = trained["ppo_mlp"]
    data = zip_data(path)
    damage(data)
    with pytest.raises(ValueError, match=message):
        from_sb3(rewrite(path, tmp_path / "d.zip", data=data), tmp_path / "out", env=CARTPOLE, obs_shape=(4,))


def test_not_a_zip_or_not_an_sb3_zip(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a zip file"):
        from_sb3(tmp_path / "x.zip", tmp_path / "o", env=CARTPOLE, obs_shape=(4,))
    with zipfile.ZipFile(tmp_path / "y.zip", "w") as z:
        z.writestr("weights.bin", b"")
    with pytest.raises(ValueError, match="not a Stable-Baselines3 zip: it has no data, policy.pth"):
        from_sb3(tmp_path / "y.zip", tmp_path / "o", env=CARTPOLE, obs_shape=(4,))
    with pytest.raises(FileNotFoundError, match="no Stable-Baselines3 zip"):
        from_sb3(tmp_path / "none.zip", tmp_path / "o", env=CARTPOLE, obs_shape=(4,))
