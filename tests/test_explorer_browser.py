"""The explorer in a real browser (Debian's Chromium driven by Playwright), opened from disk: it loads without a
console error, the timeline scrubs frames, hovering a legend item isolates its feature (checked on the drawn
pixels), keyboard shortcuts work, and strings with HTML in them are shown as text."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from policylens.explorer.bundle import FEATURE_COLORS, LayerView, Output, Trajectory, write_explorer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not found (apt install chromium)")
playwright = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

T, G, K = 24, 6, 3  # frames, grid of the layer, NMF features (+ residual)
EVIL = "<img src=x onerror=alert(1)>"
ACTIONS = [EVIL, "right", "<script>alert(2)</script>"]


def synthetic_trajectory(seed: int) -> Trajectory:
    """Frames that differ at every step; feature f's good news sits in its own cell (row 1, column 1 + 2f)."""
    rng = np.random.default_rng(seed)
    obs = np.zeros((T, 48, 48, 3), np.uint8)
    for t in range(T):
        obs[t, ..., 0] = 40 + 8 * t
        obs[t, 30:38, 2 * t:2 * t + 8] = 255
    maps = np.zeros((T, 2, K + 1, G, G), np.float32)
    for f in range(K + 1):
        maps[:, 0, f, 1, min(G - 1, 1 + 2 * f)] = 1.0 + f / 4
        maps[:, 1, f, 4, min(G - 1, 1 + 2 * f)] = 0.5
    attention = np.full((T, 1, 2, G, G), 1.0 / G**2, np.float32)
    logits = rng.normal(size=(T, 3))
    return Trajectory(obs, rng.random(T), logits, rng.integers(0, 3, T), np.zeros(T), np.eye(T)[T - 1].astype(bool),
                      rng.normal(size=T), {"episode": seed, "cause": "<b>success</b>", "return": 1.0},
                      {"conv": {"value": maps, "action": maps[:, ::-1].copy()}, "attention": {"attention": attention}})


def synthetic_tree(k: int = 2) -> dict:
    """A saliency tree as attribution.saliency_tree gives it: value -> k units of "conv" -> k pixels each."""
    def node(layer, unit, share, box, children=()):
        return {"layer": layer, "unit": unit, "activation": 0.5, "score": -share, "share": share, "box": box,
                "children": list(children)}

    def pixels(y):
        return [node("input", [y, 8 * j], 0.3 - 0.1 * j, [y, 8 * j, y + 1, 8 * j + 1]) for j in range(k)]

    units = [node(EVIL if c == 1 else "conv", [c, 2, c], 0.5 - 0.1 * c, [16, 8 * c, 24, 8 * c + 8], pixels(20 + c))
             for c in range(k)]
    root = node("output", "value", 1.0, None, units)
    return {**root, "activation": 0.75, "target": "value", "method": "grad_x_act", "k": k,
            "layers": ["conv", "input"], "obs_shape": [48, 48, 3]}


@pytest.fixture(scope="module")
def explorer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("explorer")
    nmf = LayerView("conv", "nmf", (G, G), ("coin", "<b>saw</b>", "enemy", "residual"),
                    (Output("value", "value"), Output("action", "sampled action's logit")),
                    np.random.default_rng(0).integers(0, 255, (K, 8, 8, 3)).astype(np.uint8))
    att = LayerView("attention", "attention", (G, G), ("head 1", "head 2"),
                    (Output("attention", "attention maps", ("attention",)),))
    first = synthetic_trajectory(0)
    first.trees = {0: synthetic_tree(), 5: synthetic_tree(k=3)}
    write_explorer(out, [nmf, att], [first, synthetic_trajectory(1)], title="<i>run</i>",
                   env="minigrid:<env>", action_names=ACTIONS, bookmark_count=4, bookmark_separation=2)
    return out


@pytest.fixture(scope="module")
def context():
    """One Chromium and one browser context for the module (a fresh page per test is cheap in it)."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser.new_context(viewport={"width": 1280, "height": 1000})
        browser.close()


@pytest.fixture
def page(context, explorer_dir):
    """The explorer opened from disk; ``page.problems`` collects console errors, page errors and dialogs."""
    pg = context.new_page()
    pg.problems = []
    pg.on("console", lambda m: m.type == "error" and pg.problems.append(f"console: {m.text}"))
    pg.on("pageerror", lambda e: pg.problems.append(f"page error: {e}"))
    pg.on("dialog", lambda d: (pg.problems.append(f"dialog: {d.message}"), d.dismiss()))
    pg.goto((explorer_dir / "index.html").as_uri())
    pg.wait_for_function("() => window.explorer && window.explorer.ready", timeout=15000)
    yield pg
    pg.close()


def state(page, name):
    return page.evaluate(f"window.explorer.{name}")


def overlay_colors(page, sign=0):
    """Distinct colours (rounded to 8 levels) of the clearly drawn pixels of one overlay canvas."""
    pixels = page.evaluate("""(sign) => {
        const c = document.querySelector(`canvas.overlay[data-sign="${sign}"]`);
        return Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data);
    }""", sign)
    px = np.asarray(pixels, np.int64).reshape(-1, 4)
    opaque = px[px[:, 3] > 128, :3]
    return {tuple(c) for c in (opaque // 8 * 8).tolist()}, opaque


def hex_rgb(hex_color):
    return np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])


def obs_image(page):
    return page.evaluate("document.getElementById('obs-canvas').toDataURL()")


@pytest.mark.slow
def test_page_loads_from_disk_without_errors(page):
    assert page.problems == []
    assert state(page, "length") == T and state(page, "frame") == 0
    assert state(page, "layer") == "conv" and state(page, "visibleFeatures()") == [0, 1, 2, 3]
    assert state(page, "drawnFeatures") == [0, 1, 2, 3]
    assert page.locator(".panel.sign").count() == 2  # good news, bad news


@pytest.mark.slow
def test_clicking_the_timeline_scrubs_to_that_frame(page):
    before = obs_image(page)
    box = page.locator("#timeline").bounding_box()
    target = 17
    page.mouse.click(box["x"] + (target + 0.5) / T * box["width"], box["y"] + 120)
    assert state(page, "frame") == target
    assert page.get_attribute("body", "data-frame") == str(target)
    assert obs_image(page) != before  # another frame is shown
    page.mouse.move(box["x"] + 5.5 / T * box["width"], box["y"] + 120)
    page.mouse.down()
    page.mouse.move(box["x"] + 9.5 / T * box["width"], box["y"] + 120, steps=4)  # dragging scrubs too
    page.mouse.up()
    assert state(page, "frame") == 9
    assert page.problems == []


@pytest.mark.slow
def test_hovering_a_legend_item_isolates_its_feature(page):
    colors = [hex_rgb(c) for c in FEATURE_COLORS[:K]]
    shown, _ = overlay_colors(page)
    assert len(shown) >= K  # several features' colours on the good-news panel
    page.hover("#legend li[data-feature='1']")
    assert state(page, "visibleFeatures()") == [1] and state(page, "isolated") == 1
    assert state(page, "drawnFeatures") == [1]
    _, opaque = overlay_colors(page)
    assert len(opaque) > 0 and np.abs(opaque - colors[1]).max() <= 2  # only feature 1's colour is drawn
    page.mouse.move(5, 5)  # leaving the legend shows every feature again
    assert state(page, "visibleFeatures()") == [0, 1, 2, 3]
    page.click("#legend li[data-feature='0']")  # clicking hides a feature (once the pointer leaves it)
    page.mouse.move(5, 5)
    assert state(page, "visibleFeatures()") == [1, 2, 3] and 0 not in state(page, "drawnFeatures")
    assert page.problems == []


@pytest.mark.slow
def test_keyboard_shortcuts(page):
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert state(page, "frame") == 2
    page.keyboard.press("ArrowLeft")
    assert state(page, "frame") == 1
    marks = sorted(b["t"] for b in page.evaluate("window.explorer.bookmarks"))
    page.keyboard.press("]")
    assert state(page, "frame") == next(t for t in marks if t > 1)
    page.keyboard.press("3")
    assert state(page, "visibleFeatures()") == [2]
    page.keyboard.press("0")
    assert state(page, "visibleFeatures()") == [0, 1, 2, 3]
    page.keyboard.press("?")
    assert page.is_visible("#help")
    page.keyboard.press("Escape")
    assert not page.is_visible("#help")
    page.keyboard.press("Home")
    page.keyboard.press(" ")
    assert state(page, "playing") is True
    page.wait_for_function("() => window.explorer.frame >= 2", timeout=5000)  # playing advances the frames
    page.keyboard.press(" ")
    assert state(page, "playing") is False
    assert page.problems == []


@pytest.mark.slow
def test_strings_with_html_are_shown_as_text(page):
    assert page.locator("img[src='x']").count() == 0 and page.locator("script:not([src])").count() == 0
    assert page.text_content("#title") == "<i>run</i>"
    legend = page.text_content("#action-legend")
    assert EVIL in legend and "<script>alert(2)</script>" in legend
    assert "<b>saw</b>" in page.text_content("#legend")
    assert "<b>success</b>" in page.text_content("#trajectory-info")
    assert page.problems == []  # no alert dialog


@pytest.mark.slow
def test_layer_picker_switches_to_attention_maps(page):
    page.select_option("#layer-select", label="attention (attention)")
    page.wait_for_function("() => window.explorer.ready && window.explorer.layer === 'attention'")
    assert page.locator(".panel.sign").count() == 1
    assert state(page, "features()") == ["head 1", "head 2"]
    page.select_option("#trajectory-select", index=1)
    page.wait_for_function("() => window.explorer.ready && window.explorer.trajectory === 1")
    assert state(page, "drawnFeatures") == [0, 1]
    assert page.problems == []


# ------------------------------------------------------------------------------------------------ live mode
@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """A tiny agent's explorer served on a free port of 127.0.0.1 (the server runs in a thread)."""
    import torch

    from policylens import agents
    from policylens.explorer import export
    from policylens.explorer.server import serve_in_thread

    root = tmp_path_factory.mktemp("live")
    torch.manual_seed(0)
    cfg = {"arch": "cnn", "obs_shape": [7, 7, 3], "num_actions": 3, "obs_scale": 0.1}
    agents.save_agent(agents.build(cfg), cfg, root / "run" / "agent",
                      extra={"env": "minigrid:MiniGrid-Dynamic-Obstacles-5x5-v0"})
    summary = export(root / "run", episodes="0", steps=4, k=2, nmf_frames=4, progress=False)
    server, url = serve_in_thread(root / "run", summary["index"].parent, port=0)
    yield url
    server.should_exit = True
    server.thread.join(timeout=10)


@pytest.mark.slow
def test_live_mode_plays_the_game_and_shows_each_new_frame(context, live_server):
    page = context.new_page()
    problems = []
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(live_server)
    page.wait_for_function("() => window.explorer && window.explorer.ready && window.explorer.trajectory === 'live'",
                           timeout=20000)
    assert page.is_visible("#live") and state(page, "length") == 1
    page.click("#live-agent")  # the agent acts
    page.wait_for_function("() => window.explorer.length === 2 && !window.PolicyLensLive.busy")
    assert state(page, "frame") == 1
    before_turn = obs_image(page)
    page.keyboard.press("ArrowRight")  # the user acts: MiniGrid's "right" (turn right) changes the view
    page.wait_for_function("() => window.explorer.length === 3 && !window.PolicyLensLive.busy")
    actions = page.evaluate("window.explorer.internal.current().action")
    assert actions[1] == 1 and actions[0] in (0, 1, 2) and actions[2] == -1  # frame 2 awaits its action
    assert state(page, "frame") == 2 and obs_image(page) != before_turn
    assert len(state(page, "drawnFeatures")) > 0  # the new frame's attribution is drawn
    assert state(page, "treeFrames") == [0, 1, 2]  # and its value's saliency tree (the export's tree_k = 2)
    assert page.locator("#saliency-tree > li").count() == 1
    assert page.locator("#saliency-tree > li > ul > li").count() == 2
    page.click("#live-reset")  # a new episode: frame 0's tree is the new one's
    page.wait_for_function("() => window.explorer.length === 1 && !window.PolicyLensLive.busy")
    assert state(page, "treeFrames") == [0] and page.locator("#saliency-tree > li").count() == 1
    assert problems == []
    page.close()


@pytest.mark.slow
def test_saliency_tree_panel_shows_the_root_and_k_children_and_hover_outlines_the_unit(page):
    assert state(page, "treeFrames") == [0, 5]
    root = page.locator("#saliency-tree > li")
    assert root.count() == 1 and "value = 0.750" in root.locator(":scope > .node").inner_text()
    children = page.locator("#saliency-tree > li > ul > li")
    assert children.count() == 2
    assert children.nth(0).locator(":scope > .node").inner_text().startswith("conv [0,2,0] 50.0%")
    assert children.nth(1).locator(":scope > .node").inner_text().startswith(EVIL)  # shown as text
    assert page.locator("#saliency-tree img").count() == 0
    assert children.nth(0).locator(":scope > ul > li").count() == 2  # each unit's own k children
    # hovering a unit outlines its box [16, 0, 24, 8] (of a 48 x 48 observation) on the observation
    children.nth(0).locator(":scope > .node").hover()
    assert state(page, "treeBox") == [16, 0, 24, 8]
    screen = page.locator("#obs-canvas").bounding_box()
    box = page.locator("#tree-highlight").bounding_box()
    assert box["y"] - screen["y"] == pytest.approx(screen["height"] * 16 / 48, abs=1.5)
    assert box["width"] == pytest.approx(screen["width"] * 8 / 48, abs=1.5)
    page.mouse.move(0, 0)
    assert state(page, "treeBox") is None and page.locator("#tree-highlight").is_hidden()
    # a frame without a tree lists the frames that have one; its button jumps there (k = 3 at frame 5)
    page.evaluate("window.explorer.setFrame(3)")
    assert page.locator("#saliency-tree > li").count() == 0
    page.locator("#tree-frames button", has_text="5").click()
    assert state(page, "frame") == 5 and page.locator("#saliency-tree > li > ul > li").count() == 3
    assert page.problems == []
