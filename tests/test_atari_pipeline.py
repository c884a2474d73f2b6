"""Every analysis on Atari agents, at tiny sizes, on real ALE Breakout with OCAtari's ground truth: a randomly
initialised ``nature`` agent, and a Stable-Baselines3 CnnPolicy trained here on policylens's Gymnasium view and
brought in with ``policylens import sb3``. Integrated gradients on a hidden layer, NMF scored against OCAtari's
masks, dataset examples and the explorer drawn from the 84x84 grey stack (never as RGB) with the game's own
screen beside it, editing by cause, ``compare --invisible``, the saliency tree and evaluation by cause."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch

pytest.importorskip("ale_py")
pytest.importorskip("ocatari")

from pipeline import pl, run_pipeline  # noqa: E402
from policylens import agents, envs, rollouts  # noqa: E402
from policylens.envs.atari import preprocess  # noqa: E402
from policylens.explorer.encode import read_js  # noqa: E402

GAME = "atari:breakout"
SHORT = "atari:breakout?max_frames=1600"  # whole games cut at 400 steps: evaluations stay short


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A randomly initialised nature agent for Breakout, with 2 recorded episodes of at most 40 steps."""
    run = tmp_path_factory.mktemp("atari") / "run"
    cfg = {"arch": "nature", "obs_shape": [84, 84, 4], "num_actions": 4}
    torch.manual_seed(0)
    agents.save_agent(agents.build(cfg), cfg, run / "agent", extra={"env": GAME})
    pl("record", run, "--episodes", 2, "--num-envs", 2, "--max-steps", 40, "--progress", "false")
    return run


def sheet_tile(frames: dict, t: int) -> np.ndarray:
    """Frame ``t`` of an explorer sprite sheet payload (``{"sheet", "columns", "tile"}``), ``(h, w, 3)``."""
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(frames["sheet"].split(",", 1)[1]))).convert("RGB"))
    (h, w), cols = frames["tile"], frames["columns"]
    r, c = divmod(t, cols)
    return image[r * h:(r + 1) * h, c * w:(c + 1) * w]


# ---------------------------------------------------------------- what is recorded and drawn


@pytest.mark.slow
def test_the_game_screen_is_what_the_newest_frame_is_made_from_and_shows_hidden_objects():
    """env.render() is the step's last emulator frame: without max-pooling the observation's newest frame is
    exactly its grey 84x84 resize; with invisible=ball the agent's frame loses the ball where the game screen
    keeps it (and equals it where there is no ball); a saved state brings the screen back."""
    plain = envs.make(GAME + "?max_pool=false&fire_reset=false", num_envs=1, seed=3)  # no ball before FIRE
    hidden = envs.make(GAME + "?max_pool=false&fire_reset=false&invisible=ball", num_envs=1, seed=3)
    plain.reset(3)
    obs = hidden.reset(3)
    rng, saw_ball, saw_none = np.random.default_rng(0), 0, 0
    for step in range(60):
        screen = plain.render()
        assert screen.shape == (1, 210, 160, 3) and screen.dtype == np.uint8
        np.testing.assert_array_equal(preprocess(screen[0], 84, True)[..., 0], plain.observe()[0][..., 3])
        game = preprocess(hidden.render()[0], 84, True)[..., 0]
        np.testing.assert_array_equal(game, preprocess(screen[0], 84, True)[..., 0])  # the game runs unchanged
        ball = any(e["type"] == "ball" for e in hidden.entities()[0])
        if ball:
            saw_ball += int((game != obs[0][..., 3]).any())
        else:
            saw_none += 1
            np.testing.assert_array_equal(game, obs[0][..., 3])
        if step == 30:
            saved, kept = hidden.get_state(), hidden.render().copy()
        a = rng.choice([0, 2, 3], size=1) if step < 10 else [1] if step == 10 else rng.integers(4, size=1)
        plain.step(a)
        obs = hidden.step(a)[0]
    assert saw_ball >= 5 and saw_none >= 1
    hidden.set_state(saved)
    np.testing.assert_array_equal(hidden.render(), kept)


def test_a_frame_stack_is_drawn_as_its_newest_frame_not_as_rgb():
    from policylens.envs.render import frame_stack, stack_picture
    from policylens.explorer.bundle import strip_stack
    from policylens.explorer.views import display_frames
    from policylens.featvis.thumbnails import _rgb

    obs = np.zeros((3, 84, 84, 4), np.uint8)
    obs[..., 0], obs[..., 3] = 200, 10  # the oldest frame bright, the newest dark
    assert frame_stack(GAME) == 4 and frame_stack(GAME + "?frame_stack=2") == 2 and frame_stack("gym:CartPole-v1") == 1
    frames, how = display_frames(obs, GAME)
    assert how == "newest" and (frames == 10).all() and frames.shape == (3, 84, 84, 3)
    assert (_rgb(obs[0], 4) == 10).all() and _rgb(obs[0], 1)[..., 0].max() == 200  # featvis figures alike
    strip = stack_picture(obs, 4, strip=True)
    assert strip.shape == (3, 84, 336, 3) and (strip[:, :, :84] == 200).all() and (strip[:, :, 252:] == 10).all()
    real = envs.make(GAME, num_envs=1, seed=0)
    episode = [real.reset(0)[0]] + [real.step([a])[0][0] for a in (1, 3, 3, 2, 2, 3, 1, 0)]
    assert strip_stack(np.stack(episode), GAME) == 4  # the stacks are the newest frames of the steps before
    assert strip_stack(np.stack(episode[::-1]), GAME) == 1  # not so in reverse: no strip is drawn


@pytest.mark.slow
def test_the_store_holds_the_stack_the_game_screen_and_ocatari_masks(run):
    from policylens.scores import episode_masks

    store = rollouts.open(run / "rollouts.zarr")
    assert {"obs", "render", "entities"} <= set(store.fields) and store.metadata["obs_shape"] == [84, 84, 4]
    ep = store.episode(0)
    assert ep["render"].shape == (ep.length, 210, 160, 3) and ep["render"].std() > 0
    masks = episode_masks(store, 0)
    assert {"ball", "block", "player"} <= set(masks)
    rows = np.flatnonzero(masks["player"].any(axis=(0, 2)))  # the paddle near the bottom of the 84x84 frame
    assert rows.min() >= 70 and rows.max() < 84
    blocks = np.flatnonzero(masks["block"].any(axis=(0, 2)))  # the rows of bricks, a band above the middle
    assert 20 <= blocks.min() and blocks.max() <= 40
    # each observation shows its 4 stacked frames: its masks are those of steps t-3..t (step 0 before the start)
    from policylens.envs.atari_truth import entity_masks

    own = [entity_masks(json.loads(e), (84, 84)).get("ball", np.zeros((84, 84), bool)) for e in ep["entities"]]
    for t in range(ep.length):
        np.testing.assert_array_equal(masks["ball"][t], np.any([own[max(0, t - b)] for b in range(4)], axis=0))
    assert any((masks["ball"][t] & ~own[t]).any() for t in range(ep.length))  # the ball's earlier places too


@pytest.mark.slow
def test_a_recording_on_workers_stores_each_steps_game_screen_too(run, tmp_path):
    """record --backend process (episodes played by plan, as evaluate plays them) keeps the game's screen of each
    step: without max-pooling the newest frame of every stored observation is that screen in grey at 84x84."""
    store = tmp_path / "plan.zarr"
    pl("record", run, "--episodes", 1, "--backend", "process", "--max-steps", 30, "--out", store, "--env",
       GAME + "?max_pool=false", "--progress", "false")
    ep = rollouts.open(store).episode(0)
    assert ep["render"].shape == (ep.length, 210, 160, 3) and ep.length == 30
    for t in range(ep.length):
        np.testing.assert_array_equal(preprocess(ep["render"][t], 84, True)[..., 0], ep["obs"][t][..., 3])


# ---------------------------------------------------------------- the analyses, command by command


@pytest.mark.slow
def test_integrated_gradients_on_a_hidden_layer(run):
    from policylens.attribution.results import load_attributions

    out = run / "ig.npz"
    pl("attribute", run, "--layer", "conv3", "--steps", 32, "--out", out, "--progress", "false")
    arrays, meta = load_attributions(out)
    frames = rollouts.open(run / "rollouts.zarr").num_frames
    assert arrays["attribution"].shape == (frames, 64, 7, 7) and meta["layer"] == "conv3"
    # sum(attr) - delta = F(x) - F(0): with F(x) the value recorded with each frame, F(0) (conv3 zeroed: the
    # same for every frame) comes out the same for all of them
    store = rollouts.open(run / "rollouts.zarr")
    value = np.concatenate([store.episode(e)["value"] for e in range(len(store))])[arrays["frame"]]
    f_zero = value - (arrays["attribution"].reshape(frames, -1).sum(1, dtype=np.float64) - arrays["delta"])
    assert f_zero.std() < 1e-5 * max(1.0, np.abs(f_zero).max()) and meta["delta"]["max_abs"] > 0


@pytest.mark.slow
def test_nmf_directions_scored_against_ocatari_masks(run):
    from policylens.scores import pool_masks, score_layer, store_frames

    store = rollouts.open(run / "rollouts.zarr")
    obs, masks = store_frames(store)
    found = score_layer(agents.load(run / "agent"), obs, masks, "conv3", k=3, restarts=2, bootstrap=1)
    pooled = pool_masks(masks, (7, 7))
    for row in found.scores["directions"]:
        assert set(row["entities"]) == {"ball", "block", "player"}
        for kind, score in row["entities"].items():
            assert score["base_rate"] == pytest.approx(float(pooled[kind].mean()))
    assert 0 <= found.scores["interpretable_share"] <= 1 and found.maps.shape == (len(obs), 3, 7, 7)


@pytest.mark.slow
def test_dataset_examples(run):
    pl("featvis", run, "--layer", "conv3", "--channels", "0,1", "--k", 2, "--progress", "false")
    out = run / "analysis" / "featvis" / "conv3"
    examples = np.load(out / "examples.npz")["patches"]
    assert examples.shape[:2] == (2, 2) and examples.shape[-1] == 4  # the arrays keep the whole stack
    assert (out / "examples.png").is_file() and (out / "spatial.png").is_file()


@pytest.mark.slow
def test_the_explorer_shows_the_agents_frames_and_the_games_screen(run):
    pl("explore", run, "--episodes", "0-1", "--steps", 16, "--k", 2, "--nmf-frames", 32, "--bookmarks", 2,
       "--progress", "false")
    data = run / "explorer" / "data"
    manifest = read_js(data / "manifest.js")[1]
    assert manifest["view"]["stack"] == 4
    layer = manifest["layers"][0]
    assert layer["name"] == "conv3" and layer["meta"]["nmf_dtype"] == "float32" and layer["meta"]["nmf_bootstrap"] == 2
    kinds = set(layer["meta"]["entities"]["directions"][0]["entities"])  # legend labels scored on OCAtari masks
    assert kinds == {"ball", "block", "player"}
    traj = read_js(data / "t0.js")[1]
    store = rollouts.open(run / "rollouts.zarr")
    ep = store.episode(0)
    assert traj["frames"]["display"] == "newest" and traj["frames"]["stack"] == 4 and traj["frames"]["tile"] == [84, 84]
    for t in (0, 7):
        np.testing.assert_array_equal(sheet_tile(traj["frames"], t), np.repeat(ep["obs"][t][..., 3:], 3, -1))
        np.testing.assert_array_equal(sheet_tile(traj["render"], t), ep["render"][t])
    tree = traj["trees"]["0"]
    assert tree["layers"] == ["fc", "conv3", "conv2", "conv1", "input"]


@pytest.mark.slow
def test_the_saliency_tree_reaches_pixels_through_the_frame_stack(run):
    from policylens.attribution import saliency_tree, tree_nodes

    agent = agents.load(run / "agent")
    obs = torch.as_tensor(rollouts.open(run / "rollouts.zarr").episode(0)["obs"][5:6])  # (1, 84, 84, 4)
    tree = saliency_tree(agent, obs, k=2)
    leaves = [n for n in tree_nodes(tree) if n["layer"] == "input"]
    assert len(leaves) == 2 ** 5
    x = obs.float().requires_grad_()  # a leaf's score: grad x input summed over the stack's 4 frames
    unit = tree["children"][0]["children"][0]["children"][0]["children"][0]  # a conv1 unit
    c, y0, x0 = unit["unit"]
    acts = {}
    handle = agents.get_layer(agent, "conv1").register_forward_hook(lambda m, i, o: acts.setdefault("conv1", o))
    try:
        agent(x)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(acts["conv1"][0, c, y0, x0], x)
    per_pixel = (grad * x)[0].sum(-1)  # (84, 84)
    for leaf in unit["children"]:
        y, xx = leaf["unit"]
        assert 0 <= y < 84 and 0 <= xx < 84
        assert leaf["score"] == pytest.approx(float(per_pixel[y, xx].detach()), rel=1e-4, abs=1e-6)


@pytest.mark.slow
def test_edit_by_cause_and_compare_with_the_invisible_object_control(run, tmp_path):
    edited = tmp_path / "blind"
    pl("edit", run, "--layer", "conv3", "--blind", "ball", "--k", 3, "--restarts", 2, "--force", "--out", edited)
    blind = json.loads((edited / "blind.json").read_text())
    assert blind["entity"] == "ball" and blind["chosen"]
    assert agents.read_config(edited / "agent")["edits"]
    pl("compare", run, edited, "--invisible", "ball", "--episodes", 2, "--env", SHORT, "--out", tmp_path / "cmp",
       "--progress", "false")
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    control = result["control"]
    assert control["invisible"] == ["ball"] and "invisible=ball" in control["env"]
    assert control["episodes"] == result["episodes"] == 2 and "ball" in control["blindness"]


@pytest.mark.slow  # fast: by cause on Breakout in test_atari_cli, two workers equal one in test_evaluate
def test_evaluation_by_cause_over_episodes_in_worker_processes(run, capsys):
    capsys.readouterr()
    pl("evaluate", run, "--episodes", 4, "--workers", 2, "--env", SHORT, "--json", "--progress", "false")
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 4 and sum(result["causes"].values()) == 4
    assert {k for k, v in result["causes"].items() if v} <= {"ball", "timeout"}


# ---------------------------------------------------------------- an agent trained elsewhere


@pytest.mark.slow  # fast: SB3's CnnPolicy on Atari frames in test_import_sb3, the commands on the nature agent above
def test_an_sb3_cnn_policy_trained_on_breakout_goes_through_every_command(tmp_path):
    """PPO CnnPolicy trained a few hundred steps by Stable-Baselines3 on policylens's Gymnasium view of
    atari:breakout, imported from its zip; then record, evaluate, attribute, factorize, explore, edit, compare."""
    sb3 = pytest.importorskip("stable_baselines3")
    from policylens.envs import gymnasium_env

    model = sb3.PPO("CnnPolicy", gymnasium_env(GAME, seed=0), n_steps=64, batch_size=64, n_epochs=1, seed=0)
    model.learn(128)
    model.save(tmp_path / "breakout.zip")
    run = tmp_path / "sb3"
    pl("import", "sb3", tmp_path / "breakout.zip", "--env", GAME, "--out", run)
    out = run_pipeline(run, "conv3", env=SHORT, max_steps=12)
    assert out["compare"]["episodes"] == 2
    traj = read_js(run / "explorer" / "data" / "t0.js")[1]
    assert traj["render"]["tile"] == [210, 160] and traj["frames"]["stack"] == 4
    obs = rollouts.open(out["store"]).episode(0)["obs"]
    with torch.no_grad():  # the imported agent acts as SB3's policy on the frames it recorded
        ours = agents.load(run / "agent")(torch.as_tensor(obs)).value
    sb3_value = model.policy.predict_values(model.policy.obs_to_tensor(obs)[0])[:, 0]
    torch.testing.assert_close(ours, sb3_value.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_the_page_draws_the_newest_frame_its_stack_and_the_game_screen(run):
    """In Chromium, opened from disk: the observation canvas shows the newest grey frame, the strip beneath it
    the 4 stacked frames oldest first, the panel beside it the game's colour screen, each frame's own."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium not found (apt install chromium)")
    sync = pytest.importorskip("playwright.sync_api")
    index = run / "explorer" / "index.html"
    if not index.is_file():
        pl("explore", run, "--episodes", "0-1", "--steps", 16, "--k", 2, "--nmf-frames", 32, "--bookmarks", 2,
           "--progress", "false")
    ep = rollouts.open(run / "rollouts.zarr").episode(0)
    with sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        problems = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.goto(index.as_uri())
        page.wait_for_function("() => window.explorer && window.explorer.ready", timeout=15000)
        assert page.evaluate("[window.explorer.game, window.explorer.stack]") == [True, 4]
        for t in (0, 9):
            page.evaluate(f"window.explorer.setFrame({t})")
            canvases = page.evaluate("""() => Object.fromEntries(["obs-canvas", "stack-canvas", "render-canvas"]
                .map((id) => { const c = document.getElementById(id);
                  return [id, [c.width, c.height, Array.from(c.getContext("2d").getImageData(0, 0, c.width,
                  c.height).data)]]; }))""")
            def picture(name):
                w, h, data = canvases[name]
                return np.asarray(data, np.uint8).reshape(h, w, 4)[..., :3]
            obs = picture("obs-canvas")  # 256x256, the 84x84 frame scaled by nearest neighbour
            rows = (np.arange(84) * 256 + 128) // 84
            np.testing.assert_array_equal(obs[rows][:, rows, 0], ep["obs"][t][..., 3])
            strip = picture("stack-canvas")  # 4 cells, each the 84x84 frame drawn 63 wide and 64 high, oldest first
            ys, xs = ((np.arange(64) + 0.5) * 84 / 64).astype(int), ((np.arange(63) + 0.5) * 84 / 63).astype(int)
            for j in range(4):
                want = ep["obs"][t][..., j][ys][:, xs]  # nearest-neighbour sampling
                assert (strip[:, j * 64:j * 64 + 63, 0] == want).mean() > 0.97
            game = picture("render-canvas")  # 195x256, the 210x160 screen scaled
            ys, xs = (np.arange(0, 210, 7) * game.shape[0] + game.shape[0] // 2) // 210, \
                (np.arange(0, 160, 8) * game.shape[1] + game.shape[1] // 2) // 160
            assert (np.abs(game[ys][:, xs].astype(int) - ep["render"][t][::7, ::8].astype(int)) <= 1).mean() > 0.95
        browser.close()
    assert problems == []
