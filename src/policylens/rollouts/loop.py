"""The recording loop of ``policylens record`` and ``policylens dt collect``: an agent steps ``num_envs`` envs
together and every episode is appended to the store whole, once it ends.

:func:`record_vector` records the first N *started* episodes (an env starts a counted episode only while fewer
than N have been started, so the sample is not biased towards short episodes). Finished episodes are committed
every ``flush_seconds`` (and at the end); a kill loses at most the ones finished since the last commit.
``max_steps`` cuts a runaway episode: it is stored with cause ``max_steps`` and ``done`` on its last stored
frame, and its env joins again once its real episode ends. Envs and action sampling are seeded with
``seed + K`` for a store already holding K episodes (so a resumed recording is a function of the command and K).

Every recording stores per frame obs, action, logits, value, reward, done, level_seed and, for recurrent agents,
agent_state (the state the agent *received*: h0 on an episode's first frame). :class:`Extras` says what a
recording adds: entities, the game's picture, env states, other views of the env, a label per counted episode
(``dt collect``: the sampling strategy it plays) and fields computed from the whole episode (``dt collect``:
returns-to-go). ``choose`` turns the logits into actions, given each env's label (-1: its episode is not
counted).
"""
from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..envs import CAUSES, make
from ..runs import run_label

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


def check_same_settings(writer, recording: dict, what: str = "rollouts store") -> None:
    """An existing store is only appended to with the settings it was made with (else resume would mix them)."""
    stored = writer.group.attrs.get("recording", {})
    if stored != recording:
        diff = sorted(k for k in set(stored) | set(recording) if stored.get(k) != recording.get(k))
        raise ValueError(f"{what} {writer.path} was recorded with other settings ({', '.join(diff)}: "
                         f"{ {k: stored.get(k) for k in diff} } vs now { {k: recording.get(k) for k in diff} }); "
                         "use another --out or the same settings")


# ------------------------------------------------------------------------------------------------------ setup
@dataclass
class EnvInfo:
    """What a throwaway 1-env instance tells about the frames to record."""

    obs_shape: tuple
    obs_dtype: str  # uint8 frames, float32 vectors (gym:)
    num_actions: int
    action_names: list
    entities: bool  # the env gives ground-truth entities (and they were asked for)
    screen: Optional[tuple]  # (h, w, 3) of the game's own picture, where the env draws one (and it was asked for)
    hidden: int  # size of a recurrent agent's state; 0 for a feed-forward agent

    @property
    def recurrent(self) -> bool:
        return self.hidden > 0


def describe(probe, agent, run: str, env_spec: str, entities: bool = True, render: bool = False) -> EnvInfo:
    """The :class:`EnvInfo` of ``probe`` (an env made from ``env_spec``, one env); refuses an agent that does not
    fit the env."""
    obs_shape, num_actions = tuple(probe.observation_space.shape), int(probe.action_space.n)
    agent_obs, agent_actions = tuple(getattr(agent, "obs_shape", obs_shape)), getattr(agent, "num_actions", num_actions)
    if agent_obs != obs_shape or agent_actions != num_actions:
        raise ValueError(f"agent {run} takes obs {agent_obs} and {agent_actions} actions, "
                         f"but env {env_spec} gives obs {obs_shape} and {num_actions} actions")
    screen = probe.render() if render else None  # (1, h, w, 3) or None
    init = getattr(agent, "initial_state", None)
    h0 = init(1) if callable(init) else None  # (1, hidden) or None
    return EnvInfo(obs_shape, str(probe.observation_space.dtype), num_actions, list(probe.action_names),
                   bool(entities and probe.entities() is not None),
                   None if screen is None else tuple(screen.shape[1:]), 0 if h0 is None else int(h0.shape[-1]))


def frame_fields(info: EnvInfo, extra: "dict | None" = None, save_state: bool = False) -> dict:
    """The store's per-frame fields ``{name: (shape, dtype)}``: the ones every recording has, then ``extra``,
    then agent_state, entities, render and env_state where the agent, env and settings give them."""
    fields = {"obs": (info.obs_shape, info.obs_dtype), "action": ((), "int32"),
              "logits": ((info.num_actions,), "float32"), "value": ((), "float32"), "reward": ((), "float32"),
              "done": ((), "bool"), "level_seed": ((), "int64"), **(extra or {})}
    if info.recurrent:
        fields["agent_state"] = ((info.hidden,), "float32")
    if info.entities:
        fields["entities"] = ((), str)
    if info.screen is not None:
        fields["render"] = (info.screen, "uint8")
    if save_state:
        fields["env_state"] = ((), "bytes")
    return fields


def store_attrs(env_spec: str, run: str, conf: dict, info: EnvInfo, recording: dict, **more) -> dict:
    """The store's attributes: env, run, agent config, action names, obs shape, causes, ``more``, recording."""
    return {"env": str(env_spec), "run": run_label(run), "agent": conf["agent"], "action_names": info.action_names,
            "obs_shape": list(info.obs_shape), "recurrent": info.recurrent, "causes": [*CAUSES, "max_steps"],
            **more, "recording": recording}


# ------------------------------------------------------------------------------------------------------- loop
@dataclass
class Extras:
    """What a recording stores beyond obs, action, logits, value, reward, done, level_seed and agent_state."""

    entities: bool = False
    """field entities: ``env.entities()`` of every frame, as JSON"""
    render: bool = False
    """field render: ``env.render()`` of every frame (the game's own picture)"""
    save_state: bool = False
    """field env_state: ``env.get_state()`` bytes of every frame"""
    views: dict = field(default_factory=dict)
    """``{field: view(env) -> (num_envs, ...)}``: more of every frame, read before acting (e.g. another obs mode)"""
    labels: Optional[Sequence[int]] = None
    """label of each counted episode, in the order they start (default: all 0); ``choose`` sees it per env"""
    label_field: str = ""
    """store each frame's label in this field ('' none)"""
    label_dtype: str = "int16"
    """dtype of the label field"""
    finish: Optional[Callable[[dict], None]] = None
    """called with each finished episode (``{field: (T, ...)}``) before it is stored: adds derived fields"""


def record_vector(writer, agent, cfg, env_spec: str, choose: Callable, extras: Extras, what: str = "record") -> None:
    """Play until ``writer``'s store holds ``cfg.episodes`` episodes, appending each as it ends.

    ``cfg``: episodes, num_envs, seed, max_steps, flush_seconds, device, progress. ``choose(logits (n, A) float
    tensor, labels (n,) int array, generator) -> (n,)`` actions; ``labels[i]`` is the label of env i's counted
    episode, -1 where the episode it plays is not counted.
    """
    import torch
    from tqdm.auto import tqdm

    from ..agents.policy import AgentStepper

    k = writer.num_episodes
    target = cfg.episodes - k  # episodes still to record
    if target <= 0:
        return
    todo = list(extras.labels) if extras.labels is not None else [0] * target
    if len(todo) != target:
        raise ValueError(f"{len(todo)} episode labels for the {target} episodes still to record")
    label_type = np.dtype(extras.label_dtype).type
    n, seed = cfg.num_envs, cfg.seed + k
    env = make(env_spec, num_envs=n, seed=seed)
    obs = env.reset(seed)  # (n, H, W, C)
    stepper = AgentStepper(agent, n, seed=seed, device=cfg.device)
    h0 = stepper.state.detach() if stepper.state is not None else None  # (n, hidden)
    labels = np.full(n, -1, np.int64)  # label of the counted episode env i plays; -1: not counted
    for i in range(min(n, target)):
        labels[i] = todo.pop(0)
    buffers = [EpisodeBuffer() for _ in range(n)]
    pending, pending_frames, finished, frames = [], 0, 0, 0
    last_flush = t0 = time.monotonic()
    bar = tqdm(total=cfg.episodes, initial=k, unit="ep", desc=f"{what} {Path(writer.path).name}",
               disable=not cfg.progress)
    step_guard, steps = (target + n) * cfg.max_steps, 0
    try:
        while finished < target:
            steps += 1
            if steps > step_guard:
                raise RuntimeError(f"recording stopped after {step_guard} steps with {finished}/{target} episodes; "
                                   "envs never ended their episodes (lower --max-steps?)")
            ents = env.entities() if extras.entities else None
            screens = env.render() if extras.render else None  # (n, h, w, 3)
            states = env.get_state() if extras.save_state else None
            views = {name: view(env) for name, view in extras.views.items()}  # {field: (n, ...)}
            state_in = None  # what a recurrent agent receives: its last state, or h0 where an episode begins
            if h0 is not None and stepper.state is not None:
                first = stepper.first.to(h0.device)[:, None]  # (n, 1)
                state_in = torch.where(first, h0, stepper.state).detach().cpu().numpy()  # (n, hidden)
            out = stepper.forward(obs)
            logits, value = out.logits.float().cpu(), out.value.float().cpu().numpy()  # (n, A), (n,)
            actions = np.asarray(choose(logits, labels.copy(), stepper.generator))  # (n,)
            next_obs, reward, done, info = env.step(actions)
            stepper.observe_done(done)
            logits = logits.numpy()
            frames += int((labels >= 0).sum())
            for i in np.flatnonzero(labels >= 0):
                step = {"obs": obs[i], "action": np.int32(actions[i]), "logits": logits[i], "value": value[i],
                        "reward": np.float32(reward[i]), "done": bool(done[i])}
                if state_in is not None:
                    step["agent_state"] = state_in[i]
                if extras.label_field:
                    step[extras.label_field] = label_type(labels[i])
                for name, view in views.items():
                    step[name] = view[i]
                if ents is not None:
                    step["entities"] = json.dumps(ents[i], separators=(",", ":"))
                if screens is not None:
                    step["render"] = Packed(screens[i])
                if states is not None:
                    step["env_state"] = states[i]
                buffers[i].steps.append(step)
                episode = buffers[i].close_if_ended(done[i], info[i], cfg.max_steps)
                if episode is None:
                    continue
                if extras.finish is not None:
                    extras.finish(episode)
                pending.append(episode)
                finished += 1
                pending_frames += len(episode["done"])
                labels[i] = -1  # a cut env waits for its real episode to end before starting a counted one
                bar.update(1)
            for i in np.flatnonzero(done & (labels < 0)):
                if todo and not buffers[i].steps:
                    labels[i] = todo.pop(0)
            now = time.monotonic()
            if pending and (finished >= target or pending_frames >= MAX_PENDING or now - last_flush >= cfg.flush_seconds):
                frames_done = writer.num_frames + pending_frames
                writer.append(pending)
                pending, pending_frames, last_flush = [], 0, now
                bar.set_postfix(frames=frames_done, fps=f"{frames / max(now - t0, 1e-9):.0f}")
            obs = next_obs
    except KeyboardInterrupt:  # keep what finished; re-running the command with --resume continues from there
        writer.append(pending)
        raise
    finally:
        bar.close()
        env.close()
