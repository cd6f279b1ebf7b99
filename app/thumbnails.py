"""Thumbnails: decoded off the GUI thread at reduced size, cached on disk and in memory.

Disk: `<project>/cache/thumbnails/<hash[:2]>/<content hash>-<size>.jpg`, keyed by the file's
content hash, so a moved or duplicated file reuses its thumbnail and an edited file gets a new one.
Decoding uses `engine.images.load_rgb(path, max_side)` (JPEG draft mode: a fraction of a full
decode). Memory: an LRU of QPixmaps.

Scheduling: the delegate asks for thumbnails of the cells it paints. The view calls `next_frame()`
before each paint; a queued request that no paint has touched for a frame (the cell scrolled out of
view) is skipped when its turn comes, and newer requests run first, so fast scrolling never
builds a backlog of invisible work.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage, QPixmap

from app.workers import Workers
from engine.errors import UserError

log = logging.getLogger(__name__)

THUMB_SIZE = 256          # long side on disk; the view scales down to the cell size
MEMORY_ITEMS = 800


def cache_file(cache_dir: Path, content_hash: str, size: int = THUMB_SIZE) -> Path:
    return cache_dir / content_hash[:2] / f"{content_hash}-{size}.jpg"


def make_thumbnail(path: str, content_hash: str | None, cache_dir: Path | None,
                   size: int = THUMB_SIZE) -> QImage:
    """Load a cached thumbnail or decode `path` at reduced size (and cache it). Any thread.

    Raises `engine.images.UnreadableImageError` (a UserError) when the file cannot be decoded.
    """
    target = cache_file(cache_dir, content_hash, size) if cache_dir and content_hash else None
    if target is not None and target.exists():
        image = QImage(str(target))
        if not image.isNull():
            return image
    from engine.images import load_rgb

    rgb = load_rgb(path, max_side=size)
    if target is not None:
        _write_atomically(rgb, target)
    data = rgb.tobytes()
    image = QImage(data, rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888)
    return image.copy()          # own the pixels: `data` dies with this frame


def _write_atomically(rgb, target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        with os.fdopen(handle, "wb") as stream:
            rgb.save(stream, "JPEG", quality=85)
        os.replace(temp, target)
    except OSError as exc:        # a read-only cache still shows the thumbnail
        log.warning("cannot cache thumbnail %s: %s", target, exc)


class ThumbnailCache(QObject):
    """Thumbnails by image id for the gallery. `ready(image_id)` fires when one arrives."""

    ready = Signal(int)
    failed = Signal(int, str)

    def __init__(self, workers: Workers, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.workers = workers
        self.cache_dir: Path | None = None
        self._pixmaps: OrderedDict[int, QPixmap] = OrderedDict()
        self._errors: dict[int, str] = {}
        self._frame = 0
        self._touched: dict[int, int] = {}     # pending image id -> last frame that wanted it
        self._lock = threading.Lock()
        self.decoded = 0                       # counters for the benchmark
        self.skipped = 0

    def set_cache_dir(self, cache_dir: Path | None) -> None:
        """A new project: forget everything in memory."""
        self.cache_dir = cache_dir
        self._pixmaps.clear()
        self._errors.clear()
        with self._lock:
            self._touched.clear()

    def next_frame(self) -> None:
        """Called by the view before it paints."""
        self._frame += 1

    def error(self, image_id: int) -> str | None:
        return self._errors.get(image_id)

    def get(self, image_id: int, path: str, content_hash: str | None) -> QPixmap | None:
        """The thumbnail if in memory; otherwise None and (once) a background request."""
        pixmap = self._pixmaps.get(image_id)
        if pixmap is not None:
            self._pixmaps.move_to_end(image_id)
            return pixmap
        if image_id in self._errors:
            return None
        with self._lock:
            pending = image_id in self._touched
            self._touched[image_id] = self._frame
        if not pending:
            self.workers.pool(self._load, image_id, path, content_hash, self._frame,
                              priority=min(self._frame, 1 << 30),
                              on_done=self._arrived, on_error=lambda exc, i=image_id:
                              self._failed(i, exc))
        return None

    def forget(self, image_ids) -> None:
        for image_id in image_ids:
            self._pixmaps.pop(image_id, None)
            self._errors.pop(image_id, None)

    # -- pool thread -----------------------------------------------------------------------------
    def _load(self, image_id: int, path: str, content_hash: str | None, _frame: int):
        with self._lock:
            touched = self._touched.get(image_id)
            stale = touched is None or touched < self._frame - 1
            if stale:
                self._touched.pop(image_id, None)
        if stale:
            return image_id, None
        return image_id, make_thumbnail(path, content_hash, self.cache_dir)

    # -- GUI thread ------------------------------------------------------------------------------
    def _arrived(self, result) -> None:
        image_id, image = result
        if image is None:
            self.skipped += 1
            return
        with self._lock:
            self._touched.pop(image_id, None)
        self.decoded += 1
        self._pixmaps[image_id] = QPixmap.fromImage(image)
        while len(self._pixmaps) > MEMORY_ITEMS:
            self._pixmaps.popitem(last=False)
        self.ready.emit(image_id)

    def _failed(self, image_id: int, exc: BaseException) -> None:
        with self._lock:
            self._touched.pop(image_id, None)
        reason = getattr(exc, "reason", None) or str(exc)
        if not isinstance(exc, UserError):
            log.warning("thumbnail of image %s failed: %s", image_id, exc)
        self._errors[image_id] = reason
        self.failed.emit(image_id, reason)
