"""Run directories: where a RUN's outputs go, and the one rule every command follows before writing one;
how an output names the run it came from (:func:`run_label`) and the weights it was made with (:func:`sha256`).

A RUN is a run directory, a checkpoint folder or ``zoo:NAME``. The zoo is read-only: the outputs of a zoo agent
(``zoo:NAME``, or a path inside the zoo) go under ``runs/NAME/``.

An output that already exists is never replaced or appended to silently: :func:`prepare_out` refuses it unless
the command is told, with ``--resume`` (where the command continues what is there) or ``--overwrite`` (the old
output is removed first, so nothing of it is mixed into the new one).

>>> out = prepare_out("runs/x/rollouts.zarr", what="rollouts store", resume=cfg.resume, overwrite=cfg.overwrite)
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

RUNS = Path("runs")  # where the outputs of zoo agents go (relative to the working directory)


def zoo_dir() -> Path:
    """The zoo: ``$POLICYLENS_ZOO`` or the ``zoo/`` folder of the source checkout."""
    env = os.environ.get("POLICYLENS_ZOO")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "zoo"


def zoo_name(run) -> "str | None":
    """The zoo entry ``run`` names (``zoo:NAME``, or a path inside the zoo), else None."""
    text = str(run)
    if text.startswith("zoo:"):
        return text[4:].strip("/").split("/")[0] or None
    try:
        parts = Path(text).resolve().relative_to(zoo_dir().resolve()).parts
    except ValueError:
        return None
    return parts[0] if parts else None


def in_zoo(path) -> bool:
    """Whether ``path`` is the zoo or lies inside it."""
    try:
        Path(path).resolve().relative_to(zoo_dir().resolve())
        return True
    except ValueError:
        return False


def run_dir(run, agent_dir: "Path | None" = None) -> Path:
    """Where the outputs of RUN go: ``runs/NAME`` for a zoo agent, else the run directory (the folder above
    ``agent/`` when ``agent_dir`` (or RUN) is a checkpoint folder named ``agent``)."""
    name = zoo_name(run)
    if name is not None:
        return RUNS / name
    folder = Path(agent_dir) if agent_dir is not None else Path(str(run))
    return folder.parent if folder.name == "agent" else folder


def default_out(run, agent_dir: "Path | None" = None, name: str = "rollouts.zarr") -> Path:
    """``run_dir(run) / name``: e.g. where a rollouts store of RUN goes by default."""
    return run_dir(run, agent_dir) / name


def run_label(run) -> str:
    """How an output names the run it came from: ``zoo:NAME`` as given, a path made absolute."""
    return str(run) if str(run).startswith("zoo:") else str(Path(run).resolve())


def sha256(file) -> str:
    """The sha256 hex digest of a file's bytes (e.g. an agent's ``weights.safetensors``: its identity)."""
    return hashlib.sha256(Path(file).read_bytes()).hexdigest()


def _present(path: Path) -> bool:
    """A file, a link, or a folder with something in it (an empty folder is no output)."""
    if path.is_symlink() or path.is_file():
        return True
    return path.is_dir() and any(path.iterdir())


def _remove(path: Path) -> None:
    here = Path.cwd().resolve()
    resolved = path.resolve()
    if resolved in (here, *here.parents, Path.home().resolve()):
        raise ValueError(f"refusing to remove {path} (the working directory, one above it or home) for --overwrite; "
                         "write to a folder of its own")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def prepare_out(path, *, overwrite: bool = False, resume: "bool | None" = None, what: str = "output",
                parts=None) -> Path:
    """Check that ``path`` may be written, as the command was told; returns it.

    ``parts``: names under ``path`` that make up this command's output when ``path`` is a folder shared with
    other outputs (a run directory): only they count, and only they are removed by ``overwrite``; default: the
    whole of ``path``. ``resume``: None for a command that cannot continue an output (only ``--overwrite`` lets
    it replace one); True keeps what is there for the command to continue. Refuses (ValueError) any path inside
    the zoo, and an existing output (FileExistsError naming it and the flag to pass) unless told."""
    path = Path(path)
    if in_zoo(path):
        raise ValueError(f"{path} lies inside the zoo ({zoo_dir()}), which is read-only; the outputs of a zoo agent "
                         f"go under {RUNS}/NAME (choose another --out)")
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue the output or replace it")
    targets = [path / p for p in parts] if parts else [path]
    present = [t for t in targets if _present(t)]
    if not present or resume:
        return path
    if not overwrite:
        flags = "--overwrite to replace it" if resume is None else "--resume to continue it or --overwrite to replace it"
        raise FileExistsError(f"{what} already exists: {', '.join(map(str, present))}; pass {flags}, or choose "
                              "another output")
    for target in present:
        _remove(target)
    return path
