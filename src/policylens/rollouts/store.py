"""The rollouts store: recorded episodes in a zarr v3 directory, chunked, compressed, append-only; read here,
written by :class:`~policylens.rollouts.writer.StoreWriter`.

Layout of ``STORE/`` (frames of all episodes concatenated in the order they were committed)::

    zarr.json          attrs: format, env, run, agent config, action_names, obs_shape, fields, recording settings
    obs/               (F, H, W, C) uint8       observation the agent saw at each step ((F, D) float32 vectors
                                                for gym: envs with vector observations)
    action/            (F,) int32               action it took
    logits/            (F, A) float32           its policy logits
    value/             (F,) float32             its value estimate
    reward/            (F,) float32             reward received for the action
    done/              (F,) bool                True exactly on each episode's last frame
    level_seed/        (F,) int64               level (seed) of the frame's episode
    agent_state/       (F, hidden) float32      recurrent agents only: the state the agent *received* at the step
                                                (its input hx, already reset to h0 on an episode's first frame)
    entities/          (F,) str                 where the env gives them: JSON list of {"type", "x", "y", ...}
    render/            (F, h, w, 3) uint8       where the env draws one: the game's own picture of the step
                                                (Atari: the 210x160 RGB screen), as people see the game
    env_state_end/     (F,) int64               optional: end offset of each frame's env state bytes in ...
    env_state_data/    (S,) uint8               ... all env states concatenated (read as field ``env_state``)
    advantages/ returns/ (F,) float32           GAE, written after recording (attrs gamma, lam, num_frames)
    episodes/          the episode index, (E,) each: start, length, level_seed, return, cause;
                       attrs {num_episodes, num_frames}: the commit

Every chunk of every array is written (none is left to the fill value) and ends with a crc32c checksum, so a
missing or corrupt chunk is an error naming the episode and the field (:mod:`policylens.rollouts.integrity`).

Commit protocol (what makes ``kill -9`` safe): an append writes the frame arrays first, then the index arrays,
then the commit counters in ``episodes/zarr.json``. Every file zarr writes is replaced atomically, so a killed
append leaves the previous commit intact; anything past it (a torn tail) is ignored by readers and truncated
away when a writer next opens the store. Only one writer at a time (an exclusive lock on the directory).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal, NoReturn

import numpy as np
import zarr

from .integrity import bad_chunk, chunk_file, chunk_items, damage, frame_episodes, missing_chunks, state_episodes
from .layout import INDEX_FIELDS, STATE_DATA, STATE_END

FORMAT = "policylens.rollouts/1"
OBS_CHUNK = 256  # frames per obs chunk (~2.4 MB raw for 56x56x3)
SMALL_CHUNK = 16384  # frames per chunk of the small per-step fields
INDEX_CHUNK = 4096  # episodes per chunk of the index arrays
STATE_DATA_CHUNK = 1 << 22  # bytes per chunk of env_state_data
BLOCK_FRAMES = 4096  # frames read at once by batches()
DERIVED = ("advantages", "returns")


def _no_store(path: Path) -> NoReturn:
    raise FileNotFoundError(f"no rollouts store at {path} ({path / 'zarr.json'} not found); "
                            f"record one with `policylens record RUN --out {path}`")


def _open_group(path: Path, mode: Literal["r", "r+", "a", "w", "w-"]):
    if not (path / "zarr.json").is_file():
        _no_store(path)
    try:
        group = zarr.open_group(str(path), mode=mode)
        fmt = group.attrs.get("format")
    except Exception as e:
        raise ValueError(f"{path / 'zarr.json'} is not a readable zarr group: {e}") from None
    if fmt != FORMAT:
        raise ValueError(f"{path} is not a policylens rollouts store (format {fmt!r} in {path / 'zarr.json'}, "
                         f"expected {FORMAT!r})")
    return group


def _member(group, name: str, path: Path):
    try:
        return group[name]
    except Exception as e:
        raise ValueError(f"corrupt rollouts store: {path / name} is missing or unreadable ({e!r})") from None


def read_commit(group, path: Path) -> tuple[int, int, dict]:
    """The committed ``(num_episodes, num_frames, index)``, index = ``{name: (E,) array}``, validated."""
    episodes = _member(group, "episodes", path)
    meta = path / "episodes" / "zarr.json"
    n_ep, n_fr = episodes.attrs.get("num_episodes"), episodes.attrs.get("num_frames")
    if not isinstance(n_ep, int) or not isinstance(n_fr, int) or n_ep < 0 or n_fr < 0:
        raise ValueError(f"corrupt episode index: {meta} lacks valid num_episodes/num_frames ({n_ep!r}, {n_fr!r})")
    index = {}
    for name in INDEX_FIELDS:
        arr = _member(episodes, name, path / "episodes")
        if arr.shape[0] < n_ep:
            raise ValueError(f"corrupt episode index: {path / 'episodes' / name} has {arr.shape[0]} entries "
                             f"but {meta} commits {n_ep} episodes")
        lost = missing_chunks(arr, path / "episodes" / name, f"episodes/{name}", 0, n_ep)
        if lost:
            raise ValueError(f"corrupt episode index: {chunk_file(path / 'episodes' / name, arr, lost[0])} is "
                             f"missing (episodes {chunk_items(arr, lost[0])[0]}..{chunk_items(arr, lost[0])[1] - 1})")
        try:
            index[name] = arr[:n_ep]  # (E,)
        except Exception as e:
            raise ValueError(f"corrupt episode index: cannot read {path / 'episodes' / name}: {e!r}") from None
    length = index["length"]  # (E,)
    starts = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)  # (E,)
    if int(length.sum()) != n_fr or (n_ep and (length.min() <= 0 or not np.array_equal(index["start"], starts))):
        raise ValueError(f"corrupt episode index in {path / 'episodes'}: starts/lengths are not contiguous "
                         f"or do not add up to the {n_fr} committed frames")
    index["cause"] = index["cause"].astype(str)
    return n_ep, n_fr, index


def frame_fields(group) -> list:
    """Names of the per-frame fields recorded in the store (not the derived ones)."""
    return list(group.attrs.get("fields", []))


def check_length(arr, path: Path, n_frames: int) -> None:
    """A frame array must hold at least the committed frames (more is a torn tail)."""
    if arr.shape[0] < n_frames:
        raise ValueError(f"corrupt rollouts store: {path} holds {arr.shape[0]} frames but the index commits {n_frames}")


def split_episodes(num_episodes: int, val_fraction: float, seed: int = 0) -> tuple:
    """Episodes ``(train, held_out)`` (sorted index arrays), a seeded split; held-out gets
    ``round(E * val_fraction)`` episodes (>= 1 when ``val_fraction > 0`` and there are at least two)."""
    order = np.random.default_rng(seed).permutation(num_episodes)  # (E,)
    n_val = int(round(num_episodes * val_fraction))
    if val_fraction > 0 and num_episodes > 1:
        n_val = min(max(n_val, 1), num_episodes - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class Episode(Mapping):
    """One episode: ``ep["obs"]`` reads that field's frames ``(T, ...)`` from the store when accessed.

    ``ep.info``: ``{"index", "start", "length", "level_seed", "cause", "return"}`` (from the index, no frame read).
    """

    def __init__(self, store: "Rollouts", i: int):
        self.store = store
        self.info = {"index": i, **{k: v[i].item() for k, v in store.index.items()}}
        self.start, self.length = int(self.info["start"]), int(self.info["length"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.store.read(name, self.start, self.start + self.length)

    def __iter__(self):
        return iter(self.store.fields)

    def __len__(self) -> int:
        return len(self.store.fields)

    def __repr__(self) -> str:
        i = self.info
        return f"Episode({i['index']}, length={self.length}, level_seed={i['level_seed']}, cause={i['cause']!r})"


class Rollouts:
    """A store opened for reading. Opening reads only metadata and the episode index; frames load on access."""

    def __init__(self, path):
        self.path = Path(path)
        self._group = _open_group(self.path, "r")
        self.metadata = dict(self._group.attrs)
        self.num_episodes, self.num_frames, self.index = read_commit(self._group, self.path)
        self._frame_fields = frame_fields(self._group)
        self._arrays = {}
        for name in self._frame_fields:
            for part in ((STATE_END, STATE_DATA) if name == "env_state" else (name,)):
                self._arrays[part] = _member(self._group, part, self.path)
                if part != STATE_DATA:
                    check_length(self._arrays[part], self.path / part, self.num_frames)
        self._derived = {}  # name -> frames it covers
        for name in DERIVED:
            if (self.path / name / "zarr.json").is_file():
                self._arrays[name] = _member(self._group, name, self.path)
                self._derived[name] = min(int(self._arrays[name].attrs.get("num_frames", 0)), self._arrays[name].shape[0])

    # ----------------------------------------------------------------------------------------------
    @property
    def fields(self) -> tuple:
        """Per-frame fields readable for every episode (derived ones only when they cover every frame)."""
        return tuple(self._frame_fields) + tuple(d for d, n in self._derived.items() if n >= self.num_frames)

    @property
    def env(self) -> str:
        return self.metadata.get("env", "")

    @property
    def run(self) -> str:
        return self.metadata.get("run", "")

    @property
    def action_names(self) -> list:
        return list(self.metadata.get("action_names", []))

    def __len__(self) -> int:
        return self.num_episodes

    def __iter__(self):
        return (self.episode(i) for i in range(self.num_episodes))

    def __repr__(self) -> str:
        return f"Rollouts({str(self.path)!r}, episodes={self.num_episodes}, frames={self.num_frames}, env={self.env!r})"

    def episode(self, i: int) -> Episode:
        if not -self.num_episodes <= i < self.num_episodes:
            raise IndexError(f"episode {i} out of range: {self.path} holds {self.num_episodes} episodes")
        return Episode(self, i % self.num_episodes)

    def _check_field(self, name: str, stop: int = 0) -> None:
        if name in self._derived and self._derived[name] < max(stop, 1):
            raise KeyError(f"field {name!r} of {self.path} covers only the first {self._derived[name]} frames "
                           f"(episodes were appended after it was computed); run policylens.rollouts.add_advantages")
        if name not in self._frame_fields and name not in self._derived:
            raise KeyError(f"rollouts store {self.path} has no field {name!r}; fields: {', '.join(self.fields)}")

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Frames ``[start, stop)`` of one field (``env_state``: an object array of bytes). A missing or corrupt
        chunk among them raises :class:`~policylens.rollouts.integrity.StoreDamage` naming episode and field."""
        self._check_field(name, stop)
        if not 0 <= start <= stop <= self.num_frames:
            raise IndexError(f"frames [{start}, {stop}) out of range: {self.path} holds {self.num_frames} frames")
        if name == "env_state":
            ends = self._checked(STATE_END, "env_state", max(start - 1, 0), stop, frame_episodes)  # (T [+ 1],)
            ends = ends[1:] if start else ends
            base = int(self._arrays[STATE_END][start - 1]) if start else 0
            stop_byte = int(ends[-1]) if len(ends) else base
            data = self._checked(STATE_DATA, "env_state", base, stop_byte, state_episodes).tobytes()
            bounds = np.concatenate([[0], ends - base])  # (T + 1,)
            out = np.empty(len(ends), dtype=object)  # (T,) of bytes
            out[:] = [data[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
            return out
        return self._checked(name, name, start, stop, frame_episodes)

    def _checked(self, array: str, field: str, start: int, stop: int, episodes) -> np.ndarray:
        """Items ``[start, stop)`` of one of the store's arrays, its chunks checked: a missing one (where every
        chunk is written) or one that does not decode raises, naming ``field`` and ``episodes(self, a, b)``."""
        arr, folder = self._arrays[array], self.path / array
        lost = missing_chunks(arr, folder, field, start, stop)
        if lost:
            a, b = chunk_items(arr, lost[0])
            raise damage(self.path, field, episodes(self, max(a, start), min(b, stop)),
                         f"chunk {chunk_file(folder, arr, lost[0]).relative_to(self.path)} is missing")
        try:
            return arr[start:stop]
        except Exception as e:  # noqa: BLE001  (any codec error: checksum, decompression, truncation)
            found = bad_chunk(arr, start, stop)
            if found is None:
                raise ValueError(f"cannot read items [{start}, {stop}) of {folder}: {e!r}") from None
            a, b = chunk_items(arr, found[0])
            raise damage(self.path, field, episodes(self, max(a, start), min(b, stop)),
                         f"chunk {chunk_file(folder, arr, found[0]).relative_to(self.path)} is corrupt: "
                         f"{found[1]}") from None

    def episode_of(self, frames: np.ndarray) -> np.ndarray:
        """Episode number of each global frame index."""
        return np.searchsorted(self.index["start"], frames, side="right") - 1  # (B,)

    def batches(self, fields=("obs",), batch_size: int = 256, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False):
        """Yield ``{field: (B, ...), "frame": (B,) global index, "episode": (B,)}`` covering every frame once.

        Reads blocks of contiguous frames (a few thousand) at a time, so memory stays bounded. ``shuffle``
        visits the blocks in random order and shuffles frames within the block (plus the carried remainder).
        """
        fields = (fields,) if isinstance(fields, str) else tuple(fields)
        for name in fields:
            self._check_field(name, self.num_frames)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        block = max(BLOCK_FRAMES, -(-batch_size // OBS_CHUNK) * OBS_CHUNK)
        starts = np.arange(0, self.num_frames, block)  # (blocks,)
        rng = np.random.default_rng(seed)
        if shuffle:
            starts = rng.permutation(starts)
        carry = None
        for a in starts:
            b = min(int(a) + block, self.num_frames)
            data = {name: self.read(name, int(a), b) for name in fields}
            data["frame"] = np.arange(a, b, dtype=np.int64)  # (n,)
            if carry is not None:
                data = {k: np.concatenate([carry[k], v]) for k, v in data.items()}
            n = len(data["frame"])
            if shuffle:
                perm = rng.permutation(n)  # (n,)
                data = {k: v[perm] for k, v in data.items()}
            full = n // batch_size * batch_size
            for s in range(0, full, batch_size):
                yield self._batch({k: v[s:s + batch_size] for k, v in data.items()})
            carry = {k: v[full:] for k, v in data.items()}
        if carry is not None and len(carry["frame"]) and not drop_last:
            yield self._batch(carry)

    def _batch(self, batch: dict) -> dict:
        batch["episode"] = self.episode_of(batch["frame"])
        return batch


def open(path) -> Rollouts:  # noqa: A001  (policylens.rollouts.open, by analogy with zarr.open)
    """Open a rollouts store for lazy reading."""
    return Rollouts(path)
