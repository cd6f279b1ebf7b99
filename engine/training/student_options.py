"""The student's resolved options: `TrainConfig` and its `StudentSettings` checked and filled in
(shared values where the student has none of its own, the staged schedule's epochs), in one frozen
dataclass the student stage reads. Bad choices are `UserError`s, caught before any work."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from engine.errors import UserError
from engine.training.api import TrainConfig
from engine.training.sizing import MIN_BATCH, sized_batch, sqrt_scaled_lr


class NoUsableTeacherError(UserError):
    """Distillation was asked for, but there is no teacher, or it knows other classes: the caller
    can offer to train without distillation or to train a teacher first."""


KD_MODES = ("auto", "none", "feature", "prediction", "both")   # auto: engine.training.kd_gate
SCHEDULES = ("staged", "joint")
LOSSES = ("bce", "asl")
FEATURE_NORMS = ("none", "l2", "scale")
DISTIL_PAIRS = ("unknown", "all")

MAX_AUTO_BATCH = 32         # the student's batch where not given: sized for the training set
LR_AT_MAX_BATCH = 2e-3      # up to 32, at 2e-3 there (engine.training.sizing)
# Views per image where they cost only decoding (no distillation, or the teacher in the step:
# 8 views beat 2 by 1.1 points on the mean, 1 of 2 seeds, at 1,120 photos; 4 beat 2 in 2 of 2
# at 168), and where the teacher's targets are computed for every view and kept on disk (each
# view is one more teacher pass per image).
FREE_VIEWS = 8
CACHED_VIEWS = 2


@dataclass(frozen=True)
class StudentOptions:
    """The student's resolved settings (see `engine.training.api.StudentSettings`)."""

    epochs: int
    lr: float
    backbone_lr_mult: float      # the backbone learns at lr * this
    batch_size: int
    pretrained: bool
    kd: str
    schedule: str
    loss: str
    feature_epochs: int          # staged: epochs of stage 1 (feature distillation only)
    feature_weight: float
    prediction_weight: float
    kd_boxes: int
    views: int                   # augmented views per image: the whole image + views - 1 crops
    temperature_lr_mult: float   # learning-rate multiplier of the learnable 1/t
    feature_norm: str
    region_dim: int
    roi_size: int
    stride: int                  # 32: the whole trunk; 16: cut at the stride-16 stage
    region_layers: int           # 2: fc6/fc7-style region head; 0: mean RoI feature + projection
    online_targets: bool | None  # teacher targets in the step; None: on CUDA (see `on_the_fly`)
    ema_decay: float             # exponential moving average of the weights; 0: none
    distil_pairs: str            # prediction KD on "unknown" (undecided) pairs or on "all"

    @property
    def backbone_lr(self) -> float | None:
        """The backbone's own learning rate; None when it learns at the heads' rate."""
        return None if self.backbone_lr_mult == 1 else self.lr * self.backbone_lr_mult

    @property
    def uses_feature(self) -> bool:
        return self.kd in ("feature", "both")

    @property
    def uses_prediction(self) -> bool:
        return self.kd in ("prediction", "both")

    @property
    def needs_teacher(self) -> bool:
        return self.kd != "none"

    def on_the_fly(self, device_type: str) -> bool:
        """Whether the teacher computes its targets inside the student's step (by default on
        CUDA, where its forward is cheap) rather than in a pass cached on disk. `scale` feature
        normalisation needs the features' RMS over the whole set first, so it uses the pass."""
        if self.online_targets is not None:
            return self.online_targets
        return device_type == "cuda" and not (self.uses_feature and self.feature_norm == "scale")


def sized_for(config: TrainConfig, train_images: int, device_type: str = "cpu") -> TrainConfig:
    """`config` with the student's open settings filled in for a training set of `train_images`
    on `device_type`: the batch grows with the set (one image per 32, from `config.batch_size`
    up to 32, so every epoch keeps about 32 optimizer steps), the learning rate with the square
    root of the batch (2e-3 at 32), and the views are 8 unless the teacher's targets of each
    view are cached on disk (then 2). Values the student's settings give are kept."""
    own = config.student
    batch = own.batch_size or sized_batch(train_images, MAX_AUTO_BATCH,
                                          config.batch_size or MIN_BATCH)
    lr = own.lr or sqrt_scaled_lr(batch, LR_AT_MAX_BATCH, MAX_AUTO_BATCH)
    options = student_options(config)
    cached = options.needs_teacher and not options.on_the_fly(device_type)
    views = own.views or (CACHED_VIEWS if cached else FREE_VIEWS)
    return dataclasses.replace(config, student=dataclasses.replace(
        own, batch_size=batch, lr=lr, views=views))


def student_options(config: TrainConfig) -> StudentOptions:
    """Check and resolve the student's settings; raises UserError for a bad choice."""
    _check_choices(config)
    own = config.student
    epochs = int(own.epochs or config.epochs)
    batch = int(own.batch_size or config.batch_size or MIN_BATCH)    # before `sized_for`
    options = StudentOptions(
        epochs=epochs, lr=float(own.lr or sqrt_scaled_lr(batch, LR_AT_MAX_BATCH, MAX_AUTO_BATCH)),
        backbone_lr_mult=float(config.backbone_lr_mult),
        batch_size=batch,
        pretrained=bool(config.pretrained if own.pretrained is None else own.pretrained),
        kd=config.kd, schedule=config.schedule, loss=config.loss,
        feature_epochs=_feature_epochs(config, epochs),
        feature_weight=float(own.feature_weight), prediction_weight=float(own.prediction_weight),
        kd_boxes=int(own.kd_boxes), views=int(own.views or CACHED_VIEWS),
        temperature_lr_mult=float(own.temperature_lr_mult), feature_norm=str(own.feature_norm),
        region_dim=int(own.region_dim), roi_size=int(own.roi_size), stride=int(own.stride),
        region_layers=int(own.region_layers), online_targets=own.online_targets,
        ema_decay=float(own.ema_decay), distil_pairs=str(own.distil_pairs))
    if options.epochs < 1 or options.batch_size < 1 or options.lr <= 0:
        raise UserError("Student epochs, batch size and learning rate must be positive.")
    if options.views < 1:
        raise UserError("views must be at least 1 (the whole image).")
    if not 0.0 <= options.ema_decay < 1.0:
        raise UserError("The EMA decay must be at least 0 (off) and below 1, e.g. 0.998.")
    if options.kd_boxes < 0:
        raise UserError("kd_boxes must be 0 (all proposals) or a positive number of boxes.")
    if options.online_targets and options.uses_feature and options.feature_norm == "scale":
        raise UserError("Teacher targets on the fly cannot use feature_norm 'scale' (it needs "
                        "every feature first); use l2 or none, or cached targets.")
    return options


def _check_choices(config: TrainConfig) -> None:
    if config.kd not in KD_MODES:
        raise UserError(f"Unknown distillation mode {config.kd!r}; use one of {', '.join(KD_MODES)}.")
    if config.schedule not in SCHEDULES:
        raise UserError(f"Unknown schedule {config.schedule!r}; use staged or joint.")
    if config.loss not in LOSSES:
        raise UserError(f"Unknown loss {config.loss!r}; use bce or asl.")
    if config.student.distil_pairs not in DISTIL_PAIRS:
        raise UserError(f"Unknown distillation pairs {config.student.distil_pairs!r}; use unknown "
                        f"or all.")
    if config.student.feature_norm not in FEATURE_NORMS:
        raise UserError(f"Unknown feature normalisation {config.student.feature_norm!r}; use one "
                        f"of {', '.join(FEATURE_NORMS)}.")


def _feature_epochs(config: TrainConfig, epochs: int) -> int:
    """Staged schedule with feature distillation: the epochs of stage 1 (at least one, leaving at
    least one for stage 2); 0 for the joint schedule, without feature KD, or with one epoch."""
    if config.schedule != "staged" or config.kd not in ("feature", "both") or epochs <= 1:
        return 0
    share = config.student.feature_epochs
    if share is None:
        share = round(epochs * float(config.student.feature_share))
    return min(max(1, int(share)), epochs - 1)
