"""Simulator targets (each against a hand computation; direction readouts equal the factors' coefficients) and
the video helpers (MiniGrid drawn by MiniGrid, heat laid out as drawn, overlay colours, GIF / MP4 round trips)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from policylens.factors import Directions, coefficients
from policylens.hidden.hx.core import analyze, zscore
from policylens.sim import video
from policylens.sim.loop import Rollout
from policylens.sim.model import Gaussian
from policylens.sim.targets import TARGETS, make_target, produced_hx

B, T, A, D = 3, 6, 3, 5


def _rollout(seed=0) -> Rollout:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    empty = Gaussian(torch.zeros(B, T - 1, 2), torch.ones(B, T - 1, 2))
    return Rollout(z=r(B, 4), obs=r(B, T, 7, 7, 3), decoded=r(B, T, 7, 7, 20), logits=r(B, T, A), value=r(B, T),
                   hx=r(B, T, D), hx_last=r(B, D), action=r(B, T, A), h=r(B, T, 4), s=r(B, T, 2), reward=r(B, T),
                   done_logit=r(B, T), prior=empty, posterior=None, z_dist=None)


def test_each_target_equals_its_hand_computation():
    r = _rollout()
    logp = torch.log_softmax(r.logits, -1)
    produced = torch.cat([r.hx[:, 1:], r.hx_last[:, None]], 1)
    kw = dict(action_names=("left", "right", "forward"), num_actions=A, hidden=D)
    cases = [
        (make_target("value", start=1, stop=4, **kw), r.value[:, 1:4].mean(1)),
        (make_target("value_drop", start=2, stop=5, **kw), r.value[:, 2] - r.value[:, 4]),
        (make_target("action", start=0, index="forward", **kw), logp[:, :, 2].mean(1)),
        (make_target("actions", start=3, sequence="left,forward,1", **kw),
         logp[:, 3, 0] + logp[:, 4, 2] + logp[:, 5, 1]),
        (make_target("neuron", start=5, index=4, **kw), r.hx_last[:, 4]),
    ]
    for target, expected in cases:
        torch.testing.assert_close(target(r), expected, msg=target.kind)
    torch.testing.assert_close(produced_hx(r), produced)
    assert set(TARGETS) == {"value", "value_drop", "action", "actions", "neuron", "direction"}


@pytest.mark.parametrize("method", ["pca", "ica", "nmf"])
@pytest.mark.slow
def test_direction_target_reads_the_coefficients_of_the_hx_analysis(method):
    rng = np.random.default_rng(0)
    states = rng.standard_normal((400, D)) @ rng.standard_normal((D, D)) * 3 + 2  # raw, not z-scored
    analysis = analyze(states.astype(np.float32), {}, k=3, clusters=2, tsne_frames=0, seed=0)
    directions = analysis.directions[method]
    r = _rollout(1)
    target = make_target("direction", start=2, stop=3, index=1, directions=directions, hidden=D)
    z = zscore(produced_hx(r)[:, 2], analysis.mean, analysis.std)  # (B, D)
    if method == "nmf":  # NMF's own fit is non-negative least squares; the target reads the least-squares span
        v = directions.vectors.double()
        rows = z.double() - torch.as_tensor(directions.meta["mean"], dtype=torch.float64)
        expected = (rows @ torch.linalg.pinv(v))[:, 1].float()
    else:
        expected = coefficients(z, directions)[:, 1]
    torch.testing.assert_close(target(r), expected, rtol=1e-4, atol=1e-4)


def test_bad_targets_are_refused_naming_what_exists():
    kw = dict(action_names=("left", "right"), num_actions=2, hidden=D)
    with pytest.raises(ValueError, match="expected one of value"):
        make_target("speed", **kw)
    with pytest.raises(KeyError, match="actions: left, right"):
        make_target("action", index="jump", **kw)
    with pytest.raises(KeyError, match="has 5 units"):
        make_target("neuron", index=5, **kw)
    with pytest.raises(ValueError, match="needs directions"):
        make_target("direction", **kw)
    with pytest.raises(ValueError, match="needs the index or label"):
        make_target("direction", index=None, directions=Directions(torch.eye(D)[:2], "hx", ("a", "b"), "pca", {}), **kw)
    with pytest.raises(ValueError, match="empty"):
        make_target("value", start=3, stop=3, **kw)
    with pytest.raises(ValueError, match="does not fit a rollout of 6 steps"):
        make_target("value", start=4, stop=9, **kw)(_rollout())


# ------------------------------------------------------------------------------------------------------- video
def test_minigrid_frames_are_drawn_upright_by_minigrids_renderer():
    from minigrid.core.constants import OBJECT_TO_IDX

    codes = np.zeros((1, 7, 7, 3), np.uint8)  # unseen everywhere
    codes[0, :, :, 0] = OBJECT_TO_IDX["empty"]
    codes[0, 0, 6, 0] = OBJECT_TO_IDX["wall"]  # x = 0 (left), y = 6 (the agent's row, bottom)
    frame = video.render_obs(codes, "symbolic", tile=8)[0]
    assert frame.shape == (56, 56, 3)
    wall, floor = frame[6 * 8 + 4, 0 * 8 + 4], frame[0 * 8 + 4, 6 * 8 + 4]
    assert wall.mean() > 80 and floor.mean() < wall.mean()  # the wall is bottom-left, grey; the floor darker
    heat = np.zeros((1, 7, 7, 3))
    heat[0, 0, 6, 1] = 2.0  # the wall's cell in the obs array's [x, y] layout
    cells = video.cell_heat(heat, "symbolic")
    assert cells[0, 6, 0] == 2.0 and cells.sum() == 2.0  # row 6, column 0: where the wall is drawn
    garbage = np.full((2, 7, 7, 3), 250, np.uint8)  # codes MiniGrid cannot decode draw as unseen, not a crash
    assert video.render_obs(garbage, "symbolic").shape == (2, 112, 112, 3)


def test_overlay_is_red_for_positive_blue_for_negative_and_clear_for_zero():
    frames = np.full((2, 4, 4, 3), 100, np.uint8)
    heat = np.zeros((2, 2, 2))
    heat[0, 0, 0], heat[1, 1, 1] = 1.0, -1.0
    out = video.overlay(frames, heat, strength=1.0).astype(int)
    assert (out[0, :2, :2] == [220, 30, 30]).all() and (out[1, 2:, 2:] == [30, 80, 230]).all()
    assert (out[0, 2:, 2:] == 100).all()
    half = video.overlay(frames, heat / 2, scale=1.0, strength=1.0).astype(int)  # a shared scale: half strength
    assert (half[0, 0, 0] == [160, 65, 65]).all()
    with pytest.raises(ValueError, match="whole blocks"):
        video.overlay(frames, np.zeros((2, 3, 3)))


@pytest.mark.slow
def test_caption_grid_and_videos_round_trip(tmp_path):
    from PIL import Image

    frames = (np.random.default_rng(0).random((5, 20, 30, 3)) * 255).astype(np.uint8)
    shown = video.caption(frames, [f"t={t}" for t in range(5)], height=10)
    assert shown.shape == (5, 30, 30, 3) and (shown[:, :20] == frames).all()
    long = video.caption(frames, ["step 3 RIGHT+UP v=0.71"] * 5, height=10)  # too wide for 30 pixels
    factor = long.shape[2] // 30
    assert factor > 1 and long.shape == (5, 20 * factor + 10, 30 * factor, 3)
    assert (long[:, :20 * factor:factor, ::factor] == frames).all()  # the frames, enlarged by whole pixels
    both = video.grid([frames, frames[:3]], gap=2)
    assert both.shape == (5, 20, 62, 3) and (both[4, :, 32:] == frames[2]).all()  # padded with the last frame
    gif = video.write_video(both, tmp_path / "a.gif", fps=5)
    with Image.open(gif) as im:
        assert im.n_frames == 5 and im.info["duration"] == 200
    pytest.importorskip("av")
    import av

    mp4 = video.write_video(frames, tmp_path / "a.mp4")
    with av.open(str(mp4)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == 5 and decoded[0].shape == (20, 30, 3)
    with pytest.raises(ValueError, match=".gif or .mp4"):
        video.write_video(frames, tmp_path / "a.avi")
