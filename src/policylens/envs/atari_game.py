"""One ALE emulator and what :class:`~policylens.envs.atari.AtariVecEnv` keeps beside it per env (also the
private emulator :mod:`~policylens.envs.atari_causes` replays counterfactuals in)."""
from __future__ import annotations

import numpy as np


def _ale():
    try:
        import ale_py
    except ImportError:
        raise ImportError("atari: envs need ale-py; install the extra: pip install 'policylens[atari]'") from None
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    return ale_py



class _Game:
    """One ALE emulator and what the wrapper keeps beside it for one env."""

    def __init__(self, rom: str, opts: dict):
        ale_py = _ale()
        self.ale = ale_py.ALEInterface()
        self.ale.setFloat("repeat_action_probability", 0.0)  # sticky actions are drawn here, per episode
        self.ale.setInt("max_num_frames_per_episode", int(opts["max_frames"]))
        self.ale.loadROM(ale_py.roms.get_rom_path(rom))
        acts = self.ale.getLegalActionSet() if opts["full_action_space"] else self.ale.getMinimalActionSet()
        self.actions = list(acts)
        self.level_seed, self.lives, self.last_action, self.score, self.length = 0, 0, 0, 0.0, 0
        self.rng = np.random.default_rng(0)
        # set when a game starts (AtariVecEnv._start, which the env's reset in its constructor runs):
        self.stack: np.ndarray  # (size, size, C * frame_stack)
        self.last_screen: np.ndarray  # the previous frame's screen, where max-pooling reaches back before a step
        self.screen: np.ndarray  # (210, 160, 3) the step's last frame as the game draws it (hidden objects shown)
        self.rams = [self.ale.getRAM()]  # RAM before the step, then after each of its frames
        self.step_actions: list = []  # the ALE actions of the step's frames (after sticky repeats)
