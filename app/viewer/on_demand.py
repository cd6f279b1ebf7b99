"""Regions on demand: the active teacher's regions for the image in view, computed when it has none.

"Why this tag" must always have an answer, but a project's teacher has regions only for the images
it was run on. When the viewer shows an image without regions of the active teacher, this computes
them in the background (`engine.inference.detect.detect_images`, which stores them, so each image
is computed once), one image at a time: moving on to another image cancels the one before.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from app.workers import Workers
from engine.store.queries import ImageDetail


def _detect_one(store, image_id: int, version: str, *, progress, should_stop) -> int:
    from engine.inference.detect import detect_images

    detect_images(store, [image_id], model_version=version, progress=progress,
                  should_stop=should_stop)
    return image_id


class RegionsOnDemand(QObject):
    """`request(detail)` for each image shown; `ready(image_id)` once its regions are stored,
    `failed(message)` when they cannot be computed (an unreadable file, no proposals)."""

    ready = Signal(int)
    failed = Signal(str)

    def __init__(self, workers: Workers, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.workers = workers
        self._job = None
        self._image: int | None = None
        self._key: tuple[int, str] | None = None
        self._tried: set[tuple[int, str]] = set()      # computed (or failed) once: not again

    @property
    def busy_with(self) -> int | None:
        """The image whose regions are being computed, if any."""
        return self._image if self._job is not None else None

    def request(self, detail: ImageDetail | None) -> bool:
        """Compute the regions of `detail`'s image if it needs them; returns whether it does."""
        teacher = detail.versions.teacher if detail is not None and detail.versions else None
        if (detail is None or teacher is None or detail.regions or detail.status == "unreadable"
                or (detail.image_id, teacher) in self._tried or self.workers.store is None):
            if detail is None or detail.image_id != self._image:
                self.cancel()
            return False
        if self._job is not None and self._image == detail.image_id:
            return True
        self.cancel()
        self._image, self._key = detail.image_id, (detail.image_id, teacher)
        self._tried.add(self._key)
        self._job = self.workers.start_job(f"Regions of image {detail.image_id}", _detect_one,
                                           detail.image_id, teacher, on_done=self._done,
                                           on_error=self._error)
        self._job.cancelled.connect(self._forget)
        return True

    def cancel(self) -> None:
        """Stop the image in progress (the person moved on); it is tried again when shown again."""
        if self._job is not None:
            job, self._job = self._job, None
            job.cancel()
            self._tried.discard(self._key)
        self._image = self._key = None

    def _forget(self, *_args) -> None:
        self._job = None

    def _done(self, image_id: int) -> None:
        self._job, self._image = None, None
        self.ready.emit(image_id)

    def _error(self, exc: BaseException) -> None:
        self._job, self._image = None, None
        self.failed.emit(f"No regions for this image: {getattr(exc, 'reason', exc)}")
