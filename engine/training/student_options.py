"""The student's typed options: what distillation, schedule, loss and region head it trains with,
resolved from `TrainConfig` and checked. Measured defaults (benchmarks/kd_ablation.py,
docs/distillation.md): L2-normalised features, the mean-feature region head and one crop view per
image distil best.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import UserError
from engine.training.api import TrainConfig

KD_MODES = ("none", "feature", "prediction", "both")

SCHEDULES = ("staged", "joint")

LOSSES = ("bce", "asl")

FEATURE_NORMS = ("none", "l2", "scale")

# Measured on the demo data (benchmarks/kd_ablation.py, docs/distillation.md): l2-normalised
# features, the mean-feature region head and one crop view per image distil best.
DEFAULTS: dict[str, Any] = {
    "feature_weight": 1.0, "prediction_weight": 1.0, "kd_boxes": 48, "feature_norm": "l2",
    "views": 2, "temperature_lr_mult": 10.0, "feature_share": 0.4, "region_dim": 256,
    "roi_size": 2, "student_stride": 32, "region_layers": 0,
}


@dataclass(frozen=True)
class StudentOptions:
    """The student's resolved settings (from TrainConfig and its `extra`)."""

    epochs: int
    lr: float
    batch_size: int
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

    @property
    def uses_feature(self) -> bool:
        return self.kd in ("feature", "both")

    @property
    def uses_prediction(self) -> bool:
        return self.kd in ("prediction", "both")

    @property
    def needs_teacher(self) -> bool:
        return self.kd != "none"


def student_options(config: TrainConfig) -> StudentOptions:
    """Check and resolve the student's settings; raises UserError for a bad choice."""
    extra = {**DEFAULTS, **dict(config.extra or {})}
    if config.kd not in KD_MODES:
        raise UserError(f"Unknown distillation mode {config.kd!r}; use one of {', '.join(KD_MODES)}.")
    if config.schedule not in SCHEDULES:
        raise UserError(f"Unknown schedule {config.schedule!r}; use staged or joint.")
    if config.loss not in LOSSES:
        raise UserError(f"Unknown loss {config.loss!r}; use bce or asl.")
    if extra["feature_norm"] not in FEATURE_NORMS:
        raise UserError(f"Unknown feature normalisation {extra['feature_norm']!r}; use one of "
                        f"{', '.join(FEATURE_NORMS)}.")
    epochs = int(extra.get("student_epochs") or config.epochs)
    uses_feature = config.kd in ("feature", "both")
    if config.schedule == "staged" and uses_feature:
        feature_epochs = extra.get("feature_epochs")
        if feature_epochs is None:
            feature_epochs = round(epochs * float(extra["feature_share"]))
        feature_epochs = int(feature_epochs)
        if epochs > 1:
            feature_epochs = min(max(1, feature_epochs), epochs - 1)
        else:
            feature_epochs = 0      # one epoch: no room for two stages; distil jointly
    else:
        feature_epochs = 0
    options = StudentOptions(
        epochs=epochs, lr=float(extra.get("student_lr") or config.lr),
        batch_size=int(extra.get("student_batch_size") or config.batch_size),
        kd=config.kd, schedule=config.schedule, loss=config.loss, feature_epochs=feature_epochs,
        feature_weight=float(extra["feature_weight"]),
        prediction_weight=float(extra["prediction_weight"]), kd_boxes=int(extra["kd_boxes"]),
        views=int(extra["views"]), temperature_lr_mult=float(extra["temperature_lr_mult"]),
        feature_norm=str(extra["feature_norm"]), region_dim=int(extra["region_dim"]),
        roi_size=int(extra["roi_size"]), stride=int(extra["student_stride"]),
        region_layers=int(extra["region_layers"]))
    if options.epochs < 1 or options.batch_size < 1 or options.lr <= 0:
        raise UserError("Student epochs, batch size and learning rate must be positive.")
    if options.views < 1:
        raise UserError("views must be at least 1 (the whole image).")
    if options.kd_boxes < 0:
        raise UserError("kd_boxes must be 0 (all proposals) or a positive number of boxes.")
    return options
