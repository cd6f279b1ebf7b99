"""Pieces every training stage shares, so the teacher and the student are wired the same way:
learning-rate schedules, optimizer parameter groups, the data loader, placing the model, warm
start from an earlier run, resuming the optimizer, and opening or cancelling the stage's run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from engine import distributed
from engine.models.registry import load_weights_of, resolve_run

if TYPE_CHECKING:
    from engine.store import Store
    from engine.store.schema import TrainingRun
    from engine.training.loop import StageStart

log = logging.getLogger(__name__)


def staged_lr(total_epochs: int, steps_per_epoch: int, restart_epoch: int,
              warmup_steps: int = 20, floor: float = 0.02):  # noqa: ANN201
    """LR multiplier per optimizer step: warm-up then cosine decay within each phase; with a
    staged schedule a second warm-up + cosine starts at `restart_epoch` (stage 2)."""
    bounds = [0, restart_epoch * steps_per_epoch] if restart_epoch > 0 else [0]
    total = total_epochs * steps_per_epoch

    def factor(step: int) -> float:
        start = max(b for b in bounds if b <= step)
        end = next((b for b in bounds if b > start), total)
        length = max(1, end - start)
        local = step - start
        warm = min(warmup_steps, max(1, length // 5))
        if local < warm:
            return 0.1 + 0.9 * local / warm
        progress = min(1.0, (local - warm) / max(1, length - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def warmup_cosine(total_steps: int, warmup_steps: int, floor: float = 0.02):  # noqa: ANN201
    """LR multiplier: linear warm-up from 0.1, then cosine decay to `floor`."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return 0.1 + 0.9 * step / max(1, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def param_groups(model: nn.Module, weight_decay: float, apart: Iterable[nn.Parameter] = (),
                 backbone: nn.Module | None = None,
                 backbone_lr: float | None = None) -> list[dict[str, Any]]:
    """AdamW groups: weights with decay, biases and norm scales (1-d) without; parameters in
    `apart` are left out for the caller's own group. With `backbone` and `backbone_lr`, the
    backbone's parameters get groups of their own at that learning rate (a pretrained trunk is
    fine-tuned more gently than the new heads)."""
    skip = {id(p) for p in apart}
    trunk = {id(p) for p in backbone.parameters()} if backbone is not None and backbone_lr else set()
    groups = []
    for mine, extra in ((lambda p: id(p) not in trunk, {}),
                        (lambda p: id(p) in trunk, {"lr": backbone_lr})):
        chosen = [p for p in model.parameters() if id(p) not in skip and mine(p)]
        if extra and not chosen:
            continue
        groups += [{"params": [p for p in chosen if p.ndim > 1], "weight_decay": weight_decay,
                    **extra},
                   {"params": [p for p in chosen if p.ndim <= 1], "weight_decay": 0.0, **extra}]
    return groups


def freeze_batchnorm(model: nn.Module) -> None:
    """Every BatchNorm layer of `model` in eval mode: its running statistics (ImageNet's for a
    pretrained backbone) are used and kept, as detectors do with batches of a few images."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def adamw(groups: list[dict[str, Any]], lr: float) -> torch.optim.AdamW:
    """The stages' optimizer: AdamW, fused when the parameters are on CUDA (one kernel, step
    counters on the device, so a step never waits for the host)."""
    on_cuda = any(p.is_cuda for group in groups for p in group["params"])
    return torch.optim.AdamW(groups, lr=lr, fused=on_cuda or None)


def restore_optimizer(optimizer: torch.optim.Optimizer, scheduler: Any,
                      checkpoint: dict[str, Any] | None) -> None:
    """Resume: the optimizer's and the scheduler's state from the checkpoint (if any)."""
    if checkpoint is None:
        return
    optimizer.load_state_dict(checkpoint["optimizer"])
    if checkpoint.get("scheduler"):
        scheduler.load_state_dict(checkpoint["scheduler"])


def resume_state(checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """The `LoopSetup` fields a resumed run continues from (a fresh run starts at epoch 0)."""
    if checkpoint is None:
        return {"start_epoch": 0, "history": [], "scaler_state": None, "ema_state": None}
    return {"start_epoch": int(checkpoint["epoch"]), "history": list(checkpoint.get("history", [])),
            "scaler_state": checkpoint.get("scaler"), "ema_state": checkpoint.get("ema")}


def place_model(model: nn.Module, device: torch.device) -> bool:
    """Move the model to `device`, channels_last on CUDA; returns whether inputs should be
    channels_last too."""
    model.to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return channels_last


def make_loader(dataset: Any, sampler: Any, collate: Callable[[list[Any]], Any],
                device: torch.device, workers: int | None) -> DataLoader:
    """The training loader: `workers` processes (None: none on the CPU, where the model needs the
    cores, up to 8 on a GPU), pinned memory on CUDA, workers kept between epochs."""
    if workers is None:
        workers = 0 if device.type == "cpu" else min(8, max(1, (torch.get_num_threads() or 2) // 2))
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                      multiprocessing_context="spawn" if workers > 0 else None)


def warm_start(store: Store, model: nn.Module, stage: str, version: str,
               class_names: list[str], class_layers: tuple[str, ...]) -> None:
    """Initialise from another run's weights of the same stage: every tensor of the same shape,
    the class-dependent layers (names starting with `class_layers`) only when the classes match."""
    run = resolve_run(store, stage, version)
    state = load_weights_of(store, run)["model"]
    own = model.state_dict()
    same_classes = list(run.class_names) == class_names
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape
              and (same_classes or not k.startswith(class_layers))}
    model.load_state_dict(usable, strict=False)
    log.info("Warm start from %s: %d of %d tensors", version, len(usable), len(own))


def open_run(store: Store, stage: str, start: StageStart,
             parent_run_id: int | None = None) -> TrainingRun:
    """The run this stage records into: the resumed one (running again) or a new one. In a job
    of several processes rank 0 opens it and the others read it."""
    run_id = None
    if distributed.is_main():
        if start.run is not None:
            store.runs.update(start.run.id, status="running")
            run_id = start.run.id
        else:
            run_id = store.runs.create(stage, start.config.to_dict(), start.class_names,
                                       parent_run_id=parent_run_id).id
    return store.runs.get(distributed.broadcast(run_id))


def end_cancelled(store: Store, run: TrainingRun) -> TrainingRun:
    """A stage cancelled before its first epoch: the run is 'cancelled', never an error."""
    if distributed.is_main():
        store.runs.update(run.id, status="cancelled", finished=True)
    distributed.barrier()
    return store.runs.get(run.id)
