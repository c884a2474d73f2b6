"""The decision-transformer app's session and API (the page itself: tests/test_dt_app_browser.py).

The session must show what the model does: its answer equals the model run directly on the same window, with
and without the ablation hooks; the game it shows equals the env replayed with the same level and actions;
bad settings are refused with the names and change nothing."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from policylens.envs import CAUSES, make, parse_spec

ENV = "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?obs=symbolic"
LEFT, RIGHT, FORWARD = 0, 1, 2


def tiny_model(context: int = 3, seed: int = 0):
    from policylens.dt.model import DecisionTransformer, DTConfig

    model = DecisionTransformer(DTConfig(d_model=32, d_mlp=32, context=context), seed=seed).eval()
    with torch.no_grad():  # larger weights than a fresh init, so every component moves the logits visibly
        for p in model.parameters():
            p.mul_(3)
    model.action_names, model.env, model.rtg_range = ["left", "right", "forward"], ENV, (-1.0, 1.0)
    return model


@pytest.fixture()
def session():
    from policylens.dt.app import AppSession

    return AppSession(tiny_model(), level=7, target_rtg=0.5)


def replay(level: int, actions: list):
    """An independent env playing ``actions`` on ``level``: its grid, agent and views."""
    env = make(parse_spec(ENV).replace(start_level=level, num_levels=1), 1, seed=0)
    views = [env.observe()[0]]
    for a in actions:
        obs, _, done, _ = env.step(np.array([a]))
        assert not done[0]
        views.append(obs[0])
    e = env.envs[0]
    return e.grid.encode(), (int(e.agent_pos[0]), int(e.agent_pos[1]), int(e.agent_dir)), views


def test_game_equals_the_env_replayed(session):
    actions = [LEFT, RIGHT, RIGHT]
    for a in actions:
        view = session.act(a)
    grid, agent, views = replay(7, actions)
    assert view["t"] == 3 and view["level"] == 7
    assert np.array_equal(np.array(view["grid"]), grid)
    assert (view["agent"]["x"], view["agent"]["y"], view["agent"]["dir"]) == agent
    assert np.array_equal(np.array(view["view"]), views[-1])
    assert view["last"] == {"t": 2, "action": "right", "by": "you", "reward": 0.0, "done": False}


def test_analysis_is_the_model_on_the_same_window(session):
    from policylens.dt.analysis import ablate

    model = session.model
    for a in (LEFT, RIGHT):
        session.act(a)
    _, _, views = replay(7, [LEFT, RIGHT])
    args = (torch.as_tensor(np.stack(views)[None]), torch.tensor([[LEFT, RIGHT, 0]]), torch.full((1, 3), 0.5),
            torch.arange(3)[None])
    with torch.no_grad():
        plain = model(*args)[0, -1]
        with ablate(model, ["blocks.0.attn.head1"]):
            ablated = model(*args)[0, -1]
    view = session.view()
    assert view["analysis"]["unablated"] is None
    assert np.allclose(view["analysis"]["policy"]["logits"], plain.numpy(), atol=1e-3)
    view = session.configure(ablation=["blocks.0.attn.head1"])
    analysis = view["analysis"]
    assert np.allclose(analysis["policy"]["logits"], ablated.numpy(), atol=1e-3)
    assert np.allclose(analysis["unablated"]["logits"], plain.numpy(), atol=1e-3)
    assert not np.allclose(ablated.numpy(), plain.numpy(), atol=1e-2)
    c = analysis["contributions"]
    values = np.array(c["values"])  # (C, A)
    assert np.allclose(values.sum(0), analysis["policy"]["logits"], atol=1e-3)  # contributions sum to the logits
    assert np.allclose(values[c["components"].index("blocks.0.attn.head1")], 0)  # the zeroed head writes nothing
    a, b = (analysis["policy"]["logits"].index(x) for x in sorted(analysis["policy"]["logits"], reverse=True)[:2])
    assert c["preference"] == [model.action_names[a], model.action_names[b]]
    assert np.isclose(sum(c["on_preference"]), analysis["policy"]["logits"][a] - analysis["policy"]["logits"][b],
                      atol=1e-3)
    cells = np.array(analysis["state_map"]["cells"])
    state_row = c["on_preference"][c["components"].index("embed.state")]
    assert cells.shape == (7, 7) and np.isclose(cells.sum() + analysis["state_map"]["bias"], state_row, atol=1e-3)
    patterns = analysis["attention"]
    assert len(patterns) == 2 and np.allclose(np.array(patterns[0]["pattern"]).sum(-1), 1, atol=2e-3)
    assert len(model.hook_dict["blocks.0.attn.hook_z"].fwd_hooks) == 0  # hooks gone after each step


def test_model_acts_greedily_under_its_ablation(session):
    session.configure(ablation=["blocks.0.mlp"], rtg=-1)
    before = session.view()["analysis"]["policy"]["preferred"]
    view = session.act(None)
    assert view["last"]["by"] == "model" and view["last"]["action"] == session.names[before]


def test_rtg_fed_is_target_minus_rewards_and_follows_the_target(session):
    session.act(LEFT)
    view = session.configure(rtg=0.8)
    assert view["target_rtg"] == 0.8 and view["rtg"] == pytest.approx(0.8)
    view = session.act(RIGHT)
    assert view["rtg"] == pytest.approx(0.8 - view["received"])


def test_episode_end_records_the_cause_and_starts_the_next_level(session):
    for _ in range(300):  # forward until something ends the episode (a wall at the latest)
        view = session.act(FORWARD)
        if view["last"]["done"]:
            break
    outcome = view["last"]["outcome"]
    assert view["last"]["done"] and outcome["cause"] in CAUSES and outcome["level"] == 7
    assert view["level"] == 8 and view["t"] == 0 and view["outcomes"][0] == outcome
    grid, agent, _ = replay(8, [])
    assert np.array_equal(np.array(view["grid"]), grid)
    assert session.reset(3)["level"] == 3


@pytest.mark.parametrize("settings, message", [
    ({"ablation": ["blocks.0.attn.head9"]}, "unknown component"),
    ({"mode": "half"}, "ablation mode"),
    ({"mode": "mean"}, "needs the means"),
    ({"preference": ["left", "jump"]}, "preference"),
    ({"rtg": "high"}, "expected a number"),
])
def test_bad_settings_are_refused_and_change_nothing(session, settings, message):
    session.configure(ablation=["blocks.0.mlp"], rtg=0.3)
    before = json.dumps(session.view()["analysis"]["policy"])
    with pytest.raises((KeyError, ValueError), match=message):
        session.configure(**{"rtg": 0.1, **settings})
    assert (session.target_rtg, session.ablation, session.mode) == (0.3, ["blocks.0.mlp"], "zero")
    assert json.dumps(session.view()["analysis"]["policy"]) == before


def test_http_api_answers_and_refuses(session):
    from starlette.testclient import TestClient

    from policylens.dt.app.server import create_app

    client = TestClient(create_app(session), base_url="http://127.0.0.1:8765")
    assert "Decision transformer" in client.get("/").text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/api/describe").json()["components"] == ["blocks.0.attn.head0", "blocks.0.attn.head1",
                                                                "blocks.0.mlp"]
    view = client.post("/api/act", json={"action": LEFT}).json()
    assert view["t"] == 1 and view["last"]["action"] == "left"
    for path, body, message in [("/api/act", {"action": "jump"}, 'action "jump": expected one of'),
                                ("/api/configure", {"ablation": ["nope"]}, 'ablation ["nope"]: expected a list'),
                                ("/api/configure", {"speed": 2}, "unknown field(s) 'speed'"),
                                ("/api/reset", {"level": -1}, "level -1: expected an integer in [0, ")]:
        r = client.post(path, json=body)
        assert r.status_code == 400 and message in r.json()["error"]
    assert client.get("/api/view").json()["t"] == 1  # the refused requests changed nothing


def test_server_binds_localhost_only():
    from policylens.webapp import make_server

    server, url = make_server(object(), port=0)
    assert server.config.host == "127.0.0.1" and url.startswith("http://127.0.0.1:")


def test_zoo_decision_transformer_loads_with_load_dt_and_not_as_a_ppo_agent():
    from policylens.agents import load
    from policylens.dt import load_dt

    with pytest.raises(ValueError, match="load_dt"):
        load("zoo:dt-minigrid-do8")
    model = load_dt("zoo:dt-minigrid-do8")
    assert model.action_names == ["left", "right", "forward"] and model.env == ENV
    assert (model.config.n_layers, model.config.n_heads, model.config.d_model) == (1, 2, 128)
