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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from engine.datasets.regions import (
    RegionDataset,
    ScaleBatchSampler,
    collate_regions,
    default_scales,
)
from engine.device import resolve_device
from engine.distributed import is_main
from engine.errors import UserError
from engine.inference.detect import predict_regions
from engine.metrics import mean_average_precision
from engine.models.wsddn import WSDDN
from engine.proposals import ProposalSource, get_source
from engine.training.api import TrainCallbacks, TrainConfig
from engine.training.common import (
    adamw,
    end_cancelled,
    freeze_batchnorm,
    make_loader,
    open_run,
    param_groups,
    place_model,
    restore_optimizer,
    resume_state,
    warm_start,
    warmup_cosine,
)
from engine.training.ddp import shard_batches, sharded_proposals
from engine.training.loop import LoopSetup, StageStart, run_stage, start_stage
from engine.training.sizing import MIN_BATCH, sized_batch, sqrt_scaled_lr

if TYPE_CHECKING:
    from engine.store import Store
    from engine.store.schema import TrainingRun

log = logging.getLogger(__name__)

STAGE = "teacher"
CLASS_LAYERS = ("cls_stream", "det_stream", "refiners")   # what depends on the class list
MAX_AUTO_BATCH = 16        # the batch where not given: sized for the training set up to 16
LR_AT_MIN_BATCH = 1e-3     # at batch 4, scaled by sqrt (2e-3 at 16; both measured)


def source_from_config(config: TrainConfig) -> ProposalSource:
    """The proposal source of a training config (with its `proposal_params`)."""
    return get_source(config.proposals, **dict(config.proposal_params))


def train_teacher(store: Store, config: TrainConfig,
                  callbacks: TrainCallbacks | None = None) -> TrainingRun:
    """Train (or resume) a teacher; returns its TrainingRun (see the module docstring)."""
    callbacks = callbacks or TrainCallbacks()
    start = start_stage(store, STAGE, config, callbacks)
    device = resolve_device(start.config.device)
    source = source_from_config(start.config)
    run = open_run(store, STAGE, start)      # stores the config as asked: open sizes stay open
    start = dataclasses.replace(start, config=sized_for(start.config, len(start.matrix.image_ids)))
    try:
        train_set = _training_images(store, start, source, callbacks)
        if train_set is None:
            return end_cancelled(store, run)
        setup = _loop_setup(store, start, run, train_set, source, device, callbacks)
    except BaseException:
        if is_main():
            store.runs.update(run.id, status="failed", finished=True)
        raise
    callbacks.message(f"Training {run.model_version} on {len(train_set)} images "
                      f"({start.config.backbone}, {source.name} proposals, batch "
                      f"{start.config.batch_size} at lr {start.config.lr:.2g}, {device.type})")
    return run_stage(store, run, setup, callbacks)


def sized_for(config: TrainConfig, train_images: int) -> TrainConfig:
    """`config` with the teacher's open batch size and learning rate filled in for a training set
    of `train_images` (engine.training.sizing): one image of batch per 32 images, 4 to 16, and
    1e-3 at batch 4 scaled by the square root of the batch. Given values are kept. A round's
    training set is fixed (`labels_as_of`), so a resumed run sizes itself the same."""
    batch = config.batch_size or sized_batch(train_images, MAX_AUTO_BATCH)
    lr = config.lr or sqrt_scaled_lr(batch, LR_AT_MIN_BATCH, MIN_BATCH)
    return dataclasses.replace(config, batch_size=batch, lr=lr)


def _training_images(store: Store, start: StageStart, source: ProposalSource,
                     callbacks: TrainCallbacks) -> RegionDataset | None:
    """The train split's readable images with their proposals; None when cancelled."""
    config, matrix = start.config, start.matrix
    callbacks.message(f"Computing {source.name} proposals for {len(matrix.image_ids)} images")
    proposals, failed = sharded_proposals(store, matrix.image_ids, matrix.paths, source,
                                             callbacks.progress_for("proposals"),
                                             callbacks.should_stop)
    if callbacks.stopped():
        return None
    keep = [i for i, p in enumerate(proposals) if p is not None and len(p) > 0]
    for image_id, reason in failed.items():
        log.warning("Skipping training image %s: %s", image_id, reason)
    if not keep:
        raise UserError("None of the training images could be read.")
    return RegionDataset([matrix.paths[i] for i in keep], [proposals[i] for i in keep],
                         matrix.targets(config.untagged_as_negative)[keep], config.max_proposals,
                         box_scores=config.box_scores, train=True, seed=config.seed)


def _build_teacher(store: Store, start: StageStart, source: ProposalSource,
                   uses_scores: bool) -> WSDDN:
    """A new teacher: resumed weights, a warm start, or ImageNet / a weights file."""
    config, checkpoint = start.config, start.checkpoint
    fresh = checkpoint is None and not config.init_from
    model = WSDDN(len(start.class_names), config.backbone, pretrained=config.pretrained and fresh,
                  weights=config.weights if fresh else None, hidden=config.hidden,
                  roi_op=config.roi_op, region_head=config.region_head,
                  refine_branches=config.refine_branches if config.refine else 0)
    model.meta = {
        "class_names": start.class_names, "image_size": config.image_size,
        "scales": list(config.scales or default_scales(config.image_size)),
        "proposals": source.name, "proposal_params": dataclasses.asdict(source),
        "max_proposals": config.max_proposals, "box_scores": uses_scores,
    }
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    elif config.init_from:
        warm_start(store, model, STAGE, config.init_from, start.class_names, CLASS_LAYERS)
    return model


def _loop_setup(store: Store, start: StageStart, run: TrainingRun, train_set: RegionDataset,
                source: ProposalSource, device: torch.device,
                callbacks: TrainCallbacks) -> LoopSetup:
    """Everything the shared loop needs for this teacher run."""
    config = start.config
    uses_scores = bool(config.box_scores and train_set.proposals[0].scores is not None)
    model = _build_teacher(store, start, source, uses_scores)
    channels_last = place_model(model, device)
    sampler = ScaleBatchSampler(len(train_set), config.batch_size, model.meta["scales"],
                                flip=config.flip, seed=config.seed)
    optimizer = adamw(param_groups(model, config.weight_decay, backbone=model.backbone,
                                   backbone_lr=config.backbone_lr), config.lr)
    steps = math.ceil(len(sampler) / max(1, config.grad_accum)) * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(steps, warmup_steps=min(steps // 5, 200)))
    restore_optimizer(optimizer, scheduler, start.checkpoint)
    return LoopSetup(
        stage=STAGE, model=model, optimizer=optimizer,
        loader=make_loader(train_set, shard_batches(sampler), collate_regions, device,
                           config.num_workers),
        step=RegionStep(device, channels_last, uses_scores, float(config.unknown_weight),
                        config.frozen_bn),
        epochs=config.epochs, device=device,
        checkpoint_path=store.paths.models_dir / f"{run.model_version}.pt",
        checkpoint_extra={"model_config": model.config, "meta": model.meta,
                          "class_names": start.class_names, "config": config.to_dict()},
        scheduler=scheduler, validate=_validator(store, start, source, device, callbacks),
        set_epoch=sampler.set_epoch, grad_accum=config.grad_accum, amp=config.amp,
        **resume_state(start.checkpoint))


@dataclass
class RegionStep:
    """One teacher batch -> its losses (WSDDN + OICR, computed by the model's forward); with
    `frozen_bn` the backbone's BatchNorm layers run in eval mode (batches of a few images)."""

    device: torch.device
    channels_last: bool
    uses_scores: bool
    unknown_weight: float = 0.0      # the WSDDN loss's weight of an undecided pair
    frozen_bn: bool = False

    def __call__(self, net: WSDDN, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self.frozen_bn:
            freeze_batchnorm(net)
        images = batch["images"].to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        boxes = [b.to(self.device, non_blocking=True) for b in batch["boxes"]]
        scores = (None if batch["box_scores"] is None or not self.uses_scores
                  else [s.to(self.device, non_blocking=True) for s in batch["box_scores"]])
        return net(images, boxes, scores,
                   labels=batch["labels"].to(self.device, non_blocking=True),
                   unknown_weight=self.unknown_weight)


def _validator(store: Store, start: StageStart, source: ProposalSource, device: torch.device,
               callbacks: TrainCallbacks):  # noqa: ANN202
    """Per-epoch validation mAP on split 'val'; None when it has no tagged images of the same
    classes or none of them can be read."""
    config = start.config
    matrix = store.tags.label_matrix("val", as_of_change=config.labels_as_of,
                                     class_names=config.class_names)
    if not matrix.image_ids or list(matrix.class_names) != start.class_names:
        return None
    proposals, _ = sharded_proposals(store, matrix.image_ids, matrix.paths, source,
                                        callbacks.progress_for("proposals"),
                                        callbacks.should_stop)
    keep = [i for i, p in enumerate(proposals) if p is not None and len(p) > 0]
    if not keep:
        return None
    val_set = RegionDataset([matrix.paths[i] for i in keep], [proposals[i] for i in keep],
                            matrix.targets()[keep], config.max_proposals,
                            box_scores=config.box_scores)

    def validate(model: WSDDN) -> dict[str, float]:
        scores = np.zeros_like(val_set.labels)         # labels: 1, 0, UNKNOWN -1 (left out)
        for item in predict_regions(model, val_set, device, batch_size=config.batch_size,
                                    keep_regions=False):
            scores[item.index] = item.image_scores
        return {"val_mAP": float(mean_average_precision(scores, val_set.labels))}

    return validate
