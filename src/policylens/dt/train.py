"""A decision transformer trained on recorded trajectories: what ``policylens dt train`` (:mod:`.train_cli`,
settings in :mod:`.train_config`) runs.

AdamW with a linear warm-up to ``lr`` (then constant, as Decision Transformer Interpretability), cross-entropy of
the action at every state token of K-step windows, a held-out split of whole episodes, and every ``eval_every``
steps the model
plays the env conditioned on each ``eval_rtgs`` target. Writes ``RUN/agent/`` (config.json +
weights.safetensors + trainer state), ``RUN/train.csv`` (one row per evaluation) and ``RUN/curve.png``.

Resuming: ``--resume`` continues from the last checkpoint (written every ``checkpoint_every`` steps; a kill
or Ctrl-C leaves it intact) and reaches bit-for-bit the weights and CSV of an uninterrupted run: the batch
of step s is drawn from a generator seeded by (seed, s) alone and the optimizer moments are restored.
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..envs import make_minigrid
from ..runs import prepare_out
from ..train.state import (
    check_settings,
    load_optimizer,
    optimizer_tensors,
    read_checkpoint,
    truncate_csv,
    write_checkpoint,
)
from .data import Trajectories, load_trajectories
from .train_config import DTTrainConfig

VOLATILE = ("steps", "resume", "overwrite", "progress", "device", "threads", "eval_every", "eval_episodes",
            "checkpoint_every")


def _check(cfg: DTTrainConfig) -> None:
    if not cfg.store or not cfg.out:
        raise ValueError("dt train needs --store STORE (from `policylens dt collect`) and --out RUN")
    for name in ("steps", "batch_size", "eval_every", "checkpoint_every", "layers", "heads", "context", "d_model"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if not 0 <= cfg.val_fraction < 1:
        raise ValueError(f"val_fraction must lie in [0, 1), got {cfg.val_fraction}")
    if cfg.final_step_weight <= 0:
        raise ValueError(f"final_step_weight must be > 0, got {cfg.final_step_weight}")


def model_config(cfg: DTTrainConfig, traj: Trajectories):
    """The architecture for this data: obs shape, actions and episode length come from the store and env."""
    from .model import DTConfig

    max_steps = make_minigrid(traj.env, 1).envs[0].max_steps if traj.env.startswith("minigrid:") else 0
    return DTConfig(obs_shape=traj.obs.shape[1:], num_actions=len(traj.action_names) or int(traj.action.max()) + 1,
                    state_embedding=cfg.state_embedding, n_layers=cfg.layers, n_heads=cfg.heads, d_model=cfg.d_model,
                    d_mlp=cfg.d_mlp, context=cfg.context, layer_norm=cfg.layer_norm, act_fn=cfg.act_fn,
                    max_timestep=max(max_steps, int(traj.timestep.max()) + 1))


def learning_rate(cfg: DTTrainConfig, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then constant."""
    return cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else cfg.lr


def sample_frames(seed: int, step: int, probs: np.ndarray, batch_size: int) -> np.ndarray:
    """Indices into the training frames for step ``step``: a function of (seed, step) only, (B,)."""
    rng = np.random.default_rng([seed, step])
    return rng.choice(len(probs), size=batch_size, p=probs)


def window_loss(model, batch) -> tuple:
    """Mean cross-entropy and accuracy of the action at every real (unpadded) timestep."""
    logits = model(batch.states, batch.actions, batch.rtgs, batch.timesteps, batch.mask)  # (B, K, A)
    mask = batch.mask  # (B, K)
    loss = F.cross_entropy(logits[mask], batch.actions[mask])
    acc = (logits[mask].argmax(-1) == batch.actions[mask]).float().mean()
    return loss, acc


@torch.no_grad()
def validate(model, traj: Trajectories, frames: np.ndarray, context: int, device, chunk: int = 2048) -> tuple:
    """Loss and accuracy over the windows ending at ``frames`` (held-out episodes), or (nan, nan) if none."""
    if len(frames) == 0:
        return float("nan"), float("nan")
    total_loss = total_acc = 0.0
    for a in range(0, len(frames), chunk):
        part = frames[a:a + chunk]
        loss, acc = window_loss(model, traj.windows(part, context).to(device))
        total_loss, total_acc = total_loss + loss.item() * len(part), total_acc + acc.item() * len(part)
    return total_loss / len(frames), total_acc / len(frames)


class _Setup:
    """Everything a training run is made of, built from its config and store (fresh or to resume)."""

    def __init__(self, cfg: DTTrainConfig):
        from .model import DecisionTransformer

        self.out, self.device = Path(cfg.out), torch.device(cfg.device)
        self.agent_dir = self.out / "agent"
        if cfg.resume and (self.agent_dir / "config.json").is_file():
            from .checkpoint import read_dt_config

            read_dt_config(self.agent_dir)  # refuses another kind of agent
        prepare_out(self.out, what="decision transformer", resume=cfg.resume, overwrite=cfg.overwrite,
                    parts=("agent", "train.csv", "curve.png"))
        self.traj = load_trajectories(cfg.store)
        self.model_cfg = model_config(cfg, self.traj)
        self.model = DecisionTransformer(self.model_cfg, seed=cfg.seed).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        train_eps, val_eps = self.traj.split(cfg.val_fraction, cfg.seed)
        self.train_frames, self.val_frames = self.traj.frames_of(train_eps), self.traj.frames_of(val_eps)
        weights = np.ones(len(self.train_frames))  # (n,)
        last = np.cumsum(self.traj.length[train_eps]) - 1  # positions of the episodes' final steps
        weights[last] = cfg.final_step_weight
        self.probs = weights / weights.sum()
        rtg = self.traj.rtg[self.train_frames]
        settings = {k: v for k, v in asdict(cfg).items() if k not in VOLATILE}
        self.settings = json.loads(json.dumps({**settings, "store_frames": self.traj.num_frames}))  # as stored
        self.extra = {"env": self.traj.env, "action_names": list(self.traj.action_names),
                      "data": {"store": str(Path(cfg.store).resolve()), "episodes": self.traj.num_episodes,
                               "frames": self.traj.num_frames, "train_episodes": len(train_eps),
                               "val_episodes": len(val_eps), "rtg_min": float(rtg.min()), "rtg_max": float(rtg.max())},
                      "train": asdict(cfg)}
        self.model.action_names = list(self.traj.action_names) or self.model.action_names
        self.model.rtg_range = (float(rtg.min()), float(rtg.max()))

    def save(self, step: int, accum: list) -> None:
        tensors, groups = optimizer_tensors(self.optimizer)
        weights = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        meta = {"step": step, "param_groups": groups, "accum": accum, "settings": self.settings}
        write_checkpoint(self.agent_dir, weights, self.model_cfg.to_dict(), self.extra, tensors, meta)

    def restore(self) -> tuple:
        weights, tensors, meta = read_checkpoint(self.agent_dir)
        check_settings(meta, self.settings, self.agent_dir)
        self.model.load_state_dict(weights)
        load_optimizer(self.optimizer, tensors, meta["param_groups"])
        return int(meta["step"]), list(meta["accum"])


def _eval_columns(cfg: DTTrainConfig) -> list:
    """``return@RTG``, ``success@RTG`` per evaluated target (left empty when ``eval_episodes`` is 0)."""
    return [f"{kind}@{float(r):g}" for r in cfg.eval_rtgs for kind in ("return", "success")]


def _row(cfg: DTTrainConfig, s: _Setup, step: int, accum: list) -> dict:
    """One CSV row: running train loss/accuracy since the last row, held-out loss, returns in the env."""
    from .play import play

    s.model.eval()
    val_loss, val_acc = validate(s.model, s.traj, s.val_frames, cfg.context, s.device)
    row = {"step": step, "frames": step * cfg.batch_size, "lr": f"{learning_rate(cfg, step - 1):.6g}",
           "loss": f"{accum[0] / max(accum[2], 1):.6f}", "acc": f"{accum[1] / max(accum[2], 1):.6f}",
           "val_loss": f"{val_loss:.6f}", "val_acc": f"{val_acc:.6f}", **dict.fromkeys(_eval_columns(cfg), "")}
    for r in ([float(x) for x in cfg.eval_rtgs] if cfg.eval_episodes > 0 else []):
        records = play(s.model, s.traj.env, r, cfg.eval_episodes, start_level=cfg.eval_start_level, seed=cfg.seed,
                       batch=cfg.eval_episodes)
        row[f"return@{r:g}"] = f"{np.mean([e['return'] for e in records]):.6f}"
        row[f"success@{r:g}"] = f"{np.mean([e['success'] for e in records]):.6f}"
    s.model.train()
    return row


def train(cfg: DTTrainConfig) -> Path:
    """Train (or resume) a decision transformer; returns the run directory."""
    from tqdm.auto import tqdm

    _check(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    s = _Setup(cfg)
    s.out.mkdir(parents=True, exist_ok=True)
    csv_path = s.out / "train.csv"
    start, accum = s.restore() if cfg.resume else (0, [0.0, 0.0, 0])  # accum: loss sum, accuracy sum, steps
    if cfg.resume:
        truncate_csv(csv_path, start)
    else:
        csv_path.unlink(missing_ok=True)
    fields = ["step", "frames", "lr", "loss", "acc", "val_loss", "val_acc", *_eval_columns(cfg)]
    new_file = not csv_path.is_file()
    bar = tqdm(total=cfg.steps, initial=start, unit="step", desc="dt train", disable=not cfg.progress)
    s.model.train()
    try:
        with open(csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            if new_file:
                writer.writeheader()
            for step in range(start, cfg.steps):
                for group in s.optimizer.param_groups:
                    group["lr"] = learning_rate(cfg, step)
                batch = s.traj.windows(s.train_frames[sample_frames(cfg.seed, step, s.probs, cfg.batch_size)],
                                       cfg.context).to(s.device)
                loss, acc = window_loss(s.model, batch)
                s.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(s.model.parameters(), cfg.max_grad_norm)
                s.optimizer.step()
                accum = [accum[0] + loss.item(), accum[1] + acc.item(), accum[2] + 1]
                done = step + 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc.item():.2f}")
                if done % cfg.eval_every == 0 or done == cfg.steps:
                    row = _row(cfg, s, done, accum)
                    writer.writerow(row)
                    f.flush()
                    accum = [0.0, 0.0, 0]
                    bar.write(" ".join(f"{k} {v}" for k, v in row.items()))
                if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                    s.save(done, accum)
    except KeyboardInterrupt:
        bar.write(f"interrupted: the last checkpoint in {s.agent_dir} is intact; rerun with --resume to continue")
        raise
    finally:
        bar.close()
    from .plots import plot_training

    plot_training(csv_path, s.out / "curve.png")
    return s.out
