"""The student stage: a plain classifier trained from the tags and distilled from the teacher.

`train_student(store, config, callbacks)` (registered in `engine.training.api.STAGE_TRAINERS`):

1. training set = tagged, readable images of split 'train'; validation = split 'val' (val mAP, CF1
   and OF1 through `engine.metrics` after every epoch);
2. unless `config.kd == "none"`, the teacher (`config.teacher_version`, else the active one) is
   loaded frozen, in eval mode, and run once under `torch.inference_mode` on every training image
   and view (the whole image, and `views - 1` random-resized crops fixed by the image's content
   hash), unflipped and flipped, at its own test scale with its own proposals. Kept per view:
   the soft target q = sum_r softmax_k(M^c / 0.5) * softmax_r(M^d / 0.5) (prediction distillation),
   and the `kd_boxes` highest-scoring boxes with their region features f_r (feature distillation).
   These targets are cached on disk per teacher version (`<project>/cache/distill/`), so later
   student runs from the same teacher skip the teacher entirely;
3. the student (engine.models.student.Student, `config.student_backbone`) sees, each epoch, one
   view per image drawn at random, stretched to `student_image_size` squared
   (`engine.datasets.student.student_input`, the same preparation as batch tagging), flipped
   exactly when the teacher's target was: the teacher and the student see the same augmented
   image. The teacher's boxes are rescaled to the student's input; the student RoI-aligns its own
   last conv map with them and its region head + projection give g_r;
4. losses per schedule (`config.schedule`):
   - `staged` (the paper): stage 1 (the first `feature_epochs`, default 40 % of the epochs when
     feature distillation is on) minimises L_f alone, as the authors' stage-1 prototxt; stage 2
     minimises L_tags + L_pred (the tag loss is BCE or ASL, `config.loss`);
   - `joint`: L_tags + feature_weight * L_f + L_pred from the first epoch;
   with `kd="none"` only L_tags; `feature` drops L_pred, `prediction` drops L_f;
5. AdamW with warm-up and cosine decay (restarted at the start of stage 2), the shared loop
   (engine.training.loop: AMP and channels_last on CUDA, checkpoints every epoch, cancel, resume),
   and the run in `store.runs` (model_version 'student-<id>'), active once completed.

Stage-specific knobs live in `config.extra` (stored with the run): `student_epochs`,
`student_lr`, `student_batch_size` (default: the shared `epochs`, `lr` and `batch_size`),
`feature_epochs`, `feature_weight` (1.0), `prediction_weight` (1.0), `kd_boxes` (48, 0 = all the
teacher's proposals), `student_pretrained` (default: `pretrained`), `feature_norm` ("l2": each
region feature of both sides L2-normalised, default; "scale": both divided by the teacher
features' RMS norm; "none"), `region_layers` (0: the RoI's mean feature and the projection,
default; 2: two fc layers of width `region_dim`, 256), `roi_size` (2), `views` (2: the whole
image and one random-resized crop per image, drawn per epoch; 1: the whole image only),
`student_stride` (32: the backbone's whole trunk; 16: cut at its stride-16 stage, a finer map
for the region head).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from typing import Any

import torch
from torch.utils.data import DataLoader

from engine.datasets.student import (
    StudentImages,
    ViewBatchSampler,
    collate_student,
    original_sizes,
)
from engine.device import resolve_device
from engine.errors import UserError
from engine.models.losses import (
    classification_loss,
    feature_distillation_loss,
    prediction_distillation_loss,
)
from engine.models.student import Student
from engine.training.api import TrainCallbacks, TrainConfig
from engine.training.common import staged_lr
from engine.training.distill import (
    TeacherTargets,
    compute_teacher_targets,
    content_digests,
)
from engine.training.loop import LoopSetup, run_stage, start_stage
from engine.training.student_options import student_options

log = logging.getLogger(__name__)


STAGE = "student"


def train_student(store: Any, config: TrainConfig, callbacks: TrainCallbacks | None = None) -> Any:
    """Train (or resume) a student; returns its TrainingRun (see the module docstring)."""
    from engine.models.registry import load_model

    callbacks = callbacks or TrainCallbacks()
    start = start_stage(store, STAGE, config, callbacks)
    config, run, checkpoint, matrix = start.config, start.run, start.checkpoint, start.matrix
    class_names = start.class_names
    options = student_options(config)
    device = resolve_device(config.device)

    teacher_run = None
    targets: TeacherTargets | None = None
    if options.needs_teacher:
        teacher_version = (checkpoint or {}).get("meta", {}).get("teacher_version") or \
            config.teacher_version
        teacher, teacher_run = load_model(store, "teacher", teacher_version, device=device)
        teacher_classes = list(teacher.meta.get("class_names") or teacher_run.class_names)
        if teacher_classes != class_names:
            raise UserError(f"The teacher {teacher_run.model_version} was trained on other classes "
                            f"than the project has now; train a new teacher first (or use "
                            f"--no-kd).")
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        flips = (False, True) if config.flip else (False,)
        targets = compute_teacher_targets(
            store, teacher, teacher_run.model_version, matrix.image_ids, matrix.paths,
            options.kd_boxes, flips, device, callbacks, batch_size=max(1, config.batch_size),
            views=options.views)
        del teacher
        if device.type == "cuda":
            torch.cuda.empty_cache()
    keep = list(range(len(matrix.image_ids)))
    if targets is not None:
        keep = [i for i in keep if not torch.isnan(targets.soft[i]).any()]
        if not keep:
            raise UserError("The teacher could not read any training image.")
        targets = TeacherTargets(targets.soft[keep], targets.boxes[keep], targets.features[keep],
                                 targets.valid[keep])
    paths = [matrix.paths[i] for i in keep]
    labels = matrix.labels[keep]
    size = int(config.student_image_size)
    kept_ids = [matrix.image_ids[i] for i in keep]
    train_set = StudentImages(paths, labels, size, original_sizes(store, kept_ids),
                              digests=content_digests(store, kept_ids, paths), views=options.views)

    feature_scale = 1.0
    if targets is not None and options.uses_feature and options.feature_norm == "scale":
        feature_scale = targets.feature_rms()
    fresh = checkpoint is None and not config.init_from
    pretrained = bool(config.extra.get("student_pretrained", config.pretrained))
    # a --weights file is the teacher backbone's; it only fits a student of the same backbone
    weights = config.weights if config.student_backbone == config.backbone else None
    model = Student(
        config.student_backbone, len(class_names),
        pretrained=pretrained and fresh and weights is None, weights=weights if fresh else None,
        teacher_feature_dim=targets.feature_dim if targets is not None else None,
        region_dim=options.region_dim, roi_size=options.roi_size, image_size=size,
        stride=options.stride, region_layers=options.region_layers)
    meta = {"class_names": class_names, "image_size": size,
            "teacher_version": teacher_run.model_version if teacher_run else None,
            "feature_scale": feature_scale, "options": dataclasses.asdict(options)}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    elif config.init_from:
        _warm_start(store, model, config.init_from, class_names)
    model.to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)

    sampler = ViewBatchSampler(len(train_set), options.batch_size, views=options.views,
                               flip=config.flip, seed=config.seed)
    workers = config.num_workers if config.num_workers is not None else 0
    loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collate_student,
                        num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0,
                        multiprocessing_context="spawn" if workers > 0 else None)

    decay, no_decay = [], []
    temperature = {id(p) for p in model.temperature.parameters()}
    for name, parameter in model.named_parameters():
        if id(parameter) not in temperature:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    # the temperature learns 10x faster and without weight decay, as in the authors' prototxt
    # (lr_mult 10, decay_mult 0 on the scale layer that holds 1/t)
    optimizer = torch.optim.AdamW([
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
        {"params": list(model.temperature.parameters()), "weight_decay": 0.0,
         "lr": options.lr * options.temperature_lr_mult}], lr=options.lr)
    steps_per_epoch = math.ceil(len(sampler) / max(1, config.grad_accum))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, staged_lr(options.epochs, steps_per_epoch, options.feature_epochs))
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("scheduler"):
            scheduler.load_state_dict(checkpoint["scheduler"])

    if run is None:
        run = store.runs.create(STAGE, config.to_dict(), class_names,
                                parent_run_id=teacher_run.id if teacher_run else None)
    else:
        store.runs.update(run.id, status="running")
    checkpoint_path = store.paths.models_dir / f"{run.model_version}.pt"

    phase = {"epoch": 0}

    def set_epoch(epoch: int) -> None:
        phase["epoch"] = epoch
        sampler.set_epoch(epoch)

    if targets is not None:
        soft_all = targets.soft.to(device)
        boxes_all = targets.boxes.to(device)
        features_all = targets.features.to(device)
        valid_all = targets.valid.to(device)

    def step(net: Student, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        images = batch["images"].to(device, non_blocking=True).float().div_(255.0)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels_b = batch["labels"].to(device, non_blocking=True)
        index, view, flip = (batch[k].to(device) for k in ("index", "view", "flip"))
        stage_one = phase["epoch"] < options.feature_epochs
        use_feature = options.uses_feature and (stage_one or options.schedule == "joint"
                                                or options.feature_epochs == 0)
        use_tags = not stage_one
        use_prediction = options.uses_prediction and not stage_one
        feature_map = net.feature_map(images)
        losses: dict[str, torch.Tensor] = {}
        total = feature_map.new_zeros(())
        if use_tags:
            logits = net.classify(feature_map).float()
            losses["tags"] = classification_loss(options.loss, logits, labels_b)
            total = total + losses["tags"]
            if use_prediction:
                soft = soft_all[index, view, flip]
                losses["prediction"] = prediction_distillation_loss(logits, soft, net.temperature())
                total = total + options.prediction_weight * losses["prediction"]
        if use_feature:
            valid = valid_all[index, view, flip]                             # (B, R)
            boxes = boxes_all[index, view, flip] * size                      # (B, R, 4)
            box_list = [boxes[b][valid[b]] for b in range(boxes.shape[0])]
            g = net.region_features(feature_map, box_list).float()
            f = features_all[index, view, flip][valid].float()
            if options.feature_norm == "scale":
                g, f = g / feature_scale, f / feature_scale
            losses["feature"] = feature_distillation_loss(
                g, f, normalize=options.feature_norm == "l2")
            weight = 1.0 if stage_one else options.feature_weight
            total = total + weight * losses["feature"]
        losses["loss"] = total
        return losses

    val_matrix = store.tags.label_matrix("val")
    validate = None
    if val_matrix.image_ids and list(val_matrix.class_names) == class_names:
        validate = _validator(store, val_matrix, size, device, options.batch_size)

    setup = LoopSetup(
        stage=STAGE, model=model, optimizer=optimizer, loader=loader, step=step,
        epochs=options.epochs, device=device, checkpoint_path=checkpoint_path,
        checkpoint_extra={"model_config": dict(model.config), "meta": meta,
                          "class_names": class_names, "config": config.to_dict()},
        scheduler=scheduler, validate=validate, set_epoch=set_epoch,
        grad_accum=config.grad_accum, amp=config.amp,
        start_epoch=int(checkpoint["epoch"]) if checkpoint else 0,
        history=list(checkpoint.get("history", [])) if checkpoint else [],
        scaler_state=checkpoint.get("scaler") if checkpoint else None)
    callbacks.message(
        f"Training {run.model_version} on {len(train_set)} images ({config.student_backbone} at "
        f"{size} px, kd={options.kd}, {options.schedule}, loss={options.loss}, {device.type})")
    return run_stage(store, run, setup, callbacks)


def _validator(store: Any, matrix: Any, size: int, device: torch.device, batch_size: int):  # noqa: ANN202
    """Per-epoch validation: mAP, CF1 and OF1 (engine.metrics) of the student on split 'val'."""
    from engine.metrics import multilabel_report

    images = StudentImages(matrix.paths, matrix.labels, size,
                           original_sizes(store, matrix.image_ids))
    readable: list[torch.Tensor] = []
    rows: list[int] = []
    for i in range(len(images)):
        try:
            readable.append(images.image(i))
            rows.append(i)
        except Exception as exc:  # noqa: BLE001 - an unreadable val image is left out
            log.warning("Leaving %s out of validation: %s", images.paths[i], exc)
    if not readable:
        return None
    stacked = torch.stack(readable)
    labels = matrix.labels[rows]

    def validate(model: Student) -> dict[str, float]:
        scores = []
        for start in range(0, len(stacked), max(batch_size, 32)):
            batch = stacked[start:start + max(batch_size, 32)].to(device).float().div_(255.0)
            scores.append(torch.sigmoid(model(batch).float()).cpu())
        report = multilabel_report(torch.cat(scores).numpy(), labels)
        return {"val_mAP": float(report.mAP), "val_CF1": float(report.CF1),
                "val_OF1": float(report.OF1),
                "temperature": float(model.temperature.temperature.mean())}

    return validate


def _warm_start(store: Any, model: Student, version: str, class_names: list[str]) -> None:
    """Initialise from another student's weights (its classifier too when the classes match)."""
    from engine.models.registry import load_checkpoint_of, resolve_run

    run = resolve_run(store, STAGE, version)
    state = load_checkpoint_of(store, run)["model"]
    own = model.state_dict()
    same_classes = list(run.class_names) == class_names
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape
              and (same_classes or not k.startswith(("classifier", "temperature")))}
    model.load_state_dict(usable, strict=False)
    log.info("Warm start from %s: %d of %d tensors", version, len(usable), len(own))


def describe_options(config: TrainConfig) -> str:
    """One line for logs and the CLI: the student's resolved settings."""
    return json.dumps(dataclasses.asdict(student_options(config)), sort_keys=True)
