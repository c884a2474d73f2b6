"""Atari env steps/s: policylens' ``atari:GAME`` against ale-py's own vector env and EnvPool, in one run.

    python -m benchmarks.atari_env_speed [--games breakout,pong] [--num-envs 8] [--steps 400]

Every env plays the same preprocessing (no-op reset up to 30, frame skip 4 with max-pooling of the last two
frames, 84x84 grey, a stack of 4, FIRE on reset, no sticky actions, no episodic life, no reward clipping) with
uniform random actions, stepped synchronously, ``num_envs`` at a time. ale-py's ``AtariVectorEnv`` and EnvPool run
their envs in C++ worker threads: they are timed with 1 thread (the same core count as ours, which steps its envs
in this Python thread) and with every core. Ratios are the others' steps/s over ours. policylens is also timed
with ``ground_truth=true`` (a state saved every step for the causes) and with ``entities()`` read every step (as
``policylens record`` does, OCAtari's extraction per frame). EnvPool is optional (``pip install envpool``); where it
does not import the file says so.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from policylens import envs

from .common import write


def _time(step, reset, num_envs: int, steps: int, n: int) -> float:
    reset()
    rng = np.random.default_rng(0)
    actions = rng.integers(0, n, (steps, num_envs))
    step(actions[0])  # warm
    t = time.perf_counter()
    for a in actions[1:]:
        step(a)
    return (steps - 1) * num_envs / (time.perf_counter() - t)


def ours(game: str, num_envs: int, steps: int, options: str = "", entities: bool = False) -> float:
    env = envs.make(f"atari:{game}{options}", num_envs=num_envs, seed=0)

    def step(a):
        env.step(a)
        if entities:
            env.entities()
    return _time(step, lambda: env.reset(0), num_envs, steps, env.action_space.n)


def ale_vector(game: str, num_envs: int, steps: int, threads: int) -> float:
    from ale_py.vector_env import AtariVectorEnv

    env = AtariVectorEnv(game, num_envs, num_threads=threads, noop_max=30, frameskip=4, maxpool=True,
                         img_height=84, img_width=84, grayscale=True, stack_num=4, use_fire_reset=True,
                         repeat_action_probability=0.0, episodic_life=False, reward_clipping=False)
    n = int(env.single_action_space.n)
    out = _time(env.step, lambda: env.reset(seed=0), num_envs, steps, n)
    env.close()
    return out


def envpool_speed(game: str, num_envs: int, steps: int, threads: int) -> float:
    import envpool

    task = "".join(w.capitalize() for w in game.split("_")) + "-v5"
    env = envpool.make(task, env_type="gymnasium", num_envs=num_envs, batch_size=num_envs, num_threads=threads,
                       seed=0, noop_max=30, frame_skip=4, stack_num=4, img_height=84, img_width=84, gray_scale=True,
                       use_fire_reset=True, repeat_action_probability=0.0, episodic_life=False, reward_clip=False,
                       use_inter_area_resize=True)
    return _time(env.step, env.reset, num_envs, steps, int(env.action_space.n))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", default="breakout,pong", help="comma-separated ALE game ids")
    parser.add_argument("--num-envs", type=int, default=8, help="envs stepped together")
    parser.add_argument("--steps", type=int, default=400, help="steps timed per setup (each of num_envs envs)")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    try:
        import envpool
        pool = f"envpool {envpool.__version__}"
    except ImportError as e:
        pool = None
        pool_missing = f"EnvPool does not import here ({e}); pip install envpool"
    games = {}
    for game in [g for g in args.games.split(",") if g]:
        row = {"policylens": ours(game, args.num_envs, args.steps),
               "policylens_ground_truth": ours(game, args.num_envs, args.steps, "?ground_truth=true"),
               "policylens_entities_every_step": ours(game, args.num_envs, args.steps // 4, entities=True),
               "ale_py_vector_1_thread": ale_vector(game, args.num_envs, args.steps, 1),
               f"ale_py_vector_{cores}_threads": ale_vector(game, args.num_envs, args.steps, cores)}
        if pool:
            row["envpool_1_thread"] = envpool_speed(game, args.num_envs, args.steps, 1)
            row[f"envpool_{cores}_threads"] = envpool_speed(game, args.num_envs, args.steps, cores)
        base = row["policylens"]
        games[game] = {"steps_per_s": {k: round(v, 1) for k, v in row.items()},
                       "ratio_to_policylens": {k: round(v / base, 3) for k, v in row.items()}}
        print(game, games[game])
    import ale_py

    write("atari_env_speed", {
        "command": "python -m benchmarks.atari_env_speed " + " ".join(argv if argv is not None else []),
        "num_envs": args.num_envs, "steps": args.steps, "ale_py": ale_py.__version__,
        "envpool": pool or pool_missing,
        "setup": "noop_max 30, frame skip 4 with max-pool, 84x84 grey, stack 4, fire reset, no sticky actions, "
                 "no episodic life, no reward clipping; uniform random actions",
        "note": "ale-py's vector env and EnvPool grey with ALE's palette, policylens with OpenCV's RGB2GRAY as "
                "SB3 and CleanRL do; entities_every_step is timed over steps/4",
        "games": games})


if __name__ == "__main__":
    main()
