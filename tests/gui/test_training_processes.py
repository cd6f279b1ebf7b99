"""The training panel starts a round of two processes (`mlic train --round --nproc 2`, gloo on
the CPU) as a separate program and follows it: progress, epoch curves, the finished round, and
the run in the history, as for a round in the app's own process."""

from __future__ import annotations

from tests.gui.loop_projects import (  # noqa: F401 - fixtures
    copy_project,
    demo_project_dir,
    loop_state,
    tiny_config,
)


def test_a_round_of_two_processes_is_followed_to_its_end(qtbot, tmp_path, demo_project_dir,
                                                        loop_state, errors):
    from app.loop.training_panel import TrainingPanel

    panel = TrainingPanel(loop_state(copy_project(demo_project_dir, tmp_path)))
    qtbot.addWidget(panel)
    panel.show()
    panel.processes.setValue(2)
    steps = []
    panel.process_run.progress.connect(lambda done, total: steps.append((done, total)))
    with qtbot.waitSignal(panel.training_finished, timeout=240000) as finished:
        panel.start(tiny_config(epochs=2, device="cpu"))
        assert panel.running and not panel.start_button.isEnabled()
        assert not panel.processes.isEnabled()
    outcome = finished.args[0]
    assert outcome.completed and [run.model_version for run in outcome.runs] == ["student-1"]
    assert "student-1" in outcome.figures
    assert steps and steps[-1][0] == steps[-1][1]
    assert [x for x, _ in panel.curve_data[("student", "loss")]] == [1, 2]
    assert panel.status.text().startswith("Done: student-1 completed.")
    qtbot.waitUntil(lambda: panel.history.rowCount() == 1, timeout=10000)
    assert panel.history.item(0, 2).text() == "completed"
    qtbot.waitUntil(lambda: not panel.running, timeout=5000)
    assert panel.start_button.isEnabled() and panel.processes.isEnabled()
    assert errors == []
