"""Only decided pairs count: metrics, calibration and the loss masks with UNKNOWN (-1) targets,
and the review order that asks about unknown pairs first."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.metrics import (
    MultilabelEvaluator,
    multilabel_report,
    per_class_average_precision,
    precision_recall_curve,
    prediction_matrix,
    threshold_figures,
)
from engine.models.losses import asymmetric_loss, bce_with_tags, classification_loss
from engine.models.wsddn import wsddn_loss
from engine.review.queue import unknown_priority
from engine.review.thresholds import choose_thresholds
from engine.store import UNKNOWN

U = UNKNOWN
SCORES = np.array([[0.9, 0.2], [0.8, 0.7], [0.1, 0.6], [0.7, 0.1]])
TARGETS = np.array([[1, 0], [U, 1], [0, U], [U, U]])


def test_ap_counts_only_decided_images():
    assert per_class_average_precision(SCORES, TARGETS).tolist() == [1.0, 1.0]
    flipped = np.array([[0.3], [0.9], [0.2]])         # an unknown scored above the positive
    assert per_class_average_precision(flipped, [[1], [U], [0]]).tolist() == [1.0]
    assert per_class_average_precision(flipped, [[1], [0], [0]]).tolist() == [0.5]
    assert np.isnan(per_class_average_precision(flipped, [[U], [U], [0]])[0])   # no positive


def test_a_class_without_a_decided_negative_is_not_measured():
    """Keywords from a photo tool give positives only: AP over them would be 1.0 whatever the
    model scored, so such a class has no AP until a "no" is decided, and mAP leaves it out."""
    scores = np.array([[0.1, 0.9], [0.2, 0.1], [0.9, 0.8]])
    targets = np.array([[1, 1], [U, 0], [1, U]])      # class 0: positives only; class 1 decided
    ap = per_class_average_precision(scores, targets)
    assert np.isnan(ap[0]) and ap[1] == 1.0
    assert multilabel_report(scores, targets).mAP == 1.0
    assert np.isnan(multilabel_report(scores[:, :1], targets[:, :1]).mAP)
    assert np.isnan(precision_recall_curve(scores[:, 0], targets[:, 0]).ap)


def test_threshold_figures_and_report_leave_unknown_out():
    predicted = SCORES >= 0.5
    figures = threshold_figures(predicted, TARGETS)
    # decided predictions: (0,0) TP, (1,1) TP, (0,1) no, (2,0) no; the unknown (1,0), (2,1),
    # (3,0) predictions count nowhere
    assert figures["OP"] == 1.0 and figures["OR"] == 1.0
    report = multilabel_report(SCORES, TARGETS)
    assert report.mAP == 1.0 and report.OP == 1.0
    evaluator = MultilabelEvaluator()
    evaluator.update(SCORES[:2], TARGETS[:2])
    evaluator.update(SCORES[2:], TARGETS[2:])
    assert evaluator.summarize().summary() == report.summary()


def test_curves_matrices_and_calibration_ignore_unknown():
    curve = precision_recall_curve(np.array([0.3, 0.9, 0.2]), np.array([1, U, 0]))
    assert curve.ap == 1.0 and curve.positives == 1
    matrix = prediction_matrix(np.array([[0.9, 0.8], [0.9, 0.8]]), np.array([[1, U], [1, 0]]))
    assert matrix.mistaken[0, 1] == 1                          # only the image tagged "not 1"
    scores = np.array([[0.9], [0.8], [0.3], [0.2]])
    choice = choose_thresholds(scores, np.array([[1], [U], [0], [1]]))[0]
    assert choice.positives == 2 and choice.status == "calibrated"
    as_negative = choose_thresholds(scores, np.array([[1], [0], [0], [1]]))[0]
    # left out, the unknown 0.8 is no false positive: the best F1 keeps every decided positive
    assert choice.threshold == pytest.approx(0.2) and choice.f1 == pytest.approx(0.8)
    assert as_negative.threshold == pytest.approx(0.85)


def test_losses_weight_unknown_pairs():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.3, 1.5, -2.0]], requires_grad=True)
    targets = torch.tensor([[1.0, U, 0.0], [U, 1.0, U]])
    full = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, targets.clamp(min=0), reduction="none")
    known = targets >= 0
    assert bce_with_tags(logits, targets, 0.0).item() == pytest.approx(
        (full * known).sum().item() / 6)
    assert bce_with_tags(logits, targets, 1.0).item() == pytest.approx(full.mean().item())
    assert bce_with_tags(logits, targets, 0.2).item() == pytest.approx(
        (full * torch.where(known, 1.0, 0.2)).sum().item() / 6)
    bce_with_tags(logits, targets, 0.0).backward()
    assert (logits.grad[~known] == 0).all() and (logits.grad[known] != 0).all()
    plain = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert classification_loss("asl", logits, plain).item() == pytest.approx(
        asymmetric_loss(logits, plain).item())
    assert asymmetric_loss(logits, targets, unknown_weight=0.0) < asymmetric_loss(
        logits, targets.clamp(min=0))
    with pytest.raises(ValueError):
        bce_with_tags(logits, targets, 1.5)


def test_wsddn_loss_masks_unknown_pairs():
    scores = torch.tensor([[0.9, 0.6, 0.2]], requires_grad=True)
    labels = torch.tensor([[1.0, U, 0.0]])
    loss = wsddn_loss(scores, labels, unknown_weight=0.0)
    loss.backward()
    assert scores.grad[0, 1] == 0 and scores.grad[0, 0] != 0
    assert wsddn_loss(scores, labels.clamp(min=0), 0.0) > loss


def test_unknown_priority_prefers_uncertain_frequent_unknown_pairs():
    scores = np.array([[0.5, 0.5], [0.5, 0.5], [0.99, 0.01], [0.5, 0.5]])
    unknown = np.array([[True, False], [False, True], [True, True], [False, False]])
    priority, best = unknown_priority(scores, [0.5, 0.5], unknown, positives=[9, 0])
    order = np.argsort(-priority, kind="stable").tolist()
    assert order == [0, 1, 2, 3]          # frequent class unsure, rare class unsure, sure, decided
    assert best[0] == 0 and best[1] == 1 and priority[3] == -np.inf


def test_evaluation_text_says_which_classes_are_not_measured():
    from engine.inference.evaluation import EvaluationReport, ModelEvaluation, format_report

    scores = np.array([[0.1, 0.9], [0.2, 0.1], [0.9, 0.8]])
    targets = np.array([[1, 1], [U, 0], [1, U]])
    report = multilabel_report(scores, targets, class_names=["cat", "dog"])
    text = format_report(EvaluationReport("val", 3, ("cat", "dog"),
                                          student=ModelEvaluation("student", "student-1", report)))
    assert "1 of 2 classes not measured" in text and 'decided "no"' in text
    complete = multilabel_report(scores[:, 1:], targets[:, 1:], class_names=["dog"])
    assert "not measured" not in format_report(EvaluationReport(
        "val", 3, ("dog",), student=ModelEvaluation("student", "student-1", complete)))
