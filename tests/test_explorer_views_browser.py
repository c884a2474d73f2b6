"""The explorer of a MiniGrid symbolic view in Chromium (Playwright), opened from disk: the page holds and draws
MiniGrid's tiles, its overlays and saliency-tree boxes land on the right cells of the upright picture (MiniGrid's
arrays are [x, y]), the legend shows the images, labels and stability it was given, and a simulator's explorer
calls its rewards, returns and ends predictions."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from policylens.envs import make
from policylens.envs.render import TILE, render_obs
from policylens.explorer.bundle import LayerView, Output, Trajectory, write_explorer
from policylens.factors import Directions

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not found (apt install chromium)")
playwright = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

ENV = "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0"
HOT = [(1, 5), (5, 1)]  # (x, y) of the one cell where feature 0 / 1 has good news


def played(steps: int = 12) -> np.ndarray:
    """(T, 7, 7, 3) symbolic views of a real game (the balls move)."""
    env = make(ENV, 1, seed=0)
    views = [env.reset(3)[0]]
    for a in np.random.default_rng(0).integers(0, 3, steps - 1):
        views.append(env.step(np.array([a]))[0][0])
    return np.stack(views)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    obs = played()
    t = len(obs)
    maps = np.zeros((t, 2, 3, 7, 7), np.float32)  # maps laid out like the obs: [x, y]
    for f, (x, y) in enumerate(HOT):
        maps[:, 0, f, x, y] = 1.0
    thumbs = render_obs(obs[:2], "symbolic")[:, 64:96, 32:64]  # two patches of real frames
    directions = Directions(torch.eye(4)[:2], "conv", method="nmf", meta={"stability": [0.97, 0.42]})
    view = LayerView("conv", "nmf", (7, 7), ("ball, NMI 0.91", "NMF 2 (best: goal, NMI 0.03)", "residual"),
                     (Output("value", "value"),), thumbs, directions=directions)
    reward = np.zeros(t)
    reward[-1] = 1.222  # what no MiniGrid game gives
    done = np.zeros(t, bool)
    done[-1] = True
    tree = {"layer": "output", "unit": "value", "activation": 0.5, "score": 0.5, "share": 1.0, "box": None,
            "target": "value", "method": "grad_x_act", "k": 1, "layers": ["input"], "obs_shape": [7, 7, 3],
            "children": [{"layer": "input", "unit": [1, 4, 0], "activation": 6.0, "score": 0.3, "share": 1.0,
                          "box": [1, 4, 2, 5], "children": []}]}  # array cell [1, 4]: x = 1, y = 4
    out = {}
    for name, predicted in (("game", False), ("sim", True)):
        traj = Trajectory(obs, np.linspace(0, 1, t), np.zeros((t, 3)), np.zeros(t, int), reward, done, np.zeros(t),
                          {"episode": 0, "cause": "success", "return": 1.222}, {"conv": {"value": maps}},
                          trees={0: tree})
        out[name] = tmp_path_factory.mktemp(name)
        write_explorer(out[name], [view], [traj], title=name, env=ENV, action_names=["left", "right", "forward"],
                       predicted=predicted)
    return out, obs


@pytest.fixture(scope="module")
def context():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser.new_context(viewport={"width": 1280, "height": 1000})
        browser.close()


def open_page(context, folder):
    page = context.new_page()
    page.problems = []
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.goto((folder / "index.html").as_uri())
    page.wait_for_function("() => window.explorer && window.explorer.ready", timeout=15000)
    return page


@pytest.mark.slow
def test_the_page_holds_and_draws_minigrids_tiles(context, folders):
    out, obs = folders
    page = open_page(context, out["game"])
    assert page.evaluate("window.explorer.view") == {"kind": "symbolic", "tiles": True, "transposed": True,
                                                     "tile": TILE, "stack": 1, "predicted": False}
    for t in (0, 7):
        page.evaluate(f"window.explorer.setFrame({t})")
        held = page.evaluate("""() => {  // the frame the page holds, at its own size
            const tile = window.explorer.internal.current().tile(window.explorer.frame);
            const c = document.createElement("canvas");
            c.width = tile.w; c.height = tile.h;
            c.getContext("2d").drawImage(tile.image, tile.sx, tile.sy, tile.w, tile.h, 0, 0, tile.w, tile.h);
            return Array.from(c.getContext("2d").getImageData(0, 0, tile.w, tile.h).data);
        }""")
        truth = render_obs(obs[t:t + 1], "symbolic")[0]
        np.testing.assert_array_equal(np.asarray(held, np.uint8).reshape(7 * TILE, 7 * TILE, 4)[..., :3], truth)
        shown = page.evaluate("""() => { const c = document.getElementById("obs-canvas");
            return Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data); }""")
        shown = np.asarray(shown, np.float64).reshape(256, 256, 4)[..., :3]
        assert np.abs(shown.mean((0, 1)) - truth.mean((0, 1))).max() < 3  # the same picture, enlarged
    assert page.problems == []


def overlay_centre(page) -> tuple:
    """(column, row) in cells of the opacity-weighted centre of the good-news overlay."""
    pixels = page.evaluate("""() => { const c = document.querySelector('canvas.overlay[data-sign="0"]');
        return [c.width, c.height, Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data)]; }""")
    w, h, data = pixels
    alpha = np.asarray(data, np.float64).reshape(h, w, 4)[..., 3]
    rows, cols = np.mgrid[0:h, 0:w]
    return (cols * alpha).sum() / alpha.sum() / (w / 7), (rows * alpha).sum() / alpha.sum() / (h / 7)


@pytest.mark.slow
def test_overlays_land_on_the_cells_of_the_upright_picture(context, folders):
    out, _ = folders
    page = open_page(context, out["game"])
    page.evaluate("document.getElementById('smooth').value = '0'; "
                  "document.getElementById('smooth').dispatchEvent(new Event('input'))")
    for f, (x, y) in enumerate(HOT):
        page.keyboard.press(str(f + 1))  # isolate feature f
        col, row = overlay_centre(page)
        assert abs(col - (x + 0.5)) < 0.25 and abs(row - (y + 0.5)) < 0.25, (f, col, row)
        page.keyboard.press("0")
    # the saliency tree's box of array cell [1, 4] outlines x = 1, y = 4
    page.locator("#saliency-tree > li > ul > li > .node").hover()
    screen, box = page.locator("#obs-canvas").bounding_box(), page.locator("#tree-highlight").bounding_box()
    assert box["x"] - screen["x"] == pytest.approx(screen["width"] * 1 / 7, abs=1.5)
    assert box["y"] - screen["y"] == pytest.approx(screen["height"] * 4 / 7, abs=1.5)
    assert page.problems == []


@pytest.mark.slow
def test_legend_shows_images_labels_and_stability(context, folders):
    out, _ = folders
    page = open_page(context, out["game"])
    items = page.locator("#legend li")
    assert items.count() == 3
    assert items.nth(0).locator(".label").inner_text() == "ball, NMI 0.91"
    assert items.nth(0).locator(".stability").inner_text() == "stability 0.97"
    assert items.nth(1).locator(".stability").inner_text() == "stability 0.42"
    assert items.nth(2).locator(".stability").inner_text() == ""  # the residual has none
    spread = page.evaluate("""() => Array.from(document.querySelectorAll("#legend img")).map((img) => {
        const c = document.createElement("canvas");
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext("2d");
        ctx.drawImage(img, 0, 0);
        const d = ctx.getImageData(0, 0, c.width, c.height).data;
        return new Set(Array.from({length: d.length / 4}, (_, i) => d[4 * i] + "," + d[4 * i + 1] + "," + d[4 * i + 2])).size;
    })""")
    assert len(spread) == 2 and min(spread) > 3  # drawn tiles, not a flat colour
    assert page.problems == []


@pytest.mark.slow
def test_a_simulators_rewards_returns_and_ends_read_as_predictions(context, folders):
    out, _ = folders
    game, sim = open_page(context, out["game"]), open_page(context, out["sim"])
    last = "window.explorer.setFrame(window.explorer.length - 1)"
    game.evaluate(last)
    sim.evaluate(last)
    assert "predicted" not in game.inner_text("#frame-info") + game.inner_text("#trajectory-info")
    assert "reward\n1.222" in game.inner_text("#frame-info")
    frame, trajectory = sim.inner_text("#frame-info"), sim.inner_text("#trajectory-info")
    assert "predicted reward\n1.222" in frame and "predicted to end here" in frame
    assert "predicted return\n1.222" in trajectory
    assert sim.evaluate("window.explorer.view.predicted") is True
    assert game.problems == [] and sim.problems == []
