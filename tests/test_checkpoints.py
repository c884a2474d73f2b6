"""Checkpoints: exact round trips, independence of loaded agents, refusal of pickles, clear errors."""
from __future__ import annotations

import json
import pickle
import re

import pytest
import torch

from policylens.agents import AgentConfig, build, load, load_agent, read_config, resolve_run, save_agent
from policylens.agents.checkpoint import REFUSE_PICKLE

CASES = [
    ("impala", (64, 64, 3), False, {}), ("impala", (64, 64, 3), True, {}),
    ("clear", (64, 64, 3), False, {}), ("clear", (56, 56, 3), True, {}),
    ("cnn", (7, 7, 20), False, {}), ("cnn", (56, 56, 3), True, {}),
    ("mlp", (7, 7, 3), False, {}), ("mlp", (7, 7, 3), True, {}),
    ("attention", (64, 64, 3), False, {"heads": 3}), ("attention", (7, 7, 3), True, {"base": "cnn"}),
    # layouts of agents trained elsewhere: dense towers, tanh, a Q-network, a separate value trunk
    ("mlp", (4,), False, {"hidden_sizes": [], "pi_hidden": [64, 64], "v_hidden": [32], "activation": "tanh"}),
    ("mlp", (4,), False, {"hidden_sizes": [64, 64], "q_values": True}),
    ("nature", (84, 84, 4), False, {"separate_value": True, "fc_dim": 256, "pi_hidden": [16]}),
]


def config(arch="mlp", obs_shape=(7, 7, 3), recurrent=False, num_actions=5, **options):
    return AgentConfig(arch=arch, obs_shape=obs_shape, num_actions=num_actions, recurrent=recurrent, options=options)


def make_agent(cfg, seed=0):
    torch.manual_seed(seed)
    agent = build(cfg).eval()
    with torch.no_grad():  # perturb every parameter so a weight that is not restored shows in the output
        for p in agent.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return agent


def obs_for(shape, batch=3, seed=1):
    return torch.randint(0, 256, (batch, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def run(agent, obs):
    with torch.no_grad():
        if getattr(agent, "recurrent", False):
            first = agent(obs)
            return first, agent(obs, first.state, torch.zeros(obs.shape[0], dtype=torch.bool))
        return (agent(obs),)


@pytest.mark.parametrize("arch,obs_shape,recurrent,options", CASES,
                         ids=[f"{a}-{'x'.join(map(str, s))}-{'gru' if r else 'ff'}" for a, s, r, _ in CASES])
def test_save_load_round_trip_is_exact(tmp_path, arch, obs_shape, recurrent, options):
    cfg = config(arch, obs_shape, recurrent, **options)
    agent = make_agent(cfg)
    path = save_agent(agent, cfg, tmp_path / "ckpt", extra={"env": "minigrid:MiniGrid-Empty-5x5-v0", "seed": 3})
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "weights.safetensors"]
    saved = read_config(path)
    assert saved["env"] == "minigrid:MiniGrid-Empty-5x5-v0" and saved["seed"] == 3
    assert saved["agent"]["arch"] == arch and saved["agent"]["options"] == options
    loaded = load_agent(path)
    assert type(loaded) is type(agent) and not loaded.training
    assert loaded.state_dict().keys() == agent.state_dict().keys()
    for k, v in agent.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    obs = obs_for(obs_shape)
    for a, b in zip(run(agent, obs), run(loaded, obs)):
        assert torch.equal(a.logits, b.logits) and torch.equal(a.value, b.value)
        if recurrent:
            assert torch.equal(a.state, b.state)
    # a fresh build (other seed) differs, so the equality above is the weights' doing
    other = make_agent(cfg, seed=1)
    assert not torch.equal(run(other, obs)[0].logits, run(agent, obs)[0].logits)


def test_loaded_agent_is_a_new_object(tmp_path):
    cfg = config("cnn", (7, 7, 3), recurrent=True)
    agent = make_agent(cfg)
    save_agent(agent, cfg, tmp_path)
    a, b = load_agent(tmp_path), load_agent(tmp_path)
    assert a is not agent and a is not b
    obs = obs_for((7, 7, 3))
    before = run(agent, obs)[0].logits.clone()
    with torch.no_grad():
        a.pi.weight.zero_()
        a.h0.fill_(3.0)
    assert torch.equal(run(agent, obs)[0].logits, before)  # the original is untouched
    assert torch.equal(run(b, obs)[0].logits, before)  # and so is another load
    assert not torch.equal(run(a, obs)[0].logits, before)
    # and the files on disk too
    assert torch.equal(run(load_agent(tmp_path), obs)[0].logits, before)


def test_load_accepts_a_run_dir_a_checkpoint_dir_and_the_zoo(tmp_path, monkeypatch):
    cfg = config()
    agent = make_agent(cfg)
    save_agent(agent, cfg, tmp_path / "runs" / "r1" / "agent")
    save_agent(agent, cfg, tmp_path / "zoo" / "tiny" / "agent")
    monkeypatch.setenv("POLICYLENS_ZOO", str(tmp_path / "zoo"))
    assert resolve_run(tmp_path / "runs" / "r1") == tmp_path / "runs" / "r1" / "agent"
    assert resolve_run(tmp_path / "runs" / "r1" / "agent") == tmp_path / "runs" / "r1" / "agent"
    assert resolve_run("zoo:tiny") == tmp_path / "zoo" / "tiny" / "agent"
    obs = obs_for((7, 7, 3))
    for run_arg in (tmp_path / "runs" / "r1", tmp_path / "runs" / "r1" / "agent", "zoo:tiny"):
        assert torch.equal(run(load(run_arg), obs)[0].logits, run(agent, obs)[0].logits)


def test_unknown_zoo_name_lists_the_available_ones(tmp_path, monkeypatch):
    cfg = config()
    save_agent(make_agent(cfg), cfg, tmp_path / "coinrun_impala" / "agent")  # a run dir
    save_agent(make_agent(cfg), cfg, tmp_path / "maze_clear")  # a bare checkpoint dir
    (tmp_path / "notes").mkdir()  # not an agent
    monkeypatch.setenv("POLICYLENS_ZOO", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        resolve_run("zoo:nope")
    text = str(err.value)
    assert "'nope'" in text and "coinrun_impala, maze_clear" in text and "notes" not in text
    with pytest.raises(FileNotFoundError, match="none"):
        monkeypatch.setenv("POLICYLENS_ZOO", str(tmp_path / "notes"))
        resolve_run("zoo:nope")


# ---------------------------------------------------------------- pickles are refused, never opened


class _Payload:
    """Unpickling this creates a marker file: proof that something unpickled it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _write_trap(path, marker):
    path.write_bytes(pickle.dumps({"network.0.conv.weight": _Payload(marker)}))  # dumping runs nothing


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt"])
def test_pickled_checkpoint_is_refused_with_how_to_convert_and_never_unpickled(tmp_path, suffix):
    marker = tmp_path / "UNPICKLED"
    trap = tmp_path / f"agent{suffix}"
    _write_trap(trap, marker)
    for loader in (load_agent, load, read_config):
        with pytest.raises(ValueError) as err:
            loader(trap)
        text = str(err.value)
        assert str(trap) in text
        assert "never unpickles" in text and "torch.load" in text and "weights_only=True" in text
        assert "from_cleanrl_procgen" in text and "policylens import cleanrl" in text and "policylens import sb3" in text
    # a folder holding only the pickle: the missing config.json is reported with the same advice
    folder = tmp_path / "run"
    folder.mkdir()
    _write_trap(folder / f"model{suffix}", marker)
    with pytest.raises(FileNotFoundError) as err:
        load(folder)
    assert "config.json" in str(err.value) and f"model{suffix}" in str(err.value)
    assert "from_cleanrl_procgen" in str(err.value)
    assert not marker.exists()
    # control: the payload is live, so its absence above means nothing unpickled the file
    pickle.loads(trap.read_bytes())
    assert marker.exists()


def test_refusal_advice_names_a_converter_that_exists():
    import policylens.agents as agents
    import policylens.agents.convert as convert
    from policylens.cli import COMMANDS

    assert "policylens.agents.convert.from_cleanrl_procgen" in REFUSE_PICKLE
    assert callable(convert.from_cleanrl_procgen)
    assert "policylens import cleanrl" in REFUSE_PICKLE and "import" in COMMANDS
    assert "policylens.agents.wrap(" in REFUSE_PICKLE and callable(agents.wrap)


def test_agents_code_never_unpickles():
    """Nothing in the agents package (importers included) unpickles: no pickle-like module is used but for its
    exception type, and the one torch.load passes weights_only=True (PyTorch's tensors-only loader)."""
    import ast
    from pathlib import Path

    import policylens.agents as agents

    torch_loads = []
    for file in Path(agents.__file__).parent.rglob("*.py"):
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(m.split(".")[0] in ("dill", "joblib", "cloudpickle") for m in mods), file
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "pickle":
                assert node.attr == "UnpicklingError", f"{file.name}:{node.lineno} uses pickle.{node.attr}"
            if isinstance(node, ast.Attribute) and node.attr in ("load", "loads", "Unpickler"):
                owner = node.value.id if isinstance(node.value, ast.Name) else ""
                assert owner != "pickle", f"{file.name}:{node.lineno} calls pickle.{node.attr}"
                if owner == "torch":
                    torch_loads.append((file, node.lineno))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                flags = {k.arg: k.value for k in node.keywords}
                assert isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True, \
                    f"{file.name}:{node.lineno} calls torch.load without weights_only=True"
    assert [f.name for f, _ in torch_loads] == ["common.py"]  # the one reader of foreign .pth files


# ---------------------------------------------------------------- broken checkpoints name the file


@pytest.fixture
def ckpt(tmp_path):
    cfg = config()
    return save_agent(make_agent(cfg), cfg, tmp_path / "ckpt")


def test_missing_config_names_the_file(ckpt):
    (ckpt / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=str(ckpt / "config.json")):
        load_agent(ckpt)


def test_missing_folder_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere" / "config.json")):
        load(tmp_path / "nowhere")


def test_missing_weights_names_the_file(ckpt):
    (ckpt / "weights.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=str(ckpt / "weights.safetensors")):
        load_agent(ckpt)


@pytest.mark.parametrize("keep", [0.5, 0.02, 0.0])
def test_truncated_weights_name_the_file(ckpt, keep):
    file = ckpt / "weights.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match="corrupt") as err:
        load_agent(ckpt)
    assert str(file) in str(err.value)


@pytest.mark.parametrize("text", ['{"agent": {"arch": "mlp",', "", "not json"])
def test_invalid_json_names_the_file(ckpt, text):
    (ckpt / "config.json").write_text(text)
    with pytest.raises(ValueError, match="not valid JSON") as err:
        load_agent(ckpt)
    assert str(ckpt / "config.json") in str(err.value)


@pytest.mark.parametrize("body", [{"env": "procgen:coinrun"}, [1, 2], "agent"])
def test_config_without_agent_section_names_the_file(ckpt, body):
    (ckpt / "config.json").write_text(json.dumps(body))
    with pytest.raises(ValueError, match="no 'agent' section") as err:
        load_agent(ckpt)
    assert str(ckpt / "config.json") in str(err.value)


def test_weights_of_another_architecture_are_refused(ckpt):
    body = json.loads((ckpt / "config.json").read_text())
    body["agent"]["arch"] = "cnn"  # mlp weights, cnn config
    (ckpt / "config.json").write_text(json.dumps(body))
    with pytest.raises(ValueError, match="do not match the architecture") as err:
        load_agent(ckpt)
    text = str(err.value)
    assert str(ckpt / "weights.safetensors") in text and "embed.conv.weight" in text and "fc1.0.weight" in text


@pytest.mark.parametrize("field,value,key", [("num_actions", 9, "pi.weight"), ("obs_shape", [7, 7, 20], "fc1.0.weight")])
def test_weights_of_another_shape_are_refused(ckpt, field, value, key):
    body = json.loads((ckpt / "config.json").read_text())
    body["agent"][field] = value
    (ckpt / "config.json").write_text(json.dumps(body))
    with pytest.raises(ValueError, match="do not match the architecture") as err:
        load_agent(ckpt)
    assert str(ckpt / "weights.safetensors") in str(err.value)
    assert re.search(re.escape(key) + r" \(\d+, \d+\) in the file, \(\d+, \d+\) in the agent", str(err.value))


def test_recurrent_flag_mismatch_is_refused(ckpt):
    body = json.loads((ckpt / "config.json").read_text())
    body["agent"]["recurrent"] = True
    (ckpt / "config.json").write_text(json.dumps(body))
    with pytest.raises(ValueError, match=r"missing \[.*'h0'.*'gru.weight_ih'.*pi.weight") as err:
        load_agent(ckpt)
    assert str(ckpt / "weights.safetensors") in str(err.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_inf_weights_are_refused_naming_the_tensor(ckpt, bad, capsys):
    from safetensors.torch import load_file, save_file

    file = ckpt / "weights.safetensors"
    state = load_file(str(file))
    state["pi.weight"][0, :3] = bad  # a diverged run's head
    save_file(state, str(file))
    with pytest.raises(ValueError, match=r"NaN or inf in 1 tensor\(s\): pi.weight \(3 of \d+ values\)") as err:
        load_agent(ckpt)
    assert str(file) in str(err.value)
    from policylens.cli import main

    with pytest.raises(SystemExit) as e:  # evaluated, it said "success 0.000"; now it says why it will not
        main(["evaluate", str(ckpt), "--episodes", "2", "--env", "minigrid:MiniGrid-Empty-5x5-v0"])
    assert e.value.code == 2 and "pi.weight" in capsys.readouterr().err


def test_nan_directions_and_a_nan_checkpoint_to_resume_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    from policylens.factors import Directions
    from policylens.train.state import read_checkpoint

    path = Directions.one_hot("embed", [0, 1], 4).save(tmp_path / "dirs").with_suffix(".safetensors")
    vectors = load_file(str(path))["vectors"]
    vectors[1, 2] = float("nan")
    save_file({"vectors": vectors}, str(path))
    with pytest.raises(ValueError, match=r"NaN or inf in 1 tensor\(s\): vectors"):
        Directions.load(tmp_path / "dirs")
    agent_dir = tmp_path / "run" / "agent"
    agent_dir.mkdir(parents=True)
    save_file({"w": torch.tensor([1.0, float("nan")])}, str(agent_dir / "weights.safetensors"))
    save_file({"m": torch.zeros(2)}, str(agent_dir / "trainer.safetensors"))
    (agent_dir / "trainer.json").write_text("{}")
    with pytest.raises(ValueError, match=r"weights.safetensors holds NaN or inf in 1 tensor\(s\): w \(1 of 2"):
        read_checkpoint(agent_dir)
