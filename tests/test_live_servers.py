"""The local servers (``policylens explore RUN --serve``, ``policylens dt app``) under hostile and malformed
requests: for each server a few hundred requests, generated per endpoint and field (wrong types, NaN, infinite
and huge numbers, bad JSON, wrong content types, foreign Origin and Host headers, oversized bodies). None may get
a 500, none may change the session's state, each is refused with the status its kind calls for (a bad field's
message names the field), and the app answers normally afterwards. A real uvicorn server refuses a body that
claims or streams more than the cap without reading it whole.

Each request's validity is judged here, independently of the servers' own checks: ``valid_*`` below."""
from __future__ import annotations

import json
import math
import socket
import time

import numpy as np
import pytest
import torch

from policylens.webapp import MAX_BODY

PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"

# values tried in every field; the ones a field accepts (its valid_* predicate) are skipped for it
VALUES = ["abc", "", "1", [1], [], {}, {"a": 1}, True, False, 1.5, 0.5, -1, -7, 0, 1, 2, 3, 10**12, 2**31, 2**31 - 1,
          -(2**31), 1e20, -1e20, 1e308, -1e308, 10.5, -10.5, None, ["left"], ["left", "left"], ["left", "right"],
          ["blocks.0.mlp", "blocks.0.mlp"], ["blocks.0.attn.head9"], ["jump"], "jump", "zero", "mean", "half",
          "<script>alert(1)</script>", "left", "forward", 2.0, -0.0, 1e-300, "2", " 1", "NaN", "Infinity", [None],
          {"seed": 1}, [[1]], 4, 99, -2**63, 2**64, 3.0000001, 0.9, -1.0, 9.99, [0, 1], ["left", "forward", "right"]]
# bodies that are not one well-formed JSON object of finite numbers
RAW = [b"{", b"", b"   ", b"[]", b"null", b"1", b'"x"', b'{"a":', b"\xff\xfe{}", b"{}garbage", b'{"x": NaN}',
       b'{"x": Infinity}', b'{"x": -Infinity}', b'{"x": 1e400}', b'{"x": -1e400}', b'{"x": 1' + b"0" * 60 + b"}",
       b"[" * 20000 + b"]" * 20000, b'{"a": ' * 5000 + b"1" + b"}" * 5000, b"{'a': 1}", b"{a: 1}",
       b'{"x": 1,}', b"\x00", "{\"x\": \"\u2028\"".encode()]
CONTENT_TYPES = ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=x", "text/json", "application/json-patch+json", "application/xml", ""]
ORIGINS = ["http://evil.example", "null", "http://127.0.0.1:1", f"https://127.0.0.1:{PORT}",
           f"http://localhost.evil.example:{PORT}", f"http://127.0.0.1:{PORT}.evil.example", "file://",
           f"http://127.0.0.2:{PORT}", f"http://[::1]:{PORT}", "http://localhost"]
HOSTS = ["evil.example", f"evil.example:{PORT}", "127.0.0.1:1", f"127.0.0.2:{PORT}", "localhost", "127.0.0.1",
         f"127.0.0.1:{PORT}.evil.example", f"rebind.127.0.0.1.nip.io:{PORT}", "", f"[::1]:{PORT}"]


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def valid_int(lo: int, hi: int):
    return lambda v: v is None or (is_int(v) and lo <= v <= hi)


def hostile_requests(endpoints: dict, good: dict) -> list:
    """``[(label, path, kwargs for client.post, expected status, text the error must contain)]``.

    ``endpoints``: ``{path: {field: valid(value) -> bool}}``; ``good``: ``{path: a body the server accepts}`` (sent
    with a bad content type, origin or host, it must be refused all the same)."""
    out = []
    for path, fields in endpoints.items():
        for field, valid in fields.items():
            for v in VALUES:
                if not valid(v):
                    out.append((f"{path} {field}={v!r}", path, {"json": {field: v}}, 400, field))
            out.append((f"{path} unknown field", path, {"json": {"speed": 2}}, 400, "speed"))
        for raw in RAW:
            out.append((f"{path} raw {raw[:12]!r}", path,
                        {"content": raw, "headers": {"content-type": "application/json"}}, 400, ""))
        body = json.dumps(good[path]).encode()
        for ct in CONTENT_TYPES:
            out.append((f"{path} content-type {ct!r}", path, {"content": body, "headers": {"content-type": ct}}, 415,
                        "application/json"))
        for origin in ORIGINS:
            out.append((f"{path} origin {origin}", path, {"json": good[path], "headers": {"origin": origin}}, 403,
                        "Origin"))
        for host in HOSTS:
            out.append((f"{path} host {host!r}", path, {"json": good[path], "headers": {"host": host}}, 403, "Host"))
        for site in ("cross-site", "same-site"):
            out.append((f"{path} sec-fetch-site {site}", path,
                        {"json": good[path], "headers": {"sec-fetch-site": site}}, 403, "another site"))
        for method in ("PUT", "PATCH", "DELETE", "GET"):
            out.append((f"{path} {method}", path, {"json": good[path], "method": method}, (404, 405), ""))
        padded = {**good[path], "pad": "x" * MAX_BODY}
        out.append((f"{path} oversized", path, {"json": padded}, 413, "bytes"))
        chunks = [b'{"pad": "'] + [b"x" * 4096] * (MAX_BODY // 4096 + 2) + [b'"}']
        out.append((f"{path} oversized, chunked", path,
                    {"content": iter(chunks), "headers": {"content-type": "application/json"}}, 413, "bytes"))
    return out


def assert_refused_and_unchanged(client, requests: list, snapshot):
    before = snapshot()
    for label, path, kwargs, status, text in requests:
        r = client.request(kwargs.pop("method", "POST"), path, **kwargs)
        assert r.status_code in np.atleast_1d(status), f"{label}: {r.status_code} {r.text[:200]}"
        said = r.json()["error"] if r.status_code not in (404, 405) else r.text  # Starlette's own plain answers
        assert text in said, f"{label}: {said!r} does not name {text!r}"
        assert snapshot() == before, f"{label} changed the session"
    for path in ("/", "/api/view", "/index.html"):  # reading needs the server's own host too
        for host in HOSTS:
            assert client.get(path, headers={"host": host}).status_code == 403, (path, host)


# ------------------------------------------------------------------------------------------------ the explorer
@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    """A tiny agent's written explorer and its live session (MiniGrid 5x5, 3 actions)."""
    from policylens import agents
    from policylens.explorer import export
    from policylens.explorer.server import load_session

    root = tmp_path_factory.mktemp("live")
    torch.manual_seed(0)
    cfg = {"arch": "cnn", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1}
    agents.save_agent(agents.build(cfg), cfg, root / "run" / "agent",
                      extra={"env": "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0"})
    folder = export(root / "run", episodes="0", steps=4, k=2, nmf_frames=4, tree_k=0, progress=False)["index"].parent
    return root / "run", folder, load_session(root / "run", folder, seed=3)


def explorer_state(session):
    return (session.episode, session.t, session.obs.tobytes(), session.generator.get_state().numpy().tobytes(),
            session.env.get_state())


@pytest.mark.slow
def test_explorer_server_refuses_hostile_requests_and_changes_nothing(explorer):
    from starlette.testclient import TestClient

    from policylens.explorer.server import MAX_SEED, create_app

    _, folder, session = explorer
    client = TestClient(create_app(folder, session), base_url=BASE)
    endpoints = {"/api/live/reset": {"seed": valid_int(0, MAX_SEED)}, "/api/live/step": {"action": valid_int(0, 2)}}
    requests = hostile_requests(endpoints, {"/api/live/reset": {"seed": 5}, "/api/live/step": {"action": 1}})
    assert len(requests) > 200
    session.reset(4)
    assert_refused_and_unchanged(client, requests, lambda: explorer_state(session))
    # the app answers normally afterwards, from our origin and from a tool that sends none
    r = client.post("/api/live/step", json={"action": 1}, headers={"origin": BASE})
    assert r.status_code == 200 and r.json()["taken"]["action"] == 1 and session.t == 1
    r = client.post("/api/live/reset", json={"seed": 9}, headers={"host": f"localhost:{PORT}"})
    assert r.status_code == 200 and session.t == 0
    assert client.get("/").status_code == 200 and 'data-mode="live"' in client.get("/").text


@pytest.mark.slow
def test_explorer_reset_names_the_seed_and_takes_no_fraction(explorer):
    """The reported cases: a list gave a 500, a string an error without the field, 1.5 was truncated."""
    _, _, session = explorer
    session.reset(2)
    before = explorer_state(session)
    for seed in ([1], "abc", 1.5, True, -1, 2**31):
        with pytest.raises(ValueError, match=r"seed .*expected an integer in \[0, 2147483647\]"):
            session.reset(seed)
        assert explorer_state(session) == before


# ------------------------------------------------------------------------------------------------ the DT app
@pytest.fixture()
def dt_session():
    from policylens.dt.app import AppSession
    from test_dt_app import tiny_model

    return AppSession(tiny_model(), level=7, target_rtg=0.5)


def dt_state(session):
    view = {k: v for k, v in session.view().items() if k not in ("ms",)}
    view["analysis"] = {k: v for k, v in view["analysis"].items() if k != "ms"}
    return (json.dumps(view, sort_keys=True), json.dumps(session.rng.bit_generator.state, sort_keys=True),
            session.env.get_state(), session.target_rtg, session.ablation, session.mode, session.preference)


@pytest.mark.slow
def test_dt_app_refuses_hostile_requests_and_changes_nothing(dt_session):
    from starlette.testclient import TestClient

    from policylens.dt.app.server import create_app
    from policylens.dt.app.session import MAX_LEVEL, RTG_LIMIT

    session = dt_session
    client = TestClient(create_app(session), base_url=BASE)
    names = session.names
    components = session.analysis["ablation"]["available"]
    endpoints = {
        "/api/act": {"action": lambda v: v is None or v in names if isinstance(v, str) else valid_int(0, 2)(v)},
        "/api/reset": {"level": valid_int(0, MAX_LEVEL)},
        "/api/configure": {
            "rtg": lambda v: v is None or (not isinstance(v, bool) and isinstance(v, (int, float))
                                           and math.isfinite(v) and abs(v) <= RTG_LIMIT),
            "ablation": lambda v: v is None or (isinstance(v, list) and all(isinstance(c, str) for c in v)
                                                and len(set(v)) == len(v) and set(v) <= set(components)),
            "mode": lambda v: v in (None, "zero"),  # no means saved: mean ablation is refused
            "preference": lambda v: v is None or v == [] or (isinstance(v, list) and len(v) == 2 and v[0] != v[1]
                                                             and all(isinstance(p, str) and p in names for p in v))},
    }
    good = {"/api/act": {"action": "left"}, "/api/reset": {"level": 3}, "/api/configure": {"rtg": 0.8}}
    requests = hostile_requests(endpoints, good)
    assert len(requests) > 300
    session.act(0)
    session.configure(ablation=["blocks.0.mlp"], rtg=0.3)
    assert_refused_and_unchanged(client, requests, lambda: dt_state(session))
    # the app answers normally afterwards
    r = client.post("/api/configure", json={"rtg": 0.7}, headers={"origin": BASE})
    assert r.status_code == 200 and r.json()["target_rtg"] == 0.7 and r.json()["rtg"] == 0.7
    r = client.post("/api/act", json={"action": "right"})
    assert r.status_code == 200 and r.json()["t"] == 2 and r.json()["last"]["action"] == "right"
    assert client.get("/api/view").status_code == 200 and client.get("/api/describe").status_code == 200


def test_a_huge_rtg_is_refused_and_every_endpoint_still_answers(dt_session):
    """The reported case: {"rtg": 1e20} was taken, then every endpoint answered 400 until the RTG was set back."""
    from starlette.testclient import TestClient

    from policylens.dt.app.server import create_app

    client = TestClient(create_app(dt_session), base_url=BASE)
    for rtg in (1e20, -1e20, 1e308, 11):
        r = client.post("/api/configure", json={"rtg": rtg})
        assert r.status_code == 400 and "rtg" in r.json()["error"]
    for path, body in (("/api/view", None), ("/api/describe", None), ("/api/reset", {"level": None}),
                       ("/api/act", {"action": None})):
        r = client.get(path) if body is None else client.post(path, json=body)
        assert r.status_code == 200, (path, r.text[:200])
    assert dt_session.target_rtg == 0.5


def test_rtg_fed_is_exactly_the_target_minus_the_rewards_whatever_the_target_went_through(dt_session, monkeypatch):
    """The reported drift: 0.9000000000000057 after normal use, 0.0 after a huge target and back to 0.9. In
    MiniGrid a reward ends the episode, so within one every RTG fed must equal the target exactly."""
    import policylens.dt.app.session as module

    fed = []
    original = module.inputs_from_env_state

    def spy(model, observations, rtgs, *args, **kwargs):  # the RTGs the model is given at each analysis
        fed.append([float(r) for r in np.atleast_1d(rtgs)])
        return original(model, observations, rtgs, *args, **kwargs)

    monkeypatch.setattr(module, "inputs_from_env_state", spy)
    session = dt_session
    for a in (0, 1):
        session.act(a)
    for rtg in (0.3, 7.1, 0.9, -2.7, 0.9):
        fed.clear()
        view = session.configure(rtg=rtg)
        assert view["target_rtg"] == rtg and view["rtg"] == rtg and view["received"] == 0
        assert fed and all(r == rtg for rtgs in fed for r in rtgs), (rtg, fed)
    fed.clear()
    for a in (0, 1, 0):
        view = session.act(a)
        assert view["rtg"] == 0.9 and not view["last"]["done"]
    assert fed and all(r == 0.9 for rtgs in fed for r in rtgs) and len(fed[-1]) == 3  # the whole window


# ------------------------------------------------------------------------------------------------ a real server
@pytest.fixture(scope="module")
def real_server(explorer):
    from policylens import webapp
    from policylens.explorer.server import create_app

    _, folder, session = explorer
    server, url = webapp.start_in_thread(*webapp.make_server(create_app(folder, session), port=0))
    yield server.config.port, session
    server.should_exit = True
    server.thread.join(timeout=10)


def raw_request(port: int, head: bytes, body_chunks=(), timeout: float = 10.0) -> tuple:
    """Send ``head`` then the chunks (stopping once the server answers); ``(status, seconds to the answer)``."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        s.setblocking(False)
        answer = b""
        for chunk in body_chunks:
            try:
                answer += s.recv(4096)
            except BlockingIOError:
                pass
            if answer:
                break
            try:
                s.sendall(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
        s.settimeout(timeout)
        while b"\r\n" not in answer:
            more = s.recv(4096)
            if not more:
                break
            answer += more
    return int(answer.split(b" ")[1]), time.monotonic() - start


@pytest.mark.slow
def test_real_server_refuses_a_huge_body_without_reading_it(real_server):
    port, session = real_server
    before = explorer_state(session)
    head = (f"POST /api/live/step HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: 200000000\r\n\r\n").encode()
    status, seconds = raw_request(port, head + b'{"action": 1, "pad": "')  # 200 MB announced, a few bytes sent
    assert status == 413 and seconds < 5
    chunked = (f"POST /api/live/step HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               f"Transfer-Encoding: chunked\r\n\r\n").encode()
    piece = b"x" * 8192
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 25_000  # 200 MB if it were all read
    status, seconds = raw_request(port, chunked, chunks)
    assert status == 413 and seconds < 30
    foreign = (f"POST /api/live/step HTTP/1.1\r\nHost: evil.example:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: 13\r\n\r\n{{\"action\": 1}}").encode()
    assert raw_request(port, foreign)[0] == 403
    assert explorer_state(session) == before
    ok = (f"POST /api/live/step HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
          f"Content-Length: 13\r\nConnection: close\r\n\r\n{{\"action\": 1}}").encode()
    assert raw_request(port, ok)[0] == 200 and session.t == before[1] + 1
