"""The Atari blindness benchmark end to end at smoke-test size: an untrained agent on MsPacman, ghosts hidden."""
from __future__ import annotations

import json

import benchmarks.common as common
import pytest


@pytest.mark.slow
def test_quick_run_files_the_control_and_each_edit_on_paired_one_life_episodes(tmp_path, monkeypatch):
    import benchmarks.atari_blindness as bench

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    bench.main(["--quick", "--threads", "1"])
    r = json.loads((tmp_path / "atari_blindness_quick.json").read_text())
    n = r["setup"]["episodes"]
    assert r["setup"]["env"] == "atari:ms_pacman?ground_truth=true&max_frames=400&one_life=true"
    assert r["control"]["env"] == "atari:ms_pacman?ground_truth=true&invisible=ghost&max_frames=400&one_life=true"
    for side in ("original", "control"):
        assert sum(r[side]["deaths"].values()) == n and set(r[side]["deaths"]) <= {"ghost", "timeout", "other"}
        assert r[side]["cause"]["count"] == r[side]["deaths"].get("ghost", 0)
        lo, hi = r[side]["cause"]["ci95"]
        assert lo <= r[side]["cause"]["rate"] <= hi
    o, c = r["original"]["cause"], r["control"]["cause"]
    assert r["control"]["ratio"] == (c["rate"] / o["rate"] if o["count"] else None)
    for on in ("activations", "attributions"):
        found = r[on]
        assert len(found["directions"]) == r["setup"]["k"] == 2
        assert found["edits"] and set(found["edits"]) <= {"keep-others", "plain", "all-ball-directions"}
        for e in found["edits"].values():
            assert sum(e["deaths"].values()) == n  # the same episodes, edited
            assert len(e["restarts"]) == 5
            ghosts = o["count"] + c["count"] + e["deaths"].get("ghost", 0)
            assert (e["blindness_share"] is not None) == (ghosts > 0)  # a share where a ghost ended anything
            assert e["blindness_share"] is None or e["blindness_share"]["cause"] == "ghost"
            labels = [d["label"] for d in found["directions"]]
            assert set(e["chosen"].split(",")) <= set(labels)
    assert r["command"] == "python -m benchmarks.atari_blindness --quick --threads 1"
