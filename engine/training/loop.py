"""The one training loop, shared by every stage (teacher, student), the CLI and the GUI.

A stage starts with `start_stage` (resume bookkeeping, seeding, the train split's labels) and
builds a `LoopSetup` (model, optimizer, scheduler, data, a `step` function that turns a
batch into a dict of losses, an optional `validate`) and calls `run_stage`. The loop does the rest:

- mixed precision on CUDA (bfloat16 where supported, else float16 with a `GradScaler`);
- gradient accumulation (`grad_accum` batches per optimizer step) and gradient clipping;
- optionally an exponential moving average of the weights (`ema_decay`, engine.training.ema):
  validated each epoch, kept in the checkpoints, and the model's weights once the run completes;
- progress through `TrainCallbacks.on_step(stage, done, total)` per batch and an `EpochReport`
  per epoch (`on_epoch`), cancellation through `should_stop` (checked every batch);
- stops on a non-finite loss with a clear `UserError` (the last good checkpoint is kept);
- after every epoch: validation, the run's metrics in the store, and an atomic checkpoint
  (model, optimizer, scheduler, scaler, epoch, config), so a crash or a cancel can resume.

The run's `metrics` in the store: {"epochs": [EpochReport.to_dict(), ...], "last": {losses and
metrics of the last epoch}}; its `checkpoint`: the path relative to the project folder.
Run statuses: 'running' -> 'completed' | 'cancelled' | 'failed'. A completed run becomes the
active model of its stage (engine.store.versions.set_active).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from engine import distributed
from engine.device import amp_dtype
from engine.errors import UserError
from engine.models.checkpoint import load_checkpoint, save_checkpoint, save_weights
from engine.training.api import EpochReport, TrainCallbacks, TrainConfig
from engine.training.ddp import distributed_step
from engine.training.ema import WeightAverage

if TYPE_CHECKING:
    from engine.store import Store
    from engine.store.schema import TrainingRun
    from engine.store.tags import LabelMatrix

log = logging.getLogger(__name__)


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass
class StageStart:
    """Where a stage starts: its config (the stored one when resuming), the run to continue and
    its checkpoint (None for a new run), and the train split's labels."""

    config: TrainConfig
    run: TrainingRun | None
    checkpoint: dict[str, Any] | None
    matrix: LabelMatrix

    @property
    def class_names(self) -> list[str]:
        return list(self.matrix.class_names)


def start_stage(store: Store, stage: str, config: TrainConfig,
                callbacks: TrainCallbacks) -> StageStart:
    """What every stage does first. With `config.resume`: the latest unfinished run of `stage`,
    finished as it was planned (its stored config) on this call's device, from its checkpoint
    (a run cancelled before its first checkpoint starts again from the beginning); more epochs
    are a new round (warm start), not a resume. Then seeds every generator and reads the train
    split's labels; UserError when there is nothing to learn from or the classes changed since the
    resumed run began."""
    run, checkpoint = None, None
    if config.resume:
        run, checkpoint, config = _resume(store, stage, config, callbacks)
    seed_everything(config.seed)
    matrix = store.tags.label_matrix("train", as_of_change=config.labels_as_of,
                                     class_names=config.class_names)
    if not matrix.image_ids:
        raise UserError("The train split has no tagged, readable images; tag some images and "
                        "put them in split train first.")
    class_names = list(checkpoint["class_names"] if checkpoint is not None
                       else run.class_names if run is not None else matrix.class_names)
    if class_names != list(matrix.class_names):
        raise UserError("The project's classes changed since this run started; it cannot be "
                        "resumed. Start a new training run instead.")
    if not matrix.labels.any():
        raise UserError("The train split has no positive tags to learn from.")
    return StageStart(config, run, checkpoint, matrix)


def _resume(store: Store, stage: str, config: TrainConfig, callbacks: TrainCallbacks
            ) -> tuple[TrainingRun, dict[str, Any] | None, TrainConfig]:
    run, path = _resumable_run(store, stage)
    checkpoint = load_checkpoint(path) if path is not None else None
    stored = TrainConfig.from_dict(checkpoint["config"] if checkpoint is not None
                                   else run.config or {})
    config = dataclasses.replace(stored, device=config.device, resume=True)
    if checkpoint is not None:
        callbacks.message(f"Resuming {run.model_version} after epoch {checkpoint['epoch']}")
    else:
        callbacks.message(f"Starting {run.model_version} again: it stopped before its first "
                          f"epoch ended")
    return run, checkpoint, config


def _resumable_run(store: Store, stage: str) -> tuple[TrainingRun, Path | None]:
    """The latest unfinished run of `stage` and its checkpoint (None when it has none)."""
    for run in reversed(store.runs.list(stage)):
        if run.status == "completed":
            break
        if run.status in ("running", "cancelled", "failed"):
            path = None
            if run.checkpoint:
                path = Path(run.checkpoint)
                path = path if path.is_absolute() else store.paths.root / path
            return run, path if path is not None and path.exists() else None
    raise UserError(f"There is no unfinished {stage} run to resume.")


@dataclass
class LoopSetup:
    """Everything the loop needs from a stage.

    `step(model, batch) -> dict[str, Tensor]` moves the batch to the device and returns the losses,
    with the total under "loss" (the loop runs it under autocast and backpropagates "loss").
    `validate(model) -> dict[str, float]` runs after each epoch (model in eval mode) and its figures
    land in `EpochReport.metrics`. `checkpoint_extra` is merged into every checkpoint (model
    config, meta, class names, TrainConfig dict).
    """

    stage: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: Iterable[Any]
    step: Callable[[nn.Module, Any], dict[str, torch.Tensor]]
    epochs: int
    device: torch.device
    checkpoint_path: Path
    checkpoint_extra: dict[str, Any]
    scheduler: Any = None                              # stepped after every optimizer step
    validate: Callable[[nn.Module], dict[str, float]] | None = None
    set_epoch: Callable[[int], None] | None = None     # e.g. the batch sampler's set_epoch
    batch_size: Callable[[Any], int] = lambda batch: len(batch["labels"])
    grad_accum: int = 1
    amp: bool = True                                   # only used on CUDA
    check_every: int = 16                              # batches between reads of the loss
    clip_grad_norm: float | None = 10.0
    start_epoch: int = 0                               # completed epochs (resume)
    history: list[dict[str, Any]] = field(default_factory=list)
    scaler_state: dict[str, Any] | None = None
    ema_decay: float = 0.0                             # 0: no weight average
    ema_state: dict[str, Any] | None = None            # a resumed run's average
    ema: WeightAverage | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.ema_decay > 0:
            self.ema = WeightAverage(self.model, self.ema_decay)
            if self.ema_state is not None:
                self.ema.load_state_dict(self.ema_state)

    @property
    def evaluated_model(self) -> nn.Module:
        """What validation scores: the weight average when there is one, else the model."""
        return self.model if self.ema is None else self.ema.module


def checkpoint_state(setup: LoopSetup, epoch: int, scaler: torch.amp.GradScaler | None,
                     run: TrainingRun) -> dict[str, Any]:
    return {
        **setup.checkpoint_extra,
        "model": setup.model.state_dict(),
        "optimizer": setup.optimizer.state_dict(),
        "scheduler": None if setup.scheduler is None else setup.scheduler.state_dict(),
        "scaler": None if scaler is None or not scaler.is_enabled() else scaler.state_dict(),
        "ema": None if setup.ema is None else setup.ema.state_dict(),
        "epoch": epoch,
        "history": list(setup.history),
        "run_id": run.id,
        "stage": setup.stage,
    }


def relative_to_project(store: Store, path: Path) -> str:
    try:
        return path.resolve().relative_to(store.paths.root.resolve()).as_posix()
    except ValueError:
        return str(path)


def run_stage(store: Store, run: TrainingRun, setup: LoopSetup,
              callbacks: TrainCallbacks) -> TrainingRun:
    """Train `setup` for the run; record progress, status and checkpoint in the store.

    Returns the updated run (status 'completed' or 'cancelled'). Errors mark the run 'failed' and
    propagate (a non-finite loss as `NonFiniteLossError`, a UserError). In a job of several
    processes (engine.training.ddp) every rank trains and rank 0 alone writes the store and the
    checkpoints.
    """
    from engine.store.versions import set_active

    checkpoint_rel = relative_to_project(store, setup.checkpoint_path)
    main = distributed.is_main()
    try:
        status = _loop(store, run, setup, callbacks, checkpoint_rel)
        if status == "completed" and main:      # the inference copy (engine.models.checkpoint)
            save_weights(setup.checkpoint_path, {**setup.checkpoint_extra, "stage": setup.stage,
                                                 "model": setup.model.state_dict(),
                                                 "run_id": run.id})
    except BaseException:
        if main:
            store.runs.update(run.id, status="failed", finished=True)
        raise
    if main:
        store.runs.update(run.id, status=status, finished=True)
        if status == "completed":
            set_active(store, setup.stage, run.model_version)
    distributed.barrier()
    return store.runs.get(run.id)


@dataclass
class _EpochTally:
    """Running sums of one epoch: losses and the first batch whose loss was not finite, both kept
    on the device and read only every `LoopSetup.check_every` batches (a read waits for the
    device), batches, images."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    batches: int = 0
    images: int = 0
    first_bad: torch.Tensor | None = None      # (batch index or -1, its loss)

    def add(self, losses: dict[str, torch.Tensor], images: int) -> None:
        for name, tensor in losses.items():
            value = tensor.detach().float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        loss = losses["loss"].detach().float()
        mark = torch.stack([torch.full_like(loss, self.batches), loss])
        if self.first_bad is None:
            self.first_bad = torch.where(torch.isfinite(loss), torch.full_like(mark, -1), mark)
        else:
            new = (self.first_bad[0] < 0) & ~torch.isfinite(loss)
            self.first_bad = torch.where(new, mark, self.first_bad)
        self.batches += 1
        self.images += images

    def check_finite(self, epoch: int) -> None:
        """Raise NonFiniteLossError when a loss so far was not finite (reads one number)."""
        index = -1 if self.first_bad is None else int(self.first_bad[0])
        mine = (index, float(self.first_bad[1]) if index >= 0 else 0.0)   # one read when finite
        bad = [found for found in distributed.gather(mine) if found[0] >= 0]   # every rank alike
        if bad:
            index, value = min(bad)
            raise NonFiniteLossError(
                f"Training stopped at epoch {epoch + 1}, batch {index + 1}: the loss became "
                f"{value}. Lower the learning rate (--lr) or check the data; the last good "
                f"checkpoint is kept.")

    def means(self) -> dict[str, float]:
        return {name: float(total) / self.batches for name, total in self.sums.items()}


def _loop(store: Store, run: TrainingRun, setup: LoopSetup, callbacks: TrainCallbacks,
          checkpoint_rel: str) -> str:
    dtype = amp_dtype(setup.device) if setup.amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    if setup.scaler_state and scaler.is_enabled():
        scaler.load_state_dict(setup.scaler_state)
    setup.step = distributed_step(setup.model, setup.step, setup.device)
    main = distributed.is_main()

    def save(epochs_done: int) -> None:
        if main:
            save_checkpoint(setup.checkpoint_path,
                            checkpoint_state(setup, epochs_done, scaler, run))

    for epoch in range(setup.start_epoch, setup.epochs):
        started = time.perf_counter()
        tally = _train_epoch(setup, epoch, dtype, scaler, callbacks)
        if tally is None or (setup.validate is not None and callbacks.stopped()):
            save(epoch if tally is None else epoch + 1)   # cancel: keep the weights as they are
            if main:
                store.runs.update(run.id, checkpoint=checkpoint_rel)
            return "cancelled"
        report = _end_epoch(setup, run, epoch, tally, time.perf_counter() - started)
        save(epoch + 1)
        if main:
            store.runs.update(run.id, checkpoint=checkpoint_rel, metrics={
                "epochs": setup.history, "last": {**report.losses, **report.metrics}})
        log.info("%s epoch %d/%d: %s %s", setup.stage, epoch + 1, setup.epochs, report.losses,
                 report.metrics)
        callbacks.epoch(report)
    if setup.ema is not None:          # the average becomes the run's model
        setup.ema.copy_to(setup.model)
        save(setup.epochs)
    return "completed"


def _train_epoch(setup: LoopSetup, epoch: int, dtype: torch.dtype | None,
                 scaler: torch.amp.GradScaler, callbacks: TrainCallbacks) -> _EpochTally | None:
    """One pass over the loader; None when cancelled. Nothing in a step waits for the device:
    the losses stay there and are checked every `check_every` batches and at the end. Raises
    NonFiniteLossError."""
    if setup.set_epoch is not None:
        setup.set_epoch(epoch)
    setup.model.train()
    steps = len(setup.loader) if isinstance(setup.loader, Sized) else 0
    accum = max(1, setup.grad_accum)
    tally = _EpochTally()
    setup.optimizer.zero_grad(set_to_none=True)
    for index, batch in enumerate(setup.loader):
        if callbacks.stopped():
            return None
        with autocast(setup.device, dtype):
            losses = setup.step(setup.model, batch)
        scaler.scale(losses["loss"] / accum).backward()
        tally.add(losses, setup.batch_size(batch))
        if (index + 1) % setup.check_every == 0:
            tally.check_finite(epoch)
        if (index + 1) % accum == 0 or index + 1 == steps:
            _optimizer_step(setup, scaler)
        callbacks.step(setup.stage, epoch * steps + index + 1, steps * setup.epochs)
    if tally.batches == 0:
        raise UserError(f"The {setup.stage} has no training batches.")
    tally.check_finite(epoch)
    return tally


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision in `dtype` on `device` (CUDA in training; any device in tests), or none."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _optimizer_step(setup: LoopSetup, scaler: torch.amp.GradScaler) -> None:
    if setup.clip_grad_norm is not None:
        scaler.unscale_(setup.optimizer)
        nn.utils.clip_grad_norm_(setup.model.parameters(), setup.clip_grad_norm)
    scaler.step(setup.optimizer)
    scaler.update()
    setup.optimizer.zero_grad(set_to_none=True)
    if setup.scheduler is not None:
        setup.scheduler.step()
    if setup.ema is not None:
        setup.ema.update(setup.model)


def _end_epoch(setup: LoopSetup, run: TrainingRun, epoch: int, tally: _EpochTally,
               seconds: float) -> EpochReport:
    """Validation and the epoch's report (also appended to the run's history). In a job: the
    losses averaged over the ranks, the images summed, and validation run by rank 0 alone on
    the whole split, its figures broadcast to the other ranks."""
    images = distributed.total(tally.images)
    metrics: dict[str, float] = {"images_per_s": images / max(seconds, 1e-9),
                                 "lr": float(setup.optimizer.param_groups[0]["lr"])}
    if setup.validate is not None:
        figures: dict[str, float] = {}
        if distributed.is_main():
            evaluated = setup.evaluated_model
            evaluated.eval()
            with torch.inference_mode():
                figures = setup.validate(evaluated)
            setup.model.train()
        metrics.update(distributed.broadcast(figures))
    report = EpochReport(stage=setup.stage, run_id=run.id, model_version=run.model_version or "",
                         epoch=epoch + 1, epochs=setup.epochs,
                         losses=distributed.mean(tally.means()), metrics=metrics, seconds=seconds)
    setup.history.append(report.to_dict())
    return report
