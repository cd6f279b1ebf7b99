"""`kd="auto"`: distil region features only from a teacher that validates above the project's
student; otherwise, and before any student exists, train from the tags alone. The tiny run at the
end plays the GUI's and the CLI's default path: stage all, then a second round."""

from __future__ import annotations

import pytest

from engine.training import TrainCallbacks, TrainConfig, train
from engine.training.kd_gate import choose_kd


def _run(store, stage: str, val_map: float | None, classes=("a", "b")) -> str:
    run = store.runs.create(stage, {}, list(classes))
    store.runs.update(run.id, status="completed", finished=True,
                      metrics={"last": {"val_mAP": val_map}} if val_map is not None else {})
    return run.model_version


@pytest.fixture
def store(empty_project):
    empty_project.classes.ensure(["a", "b"])
    return empty_project


def test_auto_distils_only_from_a_teacher_better_than_the_student(store):
    auto = TrainConfig(stage="student")
    assert auto.kd == "auto"
    teacher = _run(store, "teacher", 0.6)
    first = choose_kd(store, auto, ["a", "b"])
    assert first.kd == "none" and "no student" in first.reason and teacher in first.reason
    _run(store, "student", 0.5)
    better = choose_kd(store, auto, ["a", "b"])
    assert better.kd == "feature"
    assert better.reason == ("kd auto: distilling region features, the teacher teacher-1 (val mAP "
                             "0.600) against the student student-2 (0.500)")
    weaker = _run(store, "teacher", 0.4)
    choice = choose_kd(store, auto, ["a", "b"])
    assert choice.kd == "none" and weaker in choice.reason and "validates above" in choice.reason
    named = choose_kd(store, TrainConfig(stage="student", teacher_version=teacher), ["a", "b"])
    assert named.kd == "feature"                               # the teacher the round names


def test_auto_needs_measured_runs_of_the_same_classes(store):
    auto = TrainConfig(stage="student")
    assert choose_kd(store, auto, ["a", "b"]).kd == "none"               # no teacher at all
    _run(store, "teacher", None)                                           # val mAP not measured
    _run(store, "student", 0.1)
    assert "no teacher" in choose_kd(store, auto, ["a", "b"]).reason
    _run(store, "teacher", 0.9, classes=("a", "b", "c"))                 # other classes
    assert choose_kd(store, auto, ["a", "b"]).kd == "none"


def test_an_explicit_mode_is_used_as_given(store):
    _run(store, "teacher", 0.1)
    _run(store, "student", 0.9)
    for mode in ("none", "feature", "prediction", "both"):
        choice = choose_kd(store, TrainConfig(stage="student", kd=mode), ["a", "b"])
        assert (choice.kd, choice.reason) == (mode, "")


@pytest.mark.slow
def test_the_default_round_trains_without_kd_first_and_stores_the_choice(demo_project):
    import torch

    from engine.training.api import StudentSettings

    tiny = dict(image_size=64, max_proposals=16, hidden=32, epochs=1, batch_size=16,
                student_image_size=64, seed=0, proposals="sliding",
                student=StudentSettings(kd_boxes=8, region_dim=16, views=1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        messages = []
        runs = train(demo_project, TrainConfig(stage="all", **tiny),
                     TrainCallbacks(on_message=messages.append))
        assert [run.status for run in runs] == ["completed", "completed"]
        assert runs[1].config["kd"] == "none"              # stored resolved: a resume keeps it
        assert any(m.startswith("kd auto: no distillation, no student") for m in messages)
        # the batch and rate sized for the demo's few training images, stored and said
        assert (runs[1].config["student"]["batch_size"], runs[1].config["student"]["views"]) \
            == (16, 1)
        assert runs[1].config["student"]["lr"] == pytest.approx(2e-3 * (16 / 32) ** 0.5)
        assert any("batch 16 at lr 0.0014, 1 view(s)" in m for m in messages)
        messages.clear()
        (again,) = train(demo_project, TrainConfig(stage="student", **tiny),
                         TrainCallbacks(on_message=messages.append))
        (said,) = [m for m in messages if m.startswith("kd auto")]
        assert again.config["kd"] == ("feature" if "distilling" in said else "none")
        assert runs[0].model_version in said and runs[1].model_version in said
    finally:
        torch.set_num_threads(threads)
