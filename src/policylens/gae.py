"""Generalised advantage estimation, shared by PPO (during training) and the rollout store (after the fact).

``advantages[t] = sum_k (gamma * lam)^k * delta[t + k]`` within an episode, with
``delta[t] = reward[t] + gamma * value[t + 1] * (1 - done[t]) - value[t]``; ``returns = advantages + value``.
``done[t]`` means the episode ended with step t, so step t does not bootstrap from the next value.
"""
from __future__ import annotations

import numpy as np


def gae(reward, value, done, gamma: float = 0.999, lam: float = 0.95, last_value=0.0):
    """``reward, value, done``: ``(T,)`` or time-major ``(T, N)`` -> ``(advantages, returns)`` float32, same shape.

    ``last_value`` bootstraps the step after the last one where that step did not end an episode.
    """
    reward, value = np.asarray(reward, np.float64), np.asarray(value, np.float64)  # (T, ...)
    nonterminal = 1.0 - np.asarray(done, np.float64)  # (T, ...)
    if not reward.shape == value.shape == nonterminal.shape:
        raise ValueError(f"reward, value and done must have one shape; got {reward.shape}, {value.shape}, "
                         f"{nonterminal.shape}")
    adv = np.zeros_like(reward)  # (T, ...)
    if reward.ndim == 1:  # fast path on Python floats
        r, v, m, out = reward.tolist(), value.tolist(), nonterminal.tolist(), [0.0] * len(reward)
        next_adv, next_value = 0.0, float(last_value)
        for t in range(len(r) - 1, -1, -1):
            delta = r[t] + gamma * next_value * m[t] - v[t]
            next_adv = delta + gamma * lam * m[t] * next_adv
            out[t], next_value = next_adv, v[t]
        adv[:] = out
    else:
        adv_after = np.zeros_like(reward[0])  # (N, ...) the advantage of the step after t
        value_after = np.broadcast_to(np.asarray(last_value, np.float64), reward[0].shape)
        for t in range(len(reward) - 1, -1, -1):
            deltas = reward[t] + gamma * value_after * nonterminal[t] - value[t]  # (N,)
            adv_after = deltas + gamma * lam * nonterminal[t] * adv_after
            adv[t], value_after = adv_after, value[t]
    return adv.astype(np.float32), (adv + value).astype(np.float32)
