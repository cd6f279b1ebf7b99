"""The student stage: a plain classifier trained from the tags and distilled from the teacher.

`train_student(store, config, callbacks)` (run by `engine.training.stages.train`):

1. training set = tagged, readable images of split 'train'; validation = split 'val' (val mAP, CF1
   and OF1 through `engine.metrics` after every epoch);
2. unless `config.kd == "none"`, the teacher (`config.teacher_version`, else the active one) is
   loaded frozen, in eval mode, and run once under `torch.inference_mode` on every training image
   and view (the whole image, and `views - 1` random-resized crops fixed by the image's content
   hash), unflipped and flipped, at its own test scale with its own proposals. Kept per view:
   the soft target q = sum_r softmax_k(M^c / 0.5) * softmax_r(M^d / 0.5) (prediction distillation),
   and the `kd_boxes` highest-scoring boxes with their region features f_r (feature distillation).
   These targets live on disk, one memory-mapped record per image per teacher version and
   setting (`<project>/cache/distill/`, `engine.datasets.targets`), read lazily by the data
   loader; later student runs from the same teacher skip the teacher entirely, and a cancelled
   pass resumes where it stopped. On CUDA (or with `online_targets`) the teacher instead
   computes the same targets inside each student step from the same inputs (`OnlineTeacher`),
   so augmentation is not limited by a pass;
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
   L_pred covers the pairs no tag decides (`distil_pairs` "unknown", default) or every pair ("all",
   the paper); on a fully tagged set the default leaves feature distillation alone;
   with `kd="none"` only L_tags; `feature` drops L_pred, `prediction` drops L_f;
5. AdamW with warm-up and cosine decay (restarted at the start of stage 2), the shared loop
   (engine.training.loop: AMP and channels_last on CUDA, checkpoints every epoch, cancel, resume),
   and the run in `store.runs` (model_version 'student-<id>'), active once completed.

The student's own knobs are typed (`engine.training.api.StudentSettings`, resolved by
`engine.training.student_options`); teacher targets live in `engine.training.distill`, the
images and views in `engine.datasets.student`. A cancel at any point, teacher targets included,
ends with a 'cancelled' run, never an error.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from engine.datasets.student import (
    StudentImages,
    ViewBatchSampler,
    collate_student,
    original_sizes,
)
from engine.device import resolve_device
from engine.distributed import is_main
from engine.errors import UserError
from engine.metrics import multilabel_report
from engine.models.losses import (
    classification_loss,
    feature_distillation_loss,
    prediction_distillation_loss,
)
from engine.models.registry import load_model
from engine.models.student import Student
from engine.store.versions import active_run
from engine.training.api import TrainCallbacks, TrainConfig
from engine.training.common import (
    adamw,
    end_cancelled,
    make_loader,
    open_run,
    param_groups,
    place_model,
    restore_optimizer,
    resume_state,
    staged_lr,
    warm_start,
)
from engine.training.ddp import shard_batches, sharded
from engine.training.distill import (
    OnlineTeacher,
    TeacherPass,
    TeacherTargets,
    compute_teacher_targets,
    content_digests,
)
from engine.training.kd_gate import choose_kd
from engine.training.loop import LoopSetup, StageStart, run_stage, start_stage
from engine.training.student_options import (
    NoUsableTeacherError,
    StudentOptions,
    sized_for,
    student_options,
)

if TYPE_CHECKING:
    from engine.store import Store
    from engine.store.schema import TrainingRun

log = logging.getLogger(__name__)

STAGE = "student"
CLASS_LAYERS = ("classifier", "temperature")     # what depends on the class list


def train_student(store: Store, config: TrainConfig,
                  callbacks: TrainCallbacks | None = None) -> TrainingRun:
    """Train (or resume) a student; returns its TrainingRun (see the module docstring)."""
    callbacks = callbacks or TrainCallbacks()
    start = start_stage(store, STAGE, config, callbacks)
    choice = choose_kd(store, start.config, start.class_names)   # a resumed run: as stored
    if choice.reason:
        callbacks.message(choice.reason)
    device = resolve_device(start.config.device)
    config = sized_for(_as_begun(dataclasses.replace(start.config, kd=choice.kd), start),
                       len(start.matrix.image_ids), device.type)
    start = dataclasses.replace(start, config=config)
    options = student_options(start.config)
    teacher, teacher_run = _frozen_teacher(store, start, options, device)
    run = open_run(store, STAGE, start, parent_run_id=teacher_run.id if teacher_run else None)
    try:
        targets, online = None, None
        if teacher is not None and options.on_the_fly(device.type):
            flips = (False, True) if start.config.flip else (False,)
            online = OnlineTeacher(teacher, TeacherPass.of(teacher, options.kd_boxes,
                                                           options.views, flips), device)
        elif teacher is not None:
            targets = _teacher_targets(store, start, options, teacher, teacher_run, device,
                                       callbacks)
            del teacher
            if targets is None:
                return end_cancelled(store, run)
        setup, n_images = _loop_setup(store, start, options, run, targets, teacher_run, device,
                                      online)
    except BaseException:
        if is_main():
            store.runs.update(run.id, status="failed", finished=True)
        raise
    callbacks.message(
        f"Training {run.model_version} on {n_images} images "
        f"({start.config.student_backbone} at {start.config.student_image_size} px, "
        f"kd={options.kd}, {options.schedule}, loss={options.loss}, batch {options.batch_size} "
        f"at lr {options.lr:.2g}, {options.views} view(s), {device.type})")
    return run_stage(store, run, setup, callbacks)


def _as_begun(config: TrainConfig, start: StageStart) -> TrainConfig:
    """A resumed run's batch size, learning rate and views as its checkpoint used them, where its
    stored settings leave them open (a run begun before they were sized for the training set)."""
    begun = ((start.checkpoint or {}).get("meta") or {}).get("options")
    if not begun:
        return config
    own = config.student
    return dataclasses.replace(config, student=dataclasses.replace(
        own, batch_size=own.batch_size or begun["batch_size"], lr=own.lr or begun["lr"],
        views=own.views or begun["views"]))


def _frozen_teacher(store: Store, start: StageStart, options: StudentOptions,
                    device: torch.device) -> tuple[torch.nn.Module | None, Any]:
    """The teacher to distil from (the resumed run's, the named one, else the active one), frozen;
    (None, None) without distillation. UserError when it knows other classes than the project."""
    if not options.needs_teacher:
        return None, None
    version = ((start.checkpoint or {}).get("meta", {}).get("teacher_version")
               or start.config.teacher_version)
    if version is None and active_run(store, "teacher") is None:
        raise NoUsableTeacherError("There is no trained teacher to distil from yet; train a "
                                   "teacher first, or train the student without distillation.")
    teacher, teacher_run = load_model(store, "teacher", version, device=device)
    teacher_classes = list(teacher.meta.get("class_names") or teacher_run.class_names)
    if teacher_classes != start.class_names:
        raise NoUsableTeacherError(
            f"The teacher {teacher_run.model_version} was trained on other classes than the "
            f"project has now; train a new teacher first, or train the student without "
            f"distillation.")
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher, teacher_run


def _teacher_targets(store: Store, start: StageStart, options: StudentOptions,
                     teacher: torch.nn.Module, teacher_run: Any, device: torch.device,
                     callbacks: TrainCallbacks) -> TeacherTargets | None:
    """The teacher's targets for every training image, view and flip; None when cancelled."""
    config, matrix = start.config, start.matrix
    flips = (False, True) if config.flip else (False,)
    targets = sharded(
        lambda ids, paths: compute_teacher_targets(
            store, teacher, teacher_run.model_version, ids, paths, options.kd_boxes, flips,
            device, callbacks, batch_size=config.batch_size or options.batch_size,
            views=options.views,
            workers=config.num_workers),
        matrix.image_ids, matrix.paths)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return targets


def _training_images(store: Store, start: StageStart, options: StudentOptions,
                     targets: TeacherTargets | None, online: OnlineTeacher | None,
                     ) -> tuple[StudentImages, TeacherTargets | None]:
    """The training set: every train image, less those the teacher could not read; with the
    teacher's targets read from disk, or its inputs for `online` to compute them in the step."""
    matrix = start.matrix
    keep = list(range(len(matrix.image_ids)))
    if targets is not None:
        keep = targets.available()
        if not keep:
            raise UserError("The teacher could not read any training image.")
        targets = targets.subset(keep)
    paths = [matrix.paths[i] for i in keep]
    ids = [matrix.image_ids[i] for i in keep]
    digests = content_digests(store, ids, paths)
    labels = matrix.targets(start.config.untagged_as_negative)[keep]   # UNKNOWN -1 where undecided
    images = StudentImages(paths, labels, int(start.config.student_image_size),
                           original_sizes(store, ids), digests=digests, views=options.views,
                           targets=targets, teacher_views=None if online is None
                           else online.views_of(paths, digests, store.paths.proposals_cache))
    return images, targets


def _build_student(store: Store, start: StageStart, options: StudentOptions,
                   teacher_dim: int | None) -> Student:
    """A new student: resumed weights, a warm start, or ImageNet / a weights file for a fresh run."""
    config, checkpoint = start.config, start.checkpoint
    fresh = checkpoint is None and not config.init_from
    # a --weights file is the teacher backbone's; it only fits a student of the same backbone
    weights = config.weights if config.student_backbone == config.backbone else None
    model = Student(
        config.student_backbone, len(start.class_names),
        pretrained=options.pretrained and fresh and weights is None,
        weights=weights if fresh else None,
        teacher_feature_dim=teacher_dim,
        region_dim=options.region_dim, roi_size=options.roi_size,
        image_size=int(config.student_image_size), stride=options.stride,
        region_layers=options.region_layers)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    elif config.init_from:
        warm_start(store, model, STAGE, config.init_from, start.class_names, CLASS_LAYERS)
    model.temperature.requires_grad_(options.uses_prediction)   # 1/t of prediction KD only
    return model


def _optimizer(model: Student, config: TrainConfig, options: StudentOptions,
               steps_per_epoch: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW; the temperature learns `temperature_lr_mult` times faster and without weight decay,
    as in the authors' prototxt (lr_mult 10, decay_mult 0 on the scale layer that holds 1/t)."""
    temperature = list(model.temperature.parameters())
    optimizer = adamw(
        [*param_groups(model, config.weight_decay, apart=temperature, backbone=model.backbone,
                       backbone_lr=options.backbone_lr),
         {"params": temperature, "weight_decay": 0.0,
          "lr": options.lr * options.temperature_lr_mult}], options.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, staged_lr(options.epochs, steps_per_epoch, options.feature_epochs))
    return optimizer, scheduler


def _loop_setup(store: Store, start: StageStart, options: StudentOptions, run: TrainingRun,
                targets: TeacherTargets | None, teacher_run: Any, device: torch.device,
                online: OnlineTeacher | None = None) -> tuple[LoopSetup, int]:
    """Everything the shared loop needs for this student run, and the number of images."""
    config = start.config
    train_set, targets = _training_images(store, start, options, targets, online)
    teacher_dim = (targets.feature_dim if targets is not None
                   else int(online.model.feature_dim) if online is not None else None)
    model = _build_student(store, start, options, teacher_dim)
    channels_last = place_model(model, device)
    sampler = ViewBatchSampler(len(train_set), options.batch_size, views=options.views,
                               flip=config.flip, seed=config.seed)
    optimizer, scheduler = _optimizer(model, config, options,
                                      math.ceil(len(sampler) / max(1, config.grad_accum)))
    restore_optimizer(optimizer, scheduler, start.checkpoint)
    step = DistillationStep(options, int(config.student_image_size), device, channels_last,
                            targets, online, unknown_weight=float(config.unknown_weight))
    meta = {"class_names": start.class_names, "image_size": int(config.student_image_size),
            "teacher_version": teacher_run.model_version if teacher_run else None,
            "feature_scale": step.feature_scale, "options": dataclasses.asdict(options)}
    setup = LoopSetup(
        stage=STAGE, model=model, optimizer=optimizer,
        loader=make_loader(train_set, shard_batches(sampler), collate_student, device,
                           config.num_workers),
        step=step, epochs=options.epochs, device=device,
        checkpoint_path=store.paths.models_dir / f"{run.model_version}.pt",
        checkpoint_extra={"model_config": dict(model.config), "meta": meta,
                          "class_names": start.class_names, "config": config.to_dict()},
        scheduler=scheduler, validate=_validator(store, start.class_names, config, options,
                                                 device),
        set_epoch=step.chain_set_epoch(sampler.set_epoch), grad_accum=config.grad_accum,
        amp=config.amp, ema_decay=options.ema_decay, **resume_state(start.checkpoint))
    return setup, len(train_set)


@dataclass
class DistillationStep:
    """One training batch of the student -> its losses, per the schedule (`StudentOptions`):
    `staged` (the paper) minimises L_f alone for the first `feature_epochs`, then L_tags + L_pred;
    `joint` minimises L_tags + feature_weight * L_f + L_pred from the first epoch. The teacher's
    targets of each sample's view and flip come with the batch (`batch["targets"]`, read from
    disk; `targets` only gives their feature scale), or `online` computes them from the batch's
    teacher inputs (`batch["teacher"]`)."""

    options: StudentOptions
    size: int
    device: torch.device
    channels_last: bool
    targets: TeacherTargets | None
    online: OnlineTeacher | None = None
    epoch: int = 0
    unknown_weight: float = 0.0      # the tag loss's weight of an undecided pair

    def __post_init__(self) -> None:
        self.feature_scale = 1.0
        if (self.targets is not None and self.options.uses_feature
                and self.options.feature_norm == "scale"):
            self.feature_scale = self.targets.feature_rms()

    @property
    def leaves_parameters_unused(self) -> bool:
        """Whether a batch may leave trainable parameters out of the loss (the region head without
        feature KD, the classifier in stage 1 of `staged`; the temperature does not train without
        prediction KD, `_build_student`), so DDP must look for them."""
        return not ((self.targets is not None or self.online is not None)
                    and self.options.uses_feature and self.options.feature_epochs == 0)

    def chain_set_epoch(self, set_sampler_epoch: Any) -> Any:
        def set_epoch(epoch: int) -> None:
            self.epoch = epoch
            set_sampler_epoch(epoch)
        return set_epoch

    def __call__(self, net: Student, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        images = batch["images"].to(self.device, non_blocking=True).float().div_(255.0)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = batch["labels"].to(self.device, non_blocking=True)
        targets = (self.online(batch["teacher"]) if self.online is not None
                   else batch.get("targets", {}))
        teacher = {k: v.to(self.device, non_blocking=True) for k, v in targets.items()}
        stage_one = self.epoch < self.options.feature_epochs
        feature_map = net.feature_map(images)
        losses: dict[str, torch.Tensor] = {}
        total = feature_map.new_zeros(())
        if not stage_one:
            total = total + self._tag_losses(net, feature_map, labels, teacher, losses)
        if self.options.uses_feature and (stage_one or self.options.feature_epochs == 0
                                          or self.options.schedule == "joint"):
            losses["feature"] = self._feature_loss(net, feature_map, teacher)
            total = total + (1.0 if stage_one else self.options.feature_weight) * losses["feature"]
        losses["loss"] = total
        return losses

    def _tag_losses(self, net: Student, feature_map: torch.Tensor, labels: torch.Tensor,
                    teacher: dict[str, torch.Tensor], losses: dict[str, torch.Tensor]
                    ) -> torch.Tensor:
        logits = net.classify(feature_map).float()
        losses["tags"] = classification_loss(self.options.loss, logits, labels, self.unknown_weight)
        total = losses["tags"]
        if self.options.uses_prediction and teacher:
            pairs = labels < 0 if self.options.distil_pairs == "unknown" else None
            losses["prediction"] = prediction_distillation_loss(logits, teacher["soft"],
                                                                net.temperature(), pairs)
            total = total + self.options.prediction_weight * losses["prediction"]
        return total

    def _feature_loss(self, net: Student, feature_map: torch.Tensor,
                      teacher: dict[str, torch.Tensor]) -> torch.Tensor:
        valid = teacher["valid"]                                           # (B, R)
        boxes = teacher["boxes"] * self.size                               # (B, R, 4)
        g = net.region_features(feature_map, list(boxes.unbind(0))).float()
        g = g.view(*valid.shape, -1)
        f = teacher["features"].float()                                    # (B, R, D)
        if self.options.feature_norm == "scale":
            g, f = g / self.feature_scale, f / self.feature_scale
        return feature_distillation_loss(g, f, normalize=self.options.feature_norm == "l2",
                                         mask=valid)


def _validator(store: Store, class_names: list[str], config: TrainConfig,
               options: StudentOptions, device: torch.device):  # noqa: ANN202
    """Per-epoch validation: mAP, CF1 and OF1 (engine.metrics) of the student on split 'val';
    None when the split has no tagged images of the same classes."""
    matrix = store.tags.label_matrix("val", as_of_change=config.labels_as_of,
                                     class_names=config.class_names)
    if not matrix.image_ids or list(matrix.class_names) != class_names:
        return None
    images = StudentImages(matrix.paths, matrix.targets(), int(config.student_image_size),
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
    stacked, labels = torch.stack(readable), matrix.targets()[rows]   # decided pairs count
    chunk = max(options.batch_size, 32)

    def validate(model: Student) -> dict[str, float]:
        scores = [torch.sigmoid(model(stacked[i:i + chunk].to(device).float().div_(255.0)).float())
                  .cpu() for i in range(0, len(stacked), chunk)]
        report = multilabel_report(torch.cat(scores).numpy(), labels)
        figures = {"val_mAP": float(report.mAP), "val_CF1": float(report.CF1),
                   "val_OF1": float(report.OF1)}
        if options.uses_prediction:           # the learnt t of prediction KD; fixed otherwise
            figures["temperature"] = float(model.temperature.temperature.mean())
        return figures

    return validate
