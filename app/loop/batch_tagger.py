"""Batch tagging from the GUI: the student on a folder or on the gallery's selection.

`BatchTagger` runs `engine.inference.tagging.tag_folder` (the same route as `mlic tag`) or
`tag_images` (the selection) as a job on the app's GPU lane (through an `app.jobs.JobSlot`), with
progress and cancel. The probabilities land in the project as
*suggestions* of the active student version (never as tags); images of a folder that the project
did not know yet are registered first.
When the job ends, `suggestions_changed(image_ids)` fires and the project state is told that models
and images changed, so the gallery and the tag panel refresh.

The main window adds `BatchTagger.actions()` to its menus and gives the tagger a callable that
returns the gallery's current selection (a list of image ids).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QWidget

from app import dialogs
from app.jobs import JobSlot
from app.state import ProjectState
from engine.errors import UserError


def _tag_folder(store, folder: str, device: str, *, progress, should_stop):
    """The same route as `mlic tag`: register (or re-scan) the folder, then tag its images."""
    from engine.inference.tagging import tag_folder

    report, result = tag_folder(store, folder, device=device, progress=progress,
                                should_stop=should_stop)
    if not report.image_ids:
        raise UserError(f"There are no images under {folder}.")
    return result


def _tag_images(store, image_ids: list[int], device: str, *, progress, should_stop):
    from engine.inference.tagging import tag_images

    if not store.images.paths(image_ids):
        raise UserError("None of the selected images is in the project any more.")
    return tag_images(store, image_ids, device=device, progress=progress,
                      should_stop=should_stop)


class BatchTagger(QObject):
    """Runs batch tagging jobs; one at a time."""

    started = Signal(object)                # the app.workers.Job
    progress = Signal(int, int)             # done, total
    finished = Signal(object)               # engine.inference.tagging.TaggingResult
    suggestions_changed = Signal(list)      # ids of the images that got new suggestions
    message = Signal(str)                   # one-line summary for the status bar
    running_changed = Signal(bool)

    def __init__(self, state: ProjectState, parent: QWidget | None = None,
                 selection: Callable[[], list[int]] | None = None, device: str = "auto") -> None:
        super().__init__(parent)
        self.state = state
        self.workers = state.workers
        self.selection = selection
        self.device = device
        self.jobs = JobSlot(self.workers, parent=self)
        self.jobs.started.connect(self.started)
        self.jobs.progress.connect(self.progress)
        self.jobs.finished.connect(self._finished)
        self.jobs.failed.connect(self._failed)
        self.jobs.cancelled.connect(self._cancelled)
        self.jobs.busy_changed.connect(self._set_running)
        self._widget = parent
        self.folder_action = QAction("Tag a &folder with the student…", self)
        self.folder_action.setToolTip("Run the student on every image under a folder; the "
                                      "results become suggestions to accept or reject.")
        self.folder_action.triggered.connect(lambda: self.tag_folder())
        self.selection_action = QAction("Tag the &selected images", self)
        self.selection_action.setToolTip("Run the student on the images selected in the gallery.")
        self.selection_action.triggered.connect(lambda: self.tag_selection())
        self.cancel_action = QAction("Cancel batch tagging", self)
        self.cancel_action.setEnabled(False)
        self.cancel_action.triggered.connect(self.cancel)

    def actions(self) -> list[QAction]:
        return [self.folder_action, self.selection_action, self.cancel_action]

    @property
    def running(self) -> bool:
        return self.jobs.busy

    # ------------------------------------------------------------------------------ starting
    def tag_folder(self, folder: str | Path | None = None) -> None:
        """Tag every image under `folder` (asks for one when None)."""
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self._widget, "Tag a folder with the student")
            if not folder:
                return
        self._start(f"Tagging {Path(folder).name}", _tag_folder, str(folder))

    def tag_selection(self, image_ids: list[int] | None = None) -> None:
        """Tag `image_ids` (default: the gallery's selection)."""
        if image_ids is None:
            image_ids = list(self.selection()) if self.selection is not None else []
        if not image_ids:
            dialogs.show_error(self._widget, UserError("Select images in the gallery first."),
                               "Batch tagging")
            return
        self._start(f"Tagging {len(image_ids)} images", _tag_images, list(image_ids))

    def _start(self, title: str, fn, argument) -> None:
        try:
            self.jobs.start(title, fn, argument, self.device)
        except UserError as exc:          # one is running already, or no project is open
            dialogs.show_error(self._widget, exc, "Batch tagging")

    def cancel(self) -> None:
        self.jobs.cancel()

    # ------------------------------------------------------------------------------ results
    def _finished(self, result) -> None:
        self._announce(result)
        text = (f"Tagged {len(result.paths)} images with {result.model_version} "
                f"({result.images_per_second:.0f} images/s)")
        if result.unreadable:
            text += f"; {len(result.unreadable)} unreadable files skipped"
        self.message.emit(text + ".")
        self.finished.emit(result)

    def _cancelled(self) -> None:
        # The images done before the cancel keep their suggestions; refresh what they show.
        self.state.models_changed()
        self.state.notify_images_changed()
        self.message.emit("Batch tagging cancelled; the images done so far keep their suggestions.")

    def _announce(self, result) -> None:
        ids = [i for i in result.image_ids if i is not None]
        self.state.models_changed()
        self.state.notify_images_changed()
        self.suggestions_changed.emit(ids)

    def _failed(self, exc: BaseException) -> None:
        self.message.emit("Batch tagging failed.")
        dialogs.show_error(self._widget, exc, "Batch tagging")

    def _set_running(self, running: bool) -> None:
        self.folder_action.setEnabled(not running)
        self.selection_action.setEnabled(not running)
        self.cancel_action.setEnabled(running)
        self.running_changed.emit(running)
