"""``policylens sim train RUN``: train the simulator of a recurrent agent's environment on its rollouts store.

Windows of T recorded frames; z from the first ``context_frames`` frames and the agent's state; teacher-
forced dynamics with the frozen agent reading the decoded observations; the loss terms are described in
:mod:`policylens.sim.objective`. AdamW, gradient clipping, optional bfloat16 autocast.

Writes ``RUN/sim/`` (config.json + weights.safetensors, :mod:`policylens.sim.checkpoint`), its resume state
``RUN/sim/trainer/`` and ``RUN/sim/train.csv`` (one row per ``eval_every`` steps: running training terms,
teacher-forced held-out terms, and open-loop fidelity on held-out windows: the recorded actions drive the
prior from the start the simulator is trained for, as ``sim fidelity`` reads it (the context frames through the
posterior with the prior-step term, ``sim train``'s default, or mixed starts; else z alone), scored on the frames
after the context; before session 11 these columns always read z alone). ``--resume`` continues bit-for-bit: step s's
windows and noise come from a generator seeded by (seed, s) alone. ``config.json`` records ``trained_steps`` and
``trained_seconds`` (wall time of the optimizer steps over all sessions, evaluation excluded: the compute budget a
baseline is matched to).

Several processes (``torchrun --nproc_per_node N -m policylens.sim.train RUN``, or any launcher that sets
RANK / WORLD_SIZE): DistributedDataParallel, each rank taking its share of every step's global batch, so N
ranks compute the gradient one process would (NCCL on GPUs, gloo on CPUs). Rank 0 writes the outputs.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import add_dataclass_args, clear_errors, from_args
from ..train.state import (check_settings, load_optimizer, optimizer_tensors, read_checkpoint, truncate_csv,
                           write_checkpoint)
from .config import SimConfig, for_data
from .data import SimData, load_sim_data
from .loop import FrozenAgent, Noise
from .model import Simulator
from .objective import DETACHABLE, OPEN_LOOP_STARTS, TERMS, SimObjective, held_out_scores, means, trained_start
from .obs import object_weights

VOLATILE = ("steps", "seconds", "resume", "overwrite", "progress", "device", "threads", "eval_every",
            "checkpoint_every")
SIM_FILES = ("config.json", "weights.safetensors", "trainer", "train.csv")  # a simulator's files in OUT
LATER = {"obs_balance": 0.0}  # settings added after checkpoints were written: left out at these values, so they resume
DERIVED = ("obs_shape", "obs_kind", "planes", "num_actions", "agent_hidden", "cells")


@dataclass
class SimTrainConfig:
    run: str = ""
    """the recurrent agent's run directory, checkpoint folder or zoo:NAME"""
    store: str = ""
    """rollouts store of that agent (default: RUN/rollouts.zarr, runs/NAME/rollouts.zarr for zoo:NAME); several, comma-separated, train together (e.g. its own play and a higher-temperature policy's), held-out episodes drawn from the first"""
    out: str = ""
    """simulator folder (default: RUN/sim, runs/NAME/sim for zoo:NAME)"""
    window: int = 16
    """frames per training window (the first context_frames of them also feed the encoder)"""
    steps: int = 2000
    """optimizer steps (raise it with --resume to train on)"""
    seconds: float = 0.0
    """also stop once the optimizer steps have taken this many seconds over all sessions (0: no time limit; the
    rule the VAE+LSTM baseline's equal-time budget follows, so both can be given the same seconds)"""
    batch_size: int = 32
    """windows per step, over all ranks (a multiple of the number of ranks)"""
    lr: float = 3e-4
    """AdamW learning rate"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    max_grad_norm: float = 10.0
    """gradient clipping (0: off)"""
    ema: float = 0.998
    """decay of an exponential moving average of the weights, which is what is saved, scored and used by the other
    commands (0: off, the last step's weights); it warms up as min(ema, (1 + step) / (10 + step))"""
    kl_balance: float = 0.8
    """DreamerV2's KL balancing: weight of KL(sg(posterior) || prior), the rest on KL(posterior || sg(prior))"""
    free_nats: float = 1.0
    """each step's KL term counts at least this many nats (no gradient below it)"""
    kl_weight: float = 1.0
    """weight of the balanced posterior-prior KL"""
    z_kl_weight: float = 1.0
    """weight of KL(q(z | context) || N(0, I))"""
    obs_weight: float = 1.0
    """weight of the observation loss"""
    reward_weight: float = 1.0
    """weight of the reward loss"""
    done_weight: float = 1.0
    """weight of the episode-end loss"""
    hx_weight: float = 1.0
    """weight of the loss between the agent-in-the-loop's hidden state and the recorded one"""
    logits_weight: float = 1.0
    """weight of KL(recorded policy || policy of the agent in the loop)"""
    open_loop_weight: float = 0.25
    """weight of the same windows unrolled open-loop (prior only, from z, recorded actions), scored with the
    weights above (observation overshooting; a second unroll per step; 0: teacher forcing alone). On the zoo's
    MiniGrid agent at equal time, 0.25 with the decoder detached (below) beat 1 with everything trained: action
    agreement ten steps out 0.818 vs 0.718 on 20,000 episodes recorded apart (the VAE+LSTM baseline: 0.725)"""
    prior_obs_weight: float = 0.0
    """weight of the observation loss of each recorded frame decoded from the prior one step after the posterior
    state before it (decode(h_t, s_t from p(s_t | h_t), as prior_step_latent says) against o_t): trains the decoder on the states a filtered
    start predicts one step after its context (0: off; at 1 on the zoo's MiniGrid agent, scored with sim fidelity
    --start filtered, the first setting level with the VAE+LSTM baseline one step after the context)"""
    prior_step_weight: float = 1.0
    """weight of that whole first prior step, scored on the obs, reward and done terms with their weights: the frame
    decoded from the prior, and the reward and episode end of the recorded action taken from that prior state (what
    a filtered start predicts one step after its context; 0: off, and sim fidelity then reads from z alone)"""
    prior_trains_readouts: bool = True
    """the prior_obs and prior_step terms also train the decoder and the reward and episode-end heads (false: they
    read them with their weights detached and train the dynamics alone, so the readouts learn from the posterior's
    states and are not taught to hedge on the prior's)"""
    open_loop_detaches: str = "decoder"
    """the readouts the open-loop term reads with their weights detached, so that it does not train them: none,
    decoder (the reward and episode-end heads still learn from the prior's states) or readouts (decoder and both
    heads: the term trains the dynamics alone). With the decoder detached it learns from the posterior's states
    and is not taught to hedge on frames the prior cannot foresee, such as where a moving ball will be; with the
    heads detached too, the reward ten steps out was worse than the baseline's (error 0.152 vs 0.129; decoder
    alone: 0.110)"""
    obs_balance: float = 0.0
    """weight each cell of the observation loss by (share of its object type in the store's frames) ** -this,
    normalised to a mean of 1 (0: every cell alike; categorical views). MiniGrid's moving balls are a few cells of a
    view and vanish from the simulator's frames"""
    prior_step_latent: str = "mean"
    """the prior state s_t the prior_obs and prior_step terms read: mean (the prior's mean, what sim fidelity's
    filtered start reads one step after its context) or sample (a draw with the step's noise; on the zoo's MiniGrid
    agent the reward head then hedged on the prior's mean: reward error 0.023 one step after the context, 0.012 with
    mean)"""
    open_loop_start: str = "z"
    """where that open-loop unroll starts: z (the prior from z alone, as imagination starts) or mixed (each window
    first reads 0 to context_frames-1 of its context frames after the first through the posterior, drawn
    uniformly, so unrolls from z alone and from the filtered context are both trained; on the zoo's MiniGrid
    agent at equal time it scored lower: action agreement 0.675 filtered / 0.735 z alone 1 step after the
    context, against 0.801 for z)"""
    tail_windows: bool = True
    """also train on windows that run past their episode's end (padded; at least one frame after the context left),
    as sim fidelity scores them (false: whole windows inside an episode alone, where an episode ends only in a
    window's last frames, and the episode-end head can learn the step count instead of the goal: on the zoo's
    MiniGrid agent it then caught none of the held-out ends 1 step after the context)"""
    val_fraction: float = 0.1
    """share of the episodes held out"""
    val_windows: int = 256
    """held-out windows scored at each CSV row"""
    max_episodes: int = 0
    """read only the store's first N episodes (0: all)"""
    eval_every: int = 100
    """steps between CSV rows"""
    checkpoint_every: int = 500
    """steps between checkpoints"""
    seed: int = 0
    """seed of the initial weights, the windows and the noise (and of the split, unless split_seed is set)"""
    split_seed: int = -1
    """seed of the held-out split and of its scored windows (-1: seed); runs that differ in seed alone but share it
    hold out the same episodes, so sim fidelity scores them against one baseline"""
    resume: bool = False
    """continue from OUT/trainer, the last checkpoint"""
    overwrite: bool = False
    """replace the simulator already in OUT (without it, or --resume, it is refused)"""
    bf16: bool = False
    """bfloat16 autocast for the forward pass"""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""
    device: str = "cpu"
    """torch device (cuda: each rank takes cuda:LOCAL_RANK)"""
    progress: bool = True
    """show a progress bar with the loss"""
    sim: SimConfig = field(default_factory=SimConfig)
    """the simulator's architecture (its fields are options of their own)"""


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


def _distributed() -> tuple:
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
        from ..rollouts.record import run_label
        from ..runs import default_out, prepare_out
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
        self.extra = {"agent": {"run": label, "sha256": self.agent.sha256, "config": agent_conf["agent"]},
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

    rank, world = _distributed()
    _check(cfg, world)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    s = _Setup(cfg, rank, world)
    lead = rank == 0
    model = s.loss
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


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``RUN`` positional, one ``--option`` per :class:`SimTrainConfig` field and per architecture field."""
    parser.add_argument("run", help="the recurrent agent's run directory, checkpoint folder or zoo:NAME")
    add_dataclass_args(parser, SimTrainConfig, skip=("run", "sim"))
    add_dataclass_args(parser, SimConfig, skip=DERIVED)
    return parser


def main(argv=None) -> Path:
    parser = add_arguments(argparse.ArgumentParser(prog="policylens sim train", description=__doc__.split("\n\n")[0]))
    ns = parser.parse_args(argv)
    cfg = from_args(SimTrainConfig, ns, sim=from_args(SimConfig, ns))
    import torch.distributed as dist

    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ and not dist.is_initialized()
    if launched:  # torchrun and friends: one process per rank
        dist.init_process_group("nccl" if cfg.device.startswith("cuda") else "gloo")
    rank = _distributed()[0]
    try:
        with clear_errors(parser):
            out = train(cfg)
    finally:
        if launched:
            dist.destroy_process_group()
    if rank == 0:
        print(f"simulator: {out} (log: {out / 'train.csv'})")
    return out


if __name__ == "__main__":
    main()
