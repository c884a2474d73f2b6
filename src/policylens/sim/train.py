"""The simulator of a recurrent agent's environment trained on its rollouts store: what ``policylens sim train``
(:mod:`.train_cli`, settings in :mod:`.train_config`) runs.

Windows of T recorded frames; z from the first ``context_frames`` frames and the agent's state; teacher-
forced dynamics with the frozen agent reading the decoded observations; the loss terms are described in
:mod:`policylens.sim.objective`. AdamW, gradient clipping, optional bfloat16 autocast.

Writes ``RUN/sim/`` (config.json + weights.safetensors, :mod:`policylens.sim.checkpoint`), its resume state
``RUN/sim/trainer/`` and ``RUN/sim/train.csv`` (one row per ``eval_every`` steps: running training terms,
teacher-forced held-out terms, and open-loop fidelity on held-out windows: the recorded actions drive the
prior from the start the simulator is trained for, as ``sim fidelity`` reads it (the context frames through the
posterior with the prior-step term, ``sim train``'s default, or mixed starts; else z alone), scored on the frames
after the context). ``--resume`` continues bit-for-bit: step s's windows and noise come from a generator seeded by
(seed, s) alone. ``config.json`` records ``trained_steps`` and ``trained_seconds`` (wall time of the optimizer steps
summed over resumed runs, evaluation excluded: the compute budget a baseline is matched to).

Several processes (``torchrun --nproc_per_node N -m policylens.sim.train_cli RUN``, or any launcher that sets
RANK / WORLD_SIZE): DistributedDataParallel, each rank taking its share of every step's global batch, so N
ranks compute the gradient one process would (NCCL on GPUs, gloo on CPUs). Rank 0 writes the outputs.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..train.state import (
    check_settings,
    load_optimizer,
    optimizer_tensors,
    read_checkpoint,
    truncate_csv,
    write_checkpoint,
)
from .config import SimConfig, for_data
from .data import SimData, load_sim_data
from .loop import FrozenAgent, Noise
from .model import Simulator
from .objective import DETACHABLE, OPEN_LOOP_STARTS, TERMS, SimObjective, held_out_scores, means, trained_start
from .obs import object_weights
from .train_config import SimTrainConfig

VOLATILE = ("steps", "seconds", "resume", "overwrite", "progress", "device", "threads", "eval_every",
            "checkpoint_every")
SIM_FILES = ("config.json", "weights.safetensors", "trainer", "train.csv")  # a simulator's files in OUT
LATER = {"obs_balance": 0.0}  # settings added after checkpoints were written: left out at these values, so they resume


def split_seed(train: dict) -> int:
    """The seed a training config (as stored in ``config.json``'s ``train``) split its store with: ``split_seed``,
    or ``seed`` where that is -1 or absent."""
    own = train.get("split_seed", -1)
    return int(train.get("seed", 0) if own < 0 else own)


def _check(cfg: SimTrainConfig, world: int) -> None:
    if not cfg.run:
        raise ValueError("sim train needs a RUN: the recurrent agent's run directory, checkpoint folder or zoo:NAME")
    for name in ("window", "steps", "batch_size", "eval_every", "checkpoint_every", "val_windows"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.window <= cfg.sim.context_frames:
        raise ValueError(f"window ({cfg.window}) must be longer than context_frames ({cfg.sim.context_frames})")
    if cfg.seconds < 0:
        raise ValueError(f"seconds must be >= 0 (0: no time limit), got {cfg.seconds}")
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be a multiple of the {world} ranks")
    if cfg.prior_step_latent not in ("sample", "mean"):
        raise ValueError(f"prior_step_latent {cfg.prior_step_latent!r}; expected sample or mean")
    if cfg.open_loop_detaches not in DETACHABLE:
        raise ValueError(f"open_loop_detaches {cfg.open_loop_detaches!r}; expected one of {tuple(DETACHABLE)}")
    if cfg.open_loop_start not in OPEN_LOOP_STARTS:
        raise ValueError(f"open_loop_start {cfg.open_loop_start!r}; expected one of {OPEN_LOOP_STARTS}")
    if not 0 <= cfg.ema < 1:
        raise ValueError(f"ema (the weight average's decay) must lie in [0, 1), got {cfg.ema}")
    if not 0 <= cfg.kl_balance <= 1 or not 0 <= cfg.val_fraction < 1:
        raise ValueError(f"kl_balance must lie in [0, 1] and val_fraction in [0, 1), got {cfg.kl_balance}, "
                         f"{cfg.val_fraction}")


def distributed() -> tuple:
    """``(rank, world size)``: from torch.distributed when it is initialised, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(cfg: SimTrainConfig, world: int) -> torch.device:
    device = torch.device(cfg.device)
    if device.type == "cuda" and device.index is None and world > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def _check_codes(data: SimData, sim_cfg: SimConfig) -> None:
    """Symbolic codes must fall within their planes' categories, onehot planes be 0/1."""
    if sim_cfg.obs_kind == "symbolic":
        top = data.obs.reshape(-1, data.obs.shape[-1]).max(0)  # (3,)
        if (top >= np.array(sim_cfg.planes)).any():
            raise ValueError(f"rollouts store {data.path}: symbolic codes reach {top.tolist()}, beyond the "
                             f"categories {list(sim_cfg.planes)} of MiniGrid's object, colour and state planes")
    elif sim_cfg.obs_kind == "onehot" and data.obs.max() > 1:
        raise ValueError(f"rollouts store {data.path}: onehot observations hold values above 1")


class _Setup:
    """Everything a training run is made of, built from its config (fresh or to resume)."""

    def __init__(self, cfg: SimTrainConfig, rank: int, world: int):
        from ..agents import load_agent, read_config, resolve_run
        from ..runs import default_out, prepare_out, run_label
        from .checkpoint import check_match

        self.rank, self.world, self.device = rank, world, _device(cfg, world)
        agent_dir = resolve_run(cfg.run)
        agent_conf = read_config(agent_dir)
        module = load_agent(agent_dir)
        self.agent = FrozenAgent(module)
        self.out = Path(cfg.out) if cfg.out else default_out(cfg.run, agent_dir, "sim")
        store = Path(cfg.store) if cfg.store else default_out(cfg.run, agent_dir)
        self.data = load_sim_data(store, cfg.max_episodes)
        label = run_label(cfg.run)
        if self.data.agent_sha256 and self.data.agent_sha256 != self.agent.sha256:
            raise ValueError(f"rollouts store {store} was recorded with agent {self.data.run or '?'} (weights sha256 "
                             f"{self.data.agent_sha256[:12]}), not {label} (sha256 {self.agent.sha256[:12]})")
        shape, actions, hidden = self.data.obs.shape[1:], self.data.logits.shape[1], self.data.agent_state.shape[1]
        if (self.agent.obs_shape and tuple(self.agent.obs_shape) != tuple(shape)) or self.agent.num_actions != actions \
                or self.agent.hidden != hidden:
            raise ValueError(f"agent {label} takes obs {self.agent.obs_shape}, {self.agent.num_actions} actions, "
                             f"hidden {self.agent.hidden}; store {store} holds obs {tuple(shape)}, {actions} actions, "
                             f"hidden {hidden}")
        self.sim_cfg = for_data(cfg.sim, self.data.env, shape, actions, hidden, obs=self.data.obs)
        _check_codes(self.data, self.sim_cfg)
        trainer_conf = self.out / "trainer" / "config.json"
        if cfg.resume and (trainer_conf.is_file() or (self.out / "config.json").is_file()):
            conf = json.loads((trainer_conf if trainer_conf.is_file() else self.out / "config.json").read_text())
            check_match(conf, self.out, self.agent.sha256, label, self.data.env)  # refuses another agent or env
        if rank == 0:
            prepare_out(self.out, what="simulator", resume=cfg.resume, overwrite=cfg.overwrite, parts=SIM_FILES)
        self.sim = Simulator(self.sim_cfg, seed=cfg.seed).to(self.device)
        self.agent.to(self.device)
        weights = object_weights(self.data.obs, self.sim_cfg, cfg.obs_balance)
        self.loss = SimObjective(self.sim, self.agent, cfg, None if weights is None else weights.to(self.device))
        self.optimizer = torch.optim.AdamW(self.sim.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.ema = {k: v.detach().clone() for k, v in self.sim.state_dict().items()} if cfg.ema else None
        split = split_seed(asdict(cfg))
        train_eps, val_eps = self.data.split(cfg.val_fraction, split)
        tail = cfg.sim.context_frames + 1 if cfg.tail_windows else 0  # a frame after the context, as scored
        self.train_starts = self.data.window_starts(train_eps, cfg.window, min_frames=tail)
        val_starts = self.data.window_starts(val_eps, cfg.window)
        if len(val_starts) > cfg.val_windows:
            val_starts = np.sort(np.random.default_rng(split).choice(val_starts, cfg.val_windows, replace=False))
        self.val = self.data.windows(val_starts, cfg.window).to(self.device) if len(val_starts) else None
        settings = {k: v for k, v in asdict(cfg).items() if k not in VOLATILE and LATER.get(k, ...) != v}
        self.settings = json.loads(json.dumps({**settings, "store_frames": self.data.num_frames}))  # as stored
        self.extra: dict[str, Any] = {
            "agent": {"run": label, "sha256": self.agent.sha256, "config": agent_conf["agent"]},
            "env": self.data.env, "action_names": list(self.data.action_names),
            "data": {"store": self.data.path, "episodes": self.data.num_episodes,
                     "split_episodes": self.data.split_pool,
                     "frames": self.data.num_frames, "train_episodes": len(train_eps),
                     "val_episodes": len(val_eps), "train_windows": len(self.train_starts)},
            "train": asdict(cfg)}

    def batch(self, cfg: SimTrainConfig, step: int) -> tuple:
        """This rank's share of step ``step``'s windows, noise and open-loop starts (context frames each window's
        open-loop unroll reads, :class:`~policylens.sim.objective.SimObjective`): a function of (seed, step, rank)
        alone."""
        rng = np.random.default_rng([cfg.seed, step])
        picks = rng.choice(len(self.train_starts), size=cfg.batch_size)  # (B,) the global batch
        noise = Noise.draw(cfg.batch_size, cfg.window, self.sim,
                           torch.Generator().manual_seed(int(rng.integers(2 ** 62))))
        k = self.sim_cfg.context_frames if cfg.open_loop_start == "mixed" else 1
        seen = torch.from_numpy(rng.integers(1, k + 1, size=cfg.batch_size))  # (B,)
        share = slice(self.rank * cfg.batch_size // self.world, (self.rank + 1) * cfg.batch_size // self.world)
        windows = self.data.windows(self.train_starts[picks[share]], cfg.window).to(self.device)
        return windows, noise.rows(share).to(self.device), seen[share].to(self.device)

    @torch.no_grad()
    def average(self, cfg: SimTrainConfig, step: int) -> None:
        """Fold the weights after step ``step`` (0-based) into the moving average."""
        if self.ema is None:
            return
        decay = min(cfg.ema, (1 + step) / (10 + step))
        for k, v in self.sim.state_dict().items():
            if v.is_floating_point():
                self.ema[k].mul_(decay).add_(v, alpha=1 - decay)
            else:
                self.ema[k].copy_(v)

    @contextlib.contextmanager
    def averaged(self):
        """The simulator holds the averaged weights inside the block (as it is saved and scored), its own after."""
        if self.ema is None:
            yield
            return
        own = {k: v.detach().clone() for k, v in self.sim.state_dict().items()}
        self.sim.load_state_dict(self.ema)
        try:
            yield
        finally:
            self.sim.load_state_dict(own)

    def save(self, step: int, accum: dict, seconds: float) -> None:
        from .checkpoint import FORMAT, save_sim

        tensors, groups = optimizer_tensors(self.optimizer)
        tensors.update({f"ema.{k}": v.detach().cpu().clone() for k, v in (self.ema or {}).items()})
        weights = {k: v.detach().cpu().clone() for k, v in self.sim.state_dict().items()}
        meta = {"step": step, "param_groups": groups, "accum": accum, "settings": self.settings, "seconds": seconds}
        rest = {k: v for k, v in self.extra.items() if k != "agent"}
        body = {"format": FORMAT, "sim": self.sim_cfg.to_dict(), **rest}
        write_checkpoint(self.out / "trainer", weights, self.extra["agent"], body, tensors, meta)  # whole, atomic
        with self.averaged():
            save_sim(self.sim, self.out, {**self.extra, "trained_steps": step, "trained_seconds": round(seconds, 3)})

    def restore(self) -> tuple:
        weights, tensors, meta = read_checkpoint(self.out / "trainer")
        check_settings(meta, self.settings, self.out)
        self.sim.load_state_dict(weights)
        load_optimizer(self.optimizer, tensors, meta["param_groups"])
        if self.ema is not None:
            self.ema = {k: tensors[f"ema.{k}"].to(v.device) for k, v in self.ema.items()}
        return int(meta["step"]), dict(meta["accum"]), float(meta.get("seconds", 0.0))


def _row(s: _Setup, step: int, accum: dict, score: str, filtered: bool) -> dict:
    """One CSV row: running training means since the last row, then held-out teacher-forced and open-loop scores
    (``filtered``: open loop from the filtered context, as ``sim fidelity`` reads a simulator trained for it)."""
    row = {"step": step, **{k: f"{v:.6f}" for k, v in means(accum, s.loss.cfg).items()}}
    if s.val is not None:
        s.sim.eval()
        with s.averaged():
            row.update({k: f"{v:.6f}" for k, v in held_out_scores(s.loss, s.val, filtered=filtered).items()})
        s.sim.train()
    return {k.replace("obs_score", f"obs_{score}"): v for k, v in row.items()}


def _columns(score: str) -> list:
    train = ["loss", *TERMS, "obs_score", "action_acc"]
    val = [f"val_{k}" for k in train] + ["open_obs_score", "open_action_acc", "open_hx"]
    return [c.replace("obs_score", f"obs_{score}") for c in ["step", *train, *val]]


def _header(path) -> list:
    """The column names of an existing CSV log."""
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


def _out_of_time(cfg: SimTrainConfig, spent: float, world: int, device) -> bool:
    """Whether ``cfg.seconds`` of optimizer steps are spent (rank 0's clock decides for every rank)."""
    if cfg.seconds <= 0:
        return False
    over = torch.tensor([float(spent >= cfg.seconds)], device=device)
    if world > 1:
        import torch.distributed as dist

        dist.broadcast(over, 0)
    return bool(over.item())


def train(cfg: SimTrainConfig) -> Path:
    """Train (or resume) the simulator of ``cfg.run``'s agent on its store; returns the simulator folder."""
    return fit(cfg)[1]


def fit(cfg: SimTrainConfig) -> tuple:
    """:func:`train`, returning ``(this rank's trained Simulator, the simulator folder)``."""
    from tqdm.auto import tqdm

    rank, world = distributed()
    _check(cfg, world)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    s = _Setup(cfg, rank, world)
    lead = rank == 0
    model: nn.Module = s.loss
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(s.loss, device_ids=[s.device.index] if s.device.type == "cuda" else None)
    start, accum, spent = s.restore() if cfg.resume else (0, {}, 0.0)  # wall seconds of the optimizer steps
    csv_path = s.out / "train.csv"
    score = "acc" if s.sim_cfg.obs_kind != "pixels" else "mse"
    filtered = trained_start({"train": asdict(cfg)}) == "filtered"  # the open-loop columns' start
    if lead:
        s.out.mkdir(parents=True, exist_ok=True)
        if cfg.resume:
            truncate_csv(csv_path, start)
        else:
            csv_path.unlink(missing_ok=True)
    bar = tqdm(total=cfg.steps, initial=start, unit="step", desc="sim train", disable=not (cfg.progress and lead))
    s.sim.train()
    try:
        stop = start if _out_of_time(cfg, spent, world, s.device) else cfg.steps  # resumed with no time left
        for step in range(start, stop):
            began = time.perf_counter()
            windows, noise, seen = s.batch(cfg, step)
            with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                loss, sums = model(windows, noise, seen=seen)
            s.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm > 0:
                nn.utils.clip_grad_norm_(s.sim.parameters(), cfg.max_grad_norm)
            s.optimizer.step()
            s.average(cfg, step)
            accum = {k: accum.get(k, 0.0) + float(v.detach()) for k, v in sums.items()}
            spent += time.perf_counter() - began
            done = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            last = done == cfg.steps or _out_of_time(cfg, spent, world, s.device)
            if lead and (done % cfg.eval_every == 0 or last):
                row = _row(s, done, accum, score, filtered)
                new = not csv_path.is_file()
                columns = _columns(score) if new else _header(csv_path)  # a resumed log keeps its own columns
                with open(csv_path, "a", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
                    if new:
                        writer.writeheader()
                    writer.writerow(row)
                bar.write(" ".join(f"{k} {v}" for k, v in row.items() if k in ("step", "loss", "val_loss",
                                                                               f"open_obs_{score}", "open_action_acc")))
            if done % cfg.eval_every == 0 or last:
                accum = {}
            if lead and (done % cfg.checkpoint_every == 0 or last):
                s.save(done, accum, spent)
            if last:
                break
    except KeyboardInterrupt:
        bar.write(f"interrupted: the last checkpoint in {s.out} is intact; rerun with --resume true to continue")
        raise
    finally:
        bar.close()
    if s.ema is not None:
        s.sim.load_state_dict(s.ema)  # what was saved
    return s.sim, s.out
