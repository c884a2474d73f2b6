"""Tiny runs for the simulator's tests: a recurrent MiniGrid agent with a recorded store and a saved simulator.

``make_run(root)`` writes ``root/rnn/agent``, ``root/rnn/rollouts.zarr`` (6 episodes) and ``root/rnn/sim``
(an untrained tiny simulator tied to that agent), plus a second recurrent agent ``root/other/agent`` for the
"another agent" refusals; ``tiny_parts(root)`` loads them back, ``copy_world(root, dst)`` copies them. The
session builds one such world (conftest.py's ``sim_world`` hands out a copy per module).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from policylens import agents
from policylens.rollouts import RecordConfig, record
from policylens.sim.checkpoint import load_sim, save_sim
from policylens.sim.config import SimConfig, for_data
from policylens.sim.loop import agent_sha256
from policylens.sim.model import Simulator

ENV = "minigrid:MiniGrid-Empty-Random-5x5-v0?num_actions=3"  # a random agent wanders: episodes of tens of steps
AGENT = {"arch": "cnn", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1, "recurrent": True, "hidden": 8}
TINY = SimConfig(context_frames=2, latent=8, deter=16, stoch=4, hidden=16, embed=16, channels=4)


def make_run(root, episodes: int = 6, sim: SimConfig = TINY) -> Path:
    """``root/rnn`` (agent, store, simulator) and ``root/other/agent``; returns ``root/rnn``."""
    root = Path(root)
    for k, name in enumerate(("rnn", "other")):
        torch.manual_seed(k)
        agents.save_agent(agents.build(AGENT), AGENT, root / name / "agent", extra={"env": ENV})
    record(RecordConfig(run=str(root / "rnn"), episodes=episodes, num_envs=2, progress=False))
    agent = agents.load(root / "rnn")
    cfg = for_data(sim, ENV, (7, 7, 3), AGENT["num_actions"], AGENT["hidden"])
    info = {"run": str(root / "rnn"), "sha256": agent_sha256(agent), "config": AGENT}
    save_sim(Simulator(cfg, seed=0), root / "rnn" / "sim", {"agent": info, "env": ENV,
                                                             "action_names": ["left", "right", "forward"]})
    return root / "rnn"


def tiny_parts(run) -> tuple:
    """``(Simulator, FrozenAgent)`` of a run written by :func:`make_run`."""
    return load_sim(Path(run) / "sim")


def copy_world(src, dst) -> Path:
    """A copy of a world written by :func:`make_run` at ``dst``, its simulator tied to the copy's own agent run."""
    src, dst = Path(src), Path(dst)
    shutil.copytree(src, dst)
    conf_file = dst / "rnn" / "sim" / "config.json"
    conf = json.loads(conf_file.read_text())
    conf["agent"]["run"] = str(dst / "rnn")
    conf_file.write_text(json.dumps(conf))
    return dst
