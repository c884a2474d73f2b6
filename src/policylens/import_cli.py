"""``policylens import sb3|cleanrl``: an agent trained elsewhere into a policylens run, never unpickled.

    policylens import sb3 ppo_cartpole.zip --env gym:CartPole-v1 --out runs/sb3-cartpole
    policylens import cleanrl agent.cleanrl_model --script ppo_atari --env SPEC --out runs/cleanrl-breakout

Each writes ``OUT/agent`` (``config.json`` + ``weights.safetensors``), checks the agent on the env's first
observations and prints its layers; every other command then takes ``OUT`` as its RUN.
See :mod:`policylens.agents.importers` for what is read and how (docs/import.md for the whole story).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from .config import add_dataclass_args, clear_errors, field_docs, from_args
from .subcommands import dispatch

EXAMPLES = ["policylens import sb3 MODEL.zip --env gym:CartPole-v1 --out runs/sb3-cartpole",
            "policylens import cleanrl agent.cleanrl_model --script ppo --env gym:CartPole-v1 --out runs/cleanrl-cartpole"]


@dataclass
class SB3Config:
    model: str = ""
    """the zip Stable-Baselines3 saved (model.save): PPO, A2C or DQN with MlpPolicy or CnnPolicy"""
    env: str = ""
    """env spec the agent acts in (its observations and actions must be the model's), e.g. gym:CartPole-v1"""
    out: str = ""
    """run directory to write; the agent goes to OUT/agent"""
    activation: str = ""
    """relu | tanh for the dense layers, overriding the zip's policy_kwargs (default: what they name, else SB3's default: tanh, relu for DQN)"""
    overwrite: bool = False
    """replace a checkpoint already in OUT/agent"""


@dataclass
class CleanRLConfig:
    file: str = ""
    """the state dict the CleanRL script saved (torch.save(agent.state_dict(), path))"""
    script: str = ""
    """the script that trained it: ppo_atari | ppo_atari_envpool | ppo_procgen | ppo | dqn_atari"""
    env: str = ""
    """env spec the agent acts in, e.g. procgen:coinrun?distribution_mode=easy or gym:CartPole-v1"""
    out: str = ""
    """run directory to write; the agent goes to OUT/agent"""
    overwrite: bool = False
    """replace a checkpoint already in OUT/agent"""


def _env_facts(spec: str) -> tuple:
    """``(obs_shape, num_actions, action_names, first observations)`` of the env spec."""
    from . import envs

    if not spec:
        raise ValueError("--env is required: the env spec the agent acts in (e.g. gym:CartPole-v1)")
    env = envs.make(spec, num_envs=2, seed=0)
    try:
        return tuple(env.observation_space.shape), int(env.action_space.n), list(env.action_names), env.reset(0)
    finally:
        env.close()


def _finish(out_dir: Path, obs, started: float) -> None:
    """Load the written agent, run it on the env's first observations, print what was made."""
    import torch

    from .agents import load
    from .agents.layers import format_layers

    agent = load(out_dir)
    with torch.no_grad():
        agent(torch.as_tensor(obs))
    print(format_layers(agent))
    print(f"imported in {time.time() - started:.2f} s: {out_dir}  (policylens layers|record|explore {out_dir.parent})")


def _parser(cls, prog: str, positional: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(positional, help=field_docs(cls)[positional])
    add_dataclass_args(parser, cls, skip=(positional,))
    return parser


def sb3_main(argv=None) -> Path:
    parser = _parser(SB3Config, "policylens import sb3", "model",
                     "Import a Stable-Baselines3 zip (PPO, A2C, DQN; MlpPolicy, CnnPolicy) without unpickling it: "
                     "the architecture from policy.pth's names and shapes (read with torch.load(weights_only=True)) "
                     "and data's plain JSON. DQN: logits are the Q-values, the value their maximum.")
    cfg = from_args(SB3Config, parser.parse_args(argv))
    with clear_errors(parser):
        from .agents.importers import from_sb3

        started = time.time()
        if not cfg.out:
            raise ValueError("--out is required: the run directory to write")
        if cfg.activation and cfg.activation not in ("relu", "tanh"):
            raise ValueError(f"--activation {cfg.activation!r}: expected relu or tanh")
        obs_shape, n, names, obs = _env_facts(cfg.env)
        out = from_sb3(cfg.model, Path(cfg.out) / "agent", env=cfg.env, obs_shape=obs_shape, num_actions=n,
                       action_names=names, activation=cfg.activation or None, overwrite=cfg.overwrite)
        _finish(out, obs, started)
    return out


def cleanrl_main(argv=None) -> Path:
    parser = _parser(CleanRLConfig, "policylens import cleanrl", "file",
                     "Import a CleanRL agent's saved state dict (read with torch.load(weights_only=True)): "
                     "ppo_atari, ppo_atari_envpool, ppo_procgen, ppo, dqn_atari. dqn_atari: logits are the "
                     "Q-values, the value their maximum.")
    cfg = from_args(CleanRLConfig, parser.parse_args(argv))
    with clear_errors(parser):
        from .agents.importers import from_cleanrl

        started = time.time()
        if not cfg.out:
            raise ValueError("--out is required: the run directory to write")
        obs_shape, n, names, obs = _env_facts(cfg.env)
        out = from_cleanrl(cfg.file, Path(cfg.out) / "agent", script=cfg.script, env=cfg.env, obs_shape=obs_shape,
                           num_actions=n, action_names=names, overwrite=cfg.overwrite)
        _finish(out, obs, started)
    return out


SUBCOMMANDS = {
    "sb3": ("policylens.import_cli:sb3_main", "a Stable-Baselines3 zip: PPO, A2C, DQN with MlpPolicy or CnnPolicy"),
    "cleanrl": ("policylens.import_cli:cleanrl_main",
                "a CleanRL state dict: ppo_atari, ppo_atari_envpool, ppo_procgen, ppo, dqn_atari"),
}


def main(argv=None):
    return dispatch("import", SUBCOMMANDS, EXAMPLES, argv)
