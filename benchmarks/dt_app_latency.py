"""Decision-transformer app: how long one step's full analysis takes to answer, over HTTP from a real server.

    python -m benchmarks.dt_app_latency [--run zoo:dt-minigrid-do8] [--steps 300]

The app is served by uvicorn on 127.0.0.1 in this process (as ``policylens dt app`` serves it, torch on 1
thread) and driven with HTTP requests, the way the page drives it: each request is one move (the model's
choice) and its answer carries the new step's policy (ablated and unablated), attention patterns, per-component
logit contributions, each head's contribution through each token and the state map. Reported per setting: the
round trip's median, 95th percentile and maximum in ms, against the issue's 200 ms per step, and the analysis's
own share (the server's timer). Settings: the run's model plain, with one head mean-ablated, and with the
ablation toggled on every step (a configure request, the page's checkbox); then a larger model (3 layers,
4 heads, context 9, random weights) to show the headroom. Last, in Chromium (when installed) driven by
Playwright: from a key press to the page showing the new step (request, analysis, JSON, drawing).
"""
from __future__ import annotations

import argparse
import json
import time
import urllib.request

import numpy as np
import torch

from .common import write

BUDGET_MS = 200.0


def _post(url: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(url + path.lstrip("/"), data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def _stats(ms: list) -> dict:
    a = np.asarray(ms)
    return {"median_ms": round(float(np.median(a)), 1), "p95_ms": round(float(np.percentile(a, 95)), 1),
            "max_ms": round(float(a.max()), 1)}


def drive(session, steps: int, setting: str, components: list) -> dict:
    """Serve ``session`` and make ``steps`` moves; ``setting``: plain | ablated | toggling."""
    from policylens import webapp
    from policylens.dt.app.server import create_app

    server, url = webapp.start_in_thread(*webapp.make_server(create_app(session), port=0))
    try:
        _post(url, "/api/configure", {"ablation": components if setting == "ablated" else [], "rtg": 0.9})
        trip, analysis = [], []
        for i in range(steps):
            t = time.perf_counter()
            if setting == "toggling":
                view = _post(url, "/api/configure", {"ablation": components if i % 2 == 0 else []})
            else:
                view = _post(url, "/api/act", {"action": None})
            trip.append(1000 * (time.perf_counter() - t))
            analysis.append(view["analysis"]["ms"])
    finally:
        server.should_exit = True
        server.thread.join(timeout=10)
    return {"setting": setting, "steps": steps, **_stats(trip), "analysis_median_ms": round(float(np.median(analysis)), 1),
            "within_budget": float(np.percentile(trip, 95)) <= BUDGET_MS}


def in_browser(session, steps: int) -> "dict | None":
    """Key press (space: the model acts) to the new step drawn, in Chromium; None without Chromium/Playwright."""
    import shutil

    from policylens import webapp
    from policylens.dt.app.server import create_app

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    server, url = webapp.start_in_thread(*webapp.make_server(create_app(session), port=0))
    ms = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']")
            for _ in range(steps):
                before = page.get_attribute("#agent-pos", "data-state")
                t = time.perf_counter()
                page.keyboard.press(" ")
                page.wait_for_function(f"document.getElementById('agent-pos').dataset.state !== {json.dumps(before)}")
                ms.append(1000 * (time.perf_counter() - t))
            browser.close()
    finally:
        server.should_exit = True
        server.thread.join(timeout=10)
    return {"setting": "browser: key press to the new step drawn", "steps": steps, **_stats(ms),
            "within_budget": float(np.percentile(ms, 95)) <= BUDGET_MS}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="zoo:dt-minigrid-do8")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from policylens.dt import load_dt
    from policylens.dt.analysis.analyze import load_means
    from policylens.dt.app import AppSession
    from policylens.dt.model import DecisionTransformer, DTConfig

    model = load_dt(args.run)
    rows = []
    for setting in ("plain", "ablated", "toggling"):
        session = AppSession(model, means=load_means(args.run), level=2_000_000)
        session.configure(mode="mean")
        rows.append({"model": args.run, **drive(session, args.steps, setting, ["blocks.0.attn.head1"])})
    big = DecisionTransformer(DTConfig(n_layers=3, n_heads=4, context=9)).eval()
    big.action_names, big.env = model.action_names, model.env
    rows.append({"model": "3 layers, 4 heads, d_model 128, context 9 (random weights)",
                 **drive(AppSession(big, level=2_000_000), args.steps, "ablated", ["blocks.1.attn.head2", "blocks.2.mlp"])})
    browser = in_browser(AppSession(model, means=load_means(args.run), level=2_000_000), min(args.steps, 100))
    if browser is not None:
        rows.append({"model": args.run, "analysis_median_ms": None, **browser})
    for r in rows:
        print(f"{r['model'][:40]:<40} {r['setting']:<9} median {r['median_ms']:6.1f} ms  p95 {r['p95_ms']:6.1f} ms  "
              f"max {r['max_ms']:6.1f} ms  (analysis {r['analysis_median_ms']} ms)  within {BUDGET_MS:.0f} ms: "
              f"{r['within_budget']}")
    write("dt_app_latency", {"budget_ms": BUDGET_MS, "rows": rows})


if __name__ == "__main__":
    main()
