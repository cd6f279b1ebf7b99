"""Running the stages: `train(store, config, callbacks)` trains the stage(s) of a `TrainConfig`,
the one place where the teacher-then-student chaining lives (stage 'all', and resuming it). Each
stage's trainer is imported on first use, so importing the training contract loads no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from engine import distributed
from engine.errors import UserError
from engine.training.api import STAGES, TrainCallbacks, TrainConfig

if TYPE_CHECKING:
    from engine.store import Store
    from engine.store.schema import TrainingRun


def stage_trainer(stage: str) -> Callable[[Store, TrainConfig, TrainCallbacks], TrainingRun]:
    """The training function of `stage`, imported on first use (torch loads only when training)."""
    if stage == "teacher":
        from engine.training.teacher import train_teacher

        return train_teacher
    if stage == "student":
        from engine.training.student import train_student

        return train_student
    if stage == "quick":
        from engine.training.quick import train_quick

        return train_quick
    raise UserError(f"Unknown stage {stage!r}; use one of {', '.join(STAGES)}.")


def stage_configs(config: TrainConfig) -> list[TrainConfig]:
    """One config per stage to train, in order: stage 'all' is the teacher, then the student,
    which starts from `student_init_from` (its own warm start, not the teacher's)."""
    if config.stage != "all":
        return [config]
    return [replace(config, stage="teacher"),
            replace(config, stage="student", init_from=config.student_init_from)]


def train(store: Store, config: TrainConfig,
          callbacks: TrainCallbacks | None = None) -> list[TrainingRun]:
    """Train the stage(s) named by `config.stage`; returns the runs made, in order. The one
    place where the teacher-then-student chaining lives: with stage 'all' the student distils
    from the teacher just trained.

    A cancelled stage (callbacks.should_stop) ends the whole call: its run is returned with status
    'cancelled' and later stages do not start. Errors the user can fix raise `UserError`; the run
    is then marked 'failed' and its last checkpoint kept.
    """
    callbacks = callbacks or TrainCallbacks()
    runs: list[TrainingRun] = []
    if not config.resume and config.labels_as_of is None:
        config = snapshot(store, config)
    configs = stage_configs(config)
    if config.resume and len(configs) > 1:
        configs = _resumed_stages(store, configs)
    configs = distributed.broadcast(configs)     # a job: every rank trains what rank 0 planned
    for stage_config in configs:
        if stage_config.stage == "student" and runs:     # the teacher's labels, and the teacher
            stored = runs[-1].config or {}
            stage_config = replace(stage_config, teacher_version=runs[-1].model_version,
                                   labels_as_of=stored.get("labels_as_of"),
                                   class_names=stored.get("class_names"))
        run = stage_trainer(stage_config.stage)(store, stage_config, callbacks)
        runs.append(run)
        if run.status != "completed":
            break
    return runs


def _resumed_stages(store: Store, configs: list[TrainConfig]) -> list[TrainConfig]:
    """Resuming stage 'all': continue the stage that was running when it stopped, then train the
    stages after it afresh, as the round planned them (the interrupted teacher's stored config).
    The student was running when the latest run is an unfinished student; else the teacher was."""
    runs = store.runs.list()
    if runs and runs[-1].stage == "student" and runs[-1].status != "completed":
        return [configs[1]]
    teacher = next((run for run in reversed(runs) if run.stage == "teacher"), None)
    if teacher is None or teacher.status == "completed" or not teacher.config:
        return [configs[0], replace(configs[1], resume=False)]
    planned = TrainConfig.from_dict(teacher.config)      # the student the round planned
    return [configs[0], replace(planned, stage="student", resume=False,
                                init_from=planned.student_init_from, device=configs[1].device)]


def snapshot(store: Store, config: TrainConfig) -> TrainConfig:
    """`config` pinned to the project's tags and classes as they are now: a round trains on what
    it started with, every stage alike; tags and classes added meanwhile wait for the next round."""
    return replace(config, labels_as_of=store.tags.last_change_id(),
                   class_names=store.classes.names())
