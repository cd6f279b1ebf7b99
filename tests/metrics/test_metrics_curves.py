"""Per-class precision-recall curves and the prediction / co-occurrence matrices
(`engine.metrics_curves`, through `engine.metrics`), and their store-level view
(`engine.review.class_views`)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.metrics import (
    per_class_average_precision,
    precision_recall_curve,
    prediction_matrix,
)


def test_curve_by_hand_with_a_tie():
    # ranking: 0.9 (+), 0.8 (-), 0.8 (+) tied, 0.3 (+), 0.1 (-)
    curve = precision_recall_curve([0.8, 0.9, 0.1, 0.3, 0.8], [0, 1, 0, 1, 1])
    assert curve.thresholds.tolist() == [0.9, 0.8, 0.3, 0.1]
    assert curve.precision.tolist() == pytest.approx([1.0, 2 / 3, 3 / 4, 3 / 5])
    assert curve.recall.tolist() == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    assert curve.positives == 3
    assert curve.ap == pytest.approx(1 / 3 * 1.0 + 1 / 3 * 2 / 3 + 1 / 3 * 3 / 4)
    assert curve.at_threshold(0.5) == pytest.approx((2 / 3, 2 / 3))   # 0.9 and both 0.8
    assert curve.at_threshold(0.3) == pytest.approx((3 / 4, 1.0))     # >= is predicted
    assert all(math.isnan(v) for v in curve.at_threshold(0.95))       # nothing predicted


def test_curve_ap_is_the_metrics_ap_whatever_the_ties():
    rng = np.random.default_rng(3)
    scores = np.round(rng.random((60, 5)), 1)            # many ties
    targets = rng.random((60, 5)) < 0.3
    expected = per_class_average_precision(scores, targets)
    got = [precision_recall_curve(scores[:, k], targets[:, k]).ap for k in range(5)]
    assert got == pytest.approx(expected.tolist())


def test_curve_of_a_class_without_positives_and_bad_input():
    curve = precision_recall_curve([0.2, 0.7], [0, 0])
    assert math.isnan(curve.ap) and curve.positives == 0
    assert curve.precision.tolist() == [0.0, 0.0]
    assert precision_recall_curve([], []).thresholds.size == 0
    with pytest.raises(ValueError):
        precision_recall_curve([0.1, float("nan")], [1, 0])
    with pytest.raises(ValueError):
        precision_recall_curve([0.1, 0.2], [1])


def test_prediction_matrix_by_hand():
    # classes: cat, dog, sofa. Thresholds 0.5, 0.5, 0.3
    names = ["cat", "dog", "sofa"]
    targets = [[1, 0, 0],        # cat alone, predicted cat and dog (dog is a mistake)
               [1, 1, 0],        # cat and dog, predicted dog only
               [0, 1, 1],        # dog on a sofa, predicted dog and sofa
               [1, 0, 1]]        # cat on a sofa, predicted nothing
    scores = [[0.9, 0.6, 0.1],
              [0.2, 0.8, 0.0],
              [0.1, 0.7, 0.35],
              [0.4, 0.4, 0.2]]
    m = prediction_matrix(scores, targets, [0.5, 0.5, 0.3], class_names=names)
    assert m.positives.tolist() == [3, 2, 2]
    assert m.counts.tolist() == [[1, 2, 0],
                                 [0, 2, 1],
                                 [0, 1, 1]]
    assert m.mistaken.tolist() == [[0, 1, 0],
                                   [0, 0, 0],
                                   [0, 0, 0]]
    assert m.cooccurrence.tolist() == [[3, 1, 1],
                                       [1, 2, 1],
                                       [1, 1, 2]]
    assert m.rates[0].tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert np.diag(m.rates).tolist() == pytest.approx([1 / 3, 1.0, 0.5])   # the recalls
    assert m.n_images == 4
    assert "dog is predicted on 2 of the 3 images tagged cat (67%)" in m.describe(0, 1)
    assert "1 of them are not tagged dog" in m.describe(0, 1)
    assert "1 images are tagged both cat and dog" in m.describe(0, 1)
    assert "recall" in m.describe(1, 1)


def test_prediction_matrix_row_without_positives_and_one_threshold():
    m = prediction_matrix([[0.9, 0.9], [0.1, 0.8]], [[1, 0], [1, 0]], 0.5)
    assert m.counts.tolist() == [[1, 2], [0, 0]]
    assert m.mistaken.tolist() == [[0, 2], [0, 0]]
    assert np.isnan(m.rates[1]).all()
    assert m.describe(1, 0) == "No image is tagged 1."
    with pytest.raises(ValueError):
        prediction_matrix([[0.1, 0.2]], [[1, 0]], [0.5, 0.5, 0.5])
    with pytest.raises(ValueError):
        prediction_matrix([[0.1, 0.2]], [[1, 0]], class_names=["a"])


def _fake_student(store, scores_of):
    """A completed student run whose suggestions on the val images are `scores_of(labels)`."""
    from engine.inference.tagging import save_suggestions

    names = store.classes.names()
    run = store.runs.create("student", {}, names)
    store.runs.update(run.id, status="completed", finished=True)
    matrix = store.tags.label_matrix(split="val")
    save_suggestions(store, run.model_version, names, matrix.image_ids, scores_of(matrix.labels))
    return run.model_version, matrix


def test_class_views_of_the_active_student_at_the_thresholds(demo_project):
    from engine.review.class_views import class_views

    store = demo_project
    rng = np.random.default_rng(0)
    version, matrix = _fake_student(
        store, lambda labels: np.clip(0.6 * labels + 0.5 * rng.random(labels.shape), 0, 1))
    first = store.classes.list()[0]
    store.classes.update(first.id, threshold=0.7)
    views = class_views(store)
    assert views.model_version == version and views.split == "val"
    assert views.n_images == len(matrix.image_ids)
    assert views.class_names == store.classes.names()
    assert views.thresholds[0] == pytest.approx(0.7)
    stored = store.suggestions.for_images(matrix.image_ids, version)
    scores = np.array([[{s.class_id: s.confidence for s in stored[i]}[c]
                        for c in views.class_ids] for i in matrix.image_ids])
    expected_ap = per_class_average_precision(scores, matrix.labels)
    assert [c.ap for c in views.curves] == pytest.approx(expected_ap.tolist(), nan_ok=True)
    predicted = scores >= views.thresholds
    tagged = matrix.labels > 0.5
    assert views.matrix.counts[0, 1] == int((tagged[:, 0] & predicted[:, 1]).sum())
    assert views.matrix.cooccurrence.tolist() == (tagged.T.astype(int) @ tagged.astype(int)).tolist()
    precision, recall = views.operating_point(0)
    hits = predicted[:, 0] & tagged[:, 0]
    assert precision == pytest.approx(hits.sum() / predicted[:, 0].sum())
    assert recall == pytest.approx(hits.sum() / tagged[:, 0].sum())
    assert views.mean_ap() == pytest.approx(float(np.nanmean(expected_ap)))
