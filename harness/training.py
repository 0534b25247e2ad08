"""The training loop: tensors on the device, batches by indexing a seeded permutation.

No DataLoader: the whole training split already sits on the device, so a batch is one index
operation (see `python -m harness bench train` for what this buys).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .data import Dataset
from .models import apply_max_norm
from .progress import progress_bar

EVAL_CHUNK = 4096  # examples per forward pass when scoring a whole split


@dataclass
class TrainResult:
    """history: one row per finished epoch (epoch, steps so far, lr and momentum at its start, dropout_loss: the mean loss of
    the thinned training batches, train_loss and train_error: the whole training split scored by the
    deterministic net, val_loss, val_error, wall_time_s); status: ok or diverged; best_epoch: the epoch whose weights
    the model holds (the last, or the best on validation with select_on_val)."""

    history: pd.DataFrame
    status: str
    message: str
    best_epoch: int | None
    epochs: int = 0  # epochs actually trained (the last one may be partial with train.steps)
    steps: int = 0  # optimizer steps actually taken


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and error rate (fraction) of the model in evaluation mode."""
    if len(y) == 0:
        return math.nan, math.nan
    was = model.training
    model.eval()
    loss, wrong = 0.0, 0
    for i in range(0, len(y), EVAL_CHUNK):
        logits = model(x[i : i + EVAL_CHUNK])
        loss += F.cross_entropy(logits, y[i : i + EVAL_CHUNK], reduction="sum").item()
        wrong += (logits.argmax(1) != y[i : i + EVAL_CHUNK]).sum().item()
    model.train(was)
    return loss / len(y), wrong / len(y)


def learning_rate(cfg: TrainConfig, progress: float) -> float:
    """The learning rate at `progress` = step / total steps, in [0, 1].

    Schedules are functions of training progress, not of epochs, so a study that fixes the number
    of steps gives every training size the same schedule. `exponential` decays by `lr_decay` per
    `1 / cfg.epochs` of progress (lr * lr_decay ** (epochs * progress)): with `steps` unset that is
    the familiar per-epoch decay; with `steps` set the same curve is stretched over the steps.
    """
    if cfg.lr_schedule == "exponential":
        return cfg.lr * cfg.lr_decay ** (cfg.epochs * progress)
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr


def momentum_at(cfg: TrainConfig, progress: float) -> float:
    """Momentum ramps linearly from `momentum` to `momentum_final` over the first
    `momentum_ramp_epochs / epochs` of training progress."""
    if cfg.momentum_final is None or cfg.momentum_ramp_epochs == 0:
        return cfg.momentum
    t = min(1.0, progress * cfg.epochs / cfg.momentum_ramp_epochs)
    return cfg.momentum + t * (cfg.momentum_final - cfg.momentum)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def run_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    perm: torch.Tensor,
    batch_size: int,
    n_steps: int,
    max_norm: float | None = None,
    schedule=None,
) -> float:
    """`n_steps` optimizer steps over batches x[perm[i:i+batch_size]]; returns the mean loss.
    `schedule(s)`, when given, sets the optimizer's hyper-parameters before step s of the epoch.

    The loss is accumulated on the device and read once at the end: one sync per epoch, not per step.
    """
    loss_sum = torch.zeros((), device=x.device)
    seen = 0
    for s in range(n_steps):
        if schedule is not None:
            schedule(s)
        idx = perm[s * batch_size : (s + 1) * batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if max_norm is not None:
            apply_max_norm(model, max_norm)
        loss_sum += loss.detach() * len(idx)
        seen += len(idx)
    return (loss_sum / max(seen, 1)).item()


def train(model: nn.Module, data: Dataset, cfg: TrainConfig, seed: int, max_norm: float | None = None, label: str = "train") -> TrainResult:
    """Train `model` in place on data.x_train.

    Dropout masks come from torch's global generator (seed it before building the model); the
    batch order comes from a generator seeded with `seed`, so a rerun is bit-identical on CPU.
    A non-finite loss stops training with status "diverged" and the history so far.
    """
    device = data.x_train.device
    n = len(data.y_train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    n_epochs = math.ceil(cfg.steps / steps_per_epoch) if cfg.steps else cfg.epochs
    total_steps = cfg.steps or n_epochs * steps_per_epoch
    gen = torch.Generator(device=device).manual_seed(seed)
    opt = make_optimizer(model, cfg)
    rows, status, message = [], "ok", ""
    best = (math.inf, None, None)  # (val error, epoch, state)
    step = 0
    start = time.perf_counter()
    model.train()
    bar = progress_bar(total=n_epochs, desc=label, unit="epoch")
    for epoch in range(n_epochs):
        first = step

        def schedule(s: int) -> None:  # hyper-parameters by training progress, set before every step
            progress = (first + s) / total_steps
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, progress)
                if "momentum" in group:
                    group["momentum"] = momentum_at(cfg, progress)

        lr, mom = learning_rate(cfg, first / total_steps), momentum_at(cfg, first / total_steps)
        perm = torch.randperm(n, generator=gen, device=device)
        n_steps = min(steps_per_epoch, total_steps - step)
        batch_loss = run_epoch(model, opt, data.x_train, data.y_train, perm, cfg.batch_size, n_steps, max_norm, schedule)
        step += n_steps
        if not math.isfinite(batch_loss):
            status = "diverged"
            message = (
                f"training loss became {batch_loss} in epoch {epoch + 1} (lr={lr:g}); "
                "lower train.lr, or bound the weights with model.max_norm"
            )
            break
        train_loss, train_error = evaluate(model, data.x_train, data.y_train)
        val_loss, val_error = evaluate(model, data.x_val, data.y_val)
        rows.append(
            dict(
                epoch=epoch + 1,
                steps=step,
                lr=lr,
                momentum=mom if cfg.optimizer == "sgd" else math.nan,
                dropout_loss=batch_loss,
                train_loss=train_loss,
                train_error=train_error,
                val_loss=val_loss,
                val_error=val_error,
                wall_time_s=time.perf_counter() - start,
            )
        )
        if cfg.select_on_val and val_error < best[0]:
            best = (val_error, epoch + 1, copy.deepcopy(model.state_dict()))
        bar.update(1)
        bar.set_postfix(train_err=f"{train_error:.3f}", val_err=f"{val_error:.3f}")
    bar.close()
    best_epoch = rows[-1]["epoch"] if rows else None
    if status == "ok" and cfg.select_on_val and best[2] is not None:
        model.load_state_dict(best[2])
        best_epoch = best[1]
    model.eval()
    return TrainResult(pd.DataFrame(rows), status, message, best_epoch, epochs=epoch + 1 if n_epochs else 0, steps=step)
