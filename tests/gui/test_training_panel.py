"""The training panel drives real (tiny) training runs in the background: curves, per-class AP,
history, cancel with the checkpoint kept, and resume."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from tests.gui.loop_projects import (  # noqa: F401 - fixtures
    copy_project,
    demo_project_dir,
    loop_state,
    tiny_config,
    trained_project_dir,
)


@pytest.fixture
def panel(qtbot, tmp_path, demo_project_dir, loop_state, errors):
    from app.loop.training_panel import TrainingPanel

    state = loop_state(copy_project(demo_project_dir, tmp_path))
    widget = TrainingPanel(state)
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    assert errors == []


def test_form_builds_the_config_and_settings_persist(panel, settings):
    panel.stage_combo.setCurrentIndex(panel.stage_combo.findData("student"))
    panel.epochs.setValue(3)
    panel.kd.setCurrentIndex(panel.kd.findData("none"))
    config = panel.config()
    assert (config.stage, config.epochs, config.kd) == ("student", 3, "none")
    # what a person gets without touching the form: the offline ImageNet-pretrained backbone
    assert panel.pretrained.isChecked() and config.pretrained
    assert config.backbone == config.student_backbone == "efficientnet_lite0"
    assert config.proposals == "selective_search"   # what people get, as on the command line
    assert not panel.teacher_backbone.isEnabled() and panel.student_backbone.isEnabled()
    assert not panel.proposals.isEnabled()
    panel.proposals.setCurrentText("edgeboxes")
    panel.save_settings(settings)
    panel.epochs.setValue(7)
    panel.proposals.setCurrentText("sliding")
    panel.restore_settings(settings)
    assert panel.epochs.value() == 3 and panel.kd.currentData() == "none"
    assert panel.proposals.currentText() == "edgeboxes"


def test_tiny_training_run_to_completion_updates_the_curves(qtbot, panel):
    seen_versions = []
    panel.state.versions_changed.connect(lambda: seen_versions.append(panel.state.versions))
    with qtbot.waitSignal(panel.training_finished, timeout=240000) as finished:
        panel.start(tiny_config(epochs=2))
        assert panel.running and not panel.start_button.isEnabled()
    outcome = finished.args[0]
    assert outcome.completed and outcome.runs[0].model_version == "student-1"
    assert [x for x, _ in panel.curve_data[("student", "loss")]] == [1, 2]
    assert len(panel.curve_data[("student", "val_mAP")]) == 2
    assert panel._curves[("student", "loss")].getData()[0].tolist() == [1, 2]
    assert "student-1" in outcome.figures
    qtbot.waitUntil(lambda: panel.history.rowCount() == 1, timeout=10000)
    assert panel.history.item(0, 0).text() == "student-1"
    assert panel.history.item(0, 2).text() == "completed"
    qtbot.waitUntil(lambda: panel.ap_bars is not None, timeout=10000)
    assert len(panel.ap_bars.opts["height"]) == 12
    qtbot.waitUntil(lambda: not panel.running, timeout=5000)
    assert panel.start_button.isEnabled() and not panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: seen_versions and seen_versions[-1].student == "student-1",
                    timeout=10000)


def test_cancel_keeps_the_checkpoint_and_resume_finishes(qtbot, panel):
    from engine.models.registry import checkpoint_path

    store = panel.workers.store
    with qtbot.waitSignal(panel.training_finished, timeout=240000) as finished:
        panel.start(tiny_config(epochs=3))
        qtbot.waitUntil(lambda: bool(panel.curve_data), timeout=240000)   # one epoch done
        panel.cancel()
    assert finished.args[0] is None
    qtbot.waitUntil(lambda: not panel.running, timeout=10000)
    (run,) = store.runs.list()
    assert run.status == "cancelled" and checkpoint_path(store, run).exists()
    assert "Resume" in panel.status.text()
    with qtbot.waitSignal(panel.training_finished, timeout=240000) as resumed:
        panel.start(tiny_config(epochs=3), resume=True)
    assert resumed.args[0].completed
    runs = store.runs.list()
    assert [r.status for r in runs] == ["completed"] and runs[0].id == run.id


def test_a_bad_request_is_reported_not_raised(qtbot, panel, errors):
    with qtbot.waitSignal(panel.training_failed, timeout=60000):
        panel.start_quick()                          # no student whose head to refit
    assert len(errors) == 1 and "student" in str(errors[0]).lower()
    errors.clear()
    qtbot.waitUntil(lambda: not panel.running, timeout=5000)


def test_a_student_without_a_teacher_is_offered_the_ways_on(qtbot, panel, errors, monkeypatch):
    """No teacher to distil from: the panel asks, in its own words, and goes on the chosen way."""
    from app.loop import training_panel

    asked = []
    answers = iter(["cancel", "without"])
    monkeypatch.setattr(training_panel.dialogs, "ask_without_teacher",
                        lambda parent, reason: asked.append(reason) or next(answers))
    with qtbot.waitSignal(panel.training_failed, timeout=60000):
        panel.start(tiny_config(kd="both"))
    assert "no trained teacher" in asked[0] and "--" not in asked[0]     # no CLI flags
    assert panel.status.text().startswith("Not started") and errors == []
    qtbot.waitUntil(lambda: not panel.running, timeout=5000)
    with qtbot.waitSignal(panel.training_finished, timeout=240000) as finished:
        panel.start(tiny_config(kd="both"))
    outcome = finished.args[0]
    assert outcome.completed and outcome.runs[0].config["kd"] == "none" and len(asked) == 2


@pytest.fixture
def trained_panel(qtbot, tmp_path, trained_project_dir, loop_state, errors):
    from app.loop.training_panel import TrainingPanel

    state = loop_state(copy_project(trained_project_dir, tmp_path))
    widget = TrainingPanel(state)
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    assert errors == []


def test_corrections_then_a_quick_round_by_itself_then_by_the_button(qtbot, trained_panel):
    """A person sets "quick round after 2 corrections", corrects two images: a quick round runs by
    itself and the active student becomes its version; the Quick round button runs another."""
    from engine.store import TagEdit

    panel = trained_panel
    store = panel.workers.store
    panel.auto_quick.setValue(2)
    seen = []
    panel.state.versions_changed.connect(lambda: seen.append(panel.state.versions.student))
    images = store.images.ids(split="train")[:2]
    first_class = store.classes.list()[0].id
    with qtbot.waitSignal(panel.training_finished, timeout=120000) as finished:
        for image in images:      # one correction at a time, as the undo commands report them
            store.tags.apply([TagEdit(image, first_class, "positive")], source="person")
            panel.state.tags_changed.emit({image})
    outcome = finished.args[0]
    quick = outcome.runs[0]
    assert outcome.completed and quick.config["quick"] and quick.model_version == "student-3"
    assert panel.status.text().startswith("Done: student-3 completed")
    qtbot.waitUntil(lambda: bool(seen) and seen[-1] == "student-3", timeout=10000)
    calibrated = {c.id: c.threshold for c in store.classes.list()}     # the round calibrated them
    qtbot.waitUntil(lambda: {c: i.threshold for c, i in panel.state.classes.items()}
                    == calibrated, timeout=10000)                      # shown without F5
    assert all(store.suggestions.for_image(i, "student-3") for i in store.images.ids())
    qtbot.waitUntil(lambda: not panel.running, timeout=5000)
    with qtbot.waitSignal(panel.training_finished, timeout=120000) as again:
        qtbot.mouseClick(panel.quick_button, Qt.MouseButton.LeftButton)
    assert again.args[0].runs[0].model_version == "student-4"
    assert not store.suggestions.for_image(images[0], "student-3")   # replaced by student-4


def test_both_with_a_tag_and_a_class_added_mid_run_cancel_resume_finish(qtbot, panel):
    """The sequence that failed twice in the GUI: start "all", add a class and a tag while the
    teacher trains, cancel, resume: the teacher resumes, the student follows on the classes the
    round started with, and the panel says the new class and tag wait for the next round."""
    from engine.store import TagEdit

    store = panel.workers.store
    config = tiny_config(stage="all", kd="prediction", epochs=2, image_size=64, max_proposals=8,
                         proposals="sliding", hidden=32)

    def person_edits_then_cancel(report):
        if "late" not in store.classes.names():
            store.classes.ensure(["late"])
            late = [c for c in store.classes.list() if c.name == "late"][0]
            image = store.images.ids(split="train")[0]
            store.tags.apply([TagEdit(image, late.id, "positive")], source="person")
            panel.state.tags_changed.emit({image})
            panel.cancel()

    panel._bridge.epoch.connect(person_edits_then_cancel)
    with qtbot.waitSignal(panel.training_finished, timeout=240000) as cancelled:
        panel.start(config)
    assert cancelled.args[0] is None and "Resume" in panel.status.text()
    qtbot.waitUntil(lambda: not panel.running, timeout=10000)
    with qtbot.waitSignal(panel.training_finished, timeout=240000) as resumed:
        qtbot.mouseClick(panel.resume_button, Qt.MouseButton.LeftButton)
    outcome = resumed.args[0]
    assert [(r.stage, r.status) for r in outcome.runs] == [("teacher", "completed"),
                                                           ("student", "completed")]
    assert "late" not in outcome.runs[1].class_names
    text = panel.status.text()
    assert text.startswith("Done: teacher-1 completed, student-2 completed")
    assert "the class late" in text and "next round" in text


@pytest.mark.parametrize("unmeasured", [float("nan"), None])   # in-process / a process's JSON
def test_an_epoch_without_a_measurable_class_reads_not_measured(panel, unmeasured):
    """Keywords from a photo tool give no "no": the status says so instead of "mAP nan", and the
    mAP curve gets no point; the next measured epoch reads as a number again."""
    from engine.training.api import EpochReport

    report = EpochReport("student", 1, "student-1", 1, 2, {"loss": 0.3},
                         {"val_mAP": unmeasured, "val_CF1": 0.25})
    panel._on_epoch(report)
    assert panel.status.text() == ('student-1: epoch 1/2, validation mAP not measured '
                                   '(no decided "no" on split val)')
    assert ("student", "val_mAP") not in panel.curve_data
    panel._on_epoch(EpochReport("student", 1, "student-1", 2, 2, {"loss": 0.2}, {"val_mAP": 0.5}))
    assert panel.status.text() == "student-1: epoch 2/2, validation mAP 0.500"
    assert panel.curve_data[("student", "val_mAP")] == [(2, 0.5)]


def test_the_default_distillation_asks_nothing_without_a_teacher(qtbot, panel, errors, monkeypatch):
    """Start with the form's default distillation ("when the teacher is better") on a project
    with no teacher: no question, the student trains from its tags and the panel says why."""
    from app import dialogs

    assert panel.kd.currentData() == "auto"
    asked, said = [], []
    monkeypatch.setattr(dialogs, "ask_without_teacher", lambda *args: asked.append(args) or "cancel")
    original = panel._on_message
    monkeypatch.setattr(panel, "_on_message", lambda text: said.append(text) or original(text))
    with qtbot.waitSignal(panel.training_finished, timeout=240000) as finished:
        panel.start(tiny_config(kd=panel.kd.currentData()))
    outcome = finished.args[0]
    assert outcome.completed and outcome.runs[0].config["kd"] == "none" and asked == []
    assert "kd auto: no distillation, no teacher of these classes has a measured validation mAP" in said
    qtbot.waitUntil(lambda: not panel.running, timeout=5000)
    assert errors == []
