"""benchmarks: results filed by benchmarks running at the same time are all kept; the editing benchmark runs."""
from __future__ import annotations

import json
import threading

import benchmarks.common as common
import pytest


def test_runs_filed_at_once_are_all_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "machine", lambda: {"cpus": 2})  # torch's thread count is not what is tested

    def filer(k: int) -> None:
        for j in range(25):
            common.file_run("shared", f"run {k}.{j}", {"value": k * 100 + j}, note="n")

    threads = [threading.Thread(target=filer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    filed = json.loads((tmp_path / "shared.json").read_text())
    assert len(filed["runs"]) == 100 and filed["runs"]["run 3.24"] == {"value": 324} and filed["note"] == "n"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["shared.json"]


@pytest.mark.slow
def test_edit_blindness_files_every_edit_against_the_control(tmp_path, monkeypatch):
    import benchmarks.edit_blindness as bench

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    bench.main(["--episodes", "12", "--record-episodes", "2"])
    filed = json.loads((tmp_path / "edit_blindness.json").read_text())
    assert filed["setup"]["episodes"] == 12 and "invisible=ball" in filed["control"]["env"]
    assert {"keep-others", "plain"} <= set(filed["edits"])
    for row in filed["edits"].values():  # every edit played the same 12 levels
        assert sum(row["deaths"].values()) <= 12 and 0 <= row["success"] <= 1
