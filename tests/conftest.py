"""Shared set-up: quiet warnings, one torch thread, and the tiny runs several test files read.

The simulator's tiny world (``sim_runs.make_run``: a recurrent MiniGrid agent with a recorded store and a saved
simulator, and a second agent) is built once per session and never written to; each module that asks for it
gets its own copy (``sim_world``), to write into as it likes. Likewise ``pair``: a feed-forward and a recurrent
cnn agent on MiniGrid, each with a recorded store.
"""
import os
import shutil
import warnings
from pathlib import Path

os.environ.setdefault("PYTHONWARNINGS", "ignore")
warnings.filterwarnings("ignore")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

PAIR_ENV = "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0"


@pytest.fixture
def tmp_run(tmp_path):
    return tmp_path / "run"


@pytest.fixture(scope="session")
def _sim_world(tmp_path_factory) -> Path:
    """The session's one build of ``make_run``: read only through the copies below."""
    from sim_runs import make_run

    return make_run(tmp_path_factory.mktemp("sim-world") / "world").parent


@pytest.fixture(scope="module")
def sim_world(_sim_world, tmp_path_factory) -> Path:
    """This module's copy of the simulator's tiny world: ``rnn/`` (agent, 6-episode store, simulator) and
    ``other/agent``."""
    from sim_runs import copy_world

    return copy_world(_sim_world, tmp_path_factory.mktemp("sim-world") / "world")


@pytest.fixture(scope="session")
def _pair(tmp_path_factory) -> Path:
    """The session's one build of the feed-forward/recurrent pair: read only through ``pair``."""
    from policylens import agents
    from policylens.rollouts import RecordConfig, record

    root = tmp_path_factory.mktemp("pair") / "pair"
    for name, extra in (("ff", {}), ("rnn", {"recurrent": True, "hidden": 16})):
        cfg = {"arch": "cnn", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1, **extra}
        torch.manual_seed(0)
        agents.save_agent(agents.build(cfg), cfg, root / name / "agent", extra={"env": PAIR_ENV})
        record(RecordConfig(run=str(root / name), episodes=4, num_envs=2, progress=False))
    return root


@pytest.fixture(scope="module")
def pair(_pair, tmp_path_factory) -> Path:
    """This module's copy of two recorded runs on MiniGrid Dynamic-Obstacles 5x5 (``PAIR_ENV``): ``ff/`` and
    ``rnn/`` (hidden 16), cnn agents seeded 0, 4 episodes each in ``rollouts.zarr``."""
    return Path(shutil.copytree(_pair, tmp_path_factory.mktemp("pair") / "pair"))
