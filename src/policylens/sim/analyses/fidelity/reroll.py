"""The environment itself, drawn again from a held-out window's start: how much of fidelity is in reach at all.

Each window's episode is replayed in the real environment to the window's last context frame (MiniGrid is
deterministic given its reset seed and the actions, :meth:`~policylens.envs.minigrid.MiniGridVecEnv.set_state`),
the environment's random generator is reseeded, and the recorded actions go on from there: another future of the
same start (in Dynamic-Obstacles the balls move at random every step, so one step after the context the frame is
already a draw). Without reseeding (``reseed=False``) the replay reproduces the record exactly, which is how the
replay is checked. Where a drawn episode ends before the recorded one, its last frame is held, with no reward
and no end after the step that ended it.

Only the first frame after the context is a fair second draw: it follows from the recorded action at the last
context frame, which the agent chose before the world moved. Every later recorded action was chosen for the
recorded world (the agent turned because a ball was ahead there), so replayed into another world they walk into
balls it never met. :func:`one_step_ceiling` therefore scores draws of that first frame only, two ways, per
window: a perfect simulator that samples (the mean score of the draws), and one that knows the world's
distribution and predicts its likeliest outcome (per cell and plane the commonest code across the draws, the
agent's commonest action on them, the median of its values). The second bounds, up to the draws' sampling error,
what any model can expect one step out; the first shows how much predicting the likeliest frame gains over a draw.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import torch

from ...config import SimConfig
from ...data import SimData, Windows


def can_reroll(env: str) -> bool:
    """Whether windows of a store recorded on ``env`` (an env spec string) can be re-rolled: MiniGrid envs."""
    from ....envs import parse_spec

    return bool(env) and parse_spec(env).family == "minigrid"


def check_replayable(data: SimData) -> None:
    """Refuse a store whose episodes cannot be replayed and drawn again."""
    if not can_reroll(data.env):
        raise ValueError(f"rollouts store {data.path}: env {data.env!r} cannot be re-rolled (only MiniGrid replays "
                         "a recorded step and draws again from there)")
    if len(data.level_seed) != data.num_episodes:
        raise ValueError(f"rollouts store {data.path} holds no level seeds to replay its episodes from")


def replay_to(env, data: SimData, first: int, context: int) -> tuple:
    """Replay, in the one-env MiniGrid vector env ``env``, the episode of the window starting at global frame
    ``first`` to the window's last context frame, checked against the record: ``(that frame (h, w, C), its global
    index, one past the episode's last frame)``."""
    e = int(data.episode_of([first])[0])
    begin, end = int(data.start[e]), int(data.start[e] + data.length[e])
    branch = first + context - 1  # the last context frame: the world is drawn again after it
    if branch >= end:
        raise ValueError(f"window at frame {first}: episode {e} ends before its {context} context frames")
    rng = json.loads(env.get_state()[0])["rng"]  # the vector env's own seed generator, left as it is
    env.set_state([json.dumps({"level_seed": int(data.level_seed[e]), "actions": data.action[begin:branch].tolist(),
                               "rng": rng}).encode()])
    frame = env.observe()[0]  # (h, w, C)
    if not np.array_equal(frame, data.obs[branch]):
        raise ValueError(f"rollouts store {data.path}: episode {e} (level seed {int(data.level_seed[e])}) does "
                         f"not replay to its recorded frame {branch - begin}; was it recorded with other env "
                         "options or another MiniGrid version?")
    return frame, branch, end


def rerolled(data: SimData, starts: np.ndarray, context: int, steps: int, seed: int = 0,
             reseed: bool = True, draws: int = 1) -> tuple:
    """Windows starting at global frames ``starts`` (B,), replayed to their last context frame and stepped on
    with the recorded actions for ``steps`` frames after it, ``draws`` times each, the environment reseeded from
    ``(seed, start, draw)`` first (``reseed=False``: not). Returns numpy arrays ``(obs (B, D, steps, h, w, C)
    uint8, reward (B, D, steps), done (B, D, steps), alive (B, D, steps) bool)``: reward and done are those of the
    recorded action at each frame, as in :class:`Windows`; ``alive`` is False on frames after the drawn episode
    ended (its last frame held)."""
    from ....envs import make

    check_replayable(data)
    env = make(data.env, num_envs=1, seed=0)
    starts = np.asarray(starts, np.int64)  # (B,)
    b = len(starts)
    obs = np.zeros((b, draws, steps, *data.obs.shape[1:]), np.uint8)  # (B, D, H, h, w, C)
    reward, done = np.zeros((b, draws, steps), np.float32), np.zeros((b, draws, steps), np.float32)  # (B, D, H)
    alive = np.zeros((b, draws, steps), bool)  # (B, D, H)
    arrays: "tuple[np.ndarray, ...]" = (obs, reward, done, alive)
    for i, first in enumerate(starts):
        frame, branch, end = replay_to(env, data, int(first), context)
        branched = copy.deepcopy(env.envs[0])
        for k in range(draws):
            env.envs[0] = copy.deepcopy(branched)
            if reseed:
                env.envs[0].np_random = np.random.default_rng([seed, int(first), k])
            played = _play_on(env, data.action[branch:end], frame, steps)
            for into, got in zip(arrays, played):
                into[i, k] = got
    return obs, reward, done, alive


def _play_on(env, actions: np.ndarray, frame: np.ndarray, steps: int) -> tuple:
    """Step ``env`` (one env, at the frame ``frame``) with ``actions`` (the recorded ones from that frame to the
    episode's end): ``(obs (steps, h, w, C), reward (steps,), done (steps,), alive (steps,))`` of the ``steps``
    frames after it, as :func:`rerolled` says."""
    obs = np.zeros((steps, *frame.shape), np.uint8)  # (H, h, w, C)
    reward, done, alive = np.zeros(steps, np.float32), np.zeros(steps, np.float32), np.zeros(steps, bool)
    held, running = frame, True  # the latest frame of the drawn episode; whether it still runs
    for j, a in enumerate(actions[:steps + 1]):  # action j makes frame j; its reward and end are step j - 1's
        if running:
            nxt, r, d, _ = env.step(np.array([a]))
            if j >= 1:
                reward[j - 1], done[j - 1] = r[0], float(d[0])
            running, held = not d[0], held if d[0] else nxt[0]
        if j < steps:
            obs[j], alive[j] = held, running
    return obs, reward, done, alive


CEILING_METRICS = ("obs_score", "action_agreement", "value_error")  # those of the frame alone, fair one step out
WAYS = {"sampled": "a perfect simulator that samples: the mean score of the draws",
        "best": "the best guess of the world's distribution: per cell and plane the commonest code across the draws "
                "(pixels: the mean frame), the agent's commonest action on them, the median of its values"}


@torch.no_grad()
def one_step_ceiling(data: SimData, windows: Windows, context: int, cfg: SimConfig, agent, draws: int = 32,
                     seed: int = 0, batch_size: int = 64, progress: bool = False) -> dict:
    """The first frame after each window's context drawn ``draws`` times from the environment (:func:`rerolled`),
    scored on :data:`CEILING_METRICS` against the recorded frame, the agent read from its recorded state there:
    ``{way: {metric: (N,) per window}}`` for each of :data:`WAYS`. The windows must come from ``data``."""
    from tqdm.auto import tqdm

    from ...obs import categorical_targets
    from .core import agent_trace

    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    out = {way: {k: [] for k in CEILING_METRICS} for way in WAYS}
    n = windows.obs.shape[0]
    for a in tqdm(range(0, n, batch_size), desc="one-step ceiling", unit="batch", disable=not progress):
        part = windows.rows(slice(a, a + batch_size))
        real, hx = part.obs[:, context], part.agent_state[:, context]  # (B, h, w, C), (B, hidden)
        drawn = torch.from_numpy(rerolled(data, part.start.cpu().numpy(), context, 1, seed, draws=draws)[0][:, :, 0])
        drawn = drawn.to(real.device)  # (B, D, h, w, C)
        b = real.shape[0]
        real_action, real_value = (x[:, 0] for x in agent_trace(agent, real[:, None], hx))  # (B,)
        action, value = (x.view(b, draws) for x in agent_trace(agent, drawn.flatten(0, 1)[:, None],
                                                               hx.repeat_interleave(draws, 0)))  # (B, D)
        if cfg.obs_kind == "pixels":  # mean squared error on [0, 1]
            def mse(x, y):
                return ((x.float() - y.float()) / 255.0).pow(2).flatten(-3).mean(-1)
            sampled_obs, best_obs = mse(drawn, real[:, None]).mean(1), mse(drawn.float().mean(1), real)  # (B,)
        else:
            cats, target = categorical_targets(drawn, cfg), categorical_targets(real, cfg)  # (B, D, h, w, P), (B, ...)
            sampled_obs = (cats == target[:, None]).float().flatten(-3).mean(-1).mean(1)  # (B,)
            best_obs = (cats.mode(1).values == target).float().flatten(-3).mean(-1)  # (B,)
        scores = {"sampled": (sampled_obs, (action == real_action[:, None]).float().mean(1),
                              (value - real_value[:, None]).abs().mean(1)),
                  "best": (best_obs, (action.mode(1).values == real_action).float(),
                           (value.median(1).values - real_value).abs())}
        for way, got in scores.items():
            for k, v in zip(CEILING_METRICS, got):
                out[way][k].append(v.cpu().numpy())
    return {way: {k: np.concatenate(v) for k, v in metrics.items()} for way, metrics in out.items()}
