"""``policylens sim agents RUN``: other agents inside the simulator against the same agents in the environment.

Each agent (the trained one, an untrained one, scripted ones, any run with the simulator's spaces:
:mod:`~policylens.sim.guests`) plays ``--episodes`` levels in the environment and the simulator imagines each of
those episodes from its first frames with the same agent acting (:mod:`~policylens.sim.compare_agents`). Writes
``OUT`` (default ``RUN/analysis/agents``)::

    agents.json     settings, and per agent the real and imagined outcomes by cause with Wilson intervals,
                    their agreement, the mean steps to the end, and every paired episode
    agents.md       the table of real against imagined outcomes per agent
    agents.png      the same as bars with their intervals
    video/NAME.gif  the first --videos paired episodes per agent: real (left) beside imagined (right)
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .command import SimCommand, command_main, load_parts, resolve, say, shown

DEFAULT_AGENTS = "trained,untrained,scripted:forward,scripted:left"


@dataclass
class AgentsConfig(SimCommand):
    agents: str = DEFAULT_AGENTS
    """agents to compare, comma-separated: trained (RUN), untrained (RUN's architecture, weights from --seed),
    scripted:ACTION (e.g. scripted:forward), scripted:random, untrained:RUN, or a run / zoo:NAME with the
    simulator's observation and action spaces"""
    episodes: int = 100
    """episodes per agent, in the environment and imagined from the same starts"""
    start_level: int = 1_000_000
    """episode k plays level START_LEVEL + k (as the zoo's evaluations: levels the agents did not train on)"""
    env: str = ""
    """env spec of the real episodes (default: the simulator's); it must have the simulator's spaces"""
    horizon: int = 0
    """steps per episode, counting the context frames, real (longer ones count as timeouts) and imagined (0: the
    env's own step limit)"""
    policy: str = "sample"
    """each agent's actions: sample (drawn from its policy, in the env and the simulator) or greedy"""
    view: str = "modal"
    """what the agents see of the simulator: modal (each cell's likeliest code) or sample (drawn cell by cell)"""
    videos: int = 4
    """paired episodes per agent drawn as a video (real beside imagined); 0: none"""
    video_steps: int = 48
    """frames per video at most"""
    fps: float = 4.0
    """video frames per second"""
    batch_size: int = 128
    """episodes per batch (environment and simulator)"""


def _check(cfg: AgentsConfig) -> list:
    names = [a.strip() for a in cfg.agents.split(",") if a.strip()]
    if not names:
        raise ValueError("--agents names no agent; e.g. trained,untrained,scripted:forward")
    if len(set(names)) != len(names):
        raise ValueError(f"--agents names an agent twice: {cfg.agents}")
    for name in ("episodes", "batch_size", "video_steps"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.videos < 0 or cfg.horizon < 0:
        raise ValueError(f"--videos and --horizon must be >= 0, got {cfg.videos} and {cfg.horizon}")
    if cfg.policy not in ("sample", "greedy"):
        raise ValueError(f"--policy {cfg.policy!r}; expected sample or greedy")
    if cfg.view not in ("modal", "sample"):
        raise ValueError(f"--view {cfg.view!r}; expected modal or sample")
    return names


def real_env(spec: str, sim_cfg) -> tuple:
    """``(spec, the env's step limit or None)``, refusing an env whose spaces are not the simulator's."""
    from ..envs import make

    env = make(spec, num_envs=1, seed=0)
    try:
        shape, n = tuple(env.observation_space.shape), int(env.action_space.n)
        limit = getattr(getattr(env, "envs", [None])[0], "max_steps", None)
    finally:
        env.close()
    if shape != tuple(sim_cfg.obs_shape) or n != sim_cfg.num_actions:
        raise ValueError(f"env {spec} shows {shape} and takes {n} actions; the simulator was built for "
                         f"{tuple(sim_cfg.obs_shape)} and {sim_cfg.num_actions}")
    return spec, limit


def run_agents(cfg: AgentsConfig) -> dict:
    """Play, imagine and compare what ``cfg`` asks; returns what ``OUT/agents.json`` holds."""
    import torch

    names = _check(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches run fastest on one thread, and the result never depends on it
    try:
        return _run(cfg, names)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: AgentsConfig, names: list) -> dict:
    import torch

    from .checkpoint import read_sim_config
    from .compare_agents import paired_table, play_imagined, play_real
    from .guests import load_guest
    from .loop import Noise

    paths = resolve(cfg, "agents")
    sim, trained, _, action_names = load_parts(cfg, paths)
    conf = read_sim_config(paths.sim)[1]
    spec, limit = real_env(cfg.env or conf.get("env", ""), sim.config)
    horizon = cfg.horizon or limit
    k = sim.config.context_frames
    if not horizon:
        raise ValueError(f"env {spec} names no step limit; pass --horizon")
    if horizon <= k:
        raise ValueError(f"--horizon {horizon} leaves no imagined step after the {k} context frames")
    if limit and horizon > limit:
        raise ValueError(f"--horizon {horizon} is past the env's step limit {limit}: real episodes stop there")
    mode = "modal" if cfg.policy == "greedy" else "sample"
    noise = Noise.draw(cfg.episodes, horizon, sim, torch.Generator().manual_seed(cfg.seed),
                       view=cfg.view == "sample")  # one row per episode number, the same for every agent
    state = trained.initial_state(1)[0]  # the trained agent's at an episode's first frame, as the encoder reads
    result = {"run": cfg.run, "simulator": shown(paths.sim), "env": spec, "episodes": cfg.episodes,
              "start_level": cfg.start_level, "horizon": horizon, "context_frames": k, "policy": cfg.policy,
              "view": cfg.view, "seed": cfg.seed, "agents": {}, "config": asdict(cfg)}
    out = paths.out
    for name in names:
        module, frozen, label = load_guest(name, cfg.run, sim, action_names, conf.get("agent", {}).get("sha256", ""),
                                           cfg.seed, cfg.device)
        say(cfg, f"{name}: {cfg.episodes} episodes in {spec}")
        real = play_real(module, spec, cfg.episodes, cfg.start_level, cfg.seed, cfg.policy, cfg.batch_size,
                         cfg.device)
        survivors = [r for r in real if r["length"] >= k]
        say(cfg, f"{name}: {len(survivors)} imagined from the same starts")
        imagined = play_imagined(sim, frozen, survivors, horizon, noise, state, action_names, mode, cfg.view,
                                 cfg.batch_size, cfg.videos, cfg.device) if survivors else []
        table = paired_table(real, imagined, k, horizon)
        result["agents"][name] = {"label": label, "guest": frozen.guest, **table,
                                  "per_episode": _per_episode(real, imagined)}
        if cfg.videos:
            from .agents_report import write_video_pairs

            video = write_video_pairs(real, imagined, sim.config.obs_kind, action_names, out / "video" / f"{label}.gif",
                                      cfg.videos, k - 1, cfg.video_steps, cfg.fps)
            result["agents"][name]["video"] = str(video.relative_to(out)) if video else None
    from .agents_report import markdown, plot

    out.mkdir(parents=True, exist_ok=True)
    (out / "agents.json").write_text(json.dumps(result, indent=1))
    plot(result, out / "agents.png")
    (out / "agents.md").write_text(markdown(result, "agents.png"))
    return {**result, "out": str(out)}


def _per_episode(real: list, imagined: list) -> list:
    """``[{"episode", "level", "real", "real_length", "imagined", "imagined_step"}]`` (imagined None: decided
    within the context)."""
    by_episode = {i["episode"]: i for i in imagined}
    return [{"episode": r["episode"], "level": r["level"], "real": r["cause"], "real_length": r["length"],
             "imagined": by_episode[r["episode"]]["cause"] if r["episode"] in by_episode else None,
             "imagined_step": by_episode[r["episode"]]["step"] if r["episode"] in by_episode else None}
            for r in real]


def main(argv=None) -> dict:
    result = command_main(AgentsConfig, run_agents, "Other agents inside the simulator against the same agents in "
                          "the environment, from the same starts: outcomes by cause, real against imagined, with "
                          "Wilson intervals; videos of imagined episodes beside real ones.", argv,
                          prog="policylens sim agents")
    from .agents_report import markdown

    print(markdown(result, str(Path(result["out"]) / "agents.png")))
    return result


if __name__ == "__main__":
    main()

