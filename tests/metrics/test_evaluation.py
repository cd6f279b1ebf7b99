"""engine.inference.evaluation's pure part against a hand-computed case."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from engine.inference.evaluation import evaluate_predictions, format_report

CLASSES = ["cat", "dog"]
# three images: cat only, dog only, both
TARGETS = np.array([[1, 0], [0, 1], [1, 1]])


def test_teacher_and_student_side_by_side_hand_computed():
    # student: cat scores rank images 0 > 2 > 1 (AP 1), dog ranks 0 > 1 > 2 (positives at 2, 3:
    # AP (1/2 + 2/3) / 2)
    student = np.array([[0.9, 0.8], [0.1, 0.6], [0.7, 0.3]])
    # the teacher's columns come in another order and include a class deleted since ("bird")
    teacher = np.array([[0.2, 0.9, 0.5], [0.9, 0.2, 0.5], [0.8, 0.7, 0.5]])
    teacher_classes = ["dog", "cat", "bird"]
    ground_truth = [
        {"cat": [[0, 0, 10, 10]]},
        {"dog": [[50, 50, 20, 20]]},
        {"cat": [[0, 0, 10, 10]], "dog": [[40, 40, 20, 20]]},
    ]
    teacher_boxes = [
        [("cat", [0, 0, 10, 10], 0.9), ("cat", [30, 30, 10, 10], 0.4)],   # top box hit
        [("dog", [0, 0, 20, 20], 0.8)],                                     # miss
        [("cat", [1, 0, 10, 10], 0.7), ("dog", [40, 40, 20, 20], 0.6)],     # IoU 90/110 hit, hit
    ]
    report = evaluate_predictions(
        CLASSES, TARGETS, split="test", teacher_version="teacher-1", teacher_scores=teacher,
        teacher_classes=teacher_classes, teacher_boxes=teacher_boxes, student_version="student-2",
        student_scores=student, ground_truth=ground_truth, image_sizes=[(100, 100)] * 3)

    s = report.student.report
    assert s.per_class_ap == pytest.approx((1.0, (1 / 2 + 2 / 3) / 2))
    assert s.mAP == pytest.approx((1 + 7 / 12) / 2)
    # at 0.5 the student predicts {cat, dog}, {dog}, {cat}: cat TP2/Np2/Ng2, dog TP1/Np2/Ng2
    assert s.CP == pytest.approx(0.75) and s.CR == pytest.approx(0.75)
    assert s.OP == pytest.approx(3 / 4) and s.OR == pytest.approx(3 / 4)

    t = report.teacher.report
    assert t.class_names == ("cat", "dog")            # reordered, "bird" dropped
    assert t.mAP == pytest.approx(1.0)                 # cat 0.9, 0.2, 0.7; dog 0.2, 0.9, 0.8
    assert report.teacher.corloc.corloc == pytest.approx(3 / 4)
    assert report.teacher.corloc.per_class == pytest.approx({"cat": 1.0, "dog": 0.5})
    # box AP50 (COCO's 101 recall points): cat dets ranked 0.9 TP, 0.7 TP, 0.4 FP -> AP 1;
    # dog (2 boxes) 0.8 FP, 0.6 TP -> precision 1/2 up to recall 1/2 (51 points), 0 above
    dog = 51 * 0.5 / 101
    assert report.teacher.box_ap.per_class_ap50 == pytest.approx({"cat": 1.0, "dog": dog})
    assert report.teacher.box_ap.ap50 == pytest.approx((1 + dog) / 2)
    # baselines: the whole 100x100 image never reaches IoU 0.5 with these small boxes; nor the
    # centre box [25, 25, 50, 50] (IoU with the 20x20 dog boxes <= 400/2500)
    assert report.baselines == {"whole_image": 0.0, "centre_box": 0.0}
    assert report.n_box_images == 3

    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["student"]["mAP"] == pytest.approx(s.mAP)
    assert data["teacher"]["CorLoc"] == pytest.approx(0.75)
    assert data["teacher"]["model_version"] == "teacher-1"
    text = format_report(report, per_class=True)
    assert "teacher teacher-1" in text and "student student-2" in text
    assert "CorLoc" in text and "79.2" in text         # student mAP 79.2 %


def test_student_only_without_boxes():
    report = evaluate_predictions(CLASSES, TARGETS, student_version="student-1",
                                  student_scores=np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.7]]),
                                  ground_truth=[{}, {}, {}])
    assert report.teacher is None and report.baselines == {}
    assert report.student.report.mAP == pytest.approx(1.0)
    assert report.to_dict()["teacher"] is None
    assert "teacher: not trained" in format_report(report)


def test_class_without_positives_in_split_is_not_averaged():
    targets = np.array([[1, 0], [0, 0]])
    report = evaluate_predictions(CLASSES, targets, student_scores=np.array([[0.9, 0.9], [0.1, 0.2]]))
    assert math.isnan(report.student.report.per_class_ap[1])
    assert report.student.report.mAP == pytest.approx(1.0)
    assert report.to_dict()["student"]["per_class_ap"]["dog"] is None
