"""Rounds: each run's tag watermark and model version, the plan of the next round (warm start or
from scratch), figures over rounds, and rollback."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.errors import UserError
from engine.review.rounds import (
    evaluate_round,
    person_tag_counts,
    plan_next_round,
    rollback,
    round_history,
)
from engine.store import TagEdit
from engine.store.versions import active_run
from engine.training import TrainConfig

from .helpers import add_images, completed_run, suggest, tag


def test_each_run_records_the_tags_it_learnt_from(store):
    a, b = (c.id for c in store.classes.ensure(["a", "b"]))
    ids = add_images(store, 3, split="train")
    tag(store, ids, [a, b], [[1, 0], [0, 1], [1, 1]])
    first = store.runs.create("student", {}, store.classes.names())
    store.tags.apply([TagEdit(ids[0], b, "positive"), TagEdit(ids[2], a, None)], source="person")
    second = store.runs.create("student", {}, store.classes.names())
    assert first.model_version == f"student-{first.id}" != second.model_version
    assert first.tag_watermark < second.tag_watermark == store.tags.last_change_id()
    then = store.tags.label_matrix(as_of_change=first.tag_watermark)
    now = store.tags.label_matrix(as_of_change=second.tag_watermark)
    assert then.labels.tolist() == [[1, 0], [0, 1], [1, 1]]
    assert now.labels.tolist() == [[1, 1], [0, 1], [0, 1]]


def test_person_tag_counts_replay_the_history(store):
    (a,) = (c.id for c in store.classes.ensure(["a"]))
    ids = add_images(store, 3)
    tag(store, ids, [a], [[1], [1], [1]])                          # imports: not a person's
    w0 = store.tags.last_change_id()
    store.tags.apply([TagEdit(ids[0], a, "negative"), TagEdit(ids[1], a, "negative")],
                     source="person")
    w1 = store.tags.last_change_id()
    store.tags.apply([TagEdit(ids[0], a, None)], source="person")  # removed: no tag any more
    w2 = store.tags.last_change_id()
    assert person_tag_counts(store, [0, w0, w1, w2]) == {0: 0, w0: 0, w1: 2, w2: 1}


def test_plan_next_round_warm_starts_only_with_the_same_classes(store):
    store.classes.ensure(["a", "b"])
    base = TrainConfig(stage="student", epochs=6)
    plan = plan_next_round(store, base)
    assert not plan.warm_start and plan.config.init_from is None and "scratch" in plan.reason
    previous = completed_run(store, "student")
    plan = plan_next_round(store, base, warm_epochs=2)
    assert plan.warm_start and plan.config.init_from == previous and plan.config.epochs == 2
    assert previous in plan.reason
    store.classes.ensure(["c"])                                    # the class list changed
    plan = plan_next_round(store, base, warm_epochs=2)
    assert not plan.warm_start and plan.config.init_from is None and plan.config.epochs == 6
    assert "class list changed" in plan.reason


def test_plan_for_stage_all_follows_the_teacher(store):
    store.classes.ensure(["a"])
    teacher = completed_run(store, "teacher")
    student = completed_run(store, "student")
    plan = plan_next_round(store, TrainConfig(stage="all"))
    assert plan.config.init_from == teacher and plan.student_init_from == student
    first, second = plan.stage_configs()
    assert (first.stage, first.init_from) == ("teacher", teacher)
    assert (second.stage, second.init_from) == ("student", student)


@pytest.fixture()
def two_rounds(store):
    a, b = (c.id for c in store.classes.ensure(["a", "b"]))
    val = add_images(store, 4, split="val")
    tag(store, val, [a, b], [[1, 0], [0, 1], [1, 1], [0, 0]])
    first = completed_run(store, "student")
    suggest(store, first, val, [a, b], [[0.6, 0.4], [0.4, 0.6], [0.4, 0.4], [0.7, 0.1]])
    (extra,) = add_images(store, 1, split="train", prefix="train")
    store.tags.apply([TagEdit(extra, a, "positive")], source="person")
    second = completed_run(store, "student")
    suggest(store, second, val, [a, b], [[0.9, 0.1], [0.1, 0.9], [0.9, 0.9], [0.1, 0.1]])
    return store, first, second


def test_evaluate_round_and_history(two_rounds):
    store, first, second = two_rounds
    figures = evaluate_round(store, first)
    assert figures.n_images == 4 and 0 < figures.mAP < 1
    best = evaluate_round(store, second)
    assert best.mAP == pytest.approx(1.0) and best.CF1 == pytest.approx(1.0)
    assert best.OF1 == pytest.approx(1.0)
    stored = store.runs.by_version(second).metrics["review"]
    assert stored["mAP"] == pytest.approx(1.0) and set(stored["per_class_ap"]) == {"a", "b"}
    history = round_history(store)
    assert [r.model_version for r in history] == [first, second]
    assert [r.index for r in history] == [1, 2]
    assert [r.person_tags for r in history] == [0, 1]
    assert history[0].mAP == pytest.approx(figures.mAP)
    assert [r.active for r in history] == [False, True]


def test_rollback_and_forward(two_rounds):
    store, first, second = two_rounds
    assert active_run(store, "student").model_version == second
    rollback(store, first)
    assert active_run(store, "student").model_version == first
    assert [r.active for r in round_history(store)] == [True, False]
    rollback(store, second)
    assert active_run(store, "student").model_version == second


def test_rollback_refuses_unfinished_and_unknown_versions(two_rounds):
    store = two_rounds[0]
    cancelled = store.runs.create("student", {}, store.classes.names())
    store.runs.update(cancelled.id, status="cancelled", finished=True)
    with pytest.raises(UserError, match="did not complete"):
        rollback(store, cancelled.model_version)
    with pytest.raises(UserError):
        rollback(store, "student-999")
    history = round_history(store, statuses=("completed", "cancelled"))
    assert history[-1].status == "cancelled" and math.isnan(history[-1].mAP)


def test_history_falls_back_to_the_trainers_val_map(store):
    store.classes.ensure(["a"])
    run = store.runs.create("teacher", {}, ["a"])
    store.runs.update(run.id, status="completed",
                      metrics={"epochs": [{"metrics": {"val_mAP": 0.4}}, {"metrics": {"val_mAP": 0.6}}]})
    (info,) = round_history(store)
    assert info.stage == "teacher" and info.mAP == pytest.approx(0.6)
    assert np.isnan(info.CF1)
