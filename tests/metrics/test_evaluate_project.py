"""`evaluate` on a project and `mlic evaluate`: the figures are those of engine.metrics on the
models' own predictions, teacher and student side by side."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine import metrics
from engine.cli.main import main
from engine.inference.detect import detect_paths
from engine.inference.evaluation import evaluate
from engine.inference.tagging import tag_paths

from .conftest import install_student, install_teacher


def test_evaluate_matches_metrics_on_the_models_predictions(demo_project):
    store = demo_project
    teacher_run, _ = install_teacher(store)
    student_run, _ = install_student(store)
    report = evaluate(store, split="test", device="cpu")
    matrix = store.tags.label_matrix(split="test")
    assert report.n_images == len(matrix.image_ids) > 0

    students = tag_paths(store, matrix.paths, device="cpu", precision="fp32",
                         store_suggestions=False)
    expected = metrics.multilabel_report(students.probabilities, matrix.labels)
    assert report.student.model_version == student_run.model_version
    assert report.student.report.summary() == pytest.approx(expected.summary(), nan_ok=True)

    detections = detect_paths(store, matrix.paths, device="cpu", top_k=20, store_regions=False)
    scores = np.stack([d.image_scores for d in detections])
    teacher_expected = metrics.multilabel_report(scores, matrix.labels)
    assert report.teacher.report.mAP == pytest.approx(teacher_expected.mAP)
    names = {c.id: c.name for c in store.classes.list()}
    gt = store.boxes.for_images(matrix.image_ids)
    ground_truth = {}
    for i, image_id in enumerate(matrix.image_ids):
        for box in gt[image_id]:
            ground_truth.setdefault(i, {}).setdefault(names[box.class_id], []).append(
                [box.x, box.y, box.w, box.h])
    top = {i: {name: d.top_box(name).bbox for name in matrix.class_names if d.top_box(name)}
           for i, d in enumerate(detections)}
    assert report.teacher.corloc.corloc == pytest.approx(metrics.corloc(top, ground_truth).corloc)
    assert report.teacher.box_ap is not None and 0.0 <= report.teacher.box_ap.ap50 <= 1.0
    assert set(report.baselines) == {"whole_image", "centre_box"}
    # evaluation writes nothing: no regions, no suggestions
    assert store.suggestions.versions() == []


def test_evaluate_command_prints_and_writes_json(demo_project, tmp_path, capsys):
    install_student(demo_project)
    out = tmp_path / "figures.json"
    status = main(["--project", str(demo_project.paths.root), "evaluate", "--split", "test",
                   "--json", str(out), "--device", "cpu"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    data = json.loads(out.read_text())
    assert data["split"] == "test" and data["teacher"] is None
    assert 0.0 <= data["student"]["mAP"] <= 1.0
    assert set(metrics.MultilabelReport.SUMMARY_KEYS) <= set(data["student"])
    assert f"{100 * data['student']['mAP']:.1f}" in captured.out
    assert "teacher: not trained" in captured.out


def test_evaluate_without_a_model_is_a_clear_error(demo_project, tmp_path, capsys):
    status = main(["--project", str(demo_project.paths.root), "evaluate", "--json",
                   str(tmp_path / "f.json")])
    assert status == 2
    err = capsys.readouterr().err
    assert "no trained model" in err and err.count("\n") == 1
    assert not (tmp_path / "f.json").exists()
