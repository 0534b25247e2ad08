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

from harness.config import TrainConfig
from harness.data.datasets import Dataset
from harness.data.splits import stratified_subsample
from harness.nets.models import apply_max_norm
from harness.progress import progress_bar

EVAL_CHUNK = 4096  # examples per forward pass when scoring a whole split
# A validation check scores at most this many training examples (a fixed stratified subsample) for
# the history's train columns: scoring the whole split took a tenth of a quick run for a curve that
# nothing decides on (the runs table scores the whole split once, at the end).
CHECK_TRAIN_EXAMPLES = 1000


STOPPED_BY = ("patience", "budget", "diverged")


@dataclass
class TrainResult:
    """history: one row per validation check (epoch, steps so far, lr and momentum at the epoch's start, dropout_loss:
    the mean loss of the thinned training batches since the last check, train_loss and train_error: the training split
    scored by the deterministic net (at most CHECK_TRAIN_EXAMPLES of it, a fixed stratified subsample), val_loss,
    val_error, wall_time_s); status: ok or diverged; best_epoch: the
    epoch whose weights the model holds (the last, or the best check on validation with select_on_val); stopped_by:
    one of STOPPED_BY."""

    history: pd.DataFrame
    status: str
    message: str
    best_epoch: int | None
    epochs: int = 0  # epochs actually trained (the last one may be partial with train.steps)
    steps: int = 0  # optimizer steps actually taken
    stopped_by: str = "budget"


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


def check_epochs(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Epochs between validation checks: one, or `check_every_steps` rounded up to whole epochs."""
    return max(1, math.ceil(cfg.check_every_steps / steps_per_epoch)) if cfg.check_every_steps else 1


def check_subset(data: Dataset, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training examples a validation check scores: all of them up to CHECK_TRAIN_EXAMPLES,
    else a stratified subsample fixed by the seed (drawn by numpy: torch's generators, which draw
    the masks and the batch order, are not touched)."""
    n = len(data.y_train)
    if n <= CHECK_TRAIN_EXAMPLES:
        return data.x_train, data.y_train
    idx = torch.from_numpy(stratified_subsample(data.y_train.cpu().numpy(), CHECK_TRAIN_EXAMPLES, seed)).to(
        data.y_train.device
    )
    return data.x_train[idx], data.y_train[idx]


def improves(value: float, reference: float, min_improvement: float) -> bool:
    """Whether a validation check resets the patience count: `value` lies below `reference` (the
    value that last reset it) by more than the relative `min_improvement`."""
    return value < reference * (1 - min_improvement) if math.isfinite(reference) else math.isfinite(value)


@dataclass(frozen=True)
class Budget:
    """How a run's budget falls into epochs: `steps_per_epoch` batches cover the training split once,
    `n_epochs` epochs (the last one partial where `train.steps` ends inside it) take `total_steps`
    optimizer steps, with a validation check every `every` epochs and after the last."""

    steps_per_epoch: int
    n_epochs: int
    total_steps: int
    every: int

    @classmethod
    def of(cls, cfg: TrainConfig, n: int) -> Budget:
        """The budget of `cfg` on `n` training examples."""
        steps_per_epoch = math.ceil(n / cfg.batch_size)
        n_epochs = math.ceil(cfg.steps / steps_per_epoch) if cfg.steps else cfg.epochs
        total_steps = cfg.steps or n_epochs * steps_per_epoch
        return cls(steps_per_epoch, n_epochs, total_steps, check_epochs(cfg, steps_per_epoch))


@dataclass
class _Selection:
    """Selection on validation and early stopping: the best check so far (monitored value, epoch,
    weights), the value that last reset the patience count, and the checks since."""

    cfg: TrainConfig
    best: tuple = (math.inf, None, None)
    reference: float = math.inf
    since_best: int = 0

    def stop_after(self, model: nn.Module, row: dict) -> bool:
        """Record a validation check (its history row); True when patience ends training."""
        monitored = row["val_loss"] if self.cfg.monitor == "val_loss" else row["val_error"]
        if monitored < self.best[0]:
            self.best = (monitored, row["epoch"], copy.deepcopy(model.state_dict()))
        if improves(monitored, self.reference, self.cfg.min_improvement):
            self.reference, self.since_best = monitored, 0
        else:
            self.since_best += 1
        return self.cfg.patience is not None and self.since_best >= self.cfg.patience


def train(
    model: nn.Module, data: Dataset, cfg: TrainConfig, seed: int, max_norm: float | None = None, label: str = "train"
) -> TrainResult:
    """Train `model` in place on data.x_train, to the budget or, with `cfg.patience`, until the
    monitored validation quantity has not improved for that many checks (early stopping); with
    `cfg.select_on_val` the model ends with the weights of its best check.

    Dropout masks come from torch's global generator (seed it before building the model); the
    batch order comes from a generator seeded with `seed`, so a rerun is bit-identical on CPU.
    A non-finite loss stops training (`stopped_by` diverged) with the history so far: with
    `select_on_val` and a finished check the best checkpoint is kept and the status stays ok,
    otherwise the status is "diverged". Schedules
    follow progress through the whole budget, also when patience stops training earlier, so a
    run's learning rate at a given step does not depend on when it stops.
    """
    device = data.x_train.device
    n = len(data.y_train)
    budget = Budget.of(cfg, n)
    gen = torch.Generator(device=device).manual_seed(seed)
    x_check, y_check = check_subset(data, seed)
    opt = make_optimizer(model, cfg)
    rows, status, message, stopped_by = [], "ok", "", "budget"
    selection = _Selection(cfg)
    step, loss_sum, loss_steps, epoch = 0, 0.0, 0, 0
    start = time.perf_counter()
    model.train()
    bar = progress_bar(total=budget.n_epochs, desc=label, unit="epoch")
    for epoch in range(budget.n_epochs):
        first = step
        if loss_steps == 0:  # the first epoch since the last check: its hyper-parameters go in the history
            lr, mom = learning_rate(cfg, first / budget.total_steps), momentum_at(cfg, first / budget.total_steps)
        perm = torch.randperm(n, generator=gen, device=device)
        n_steps = min(budget.steps_per_epoch, budget.total_steps - step)
        schedule = _schedule(opt, cfg, first, budget.total_steps)
        batch_loss = run_epoch(
            model, opt, data.x_train, data.y_train, perm, cfg.batch_size, n_steps, max_norm, schedule
        )
        step += n_steps
        bar.update(1)
        if not math.isfinite(batch_loss):
            status, stopped_by = "diverged", "diverged"
            message = (
                f"training loss became {batch_loss} in epoch {epoch + 1} (lr={lr:g}); lower train.lr, or bound the "
                "weights with model.max_norm"
            )
            break
        loss_sum, loss_steps = loss_sum + batch_loss * n_steps, loss_steps + n_steps
        if (epoch + 1) % budget.every and epoch + 1 < budget.n_epochs:
            continue
        row = _check(model, data, x_check, y_check, epoch + 1, step, lr, mom, loss_sum / loss_steps, cfg, start)
        rows.append(row)
        loss_sum, loss_steps = 0.0, 0
        bar.set_postfix(train_err=f"{row['train_error']:.3f}", val_err=f"{row['val_error']:.3f}")
        if cfg.select_on_val and selection.stop_after(model, row):
            stopped_by = "patience"
            break
    bar.close()
    status, message, best_epoch = _outcome(model, cfg, rows, status, message, selection)
    model.eval()
    epochs = epoch + 1 if budget.n_epochs else 0
    return TrainResult(
        pd.DataFrame(rows), status, message, best_epoch, epochs=epochs, steps=step, stopped_by=stopped_by
    )


def _schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, first: int, total_steps: int):
    """`schedule(s)` for `run_epoch`: sets the optimizer's hyper-parameters by training progress
    before step s of an epoch whose first step is step `first` of the run."""

    def schedule(s: int) -> None:
        progress = (first + s) / total_steps
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, progress)
            if "momentum" in group:
                group["momentum"] = momentum_at(cfg, progress)

    return schedule


def _check(
    model: nn.Module,
    data: Dataset,
    x_check: torch.Tensor,
    y_check: torch.Tensor,
    epoch: int,
    step: int,
    lr: float,
    mom: float,
    dropout_loss: float,
    cfg: TrainConfig,
    start: float,
) -> dict:
    """A validation check after `epoch` epochs and `step` steps, as a row of the history (see
    `TrainResult`): the training subsample and the validation split scored by the deterministic net."""
    train_loss, train_error = evaluate(model, x_check, y_check)
    val_loss, val_error = evaluate(model, data.x_val, data.y_val)
    return dict(
        epoch=epoch,
        steps=step,
        lr=lr,
        momentum=mom if cfg.optimizer == "sgd" else math.nan,
        dropout_loss=dropout_loss,
        train_loss=train_loss,
        train_error=train_error,
        val_loss=val_loss,
        val_error=val_error,
        wall_time_s=time.perf_counter() - start,
    )


def _outcome(
    model: nn.Module, cfg: TrainConfig, rows: list[dict], status: str, message: str, selection: _Selection
) -> tuple[str, str, int | None]:
    """(status, message, best_epoch) once training has stopped; with `select_on_val` and a finished
    check the model is given the weights of its best check, also after a divergence."""
    best = selection.best
    best_epoch = rows[-1]["epoch"] if rows else None
    if status == "diverged" and cfg.select_on_val and best[2] is not None:
        # early stopping keeps its best checkpoint: the run is usable, and says why it stopped
        status, message = "ok", f"{message}; kept the best checkpoint on validation (epoch {best[1]})"
    if status == "ok" and cfg.select_on_val and best[2] is not None:
        model.load_state_dict(best[2])
        best_epoch = best[1]
    return status, message, best_epoch
