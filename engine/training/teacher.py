"""The teacher stage: WSDDN + OICR trained from the image-level tags of split 'train'.

`train_teacher(store, config, callbacks)`:
1. training set = `store.tags.label_matrix("train")` (readable images of split train that have
   tags); validation = split 'val' when it has tagged images (val mAP after every epoch);
2. proposals for all of them from the project's cache (computed in worker processes on a miss);
3. the model (engine.models.wsddn.WSDDN on the configured backbone), multi-scale + flip batches,
   AdamW with a linear warm-up and cosine decay, the shared loop (engine.training.loop) with AMP
   and channels_last on CUDA, gradient accumulation and an atomic checkpoint every epoch;
4. the run in `store.runs` (model_version 'teacher-<id>'), active once completed.

`config.resume` continues the latest unfinished teacher run from its checkpoint (its own config;
`epochs` may be raised).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from engine.datasets.regions import (
    RegionDataset,
    ScaleBatchSampler,
    collate_regions,
    default_scales,
)
from engine.device import resolve_device
from engine.errors import UserError
from engine.models.wsddn import WSDDN
from engine.proposals import ProposalSource, get_source
from engine.proposals.project import proposals_for_images
from engine.training.api import TrainCallbacks, TrainConfig
from engine.training.common import warmup_cosine
from engine.training.loop import LoopSetup, run_stage, start_stage

log = logging.getLogger(__name__)

STAGE = "teacher"


def source_from_config(config: TrainConfig) -> ProposalSource:
    """The proposal source of a training config (its parameters: `config.extra["proposal_params"]`)."""
    return get_source(config.proposals, **dict(config.extra.get("proposal_params", {})))


def train_teacher(store: Any, config: TrainConfig,
                  callbacks: TrainCallbacks | None = None) -> Any:
    """Train (or resume) a teacher; returns its TrainingRun (see the module docstring)."""
    callbacks = callbacks or TrainCallbacks()
    start = start_stage(store, STAGE, config, callbacks)
    config, run, checkpoint, matrix = start.config, start.run, start.checkpoint, start.matrix
    device = resolve_device(config.device)
    source = source_from_config(config)

    if run is None:
        run = store.runs.create(STAGE, config.to_dict(), start.class_names)
    else:
        store.runs.update(run.id, status="running")
    try:
        return _train(store, config, callbacks, run, checkpoint, matrix, source, device)
    except BaseException:
        if store.runs.get(run.id).status == "running":
            store.runs.update(run.id, status="failed", finished=True)
        raise


def _train(store: Any, config: TrainConfig, callbacks: TrainCallbacks, run: Any,
           checkpoint: dict[str, Any] | None, matrix: Any, source: ProposalSource,
           device: torch.device) -> Any:
    class_names = list(matrix.class_names)
    callbacks.message(f"Computing {source.name} proposals for {len(matrix.image_ids)} images")
    proposals, failed = proposals_for_images(store, matrix.image_ids, matrix.paths, source,
                                             callbacks.progress_for("proposals"),
                                             callbacks.should_stop)
    if callbacks.stopped():
        store.runs.update(run.id, status="cancelled", finished=True)
        return store.runs.get(run.id)
    keep = [i for i, p in enumerate(proposals) if p is not None and len(p) > 0]
    for image_id, reason in failed.items():
        log.warning("Skipping training image %s: %s", image_id, reason)
    if not keep:
        raise UserError("None of the training images could be read.")
    train_set = RegionDataset([matrix.paths[i] for i in keep], [proposals[i] for i in keep],
                              matrix.labels[keep], config.max_proposals,
                              box_scores=config.box_scores, train=True, seed=config.seed)

    validate = None
    val_matrix = store.tags.label_matrix("val")
    if val_matrix.image_ids and list(val_matrix.class_names) == class_names:
        val_proposals, _ = proposals_for_images(store, val_matrix.image_ids, val_matrix.paths,
                                                source, callbacks.progress_for("proposals"),
                                                callbacks.should_stop)
        val_keep = [i for i, p in enumerate(val_proposals) if p is not None and len(p) > 0]
        if val_keep:
            val_set = RegionDataset([val_matrix.paths[i] for i in val_keep],
                                    [val_proposals[i] for i in val_keep],
                                    val_matrix.labels[val_keep], config.max_proposals,
                                    box_scores=config.box_scores)
            validate = _validator(val_set, config, device)

    uses_scores = bool(config.box_scores and proposals[keep[0]].scores is not None)
    model = WSDDN(len(class_names), config.backbone,
                  pretrained=config.pretrained and checkpoint is None and not config.init_from,
                  weights=config.weights if checkpoint is None and not config.init_from else None,
                  hidden=config.hidden, roi_op=config.roi_op,
                  refine_branches=config.refine_branches if config.refine else 0)
    scales = list(config.scales or default_scales(config.image_size))
    model.meta = {
        "class_names": class_names, "image_size": config.image_size, "scales": scales,
        "proposals": source.name, "proposal_params": dataclasses.asdict(source),
        "max_proposals": config.max_proposals, "box_scores": uses_scores,
    }
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    elif config.init_from:
        _warm_start(store, model, config.init_from, class_names)
    model.to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)

    sampler = ScaleBatchSampler(len(train_set), config.batch_size, scales, flip=config.flip,
                                seed=config.seed)
    workers = config.num_workers
    if workers is None:
        workers = 0 if device.type == "cpu" else min(8, max(1, (torch.get_num_threads() or 2) // 2))
    loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collate_regions,
                        num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0,
                        multiprocessing_context="spawn" if workers > 0 else None)

    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    steps = math.ceil(len(sampler) / max(1, config.grad_accum)) * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(steps, warmup_steps=min(steps // 5, 200)))
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("scheduler"):
            scheduler.load_state_dict(checkpoint["scheduler"])

    checkpoint_path = store.paths.models_dir / f"{run.model_version}.pt"

    def step(net: WSDDN, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        images = batch["images"].to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        boxes = [b.to(device, non_blocking=True) for b in batch["boxes"]]
        scores = (None if batch["box_scores"] is None or not uses_scores
                  else [s.to(device, non_blocking=True) for s in batch["box_scores"]])
        return net(images, boxes, scores, labels=batch["labels"].to(device, non_blocking=True))

    setup = LoopSetup(
        stage=STAGE, model=model, optimizer=optimizer, loader=loader, step=step,
        epochs=config.epochs, device=device, checkpoint_path=checkpoint_path,
        checkpoint_extra={"model_config": model.config, "meta": model.meta,
                          "class_names": class_names, "config": config.to_dict()},
        scheduler=scheduler, validate=validate, set_epoch=sampler.set_epoch,
        grad_accum=config.grad_accum, amp=config.amp,
        start_epoch=int(checkpoint["epoch"]) if checkpoint else 0,
        history=list(checkpoint.get("history", [])) if checkpoint else [],
        scaler_state=checkpoint.get("scaler") if checkpoint else None)
    callbacks.message(f"Training {run.model_version} on {len(train_set)} images "
                      f"({config.backbone}, {source.name} proposals, {device.type})")
    return run_stage(store, run, setup, callbacks)


def _validator(val_set: RegionDataset, config: TrainConfig, device: torch.device):  # noqa: ANN202
    from engine.inference.detect import predict_regions
    from engine.metrics import mean_average_precision

    def validate(model: WSDDN) -> dict[str, float]:
        scores = np.zeros_like(val_set.labels)
        for item in predict_regions(model, val_set, device, batch_size=config.batch_size,
                                    keep_regions=False):
            scores[item.index] = item.image_scores
        return {"val_mAP": float(mean_average_precision(scores, val_set.labels))}

    return validate


def _warm_start(store: Any, model: WSDDN, version: str, class_names: list[str]) -> None:
    """Initialise from another teacher's weights (the class-dependent layers only when the
    classes are the same)."""
    from engine.models.registry import load_checkpoint_of, resolve_run

    run = resolve_run(store, STAGE, version)
    state = load_checkpoint_of(store, run)["model"]
    own = model.state_dict()
    same_classes = list(run.class_names) == class_names
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape
              and (same_classes or not k.startswith(("cls_stream", "det_stream", "refiners")))}
    model.load_state_dict(usable, strict=False)
    log.info("Warm start from %s: %d of %d tensors", version, len(usable), len(own))
