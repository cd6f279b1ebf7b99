"""Per-class thresholds calibrated on the validation split, with manual override."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.errors import UserError
from engine.review.thresholds import (
    calibrate_thresholds,
    choose_threshold,
    choose_thresholds,
    clear_manual_threshold,
    manual_threshold_ids,
    set_manual_threshold,
)

from .helpers import add_images, completed_run, suggest, tag

SCORES = [0.9, 0.8, 0.7, 0.3, 0.2]
LABELS = [1, 1, 0, 1, 0]


def test_best_f1_threshold_by_hand():
    # Cuts: 0.9 F1=.5, 0.8 F1=.8, 0.7 F1=.667, 0.3 F1=6/7, 0.2 F1=.75 -> keep scores >= 0.3,
    # threshold midway to the next lower score 0.2.
    choice = choose_threshold(SCORES, LABELS, "f1")
    assert choice.status == "calibrated"
    assert choice.threshold == pytest.approx(0.25)
    assert (choice.precision, choice.recall) == pytest.approx((0.75, 1.0))
    assert choice.f1 == pytest.approx(6 / 7)


def test_lowest_threshold_reaching_a_precision_by_hand():
    strict = choose_threshold(SCORES, LABELS, "precision", precision_target=0.9)
    assert strict.threshold == pytest.approx(0.75)          # keep 0.9 and 0.8: precision 1
    assert (strict.precision, strict.recall) == pytest.approx((1.0, 2 / 3))
    loose = choose_threshold(SCORES, LABELS, "precision", precision_target=0.7)
    assert loose.threshold == pytest.approx(0.25)           # 0.3 reaches 0.75 again, lower
    assert loose.precision == pytest.approx(0.75)


def test_unreachable_target_and_class_without_positives():
    unreachable = choose_threshold([0.9, 0.1], [0, 1], "precision", precision_target=0.9)
    assert unreachable.threshold is None and unreachable.status == "unreachable"
    empty = choose_threshold([0.9, 0.1], [0, 0])
    assert empty.threshold is None and empty.status == "no positives"
    assert math.isnan(empty.f1)


def test_ties_are_one_cut_and_nan_scores_are_ignored():
    choice = choose_threshold([0.8, 0.8, 0.1, float("nan")], [1, 0, 0, 1])
    assert choice.threshold == pytest.approx(0.45)
    assert choice.positives == 1
    with pytest.raises(UserError):
        choose_threshold([0.5], [1], mode="median")


def test_choose_thresholds_per_column_with_per_class_targets():
    scores = np.array([SCORES, SCORES[::-1]]).T
    labels = np.array([LABELS, LABELS[::-1]]).T
    first, second = choose_thresholds(scores, labels, "precision", [0.9, 0.7])
    assert first.threshold == pytest.approx(0.75)
    assert second.threshold == pytest.approx(0.25)


@pytest.fixture()
def calibrated_project(store):
    """Classes a, b, c; five validation images scored by a student version."""
    a, b, c = (cls.id for cls in store.classes.ensure(["a", "b", "c"]))
    val = add_images(store, 5, split="val")
    labels = np.array([LABELS, LABELS, [0, 1, 0, 0, 0]]).T      # c has 1 positive
    tag(store, val, [a, b, c], labels)
    version = completed_run(store, "student")
    scores = np.array([SCORES, SCORES, [0.1, 0.6, 0.2, 0.1, 0.1]]).T
    suggest(store, version, val, [a, b, c], scores)
    return store, version, (a, b, c)


def test_calibrate_thresholds_writes_class_thresholds(calibrated_project):
    store, version, (a, b, c) = calibrated_project
    report = calibrate_thresholds(store)
    assert report.model_version == version and report.n_images == 5
    thresholds = {cls.id: cls.threshold for cls in store.classes.list()}
    assert thresholds[a] == pytest.approx(0.25)
    assert thresholds[c] == pytest.approx(0.4)             # midway between 0.6 and 0.2
    assert "Calibrated 3 class thresholds" in report.summary()
    assert manual_threshold_ids(store) == set()             # calibrated values are not manual


def test_manual_thresholds_survive_calibration(calibrated_project):
    store, _, (a, b, c) = calibrated_project
    set_manual_threshold(store, a, 0.42)
    store.classes.update(b, threshold=0.61)                 # e.g. the classes dialog
    report = calibrate_thresholds(store, mode="precision", precision_target=0.9)
    thresholds = {cls.id: cls.threshold for cls in store.classes.list()}
    assert thresholds[a] == pytest.approx(0.42)
    assert thresholds[b] == pytest.approx(0.61)
    assert thresholds[c] == pytest.approx(0.4)
    assert {entry.class_id for entry in report.classes if entry.manual} == {a, b}
    assert "kept 2 set by hand" in report.summary()
    clear_manual_threshold(store, a)
    calibrate_thresholds(store, mode="precision", precision_target=0.9)
    thresholds = {cls.id: cls.threshold for cls in store.classes.list()}
    assert thresholds[a] == pytest.approx(0.75) and thresholds[b] == pytest.approx(0.61)
    calibrate_thresholds(store, override_manual=True)
    assert {cls.id: cls.threshold for cls in store.classes.list()}[b] == pytest.approx(0.25)
    assert manual_threshold_ids(store) == set()


def test_dry_run_and_bad_threshold(calibrated_project):
    store, _, (a, _, _) = calibrated_project
    report = calibrate_thresholds(store, apply=False)
    assert not any(entry.applied for entry in report.classes)
    assert all(cls.threshold == 0.5 for cls in store.classes.list())
    with pytest.raises(UserError):
        set_manual_threshold(store, a, 1.5)


def test_calibration_needs_a_model_and_a_validation_split(store):
    store.classes.ensure(["a"])
    with pytest.raises(UserError, match="no trained student"):
        calibrate_thresholds(store)
    completed_run(store, "student")
    with pytest.raises(UserError, match="no tagged images"):
        calibrate_thresholds(store)
