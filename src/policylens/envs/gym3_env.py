"""Making procgen's gym3 vector env, quietly: shared by :class:`~policylens.envs.procgen.ProcgenVecEnv` and the
replays of :mod:`~policylens.envs.coinrun`."""
from __future__ import annotations

import contextlib
import io
import warnings


def gym3_env(game: str, num: int, seed: int | None, options: dict):
    """A procgen gym3 vector env of ``game`` (``num`` envs, ``options`` as procgen takes them)."""
    # procgen imports the old `gym`, which prints a deprecation notice to stderr on import: keep it quiet.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        from procgen import ProcgenGym3Env
    kwargs = {"num_threads": 2, **options}
    if seed is not None:
        kwargs["rand_seed"] = int(seed)
    return ProcgenGym3Env(num=num, env_name=game, **kwargs)
