"""engine.metrics against hand-computed cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from engine import metrics
from engine.metrics import Detection

# ----------------------------------------------------------------------------- AP / mAP

def test_average_precision_without_ties():
    # positives at ranks 1, 3, 5: precisions 1/1, 2/3, 3/5
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    targets = [1, 0, 1, 0, 1]
    assert metrics.average_precision(scores, targets) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)


def test_average_precision_ties_are_one_step_and_order_free():
    # thresholds 0.9 (P 1, R 1/3), 0.5 (P 2/3, R 2/3), 0.1 (P 3/4, R 1)
    expected = (1 + 2 / 3 + 3 / 4) / 3
    assert metrics.average_precision([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 1]) == pytest.approx(expected)
    assert metrics.average_precision([0.9, 0.5, 0.5, 0.1], [1, 0, 1, 1]) == pytest.approx(expected)


def test_perfect_and_worst_ranking():
    assert metrics.average_precision([0.9, 0.8, 0.1], [1, 1, 0]) == pytest.approx(1.0)
    assert metrics.average_precision([0.9, 0.8, 0.1], [0, 0, 1]) == pytest.approx(1 / 3)


def test_class_without_positives_is_nan_and_left_out_of_map():
    scores = np.array([[0.9, 0.2, 0.5], [0.1, 0.8, 0.4]])
    targets = np.array([[1, 0, 0], [0, 0, 1]])
    per_class = metrics.average_precision(scores, targets)
    assert per_class[0] == pytest.approx(1.0)
    assert math.isnan(per_class[1])
    assert per_class[2] == pytest.approx(0.5)
    assert metrics.mean_average_precision(scores, targets) == pytest.approx(0.75)


def test_map_without_any_positive_is_nan_not_an_error():
    assert math.isnan(metrics.mean_average_precision(np.ones((2, 2)), np.zeros((2, 2))))


def test_bad_inputs_raise_with_the_value():
    with pytest.raises(ValueError, match="same shape"):
        metrics.mean_average_precision(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="nan"):
        metrics.mean_average_precision(np.array([[np.nan]]), np.array([[1]]))


# ----------------------------------------------------------------------------- report

SCORES = np.array([[0.9, 0.1, 0.5, 0.3],
                   [0.2, 0.8, 0.7, 0.6]])
TARGETS = np.array([[1, 0, 0, 1],
                    [0, 0, 1, 0]])


def test_report_at_threshold_hand_computed():
    # predicted at 0.5: image 0 -> {0, 2}; image 1 -> {1, 2, 3}
    # class 0: TP1 Np1 Ng1 | class 1: TP0 Np1 Ng0 (no positives) | class 2: TP1 Np2 Ng1
    # class 3: TP0 Np1 Ng1
    report = metrics.multilabel_report(SCORES, TARGETS, class_names=["a", "b", "c", "d"])
    cp, cr = (1 + 0.5 + 0) / 3, (1 + 1 + 0) / 3
    assert report.CP == pytest.approx(cp)
    assert report.CR == pytest.approx(cr)
    assert report.CF1 == pytest.approx(2 * cp * cr / (cp + cr))  # F1 of the averages
    op, orr = 2 / 5, 2 / 3
    assert report.OP == pytest.approx(op)
    assert report.OR == pytest.approx(orr)
    assert report.OF1 == pytest.approx(2 * op * orr / (op + orr))
    # AP: a 1, b none, c 1, d 1/2
    assert report.mAP == pytest.approx(2.5 / 3)
    assert report.per_class_ap[0] == pytest.approx(1.0)
    assert math.isnan(report.per_class_ap[1])
    assert report.n_images == 2 and report.n_classes == 4


def test_report_top3_hand_computed():
    # top 3: image 0 -> {0, 2, 3}; image 1 -> {1, 2, 3}
    # class 0: TP1 Np1 Ng1 | class 1: Np1, no positives | class 2: TP1 Np2 Ng1 | class 3: TP1 Np2 Ng1
    report = metrics.multilabel_report(SCORES, TARGETS)
    cp, cr = (1 + 0.5 + 0.5) / 3, 1.0
    assert report.CP_top3 == pytest.approx(cp)
    assert report.CR_top3 == pytest.approx(cr)
    assert report.CF1_top3 == pytest.approx(0.8)
    assert report.OP_top3 == pytest.approx(0.5)
    assert report.OR_top3 == pytest.approx(1.0)
    assert report.OF1_top3 == pytest.approx(2 / 3)


def test_per_class_thresholds():
    # thresholds per class: image 0 -> {2, 3}? 0.9<0.95 no; 0.5>=0.5 yes; 0.3>=0.25 yes
    report = metrics.multilabel_report(SCORES, TARGETS, threshold=[0.95, 0.5, 0.5, 0.25])
    # image 0 -> {2, 3}; image 1 -> {1, 2, 3}
    # class 0: TP0 Np0 Ng1 (precision 0) | class 2: TP1 Np2 Ng1 | class 3: TP1 Np2 Ng1
    assert report.CP == pytest.approx((0 + 0.5 + 0.5) / 3)
    assert report.CR == pytest.approx((0 + 1 + 1) / 3)
    assert report.OP == pytest.approx(2 / 5)
    assert report.threshold == (0.95, 0.5, 0.5, 0.25)
    with pytest.raises(ValueError, match="threshold"):
        metrics.multilabel_report(SCORES, TARGETS, threshold=[0.5, 0.5])


def test_no_predictions_gives_zeros_not_nan():
    report = metrics.multilabel_report(np.zeros((2, 2)), np.array([[1, 0], [0, 1]]))
    assert report.CP == 0 and report.CR == 0 and report.CF1 == 0
    assert report.OP == 0 and report.OR == 0 and report.OF1 == 0


def test_fewer_than_three_classes_top3_takes_all():
    report = metrics.multilabel_report(np.array([[0.1, 0.2], [0.3, 0.4]]),
                                       np.array([[1, 0], [0, 0]]))
    assert report.CR_top3 == 1.0 and report.OP_top3 == 0.25


def test_a_class_without_a_decided_no_counts_in_no_thresholded_figure():
    """Keywords from a photo tool: every prediction on a decided pair of such a class would be
    right, so it is left out of CP/CR/OP/OR as of mAP, instead of reading 1.0."""
    scores = np.array([[0.9, 0.9], [0.9, 0.1], [0.1, 0.9]])
    only_yes = np.array([[1, 1], [1, -1], [1, 0]], dtype=float)       # class 0: no "no" at all
    report = metrics.multilabel_report(scores, only_yes)
    assert math.isnan(report.per_class_ap[0])
    assert (report.CP, report.CR, report.OP, report.OR) == (0.5, 1.0, 0.5, 1.0)   # class 1 alone
    nothing = metrics.multilabel_report(scores, np.array([[1, 1], [1, -1], [1, -1]], dtype=float))
    assert all(math.isnan(v) for v in (nothing.mAP, nothing.CF1, nothing.OF1))


def test_report_to_dict_is_valid_json():
    report = metrics.multilabel_report(SCORES, TARGETS, class_names=["a", "b", "c", "d"])
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["per_class_ap"]["b"] is None
    assert data["mAP"] == pytest.approx(2.5 / 3)
    empty = metrics.multilabel_report(np.ones((1, 2)), np.zeros((1, 2))).to_dict()
    assert empty["mAP"] is None and empty["CF1"] is None
    json.dumps(empty, allow_nan=False)


def test_evaluator_accumulates_batches():
    evaluator = metrics.MultilabelEvaluator(["a", "b", "c", "d"])
    evaluator.update(SCORES[:1], TARGETS[:1])
    evaluator.update(SCORES[1:], TARGETS[1:])
    assert evaluator.n_images == 2
    assert evaluator.summarize().summary() == pytest.approx(
        metrics.multilabel_report(SCORES, TARGETS).summary(), nan_ok=True)


def test_top_k_predictions():
    predicted = metrics.top_k_predictions(np.array([[0.1, 0.5, 0.5, 0.9]]), k=2)
    assert predicted.tolist() == [[False, True, False, True]]


# ----------------------------------------------------------------------------- CorLoc

def test_iou_xywh():
    assert metrics.iou_xywh([0, 0, 10, 10], [[0, 0, 10, 10], [5, 5, 10, 10], [20, 20, 5, 5]]) == \
        pytest.approx([1.0, 25 / 175, 0.0])


def test_corloc_hand_computed():
    ground_truth = {
        "a": {"cat": [[0, 0, 10, 10]], "dog": [[20, 20, 10, 10]]},
        "b": {"cat": [[0, 0, 10, 10], [50, 50, 10, 10]], "dog": [[0, 0, 30, 30]]},
        "c": {"cat": [[0, 0, 10, 10]], "bird": []},
    }
    top_boxes = {
        "a": {"cat": [0, 0, 10, 10],          # IoU 1 -> hit
              "dog": [25, 25, 10, 10]},       # IoU 25/175 -> miss
        "b": {"cat": [50, 50, 10, 12],        # IoU 100/120 with the second box -> hit
              "bird": [0, 0, 5, 5]},          # no ground truth: ignored; dog has no box -> miss
        "c": {"cat": [40, 40, 10, 10]},       # miss
    }
    result = metrics.corloc(top_boxes, ground_truth)
    assert result.n_pairs == 5 and result.n_hits == 2
    assert result.corloc == pytest.approx(2 / 5)
    assert result.per_class == pytest.approx({"cat": 2 / 3, "dog": 0.0})
    assert result.mean_corloc == pytest.approx(1 / 3)
    json.dumps(result.to_dict(), allow_nan=False)


def test_corloc_threshold_is_inclusive_and_empty_is_nan():
    # IoU exactly 0.5: [0,0,10,10] vs [0,0,10,5] -> 50/100
    assert metrics.corloc({1: {0: [0, 0, 10, 5]}}, {1: {0: [[0, 0, 10, 10]]}}).corloc == 1.0
    assert math.isnan(metrics.corloc({}, {}).corloc)


# ----------------------------------------------------------------------------- box AP

def test_box_ap_exact_match_and_partial_overlap():
    gt = {"img": {"cat": [[0, 0, 10, 10]]}}
    assert metrics.box_ap([("img", "cat", [0, 0, 10, 10], 0.9)], gt).ap == pytest.approx(1.0)
    # IoU 0.62: matched at thresholds 0.50, 0.55, 0.60 of the ten -> AP 0.3, AP50 1
    result = metrics.box_ap([Detection("img", "cat", (0, 0, 10, 6.2), 0.9)], gt)
    assert result.ap50 == pytest.approx(1.0)
    assert result.ap == pytest.approx(0.3)
    assert result.ap75 == pytest.approx(0.0)


def test_box_ap_ranked_detections_101_point_interpolation():
    gt = {1: {"cat": [[0, 0, 10, 10]]}, 2: {"cat": [[20, 20, 10, 10]]}}
    dets = [(1, "cat", [0, 0, 10, 10], 0.9),     # TP  P 1   R .5
            (2, "cat", [60, 60, 10, 10], 0.8),   # FP  P .5  R .5
            (2, "cat", [20, 20, 10, 10], 0.7)]   # TP  P 2/3 R 1
    # envelope: precision 1 for the 51 recall points <= 0.5, 2/3 for the other 50
    expected = (51 * 1.0 + 50 * 2 / 3) / 101
    result = metrics.box_ap(dets, gt)
    assert result.ap50 == pytest.approx(expected)
    assert result.ap == pytest.approx(expected)
    assert result.per_class_ap50 == pytest.approx({"cat": expected})


def test_box_ap_edge_cases(capsys):
    gt = {1: {"cat": [[0, 0, 10, 10]]}}
    assert metrics.box_ap([], gt).ap == 0.0                       # no detections: 0
    assert math.isnan(metrics.box_ap([(1, "cat", [0, 0, 1, 1], 1.0)], {}).ap)  # no ground truth
    # a detection on an image without ground truth is a false positive ranked first
    result = metrics.box_ap([(9, "cat", [0, 0, 10, 10], 0.99), (1, "cat", [0, 0, 10, 10], 0.5)], gt)
    assert result.ap50 == pytest.approx(0.5)
    # a class only among detections is not averaged in
    result = metrics.box_ap([(1, "cat", [0, 0, 10, 10], 0.9), (1, "dog", [0, 0, 10, 10], 0.9)], gt)
    assert result.ap50 == pytest.approx(1.0) and set(result.per_class_ap50) == {"cat"}
    assert capsys.readouterr().out == ""                           # pycocotools silenced
