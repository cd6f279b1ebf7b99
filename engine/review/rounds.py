"""Training rounds: what each round learnt from, how good it is, which one is in use.

- A round is a training run. The store records, when the run starts, its tag-history watermark
  (the last tag change it learnt from: `store.tags.label_matrix(as_of_change=run.tag_watermark)`
  replays exactly its labels) and gives it a model version '<stage>-<run id>'; suggestions and
  regions carry that version.
- `plan_next_round` decides how the next round starts: from the previous round's weights
  (`TrainConfig.init_from`) when the class list is unchanged, which converges in fewer epochs;
  from scratch when classes were added, removed or renamed (the old output layer does not fit).
- `train_round` is one round: stable stratified split for unassigned tagged images, the plan,
  training, threshold calibration of a new student and `evaluate_round` on the validation split.
- `evaluate_round` measures a version on the validation split (mAP, CF1, OF1 at the classes'
  thresholds, through `engine.metrics`; a teacher through `engine.inference.evaluation`) and stores the
  figures with its run.
- `round_history` lists the rounds with those figures and the number of tags a person had set by
  each round's watermark (replayed from the tag history), for the GUI's plot over rounds.
- `rollback(store, version)` makes an earlier version the active one (`registry.set_active`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from engine import distributed
from engine.errors import UserError
from engine.progress import Progress, ShouldStop
from engine.review.splits import SplitAssignment
from engine.store.versions import active_run

if TYPE_CHECKING:
    from engine.store import Store
    from engine.store.schema import TrainingRun
    from engine.training import TrainConfig

log = logging.getLogger(__name__)

ROUND_METRICS_KEY = "review"            # key of the round's figures inside run.metrics


# ============================================================================ planning a round


@dataclass(frozen=True)
class RoundPlan:
    config: TrainConfig                  # stage 'all': `student_init_from` is the student's start
    warm_start: bool
    reason: str                          # one sentence for the GUI / CLI

    @property
    def student_init_from(self) -> str | None:
        return self.config.student_init_from

    def stage_configs(self) -> list[TrainConfig]:
        """The config of each stage this round trains (`engine.training.stages.stage_configs`)."""
        from engine.training.stages import stage_configs

        return stage_configs(self.config)


def warm_start_source(store: Store, stage: str) -> tuple[TrainingRun | None, str]:
    """The run the next `stage` round can start from, and why (or why not)."""
    from engine.store.versions import active_run

    previous = active_run(store, stage)
    if previous is None:
        return None, f"no earlier {stage} model: training from scratch"
    classes = store.classes.names()
    if list(previous.class_names) != classes:
        return None, (f"the class list changed since {previous.model_version}: "
                      f"training from scratch")
    return previous, f"warm start from {previous.model_version} (same classes)"


def plan_next_round(store: Store, base: TrainConfig | None = None,
                    warm_epochs: int | None = None) -> RoundPlan:
    """The config of the next round: `base` (default `TrainConfig()`) with `init_from` set to the
    previous round's version of the stage when its class list equals the project's, else None
    (from scratch). For stage 'all' the teacher and the student each start from their own previous
    version (`RoundPlan.stage_configs`). `warm_epochs`, when given, replaces the number of epochs
    of a warm-started round (fine-tuning needs fewer)."""
    from engine.training import TrainConfig

    config = base or TrainConfig()
    first_stage = "teacher" if config.stage == "all" else config.stage
    previous, reason = warm_start_source(store, first_stage)
    student = None
    if config.stage == "all":
        student_run, student_reason = warm_start_source(store, "student")
        student = student_run.model_version if student_run is not None else None
        if (previous is None) != (student is None):
            reason = f"teacher: {reason}; student: {student_reason}"
    if previous is None and student is None:
        return RoundPlan(replace(config, init_from=None, student_init_from=None), False, reason)
    epochs = warm_epochs if warm_epochs is not None else config.epochs
    return RoundPlan(replace(config, init_from=previous.model_version if previous else None,
                             student_init_from=student, epochs=epochs), True, reason)


# ========================================================================= evaluating a round


@dataclass(frozen=True)
class RoundFigures:
    mAP: float
    CF1: float
    OF1: float
    n_images: int
    split: str

    def to_dict(self) -> dict[str, Any]:
        return {key: (None if isinstance(value, float) and math.isnan(value) else value)
                for key, value in self.__dict__.items()}


def evaluate_round(store: Store, model_version: str | None = None, split: str = "val",
                   device: str = "auto", progress: Progress = None,
                   should_stop: ShouldStop = None, save: bool = True) -> RoundFigures:
    """mAP, CF1 and OF1 of a model version (default: the active student) on the tagged images of
    `split`; stored in its run's metrics under 'review' (with the per-class AP).

    A student is scored from its suggestions (the images get them if they have none yet) at the
    classes' current thresholds; a teacher through `engine.inference.evaluation` at 0.5."""
    from engine.metrics import multilabel_report
    from engine.review.scores import validation_scores

    run = store.runs.by_version(model_version) if model_version else None
    if run is not None and run.stage == "teacher":
        from engine.inference.evaluation import evaluate

        evaluation = evaluate(store, split=split, teacher_version=run.model_version, device=device,
                              progress=progress, should_stop=should_stop, models=("teacher",))
        report = evaluation.teacher.report
        version = run.model_version
    else:
        table, labels = validation_scores(store, model_version, split, device, progress,
                                          should_stop)
        thresholds = {c.id: c.threshold for c in store.classes.list()}
        scores = np.nan_to_num(table.scores, nan=0.0)
        report = multilabel_report(scores, labels,
                                   threshold=np.array([thresholds[i] for i in table.class_ids]),
                                   class_names=table.class_names)
        version = table.model_version
    figures = RoundFigures(report.mAP, report.CF1, report.OF1, report.n_images, split)
    if save and version:
        run = store.runs.by_version(version)
        metrics = dict(run.metrics or {})
        metrics[ROUND_METRICS_KEY] = {**figures.to_dict(),
                                      "per_class_ap": report.to_dict()["per_class_ap"]}
        store.runs.update(run.id, metrics=metrics)
    return figures


def per_class_ap(run: TrainingRun) -> dict[str, float]:
    """The per-class AP stored by `evaluate_round` (NaN for a class without positives)."""
    values = ((run.metrics or {}).get(ROUND_METRICS_KEY) or {}).get("per_class_ap") or {}
    return {name: (math.nan if ap is None else float(ap)) for name, ap in values.items()}


# ============================================================================ one whole round


@dataclass(frozen=True)
class RoundOutcome:
    runs: list                      # the TrainingRuns made, in order
    figures: dict[str, RoundFigures]  # model version -> figures on the validation split
    plan: RoundPlan
    splits: SplitAssignment | None      # None on the other ranks of a job
    waiting: str = ""               # what was tagged/added during the round, in words

    @property
    def completed(self) -> bool:
        return bool(self.runs) and all(run.status == "completed" for run in self.runs)


def waiting_for_next_round(store: Store, runs: Sequence[TrainingRun]) -> str:
    """What was tagged or added while the round ran and waits for the next round, in words
    ('' when nothing): a round trains on the tags and classes it started with."""
    started = (runs[0].config or {}) if runs else {}
    if started.get("labels_as_of") is None:
        return ""
    edits = len(store.tags.history(since_id=int(started["labels_as_of"])))
    added = [name for name in store.classes.names()
             if name not in (started.get("class_names") or [])]
    parts = ([f"{edits} tag change{'s' * (edits != 1)}"] if edits else []) + (
        [f"the class{'es' * (len(added) != 1)} {', '.join(added)}"] if added else [])
    return (" and ".join(parts) + " made during this round will be learnt in the next "
            "round.") if parts else ""


def train_round(store: Store, config: TrainConfig, callbacks=None, warm_start: bool = True,
                val_fraction: float = 0.2, evaluate: bool = True, calibrate: bool = True,
                warm_epochs: int | None = None) -> RoundOutcome:
    """One round of the loop: give unassigned tagged images a split (stratified, stable), plan
    the round (warm start or from scratch), train, and, with `evaluate`, measure each completed
    run on the validation split; a new student first gets its class thresholds calibrated there
    (best F1; thresholds set by hand are kept), so CF1/OF1 are at the thresholds the GUI will use
    (optimistic: chosen and measured on the same split; mAP does not depend on thresholds).
    `callbacks` are the trainer's (`TrainCallbacks`): progress, epochs, cancel."""
    from engine.review.splits import assign_splits
    from engine.training import TrainCallbacks, train

    callbacks = callbacks or TrainCallbacks()
    main = distributed.is_main()          # a job of several processes: rank 0 writes, all train
    splits = assign_splits(store, val_fraction=val_fraction) if main else None
    distributed.barrier()
    if splits is not None and splits.count:
        callbacks.message(splits.summary())
    if config.stage == "quick":
        plan = RoundPlan(config, True, "refitting the student's classifier on its cached "
                                       "embeddings of every image")
    elif warm_start and not config.resume:
        plan = plan_next_round(store, config, warm_epochs=warm_epochs)
    else:
        plan = RoundPlan(replace(config, init_from=None) if not warm_start else config, False,
                         "resuming the unfinished run" if config.resume else "training from scratch")
    callbacks.message(plan.reason[0].upper() + plan.reason[1:] + ".")
    plan = distributed.broadcast(plan)
    previous = active_run(store, "student")
    runs = train(store, plan.config, callbacks)
    if not main:
        return RoundOutcome(runs, {}, plan, splits)
    for run in runs:
        if run.stage == "student" and run.status == "completed" and not callbacks.stopped():
            refresh_suggestions(store, run, previous, plan.config.device, callbacks)
    figures: dict[str, RoundFigures] = {}
    if evaluate:
        for run in runs:
            if run.status == "completed" and not callbacks.stopped():
                _evaluate_run(store, run, plan.config.device, calibrate, figures, callbacks)
    return RoundOutcome(runs, figures, plan, splits, waiting_for_next_round(store, runs))


def refresh_suggestions(store: Store, run: TrainingRun, previous: TrainingRun | None,
                        device: str, callbacks: Any) -> None:
    """After a student round, suggestions wherever the person looks: the embeddings of every image
    under the new backbone (computed after a deep round, already cached after a quick one) scored
    by the new head; a quick version replaces the suggestions of the quick version before it."""
    from engine.inference.embeddings import (
        backbone_version,
        ensure_embeddings,
        rescore_project,
    )

    callbacks.message(f"Scoring every image with {run.model_version}")
    ensure_embeddings(store, backbone_version(run), device=device,
                      progress=callbacks.progress_for("suggestions"),
                      should_stop=callbacks.should_stop)
    count = rescore_project(store, run.model_version)
    if (previous is not None and previous.id != run.id
            and (previous.config or {}).get("quick")):
        store.suggestions.delete_version(previous.model_version or "")
    log.info("%s: suggestions for %d images", run.model_version, count)


def _evaluate_run(store: Store, run: TrainingRun, device: str, calibrate: bool,
                  figures: dict[str, RoundFigures], callbacks: Any) -> None:
    """Calibrate a new student's thresholds on val, then its figures there (in `figures`)."""
    callbacks.message(f"Evaluating {run.model_version} on the validation split")
    try:
        if run.stage == "student" and calibrate:
            from engine.review.thresholds import calibrate_thresholds

            calibrate_thresholds(store, model_version=run.model_version, device=device,
                                 should_stop=callbacks.should_stop)
        figures[run.model_version] = evaluate_round(store, run.model_version, device=device,
                                                    should_stop=callbacks.should_stop)
    except UserError as exc:             # e.g. no tagged validation images
        callbacks.message(f"Not evaluated: {exc}")


# ============================================================================ history of rounds


@dataclass(frozen=True)
class RoundInfo:
    index: int                    # 1-based among the rounds listed
    run_id: int
    model_version: str
    stage: str
    status: str
    tag_watermark: int
    person_tags: int              # tags a person had set (or changed) by the watermark
    mAP: float                    # on the validation split (NaN: not evaluated)
    CF1: float
    OF1: float
    init_from: str | None
    started_at: datetime | None
    active: bool


def person_tag_counts(store: Store, watermarks: Sequence[int]) -> dict[int, int]:
    """For each watermark, how many (image, class) tags had last been set by a person as of that
    tag-history id (one replay of the history)."""
    wanted = sorted(set(int(w) for w in watermarks))
    counts: dict[int, int] = {}
    state: dict[tuple[int, int], bool] = {}
    person = 0
    position = 0
    for change in store.tags.history():
        while position < len(wanted) and change.id > wanted[position]:
            counts[wanted[position]] = person
            position += 1
        key = (change.image_id, change.class_id)
        was = state.pop(key, False)
        person -= int(was)
        if change.new_state is not None:
            state[key] = change.source == "person"
            person += int(state[key])
    for watermark in wanted[position:]:
        counts[watermark] = person
    return counts


def run_figure(run: TrainingRun, key: str) -> float:
    """A run's validation figure `key` (mAP, CF1, OF1) as `evaluate_round` stored it; for mAP the
    training loop's last validation mAP when the round was not evaluated; NaN when neither."""
    review = (run.metrics or {}).get(ROUND_METRICS_KEY) or {}
    value = review.get(key)
    if value is None and key == "mAP":
        value = _last_val_map(run.metrics or {})
    return float(value) if value is not None else math.nan


def _last_val_map(metrics: dict[str, Any]) -> float | None:
    """The last epoch's validation mAP as the training loop stored it (`last`, else `epochs`)."""
    value = (metrics.get("last") or {}).get("val_mAP")
    if value is None and metrics.get("epochs"):
        value = (metrics["epochs"][-1].get("metrics") or {}).get("val_mAP")
    return float(value) if value is not None else None


def round_history(store: Store, stage: str | None = None,
                  statuses: Sequence[str] = ("completed",)) -> list[RoundInfo]:
    """The training rounds of `stage` (default: student when the project has student runs, else
    teacher), oldest first, with their validation figures and person-set tag counts."""
    from engine.store.versions import active_run

    runs = store.runs.list()
    if stage is None:
        stage = "student" if any(r.stage == "student" for r in runs) else "teacher"
    runs = [r for r in runs if r.stage == stage and r.status in statuses and r.model_version]
    counts = person_tag_counts(store, [r.tag_watermark for r in runs])
    active = active_run(store, stage)
    return [RoundInfo(n + 1, r.id, r.model_version or "", r.stage, r.status, r.tag_watermark,
                      counts.get(r.tag_watermark, 0), run_figure(r, "mAP"), run_figure(r, "CF1"),
                      run_figure(r, "OF1"), (r.config or {}).get("init_from"), r.started_at,
                      active is not None and active.id == r.id)
            for n, r in enumerate(runs)]


def rollback(store: Store, model_version: str) -> TrainingRun:
    """Make `model_version` the active model of its stage again (roll back or forward)."""
    from engine.store.versions import set_active

    run = store.runs.by_version(model_version)
    result = set_active(store, run.stage, model_version)
    if result is None:
        raise UserError(f"Cannot make {model_version} active.")
    log.info("active %s model is now %s", run.stage, model_version)
    return result


def version_history(store: Store) -> tuple[list[RoundInfo], list[RoundInfo]]:
    """(the rounds to plot: those of the stage `round_history` picks, every version of both
    stages oldest first) for the review loop's rounds view."""
    plotted = round_history(store)
    stage = plotted[0].stage if plotted else "student"
    others = [r for other in ("teacher", "student") if other != stage
              for r in round_history(store, other)]
    return plotted, sorted(plotted + others, key=lambda r: r.run_id)


def evaluate_unmeasured(store: Store, device: str = "auto", progress: Progress = None,
                        should_stop: ShouldStop = None) -> int:
    """`evaluate_round` for every completed round of either stage without validation figures;
    returns how many there were."""
    todo = [r for stage in ("teacher", "student") for r in round_history(store, stage)
            if math.isnan(r.mAP) or math.isnan(r.CF1)]
    for n, info in enumerate(todo):
        if should_stop is not None and should_stop():
            break
        evaluate_round(store, info.model_version, device=device, should_stop=should_stop)
        if progress is not None:
            progress(n + 1, len(todo))
    return len(todo)
