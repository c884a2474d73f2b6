"""Episodes in progress: each env's frames held until its episode ends, so a store only ever gets whole episodes
(:mod:`policylens.rollouts.record`, :mod:`policylens.rollouts.plan`, ``policylens dt collect``)."""
from __future__ import annotations

import zlib

import numpy as np

MAX_PENDING = 8192  # frames of finished episodes held in memory before a commit is forced


class EpisodeBuffer:
    """The frames of one env's episode in progress."""

    def __init__(self):
        self.steps = []  # one dict of per-step values per frame

    def finish(self, cause: str, ret: float, level_seed: int) -> dict:
        """The episode as ``{field: (T, ...)}`` plus ``cause`` and ``return``; empties the buffer."""
        ep = {}
        for key in self.steps[0]:
            values = [s[key] for s in self.steps]
            if key == "render":
                values = [v.unpack() for v in values]
            ep[key] = values if key == "env_state" else np.array(values, dtype=object if key == "entities" else None)
        ep["done"][-1] = True  # already so unless cut by max_steps
        ep["level_seed"] = np.full(len(self.steps), level_seed, np.int64)  # (T,)
        self.steps = []
        return {**ep, "cause": cause, "return": float(ret)}

    def close_if_ended(self, done: bool, info: dict, max_steps: int) -> "dict | None":
        """The episode if the env ended it (with its cause) or it reached ``max_steps`` (cause ``max_steps``,
        the guard against envs that never end), else None."""
        if done:
            ep = info["episode"]
            return self.finish(ep["cause"], ep["return"], ep["level_seed"])
        if len(self.steps) >= max_steps:
            return self.finish("max_steps", float(sum(s["reward"] for s in self.steps)), info["level_seed"])
        return None


class Packed:
    """A frame's picture held deflated while its episode is buffered (an Atari screen: 100 KB raw, a few KB)."""

    def __init__(self, image: np.ndarray):
        self.shape, self.data = image.shape, zlib.compress(np.ascontiguousarray(image, np.uint8).tobytes(), 1)

    def unpack(self) -> np.ndarray:
        return np.frombuffer(zlib.decompress(self.data), np.uint8).reshape(self.shape)
