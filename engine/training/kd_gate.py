"""When to distil: `kd="auto"` (the default) decides at the start of a student run.

Distillation can only carry what the teacher knows better than the student. On 1,120
composited photographs a teacher with the fc region head reached 23.4 mAP against the student's
44.2, and distilling from it cost the student 19.5 points; a dilated teacher below the student
(48.0 against 59.3) cost it one point, while one above it (48.0 against 42.4) added 2.6
(docs/distillation.md). So `auto` distils
region features (`feature`) only when the teacher's validation mAP is above the project's
active student's, both as their runs stored them on split val for the same classes; otherwise,
and before any student exists to compare with, the student trains without distillation. The
choice and its reason go to the run's messages, and the run stores the resolved mode, so a
resumed run keeps it. An explicit mode (`none`, `feature`, `prediction`, `both`) is used as given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.store.versions import active_run

if TYPE_CHECKING:
    from engine.store import Store
    from engine.training.api import TrainConfig

AUTO = "auto"
AUTO_DISTILS = "feature"      # what `auto` distils when the teacher is the better model


@dataclass(frozen=True)
class KdChoice:
    """The mode a student run trains with, and why (for the run's messages)."""

    kd: str
    reason: str


def choose_kd(store: Store, config: TrainConfig, class_names: list[str]) -> KdChoice:
    """Resolve `config.kd`: as given unless `auto` (see the module docstring)."""
    if config.kd != AUTO:
        return KdChoice(config.kd, "")
    teacher = _validated(store.runs.by_version(config.teacher_version)
                         if config.teacher_version else active_run(store, "teacher"), class_names)
    student = _validated(active_run(store, "student"), class_names)
    if teacher is None:
        return KdChoice("none", "kd auto: no distillation, no teacher of these classes has a "
                                "measured validation mAP")
    named = f"the teacher {teacher[0]} (val mAP {teacher[1]:.3f})"
    if student is None:
        return KdChoice("none", f"kd auto: no distillation, no student of these classes has a "
                                f"measured validation mAP yet to compare {named} with")
    versus = f"{named} against the student {student[0]} ({student[1]:.3f})"
    if teacher[1] > student[1]:
        return KdChoice(AUTO_DISTILS, f"kd auto: distilling region features, {versus}")
    return KdChoice("none", f"kd auto: no distillation, {versus}: the student already "
                            f"validates above its teacher")


def _validated(run: Any, class_names: list[str]) -> tuple[str, float] | None:
    """(version, val mAP) of a completed run of these classes with a measured val mAP."""
    if run is None or run.status != "completed" or list(run.class_names or []) != class_names:
        return None
    value = ((run.metrics or {}).get("last") or {}).get("val_mAP")
    if value is None or not math.isfinite(float(value)):
        return None
    return run.model_version, float(value)
