"""The simulator's architecture: one dataclass, stored in ``RUN/sim/config.json`` under ``"sim"``.

The first group of fields is chosen by the user (``policylens sim train --deter 128 ...``); the second is
set from the data (the store's observations, the agent's actions and hidden size) by :func:`for_data`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from ..envs.render import view_kind

OBS_KINDS = ("symbolic", "onehot", "pixels")
DERIVED = ("obs_shape", "obs_kind", "planes", "num_actions", "agent_hidden", "cells")  # the fields set from the data


@dataclass
class SimConfig:
    context_frames: int = 3
    """frames the encoder reads (with the agent's state at the first) to infer the global latent z"""
    latent: int = 64
    """size of the global latent z the whole rollout unrolls from"""
    deter: int = 128
    """size of the deterministic GRU state h of the recurrent state-space model"""
    stoch: int = 32
    """size of the Gaussian stochastic state s"""
    hidden: int = 256
    """width of the MLPs (encoder, converters, prior, posterior, reward and done heads)"""
    embed: int = 256
    """size of one observation's embedding (context encoder and posterior)"""
    channels: int = 32
    """channels of the first conv layer of the observation encoder and the last of the decoder"""
    min_std: float = 0.1
    """lower bound of the stochastic state's standard deviation"""
    straight_through_obs: bool = True
    """categorical observations reach the agent as the argmax code (forward) with the expected code's gradient"""
    obs_shape: tuple = ()
    """(set from the data) observation shape (H, W, C) as the env gives it"""
    obs_kind: str = ""
    """(set from the data) symbolic (MiniGrid integer codes) | onehot (MiniGrid 0/1 planes) | pixels (RGB)"""
    planes: tuple = ()
    """(set from the data) categories per channel of a symbolic / onehot observation"""
    num_actions: int = 0
    """(set from the data) the agent's number of actions"""
    agent_hidden: int = 0
    """(set from the data) size of the agent's recurrent state hx"""
    cells: tuple = ()
    """(set from the data) the (object, colour, state) codes found in a symbolic store's cells: the view decodes to
    the likeliest of them, not plane by plane (which can make a red ball no env ever shows)"""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["obs_shape"], d["planes"] = list(self.obs_shape), list(self.planes)
        d["cells"] = [list(c) for c in self.cells]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SimConfig":
        known = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        return replace(cfg, obs_shape=tuple(cfg.obs_shape), planes=tuple(cfg.planes),
                       cells=tuple(tuple(int(v) for v in c) for c in cfg.cells))

    def check(self) -> None:
        """Clear errors for sizes that cannot build a simulator."""
        for name in ("context_frames", "latent", "deter", "stoch", "hidden", "embed", "channels", "num_actions",
                     "agent_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"simulator config: {name} must be >= 1, got {getattr(self, name)}")
        if self.obs_kind not in OBS_KINDS:
            raise ValueError(f"simulator config: obs_kind {self.obs_kind!r}; expected one of {OBS_KINDS}")
        if len(self.obs_shape) != 3:
            raise ValueError(f"simulator config: obs_shape must be (H, W, C), got {self.obs_shape}")
        if self.obs_kind != "pixels" and not self.planes:
            raise ValueError(f"simulator config: a {self.obs_kind} observation needs its planes' sizes")


def obs_kind(env: str, obs_shape: tuple) -> tuple:
    """``(kind, planes)`` of an env's observations: MiniGrid's ``obs`` option names it (symbolic is MiniGrid's
    default); without an env spec, a (h, w, 3) view of at most 15x15 cells is taken as symbolic, 20 channels
    as onehot, anything else as pixels."""
    from ..envs.minigrid import ONEHOT_SIZES as MINIGRID_PLANES  # categories of the object, colour, state planes

    obs_shape = tuple(obs_shape)
    if env:
        mode = view_kind(env)
    elif obs_shape[-1] == 3 and max(obs_shape[:2]) <= 15:
        mode = "symbolic"
    else:
        mode = "onehot" if obs_shape[-1] == sum(MINIGRID_PLANES) else "pixels"
    if mode == "rgb":
        mode = "pixels"
    if mode == "symbolic":
        if obs_shape[-1] != len(MINIGRID_PLANES):
            raise ValueError(f"symbolic observations must have {len(MINIGRID_PLANES)} channels, got shape {obs_shape}")
        return "symbolic", MINIGRID_PLANES
    if mode == "onehot":
        if obs_shape[-1] != sum(MINIGRID_PLANES):
            raise ValueError(f"onehot observations must have {sum(MINIGRID_PLANES)} channels, got shape {obs_shape}")
        return "onehot", MINIGRID_PLANES
    if mode != "pixels":
        raise ValueError(f"env {env!r}: observation mode {mode!r} has no simulator decoder; expected one of "
                         "symbolic, onehot, rgb")
    return "pixels", ()


def cell_codes(obs) -> tuple:
    """The distinct (object, colour, state) codes in symbolic observations ``(..., H, W, 3)``, sorted."""
    import numpy as np

    return tuple(tuple(int(v) for v in c) for c in np.unique(np.asarray(obs).reshape(-1, 3), axis=0))


def for_data(cfg: SimConfig, env: str, obs_shape: tuple, num_actions: int, agent_hidden: int,
             obs=None) -> SimConfig:
    """``cfg`` with the fields set from the data filled in (and checked); ``obs``: the store's observations, whose
    cell codes a symbolic simulator decodes to."""
    kind, planes = obs_kind(env, obs_shape)
    cells = cell_codes(obs) if kind == "symbolic" and obs is not None else ()
    out = replace(cfg, obs_shape=tuple(obs_shape), obs_kind=kind, planes=tuple(planes), num_actions=int(num_actions),
                  agent_hidden=int(agent_hidden), cells=cells)
    out.check()
    return out
