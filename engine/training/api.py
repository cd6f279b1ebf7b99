"""The public training contract: `TrainConfig`, `EpochReport`, `TrainCallbacks` and `train()`.

One entry point serves the command line (tqdm progress), the GUI (Qt signals through the callbacks)
and the benchmarks:

    runs = train(store, TrainConfig(stage="teacher", epochs=8), TrainCallbacks(on_epoch=print))

`train()` itself lives in `engine.training.stages` (it imports the stages, which import this
module); `engine.training` re-exports both. A stage function has the signature
`(store, config, callbacks) -> TrainingRun` and records its run in `store.runs`
(`model_version` '<stage>-<run id>', config, per-epoch losses/metrics, checkpoint path).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from engine.errors import UserError
from engine.models import REGION_HEADS

log = logging.getLogger(__name__)

STAGES = ("teacher", "student", "all", "quick")   # quick: the student's head on embeddings
BACKBONES = ("resnet18", "resnet50", "vgg16", "mobilenet_v3_large", "efficientnet_lite0")
PROPOSAL_SOURCES = ("sliding", "edgeboxes", "selective_search")
# What people get from the command line and the GUI: the source that localised best on the demo
# data (docs/teacher.md). `TrainConfig.proposals` stays "sliding", the dependency-free fallback.
RECOMMENDED_PROPOSALS = "selective_search"
# `mlic train --fast-proposals`: the same source on images reduced to 256 px instead of 384, about
# 2.5x less CPU per image on photographs (benchmarks/proposals.py --photos; README).
FAST_PROPOSALS: tuple[str, dict[str, Any]] = ("selective_search", {"max_side": 256})


@dataclass
class StudentSettings:
    """The student's own knobs (None: the shared value of `TrainConfig`). Measured defaults
    (benchmarks/kd_ablation.py, docs/distillation.md): L2-normalised region features, the
    mean-feature region head and one crop view per image distil best."""

    epochs: int | None = None                # default: TrainConfig.epochs
    lr: float | None = None                  # default: scaled with the batch (student_options)
    batch_size: int | None = None            # default: from the training set (student_options)
    pretrained: bool | None = None           # default: TrainConfig.pretrained
    kd_boxes: int = 48                       # teacher boxes per view for feature KD (0: all)
    feature_weight: float = 0.1              # measured on photographs (docs/distillation.md)
    prediction_weight: float = 1.0
    feature_norm: str = "l2"                 # l2 | scale | none
    views: int | None = None                 # the whole image + views - 1 random-resized crops
                                             # (default: 8, or 2 where targets are cached)
    temperature_lr_mult: float = 10.0        # the learnable 1/t trains this much faster
    feature_share: float = 0.4               # staged: share of epochs for feature KD alone
    feature_epochs: int | None = None        # staged: epochs of feature KD alone (overrides share)
    region_dim: int = 256                    # width of the fc region head (region_layers 2)
    roi_size: int = 2
    stride: int = 32                         # 32: the whole trunk; 16: cut at stride 16
    region_layers: int = 0                   # 0: mean RoI feature + projection; 2: fc6/fc7-style
    online_targets: bool | None = None       # teacher targets in the step (None: on CUDA) or cached
    ema_decay: float = 0.0                   # average of the weights (engine.training.ema); 0: off
    distil_pairs: str = "unknown"            # prediction KD on: unknown (undecided) pairs | all

    # the keys the untyped `extra` dict of earlier versions used for these fields
    LEGACY_KEYS: ClassVar[dict[str, str]] = {"student_epochs": "epochs", "student_lr": "lr",
                   "student_batch_size": "batch_size", "student_pretrained": "pretrained",
                   "student_stride": "stride"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentSettings:
        """From a stored dict (this version's keys, or an earlier version's `extra`)."""
        known = {f.name for f in fields(cls)}
        renamed = {cls.LEGACY_KEYS.get(k, k): v for k, v in data.items()}
        return cls(**{k: v for k, v in renamed.items() if k in known})


@dataclass
class TrainConfig:
    """Everything a training run needs; every field has a CPU-friendly default.

    Teacher fields: `backbone`, `image_size` (longest side of the test scale; training samples
    `scales` around it), `proposals` (proposal source) and `proposal_params`, `max_proposals`,
    `refine` (OICR branches). Student fields are prefixed `student_`, named after the distillation
    options (`kd`, `schedule`, `loss`), or in `student` (`StudentSettings`).
    """

    stage: str = "teacher"                   # teacher | student | all (teacher, then student)
    backbone: str = "efficientnet_lite0"     # teacher backbone (see engine.models.backbones);
    student_backbone: str = "efficientnet_lite0"  # its ImageNet weights ship with the project
    image_size: int = 320                    # teacher test scale: longest image side, pixels
    student_image_size: int = 224
    epochs: int = 12
    batch_size: int | None = None            # teacher: None sizes it for the training set (4-16)
    lr: float | None = None                  # teacher heads: None: 1e-3 at batch 4, sqrt-scaled
    backbone_lr_mult: float = 1.0            # the backbone learns at lr * this (heads at lr)
    frozen_bn: bool = False                  # teacher: BatchNorm statistics kept fixed (measured: worse)
    weight_decay: float = 5e-4
    grad_accum: int = 1                      # optimizer step every `grad_accum` batches
    device: str = "auto"                     # auto | cpu | cuda
    seed: int = 0
    proposals: str = "sliding"               # sliding | edgeboxes | selective_search
    max_proposals: int = 300                 # proposals per image fed to the teacher
    pretrained: bool = True                  # ImageNet weights (bundled for efficientnet_lite0,
                                             # torchvision's weights API for the others)
    weights: str | None = None               # a local state-dict file instead of a download
    refine: bool = True                      # OICR refinement branches (teacher)
    refine_branches: int = 3
    hidden: int = 512                        # fc6/fc7 width of the teacher's region head
    region_head: str = "dilated"             # dilated (whole pretrained trunk at stride 16;
                                             # measured best on photographs) | fc (thin, random)
                                             # | trunk (pretrained last stage per region)
    roi_op: str = "align"                    # align (RoIAlign) | pool (RoIPool, as the paper)
    box_scores: bool = True                  # multiply pooled features by proposal scores e_r
    scales: tuple[int, ...] | None = None    # training scales (longest side); None: derived
    flip: bool = True                        # horizontal-flip augmentation
    amp: bool = True                         # mixed precision (CUDA only)
    num_workers: int | None = None           # data-loading processes; None: chosen per device
    kd: str = "auto"                         # auto (feature KD when the teacher validates above the
                                             # student, engine.training.kd_gate) | none | feature
                                             # | prediction | both
    schedule: str = "joint"                  # joint (measured better) | staged (paper) (student)
    loss: str = "asl"                        # asl (measured better on photos) | bce (student)
    untagged_as_negative: bool = False       # an untagged (unknown) pair is a negative, as before
    unknown_weight: float = 0.2              # an unknown pair's weight as a negative (0: ignored)
    init_from: str | None = None             # model version to warm-start from
    teacher_version: str | None = None       # teacher the student distils from (None: active)
    resume: bool = False                     # continue the latest unfinished run of the stage
    student_init_from: str | None = None     # stage all: the student's own warm start
    labels_as_of: int | None = None          # train on the tags as of this tag-history id
    class_names: list[str] | None = None     # and on these classes (set when a run starts)
    proposal_params: dict[str, Any] = field(default_factory=dict)  # the proposal source's options
    student: StudentSettings = field(default_factory=StudentSettings)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise UserError(f"Unknown stage {self.stage!r}; use one of {', '.join(STAGES)}.")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise UserError(f"Unknown device {self.device!r}; use auto, cpu or cuda.")
        if self.proposals not in PROPOSAL_SOURCES:
            raise UserError(f"Unknown proposal source {self.proposals!r}; "
                            f"use one of {', '.join(PROPOSAL_SOURCES)}.")
        for name in ("epochs", "batch_size", "grad_accum", "image_size", "student_image_size",
                     "max_proposals", "hidden"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise UserError(f"{name.replace('_', ' ').capitalize()} must be at least 1, "
                                f"not {getattr(self, name)}.")
        if not float(self.backbone_lr_mult) > 0:
            raise UserError(f"The backbone's learning-rate multiplier must be positive, not "
                            f"{self.backbone_lr_mult}.")
        if self.image_size < 64:
            raise UserError(f"Image size must be at least 64 pixels, not {self.image_size}.")
        if not 0.0 <= float(self.unknown_weight) <= 1.0:
            raise UserError(f"Unknown weight must be between 0 and 1, not {self.unknown_weight}.")
        if self.region_head not in REGION_HEADS:
            raise UserError(f"Unknown region head {self.region_head!r}; use one of "
                            f"{', '.join(REGION_HEADS)}.")
        if self.roi_op not in ("align", "pool"):
            raise UserError(f"Unknown RoI operation {self.roi_op!r}; use align or pool.")
        if self.scales is not None:
            self.scales = tuple(int(s) for s in self.scales)
        if isinstance(self.student, dict):
            self.student = StudentSettings.from_dict(self.student)
        if not float(self.student.feature_weight) >= 0:      # NaN fails too
            raise UserError(f"The feature-distillation weight must be 0 or more, not "
                            f"{self.student.feature_weight}.")

    @property
    def backbone_lr(self) -> float | None:
        """The backbone's own learning rate; None when it learns at the heads' rate."""
        if self.backbone_lr_mult == 1 or self.lr is None:       # None: not sized yet
            return None
        return self.lr * self.backbone_lr_mult

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (stored with the run and in checkpoints)."""
        data = asdict(self)
        if data["scales"] is not None:
            data["scales"] = list(data["scales"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys (from a newer version) are ignored, and the untyped
        `extra` dict of earlier versions is read into `student` and `proposal_params`. A config
        stored before a default changed resumes as it began: untagged pairs as negatives (before
        three label states), the fc region head and feature weight 1 (before the dilated head)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if data and "untagged_as_negative" not in data:
            values["untagged_as_negative"] = True
        if data and "region_head" not in data:
            values["region_head"] = "fc"
        legacy = dict(data.get("extra") or {})
        if legacy:
            legacy.setdefault("feature_weight", 1.0)
            values.setdefault("proposal_params", legacy.pop("proposal_params", {}))
            values.setdefault("student", StudentSettings.from_dict(legacy))
        return cls(**values)


@dataclass
class EpochReport:
    """What one finished epoch reports to the callbacks (and what the run stores per epoch)."""

    stage: str
    run_id: int
    model_version: str
    epoch: int                    # 1-based
    epochs: int
    losses: dict[str, float]      # mean over the epoch, e.g. {"loss": .., "wsddn": .., "refine": ..}
    metrics: dict[str, float]     # e.g. {"val_mAP": ..., "images_per_s": ...}
    seconds: float = 0.0          # wall time of the epoch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainCallbacks:
    """Hooks for progress and cancellation; all optional, called on the training thread."""

    on_step: Callable[[str, int, int], None] | None = None   # (stage, done, total) in the run
    on_epoch: Callable[[EpochReport], None] | None = None
    should_stop: Callable[[], bool] | None = None            # cancel: checkpoint kept, run 'cancelled'
    on_message: Callable[[str], None] | None = None          # phase changes ("computing proposals")

    def step(self, stage: str, done: int, total: int) -> None:
        if self.on_step is not None:
            self.on_step(stage, done, total)

    def epoch(self, report: EpochReport) -> None:
        if self.on_epoch is not None:
            self.on_epoch(report)

    def stopped(self) -> bool:
        return bool(self.should_stop is not None and self.should_stop())

    def progress_for(self, label: str) -> Callable[[int, int], None]:
        """A plain `progress(done, total)` that reports as `on_step(label, done, total)`."""
        return lambda done, total: self.step(label, done, total)

    def message(self, text: str) -> None:
        log.info(text)
        if self.on_message is not None:
            self.on_message(text)
