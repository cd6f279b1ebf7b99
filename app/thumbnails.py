"""Thumbnails: decoded off the GUI thread at reduced size, cached on disk and in memory.

Disk: `<project>/cache/thumbnails/<hash[:2]>/<content hash>-<size>.jpg`, keyed by the file's
content hash, so a moved or duplicated file reuses its thumbnail and an edited file gets a new one.
Decoding uses `engine.images.load_rgb(path, max_side)` (JPEG draft mode: a fraction of a full
decode). Memory: an LRU of QPixmaps.

Scheduling: the delegate asks for thumbnails of the cells it paints, and the view tells the cache
before each paint which images are on screen (`set_visible`). A queued request for an image no
longer on screen (it scrolled away) is skipped when its turn comes, and newer requests run first
(a stack), so fast scrolling never builds a backlog of invisible work.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage, QPixmap

from app.workers import Workers
from engine.errors import UserError
from engine.files import atomic_output

log = logging.getLogger(__name__)

THUMB_SIZE = 256          # long side on disk; memory holds them scaled to the cell size
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
        with atomic_output(target, "wb") as stream:
            rgb.save(stream, "JPEG", quality=85)
    except OSError as exc:        # a read-only cache still shows the thumbnail
        log.warning("cannot cache thumbnail %s: %s", target, exc)


class ThumbnailCache(QObject):
    """Thumbnails by image id for the gallery. `ready(image_id)` fires when one arrives.

    Requests go on a last-in-first-out stack drained by a few `Workers.pool` tasks (not one task
    per thumbnail: starting a pool task costs the GUI thread more than pushing on a list)."""

    ready = Signal(int)
    failed = Signal(int, str)
    _loaded = Signal(int, int, object)       # generation, image id, QImage or exception

    def __init__(self, workers: Workers, parent: QObject | None = None,
                 drainers: int | None = None) -> None:
        super().__init__(parent)
        self.workers = workers
        self.cache_dir: Path | None = None
        self.max_drainers = drainers or max(2, (os.cpu_count() or 2) - 1)
        self._pixmaps: OrderedDict[int, QPixmap] = OrderedDict()
        self._errors: dict[int, str] = {}
        self._generation = 0
        self._visible: frozenset[int] = frozenset()
        self._pending: set[int] = set()
        self._stack: list[tuple[int, str, str | None]] = []
        self._drainers = 0
        self._lock = threading.Lock()
        self.display_size = 160                # long side in memory (the delegate's cell)
        self.decoded = 0                       # counters for the benchmark
        self.skipped = 0
        self._loaded.connect(self._on_loaded)

    def set_cache_dir(self, cache_dir: Path | None) -> None:
        """A new project: forget everything in memory; late results are dropped."""
        with self._lock:
            self._generation += 1
            self.cache_dir = cache_dir
            self._pending.clear()
            self._stack.clear()
        self._pixmaps.clear()
        self._errors.clear()

    def set_display_size(self, size: int) -> None:
        """Thumbnails are kept in memory at the size the cells show (no scaling per paint)."""
        if size != self.display_size:
            self.display_size = size
            self._pixmaps.clear()

    def set_visible(self, image_ids) -> None:
        """The images on screen (and just around it); called by the view before it paints."""
        self._visible = frozenset(image_ids)

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
            pending = image_id in self._pending
            if not pending:
                self._pending.add(image_id)
                self._stack.append((image_id, path, content_hash))
        if not pending and self._drainers < self.max_drainers:
            self._start_drainers()
        return None

    def _start_drainers(self) -> None:
        while self._drainers < self.max_drainers and self._stack:
            self._drainers += 1
            self.workers.pool(self._drain, self._generation, on_done=self._drainer_done,
                              on_error=self._drainer_done)

    def _drainer_done(self, _result) -> None:
        self._drainers -= 1
        self._start_drainers()

    # -- pool threads ----------------------------------------------------------------------------
    def _drain(self, generation: int) -> None:
        """Decode the newest wanted request until none is left; skip what scrolled away."""
        while True:
            with self._lock:
                if generation != self._generation or not self._stack:
                    return
                image_id, path, content_hash = self._stack.pop()
                if image_id not in self._visible:       # scrolled away: asked again if seen
                    self._pending.discard(image_id)
                    self.skipped += 1
                    continue
                cache_dir, display = self.cache_dir, self.display_size
            try:
                image = make_thumbnail(path, content_hash, cache_dir)
                if max(image.width(), image.height()) > display:
                    image = image.scaled(display, display, Qt.AspectRatioMode.KeepAspectRatio,
                                         Qt.TransformationMode.SmoothTransformation)
            except Exception as exc:  # noqa: BLE001 - reported to the GUI thread
                self._loaded.emit(generation, image_id, exc)
                continue
            self._loaded.emit(generation, image_id, image)

    # -- GUI thread ------------------------------------------------------------------------------
    def _on_loaded(self, generation: int, image_id: int, value) -> None:
        if generation != self._generation:
            return
        with self._lock:
            self._pending.discard(image_id)
        if isinstance(value, BaseException):
            self._failed(image_id, value)
            return
        self.decoded += 1
        self._pixmaps[image_id] = QPixmap.fromImage(value)
        while len(self._pixmaps) > MEMORY_ITEMS:
            self._pixmaps.popitem(last=False)
        self.ready.emit(image_id)

    def _failed(self, image_id: int, exc: BaseException) -> None:
        reason = getattr(exc, "reason", None) or str(exc)
        if not isinstance(exc, UserError):
            log.warning("thumbnail of image %s failed: %s", image_id, exc)
        self._errors[image_id] = reason
        self.failed.emit(image_id, reason)
