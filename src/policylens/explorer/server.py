"""``policylens explore RUN --serve``: the written explorer served on 127.0.0.1 with a live panel.

The page is the static one (``index.html`` with ``data-mode="live"``); its live panel plays one env: the user
presses actions (keys or buttons) or lets the agent act, and the server computes each new frame's value,
policy and attribution maps exactly as the export does (the same NMF directions, saved by the export in
``OUT/directions/``), so live frames and recorded ones read alike. Only 127.0.0.1 is bound, and every request
passes :class:`policylens.webapp.LocalOnly` (own host and origin only, JSON bodies of at most 64 KB).

    POST /api/live/reset  {"seed": int in [0, 2**31) or null}   -> {"frame": FRAME}
    POST /api/live/step   {"action": int in [0, A) or null}     -> {"taken": {t, action, reward, done, cause}, "frame": FRAME}

Bad input answers 400 with ``{"error": message}`` naming the field, and changes nothing.

``FRAME``: ``{"t", "episode", "image" (PNG data URL), "value", "probs", "preferred", "maps": [per layer
{output: {"scale", "data", "totals"}}], "tree"}``; ``"action"`` maps are for the agent's most probable action;
``"tree"`` is the value's saliency tree with the export's ``tree_k`` children per node (null when the export drew
no trees).
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from .. import webapp
from .encode import deflate_b64, png_data_url, read_js, rounded
from .export import attention_layer_maps, nmf_maps
from .maps import quantise
from .views import display_frames

MAX_SEED = 2**31 - 1  # reset seeds: what every env's generator takes


class LiveSession:
    """One env (1 copy) and the agent; thread-safe. ``views``: per manifest layer ``(kind, layer, directions,
    pool)`` (maps summed over ``pool`` x ``pool`` blocks of positions, as the export stored them); ``tree_k``:
    children per node of each frame's value saliency tree (0: none), ``tree_select`` how they are chosen
    (topk | peaks)."""

    def __init__(self, agent, env_spec: str, views, *, ig_steps: int = 10, tree_k: int = 0, tree_select: str = "topk",
                 seed: int = 0):
        from ..envs import make

        self.agent, self.views, self.ig_steps, self.tree_k, self.seed = agent, list(views), ig_steps, tree_k, seed
        self.tree_select = tree_select
        self.env_spec = str(env_spec)
        self.env = make(env_spec, num_envs=1, seed=seed)
        self.num_actions = int(self.env.action_space.n)
        self.generator = torch.Generator().manual_seed(seed)
        self.lock = threading.Lock()
        self.episode = -1
        self.reset()

    def _initial_state(self):
        init = getattr(self.agent, "initial_state", None)
        state = init(1) if callable(init) else None
        return None if state is None else state.detach()

    def reset(self, seed: "int | None" = None) -> dict:
        """A new episode: the env reset with ``seed`` (None: the session's seed plus the episode number)."""
        if seed is not None and not (webapp.is_int(seed) and 0 <= seed <= MAX_SEED):
            raise ValueError(f"seed {seed!r}: expected an integer in [0, {MAX_SEED}] or None")
        with self.lock:
            episode = self.episode + 1
            seed = (self.seed + episode) % (MAX_SEED + 1) if seed is None else int(seed)
            self.obs = self.env.reset(seed)  # (1, H, W, C)
            self.episode, self.state, self.t = episode, self._initial_state(), 0
            return {"frame": self._frame()}

    def step(self, action=None) -> dict:
        """Take ``action`` (None: the agent samples one from its policy) and analyse the new frame."""
        from ..agents.policy import select_actions

        with self.lock:
            if action is None:
                action = int(select_actions(self.out.logits, "sample", generator=self.generator)[0])
            valid = isinstance(action, (int, np.integer)) and not isinstance(action, bool)
            if not valid or not 0 <= action < self.num_actions:
                raise ValueError(f"action must be an integer in [0, {self.num_actions}), got {action!r}")
            obs, reward, done, info = self.env.step(np.array([action]))
            cause = (info[0].get("episode") or {}).get("cause") if done[0] else None
            taken = {"t": self.t, "action": int(action), "reward": float(reward[0]), "done": bool(done[0]),
                     "cause": cause}
            self.state = self._initial_state() if done[0] else self.out.state
            self.obs, self.t = obs, self.t + 1
            return {"taken": taken, "frame": self._frame()}

    @torch.no_grad()
    def _outputs(self):
        return self.agent(torch.as_tensor(self.obs), self.state)

    def _frame(self) -> dict:
        self.out = self._outputs()
        logits = self.out.logits.float()  # (1, A)
        preferred = int(logits.argmax(-1)[0])
        maps = []
        for kind, layer, directions, pool in self.views:
            if kind == "attention":
                per_output = attention_layer_maps(self.agent, self.obs, self.state, layer, pool)
            else:
                per_output, _ = nmf_maps(self.agent, self.obs, self.state, [preferred], directions, self.ig_steps,
                                         pool=pool)
            encoded = {}
            for name, m in per_output.items():  # m (1, S, F, h, w)
                q, scale = quantise(m[0])
                encoded[name] = {"scale": scale, "data": deflate_b64(q), "totals": rounded(m[0].sum((-2, -1)), 4)}
            maps.append(encoded)
        return {"t": self.t, "episode": self.episode, "image": png_data_url(display_frames(self.obs, self.env_spec)[0][0]),
                "value": float(self.out.value[0]), "probs": rounded(torch.softmax(logits, -1)[0].numpy(), 4),
                "preferred": preferred, "maps": maps, "tree": self._tree()}

    def _tree(self) -> "dict | None":
        """The value's saliency tree of the current frame, rounded as the export writes it."""
        from ..attribution import saliency_tree
        from .bundle import rounded_tree

        if not self.tree_k:
            return None
        return rounded_tree(saliency_tree(self.agent, self.obs, target="value", k=self.tree_k, select=self.tree_select,
                                         state=self.state))


def load_session(run, folder, *, device: str = "cpu", seed: int = 0) -> LiveSession:
    """A live session for the explorer written in ``folder`` (its manifest names the env and the layers)."""
    from ..agents import load
    from ..factors import Directions

    folder = Path(folder)
    manifest_file = folder / "data" / "manifest.js"
    if not manifest_file.is_file():
        raise FileNotFoundError(f"no explorer in {folder} (missing {manifest_file}); "
                                "run `policylens explore RUN` first")
    _, manifest = read_js(manifest_file)
    agent = load(run, device=device).eval()
    views, ig_steps, tree_k = [], 10, int(manifest.get("meta", {}).get("tree_k", 0))
    for j, layer in enumerate(manifest["layers"]):
        directions = Directions.load(folder / "directions" / f"l{j}") if layer["kind"] == "nmf" else None
        ig_steps = int(layer["meta"].get("ig_steps", ig_steps))
        views.append((layer["kind"], layer["name"], directions, int(layer["meta"].get("pool", 1))))
    if not manifest.get("env"):
        raise ValueError(f"{manifest_file} names no env to play")
    return LiveSession(agent, manifest["env"], views, ig_steps=ig_steps, tree_k=tree_k,
                       tree_select=str(manifest.get("meta", {}).get("tree_select", "topk")), seed=seed)


def create_app(folder, session: LiveSession):
    """The Starlette app (behind :class:`~policylens.webapp.LocalOnly`): the explorer folder's files, ``/`` in
    live mode, and the live API."""
    from starlette.responses import HTMLResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from ..webapp import endpoint, integer

    folder = Path(folder)
    page = (folder / "index.html").read_text(encoding="utf-8").replace('data-mode="static"', 'data-mode="live"', 1)

    async def index(request):
        return HTMLResponse(page)

    reset = endpoint(session.reset, {"seed": integer(0, MAX_SEED, null=True)})
    step = endpoint(session.step, {"action": integer(0, session.num_actions - 1, null=True)})
    routes = [Route("/", index), Route("/index.html", index),
              Route("/api/live/reset", reset, methods=["POST"]), Route("/api/live/step", step, methods=["POST"]),
              Mount("/", StaticFiles(directory=str(folder)))]
    return webapp.local_app(routes)


def make_server(run, folder, *, port: int = 8000, device: str = "cpu", seed: int = 0):
    """A uvicorn server for the explorer in ``folder`` on 127.0.0.1 (``port`` 0: a free one); ``(server, url)``."""
    return webapp.make_server(create_app(folder, load_session(run, folder, device=device, seed=seed)), port)


def serve(run, folder, *, port: int = 8000, device: str = "cpu", seed: int = 0) -> None:
    """Serve until interrupted (Ctrl-C)."""
    server, url = make_server(run, folder, port=port, device=device, seed=seed)
    print(f"live explorer on {url}  (Ctrl-C to stop)")
    server.run()


def serve_in_thread(run, folder, **kwargs):
    """Start the server in a daemon thread; returns ``(server, url)``; stop with ``server.should_exit = True``."""
    return webapp.start_in_thread(*make_server(run, folder, **kwargs))
