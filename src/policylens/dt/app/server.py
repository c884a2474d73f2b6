"""``policylens dt app RUN``: serve the decision-transformer app on 127.0.0.1.

The page (``static/``, no network needed) reads the JSON API; every answer to a move carries the whole new
step: the game, the model's policy (ablated and unablated), attention patterns, per-component logit
contributions and the state map.

    GET  /api/describe                                          -> the model, the env, actions, components
    GET  /api/view                                              -> VIEW (the current step)
    POST /api/act        {"action": name | index | null}        -> VIEW after the move (null: the model's choice)
    POST /api/reset      {"level": int in [0, 2**31) | null}    -> VIEW at the level's start
    POST /api/configure  {"rtg": number in [-RTG_LIMIT, RTG_LIMIT], "ablation": [component, ...],
                          "mode": "zero"|"mean", "preference": [a, b] | []}  (each optional) -> VIEW

Only 127.0.0.1 is bound, and every request passes :class:`policylens.webapp.LocalOnly` (own host and origin
only, JSON bodies of at most 64 KB). Bad input answers 400 with ``{"error": message}`` naming the field, and
changes nothing.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ... import webapp
from ...config import add_dataclass_args, clear_errors, from_args

STATIC = Path(__file__).parent / "static"


@dataclass
class AppConfig:
    run: str = ""
    """run directory, checkpoint folder or zoo:NAME of a decision transformer"""
    port: int = 8765
    """port on 127.0.0.1 (0: any free port)"""
    level: int = 1_000_000
    """first level to play (a MiniGrid reset seed; later episodes take the next ones)"""
    rtg: float = 0.9
    """target return-to-go at the start (changeable on the page)"""
    policy: str = "greedy"
    """how the model acts when asked: greedy (its most likely action) or sample"""
    env: str = ""
    """env spec to play (default: the one the model was trained on)"""
    seed: int = 0
    """seed of the model's sampling (policy sample)"""
    threads: int = 1
    """torch threads (1 answers fastest for this small a model)"""
    device: str = "cpu"
    """torch device for the model"""


def create_app(session):
    """The Starlette app for one :class:`~policylens.dt.app.AppSession` (behind
    :class:`~policylens.webapp.LocalOnly`), each field of each request checked before the session sees it."""
    from starlette.responses import FileResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from ...webapp import any_of, choice, endpoint, integer, names, number
    from .session import MAX_LEVEL, MODES, RTG_LIMIT

    async def index(request):
        return FileResponse(STATIC / "index.html")

    actions = session.names
    act = {"action": any_of(choice(actions), integer(0, len(actions) - 1), null=True)}
    settings = {"rtg": number(-RTG_LIMIT, RTG_LIMIT, null=True),
                "ablation": names(session.analysis["ablation"]["available"], null=True),
                "mode": choice(MODES, null=True), "preference": names(actions, lengths=(0, 2), null=True)}
    routes = [Route("/", index), Route("/index.html", index),
              Route("/api/describe", endpoint(session.describe)), Route("/api/view", endpoint(session.view)),
              Route("/api/act", endpoint(session.act, act), methods=["POST"]),
              Route("/api/reset", endpoint(session.reset, {"level": integer(0, MAX_LEVEL, null=True)}),
                    methods=["POST"]),
              Route("/api/configure", endpoint(session.configure, settings), methods=["POST"]),
              Mount("/static", StaticFiles(directory=str(STATIC)))]
    return webapp.local_app(routes)


def load_session(cfg: AppConfig):
    """The model of ``cfg.run`` (with its mean activations when ``dt analyze`` saved them) in a session."""
    from ..analysis.analyze import load_means
    from ..checkpoint import load_dt
    from .session import AppSession

    model = load_dt(cfg.run, device=cfg.device)
    try:
        means = load_means(cfg.run)
    except FileNotFoundError:
        means = None
    return AppSession(model, cfg.env or None, level=cfg.level, target_rtg=cfg.rtg, policy=cfg.policy, seed=cfg.seed,
                      means=means)


def make_server(cfg: AppConfig):
    """``(server, url)``: a uvicorn server on 127.0.0.1 for the app of ``cfg``."""
    import torch

    torch.set_num_threads(max(1, cfg.threads))
    return webapp.make_server(create_app(load_session(cfg)), cfg.port)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="policylens dt app",
        description="Play MiniGrid from the keyboard or let the decision transformer act, and watch each step's "
                    "policy, attention, per-component logit contributions and ablations. Keys: arrows move "
                    "(left/right turn, up forward), space lets the model act, p plays/pauses, r restarts the "
                    "level, n goes to the next one.")
    parser.add_argument("run", help="run directory, checkpoint folder or zoo:NAME of a decision transformer")
    add_dataclass_args(parser, AppConfig, skip=("run",))
    from ..cli import join_negative_values

    with clear_errors(parser):
        cfg = from_args(AppConfig, parser.parse_args(join_negative_values(argv, ("--rtg",))))
        server, url = make_server(cfg)
    print(f"decision-transformer app on {url}  (Ctrl-C to stop)")
    server.run()
