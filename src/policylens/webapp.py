"""What the live pages (the explorer's live panel, the decision-transformer app) share: a uvicorn server bound
to 127.0.0.1, started in the foreground or in a daemon thread, and JSON endpoints that turn bad input
(ValueError, KeyError) into a 400 answer naming the problem instead of a stack trace.
"""
from __future__ import annotations

import socket
import threading
import time

HOST = "127.0.0.1"


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


async def json_body(request) -> dict:
    """The request's JSON object ({} when the body is empty or not an object)."""
    try:
        data = await request.json()
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {}


async def answer(fn, *args):
    """Run ``fn(*args)`` in the thread pool; its dict as JSON, or a 400 with ``{"error"}`` on bad input."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    try:
        return JSONResponse(await run_in_threadpool(fn, *args))
    except (ValueError, KeyError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        return JSONResponse({"error": str(message)}, status_code=400)
