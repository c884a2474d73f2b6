"""The decision-transformer app in a real browser (Debian's Chromium driven by Playwright) against the real
server: the page loads without a console error, a key press moves the agent, an ablation toggle changes the
shown preferences, and names with HTML in them are shown as text."""
from __future__ import annotations

import shutil

import pytest

from test_dt_app import tiny_model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not found (apt install chromium)")
playwright = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

EVIL = "<img src=x onerror=alert(1)>"


def open_level(start: int = 0) -> int:
    """A level whose agent starts with an empty cell in front (so forward moves it)."""
    from policylens.envs import make, parse_spec
    from test_dt_app import ENV

    for level in range(start, start + 50):
        env = make(parse_spec(ENV).replace(start_level=level, num_levels=1), 1, seed=0).envs[0]
        if env.grid.get(*env.front_pos) is None:
            return level
    raise AssertionError("no level with an empty cell ahead in 50")


@pytest.fixture(scope="module")
def app():
    from policylens import webapp
    from policylens.dt.app import AppSession
    from policylens.dt.app.server import create_app

    model = tiny_model()
    model.action_names = ["left", EVIL, "forward"]
    session = AppSession(model, level=open_level(), target_rtg=0.9)
    server, url = webapp.start_in_thread(*webapp.make_server(create_app(session), port=0))
    yield session, url
    server.should_exit = True
    server.thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture()
def page(app, browser):
    session, url = app
    session.configure(ablation=[], rtg=0.9)
    session.reset(open_level())
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("dialog", lambda d: (page.errors.append("dialog: " + d.message), d.dismiss()))
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    yield page
    assert page.errors == []
    page.close()


def agent_state(page) -> tuple:
    x, y, d, t, level = page.get_attribute("#agent-pos", "data-state").split(",")
    return int(x), int(y), int(d), int(t), int(level)


def wait_for_step(page, t: int):
    page.wait_for_function(f"document.getElementById('agent-pos').dataset.state.split(',')[3] === '{t}'")


@pytest.mark.slow
def test_keys_move_the_agent(page, app):
    x, y, d, t, level = agent_state(page)
    assert t == 0
    page.keyboard.press("ArrowUp")  # forward into the empty cell ahead
    wait_for_step(page, 1)
    dx, dy = [(1, 0), (0, 1), (-1, 0), (0, -1)][d]
    assert agent_state(page) == (x + dx, y + dy, d, 1, level)
    page.keyboard.press("ArrowLeft")
    wait_for_step(page, 2)
    assert agent_state(page) == (x + dx, y + dy, (d - 1) % 4, 2, level)
    session, _ = app
    assert (session.env.envs[0].agent_pos[0], session.t) == (x + dx, 2)  # the page shows the server's game


@pytest.mark.slow
def test_ablation_toggle_changes_the_shown_preferences(page):
    before = page.locator("#preferences").inner_text()
    page.click("input[data-component='blocks.0.attn.head0']")
    page.wait_for_function("document.querySelector('#preferences').innerText.includes('unablated')")
    after = page.locator("#preferences").inner_text()
    assert after != before
    assert page.locator("#contributions tr.ablated").count() == 1
    page.click("input[data-component='blocks.0.attn.head0']")  # back off: the original numbers return
    page.wait_for_function("!document.querySelector('#preferences').innerText.includes('unablated')")
    assert page.locator("#preferences").inner_text() == before


@pytest.mark.slow
def test_names_with_html_are_text(page):
    assert page.locator("img").count() == 0
    assert page.locator(f"button[data-action='{EVIL}']").inner_text() == EVIL
    assert EVIL in page.locator("#policy").inner_text()


@pytest.mark.slow
def test_bad_input_shows_the_servers_message(page):
    page.evaluate("request('/api/configure', {ablation: ['nope']})")  # what a stale page could send
    page.wait_for_selector("#error:not([hidden])")
    assert 'ablation ["nope"]: expected a list' in page.locator("#error").inner_text()
    assert page.errors == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"]
    page.errors.clear()
    page.keyboard.press("ArrowLeft")  # the game goes on, and the message goes away
    wait_for_step(page, 1)
    assert page.locator("#error").is_hidden()


def pixel(page, canvas: str, x: int, y: int) -> list:
    return page.evaluate(f"Array.from(document.getElementById('{canvas}').getContext('2d')"
                         f".getImageData({x}, {y}, 1, 1).data)")


@pytest.mark.slow
def test_state_map_has_a_colour_key_naming_the_pair_and_the_scale(page, app):
    session, _ = app
    assert page.is_visible("#map-key")
    analysis = session.view()["analysis"]
    a, b = analysis["contributions"]["preference"]
    top = max(abs(v) for row in analysis["state_map"]["cells"] for v in row)
    assert page.inner_text("#map-key-pos") == f"{a} +{top:.3f}" and page.inner_text("#map-key-neg") == f"−{top:.3f} {b}"
    assert f"blue favours {a}, red {b}" in page.inner_text("#map-key-note")
    width = page.evaluate("document.getElementById('map-key-bar').width")
    left, middle, right = (pixel(page, "map-key-bar", x, 5) for x in (0, width // 2, width - 1))
    assert abs(left[3] - 0.7 * 255 * (1 - 1 / width)) <= 2 and left[0] > 150 and left[2] < 80  # red: -top
    assert abs(right[3] - 0.7 * 255 * (1 - 1 / width)) <= 2 and right[2] > 150 and right[0] < 80  # blue: +top
    assert middle[3] <= 0.7 * 255 * 2 / width + 1  # about zero: clear
    page.click("#show-map")  # no map, no key
    assert page.is_hidden("#map-key")
    page.click("#show-map")
    assert page.is_visible("#map-key")


def end_episode(page):
    """Walk forward until the episode ends (a wall at the latest); the banner says so."""
    level = agent_state(page)[4]
    for _ in range(40):
        before = page.get_attribute("#agent-pos", "data-state")
        page.keyboard.press("ArrowUp")
        page.wait_for_function("(s) => document.getElementById('agent-pos').dataset.state !== s", arg=before)
        if agent_state(page)[4] != level:
            break
    assert page.is_visible("#banner") and page.inner_text("#banner").startswith("Episode over:")
    assert agent_state(page)[3] == 0
    return agent_state(page)[4]


@pytest.mark.slow
def test_episode_over_banner_goes_once_the_next_level_is_played_restarted_or_reloaded(page):
    for leave in ("ArrowLeft", "n", "r", "reload"):
        level = end_episode(page)
        if leave == "reload":
            page.reload()
            page.wait_for_selector("body[data-ready='1']")
        else:
            page.keyboard.press(leave)
        page.wait_for_selector("#banner", state="hidden", timeout=5000)
        assert "Episode over" not in page.inner_text("body"), leave
        page.wait_for_function("(n) => document.getElementById('agent-pos').dataset.state.endsWith(',' + n)",
                               arg=str({"n": level + 1}.get(leave, level)))
