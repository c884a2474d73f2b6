"""What the live pages (the explorer's live panel, the decision-transformer app) share: a uvicorn server bound
to 127.0.0.1, started in the foreground or in a daemon thread, and one guarded way to answer requests.

Every request passes :class:`LocalOnly` before any endpoint sees it:

- ``Host`` must name the server itself (``127.0.0.1:PORT`` or ``localhost:PORT``, the port it is bound to), so a
  DNS-rebound name cannot reach it; an ``Origin`` (browsers send one with every cross-origin request and every
  POST) must be the server's own, and ``Sec-Fetch-Site`` may not say another site asked: 403 otherwise.
- A request that changes state (POST, PUT, PATCH, DELETE) must carry ``Content-Type: application/json`` (a
  cross-origin page cannot send that without a CORS preflight, which the server never grants): 415 otherwise.
- A body is read in chunks up to :data:`MAX_BODY` bytes and refused (413) as soon as it is longer, or at once
  when its ``Content-Length`` says so; it is never read whole first.

Endpoints are built with :func:`endpoint`: the body is parsed strictly (:func:`parse_json`: one JSON object, no
NaN or infinite numbers, no repeated keys), each field is checked against its :func:`integer` / :func:`number` /
:func:`choice` / :func:`names` / :func:`any_of` check (unknown fields refused), and only then is the session
called. Bad input answers 400 with ``{"error": message}`` naming the field and what was expected, and changes
nothing; a result that cannot be written as JSON is a bug and answers 500.
"""
from __future__ import annotations

import json
import math
import socket
import threading
import time
from typing import Any, Callable

HOST = "127.0.0.1"
LOCAL_NAMES = ("127.0.0.1", "localhost")
MAX_BODY = 64 * 1024  # bytes: the largest request body any endpoint needs is a few hundred
STATE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def make_server(app, port: int = 8000):
    """A uvicorn server for the ASGI ``app`` on 127.0.0.1 (``port`` 0: a free one); ``(server, url)``."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning"))
    return server, f"http://{HOST}:{port}/"


def start_in_thread(server, url: str, timeout: float = 30.0):
    """Run ``server`` in a daemon thread until it is listening; stop it with ``server.should_exit = True``."""
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {url}")
        time.sleep(0.05)
    server.thread = thread
    return server, url


def local_app(routes):
    """A Starlette app of ``routes`` behind :class:`LocalOnly`."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware

    return Starlette(routes=routes, middleware=[Middleware(LocalOnly)])


# ------------------------------------------------------------------------------------------------ the guard
def _own_origins(scope) -> "tuple | None":
    """``(hosts, origins)`` a request to this server may name: the local names at the port it is bound to."""
    server = scope.get("server")
    if not server or len(server) < 2 or server[1] is None:
        return None
    port = int(server[1])
    hosts = {f"{name}:{port}" for name in LOCAL_NAMES} | (set(LOCAL_NAMES) if port == 80 else set())
    return hosts, {f"http://{h}" for h in hosts}


def refusal(scope) -> "tuple | None":
    """``(status, message)`` when the request must be refused before it reaches an endpoint, else None."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    own = _own_origins(scope)
    if own is None:
        return 403, "the server cannot tell its own address; refused"
    hosts, origins = own
    host = headers.get("host", "").strip().lower()
    if host not in hosts:
        return 403, f"Host {host!r} is not this server ({' or '.join(sorted(hosts))}); refused"
    origin = headers.get("origin")
    if origin is not None and origin.strip().lower() not in origins:
        return 403, f"Origin {origin!r} is not this server's; cross-origin requests are refused"
    if headers.get("sec-fetch-site", "same-origin").strip().lower() not in ("same-origin", "none"):
        return 403, "the request came from another site; refused"
    if scope.get("method") in STATE_METHODS:
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            return 415, f"Content-Type {media or 'none'!r}; expected application/json"
    length = headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            return 400, f"Content-Length {length!r} is not a number of bytes"
        if int(length) > MAX_BODY:
            return 413, f"the body has {int(length)} bytes; at most {MAX_BODY} are accepted"
    return None


class LocalOnly:
    """ASGI middleware: refuses what :func:`refusal` names, reads the body up to :data:`MAX_BODY` bytes (413 past
    it), and hands the endpoint the body it read. Only HTTP (and the server's lifespan) pass."""

    def __init__(self, app, max_body: int = MAX_BODY):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] != "http":
            return  # no websockets here
        problem = refusal(scope)
        if problem is None:
            body, more = bytearray(), True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_body:
                    problem = 413, f"the body is longer than {self.max_body} bytes; refused"
                    break
        if problem is not None:
            return await error(*problem)(scope, receive, send)
        await self.app(scope, _replay(bytes(body), receive), send)


def _replay(body: bytes, receive):
    """A ``receive`` that gives ``body`` once, then waits on the connection as the original would."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def error(status: int, message: str):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": str(message)}, status_code=status)


# ------------------------------------------------------------------------------------------------ parsing
def _refuse_constant(name: str):
    raise ValueError(f"the body holds {name}, which is not a JSON number; send a finite number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large for a float; send a finite number")
    return value


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > 30:
        raise ValueError(f"the integer {text[:20]}... has {len(text)} digits; send a smaller number")
    return int(text)


def _no_repeats(pairs) -> dict:
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"field(s) {', '.join(map(repr, repeated))} given more than once")
    return dict(pairs)


def parse_json(body: bytes) -> dict:
    """The request body as one JSON object; ValueError naming what is wrong (not UTF-8, not JSON, NaN or
    infinite numbers, repeated keys, not an object)."""
    if not body.strip():
        raise ValueError("the body is empty; expected a JSON object such as {}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8 text; expected a JSON object") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite, parse_int=_integer,
                          object_pairs_hook=_no_repeats)
    except json.JSONDecodeError as e:
        raise ValueError(f"the body is not valid JSON ({e.msg} at character {e.pos}); expected a JSON object") from None
    except RecursionError:
        raise ValueError("the body's JSON is nested too deeply; expected a flat JSON object") from None
    if not isinstance(data, dict):
        raise ValueError(f"the body is a JSON {type(data).__name__}; expected a JSON object")
    return data


def _shown(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def checked(body: dict, fields: dict) -> dict:
    """``{name: value}`` of ``body`` with every field passed through its check in ``fields`` (``{name: check}``;
    absent fields are None); ValueError naming an unknown field or the first bad one."""
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}; expected {', '.join(fields) or 'none'}")
    return {name: check(name, body.get(name)) for name, check in fields.items()}


class Check:
    """A field's check: ``check(name, value)`` gives the value (as the field takes it) or raises a ValueError
    naming the field; ``expected`` says what it takes."""

    def __init__(self, fn: Callable[[str, Any], Any], expected: str):
        self.fn, self.expected = fn, expected

    def __call__(self, name: str, value):
        return self.fn(name, value)


def _check(test, expected: str, null: bool) -> Check:
    def check(name, value):
        if value is None and null:
            return None
        if value is None or not test(value):
            raise ValueError(f"{name} {_shown(value)}: expected {expected}{' or null' if null else ''}")
        return value

    return Check(check, expected)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def integer(lo: int, hi: int, *, null: bool = False) -> Check:
    """A check: a JSON integer in ``[lo, hi]`` (not a bool, not 1.5)."""
    return _check(lambda v: is_int(v) and lo <= v <= hi, f"an integer in [{lo}, {hi}]", null)


def number(lo: float, hi: float, *, null: bool = False) -> Check:
    """A check: a finite JSON number in ``[lo, hi]`` (not a bool), as a float."""
    inner = _check(lambda v: (is_int(v) or isinstance(v, float)) and math.isfinite(v) and lo <= v <= hi,
                   f"a number in [{lo}, {hi}]", null)

    def check(name, value):
        value = inner(name, value)
        return None if value is None else float(value)

    return Check(check, inner.expected)


def choice(options, *, null: bool = False) -> Check:
    """A check: one of the strings ``options``."""
    options = list(options)
    return _check(lambda v: isinstance(v, str) and v in options, f"one of {', '.join(map(repr, options))}", null)


def names(options, *, lengths=None, null: bool = False) -> Check:
    """A check: a list of distinct strings from ``options`` (``lengths``: the allowed list lengths)."""
    options = list(options)
    lengths = tuple(lengths) if lengths is not None else tuple(range(len(options) + 1))
    howmany = " or ".join(map(str, lengths)) if len(lengths) <= 3 else f"at most {max(lengths)}"
    return _check(lambda v: isinstance(v, list) and len(v) in lengths and len(set(map(str, v))) == len(v)
                  and all(isinstance(x, str) and x in options for x in v),
                  f"a list of {howmany} distinct names from {', '.join(map(repr, options)) or 'none'}", null)


def any_of(*checks: Check, null: bool = False) -> Check:
    """A check passing what any of ``checks`` passes (``null``: also null)."""
    expected = " or ".join(c.expected for c in checks)

    def check(name, value):
        if value is None and null:
            return None
        for c in checks:
            try:
                return c(name, value)
            except ValueError:
                pass
        raise ValueError(f"{name} {_shown(value)}: expected {expected}{' or null' if null else ''}")

    return Check(check, expected)


# ------------------------------------------------------------------------------------------------ endpoints
def _message(e: Exception) -> str:
    return str(e.args[0] if isinstance(e, KeyError) and e.args else e)


def endpoint(fn, fields: "dict | None" = None):
    """A Starlette endpoint calling ``fn(**values)`` in the thread pool and answering its dict as JSON.
    ``fields`` (``{name: check}``): the request body is a JSON object of these fields, checked before ``fn``
    runs; None: no body is read. Bad input (a bad body, or ValueError/KeyError from ``fn``) answers 400."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    async def handle(request):
        try:
            values = {} if fields is None else checked(parse_json(await request.body()), fields)
            result = await run_in_threadpool(fn, **values)
        except (ValueError, KeyError) as e:
            return error(400, _message(e))
        return JSONResponse(result)  # a result that is not JSON is a bug: 500

    return handle
