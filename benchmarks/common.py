"""Shared bits of the benchmarks: machine facts and writing results as JSON."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


def write(name: str, result: dict) -> Path:
    """``results/NAME.json`` with the machine's facts, written aside and renamed (a reader never sees half)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"machine": machine(), **result}, indent=2))
    os.replace(tmp, path)
    print(f"wrote {path}")
    return path


def file_run(name: str, label: str, result: dict, **shared) -> Path:
    """Put ``result`` under ``runs[label]`` of ``results/NAME.json``, keeping the other runs there; ``shared``:
    top-level entries every run is read against (e.g. the environment's own figures), replaced. A note under
    ``not_run[label]`` (why a run is missing) goes once the run is filed."""
    import fcntl

    path = RESULTS / f"{name}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f".{name}.lock", "w") as lock:  # two benchmarks filing at once both keep their runs
        fcntl.flock(lock, fcntl.LOCK_EX)
        filed = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
        filed.pop("machine", None)
        filed["runs"][label] = result
        if label in filed.get("not_run", {}):
            del filed["not_run"][label]
            if not filed["not_run"]:
                del filed["not_run"]
        return write(name, {**filed, **shared})
