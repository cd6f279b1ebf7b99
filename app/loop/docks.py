"""The review-loop features in the main window: the Training and Review docks and the Model menu
(train, batch tagging, review queue). `MainWindow._add_extension_docks` creates one `LoopDocks`;
its `save()` runs with the window's other settings."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMenu

from app.actions import new_action
from app.loop.batch_tagger import BatchTagger
from app.loop.review_panel import ReviewPanel
from app.loop.training_panel import TrainingPanel


class LoopDocks:
    def __init__(self, window) -> None:
        self.window = window
        self.training = TrainingPanel(window.state)
        self.review = ReviewPanel(window.state)
        self.tagger = BatchTagger(window.state, window, selection=window.selected_image_ids)
        self.training_dock = window.add_dock(self.training, "Training")
        self.review_dock = window.add_dock(self.review, "Review loop")
        self._menu()
        self.review.image_activated.connect(self._show_image)
        self.tagger.message.connect(lambda text: window.status.showMessage(text, 10000))
        self.review.auto_accepted.connect(
            lambda result: window.status.showMessage(result.summary(), 10000))
        self.training.restore_settings(window.settings)
        self.review.restore_settings(window.settings)

    def _menu(self) -> None:
        window = self.window
        bar = window.menuBar()
        menu = QMenu("&Model", bar)
        help_action = next((a for a in bar.actions() if a.text() == "&Help"), None)
        if help_action is not None:
            bar.insertMenu(help_action, menu)
        else:
            bar.addMenu(menu)
        train = new_action(window, "Train…", lambda: self._raise(self.training_dock),
                           "Ctrl+Shift+T", "Show the training panel: train the teacher, the student "
                                     "or both")
        queue = new_action(window, "Review Queue…", lambda: self._raise(self.review_dock),
                           "Ctrl+Shift+R", "Show the review panel: queue orders, thresholds, "
                                           "auto-accept, rounds and model versions")
        menu.addAction(train)
        menu.addSeparator()
        menu.addActions(self.tagger.actions())
        menu.addSeparator()
        menu.addAction(queue)
        window.actions.group("Model", train, queue, *self.tagger.actions())

    def _raise(self, dock) -> None:
        dock.show()
        dock.raise_()

    def _show_image(self, image_id: int) -> None:
        if not self.window.gallery.select_image(image_id):
            self.window.status.showMessage(
                "That image is hidden by the gallery's filter; clear the filter to see it.", 6000)

    def save(self, settings: QSettings) -> None:
        self.training.save_settings(settings)
        self.review.save_settings(settings)

