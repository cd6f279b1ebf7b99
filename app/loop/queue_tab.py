"""The review panel's Queue tab: choose a review order (`engine.review.queue.QUEUE_ORDERS`, each
explained in its tooltip), Build runs `review_queue` as the review job and lists the first images
with the reason each is there. Choosing one emits `image_activated(id)`; the whole order is
emitted as `queue_ready(ids)` for the gallery."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.loop.review_common import ReviewJobs
from engine.review.queue import QUEUE_ORDERS, review_queue

QUEUE_SHOWN = 500          # entries listed in the tab (the gallery gets the whole order)


def _build_queue(store, order: str, include_reviewed: bool, *, progress, should_stop):
    """The job: the queue in `order` and the file names of the entries the tab lists."""
    queue = review_queue(store, order, include_reviewed=include_reviewed,
                         ensure_scores=True, progress=progress, should_stop=should_stop)
    shown = queue.entries[:QUEUE_SHOWN]
    paths = store.images.paths([entry.image_id for entry in shown])
    names = {i: Path(p).name for i, p in paths.items()}
    return queue, names


class QueueTab(QWidget):
    """Review order, Build, and the list of the first images in that order."""

    queue_ready = Signal(list)        # image ids in the chosen review order
    image_activated = Signal(int)     # an entry of the queue was chosen

    def __init__(self, jobs: ReviewJobs, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.queue = None
        self.order_combo = QComboBox()
        for order in QUEUE_ORDERS:
            self.order_combo.addItem(order.label, order.key)
            self.order_combo.setItemData(self.order_combo.count() - 1, order.tooltip,
                                         Qt.ItemDataRole.ToolTipRole)
        self.order_combo.currentIndexChanged.connect(self._order_changed)
        self.include_reviewed = QCheckBox("Include reviewed images")
        self.include_reviewed.setToolTip("Also list images a person has already reviewed.")
        self.build_button = QPushButton("Build queue")
        self.build_button.setToolTip("Order the images; 'Likely label mistakes' first "
                                     "cross-fits a small model (a few seconds to minutes).")
        self.build_button.clicked.connect(self.build_queue)
        jobs.busy_changed.connect(lambda busy: self.build_button.setEnabled(not busy))
        self.queue_list = QListWidget()
        self.queue_list.setUniformItemSizes(True)
        self.queue_list.itemActivated.connect(self._entry_activated)
        self.queue_list.currentItemChanged.connect(lambda item, _old: self._entry_activated(item))
        self.queue_note = QLabel("")
        self.queue_note.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.order_combo, 1)
        row.addWidget(self.build_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.include_reviewed)
        layout.addWidget(self.queue_list, 1)
        layout.addWidget(self.queue_note)
        self._order_changed()

    def _order_changed(self) -> None:
        self.order_combo.setToolTip(self.order_combo.currentData(Qt.ItemDataRole.ToolTipRole))

    def set_order(self, key: str) -> None:
        index = self.order_combo.findData(key)
        if index >= 0:
            self.order_combo.setCurrentIndex(index)

    def build_queue(self) -> None:
        order = self.order_combo.currentData()
        self.jobs.run(f"Review queue ({order})", _build_queue, order,
                      self.include_reviewed.isChecked(), on_done=self._queue_built)

    def _queue_built(self, outcome) -> None:
        queue, names = outcome
        self.queue = queue
        self.queue_list.clear()
        for entry in queue.entries[:QUEUE_SHOWN]:
            text = names.get(entry.image_id, f"image {entry.image_id}")
            item = QListWidgetItem(f"{text} — {entry.reason}" if entry.reason else text)
            item.setData(Qt.ItemDataRole.UserRole, entry.image_id)
            item.setToolTip(entry.reason or text)
            self.queue_list.addItem(item)
        more = len(queue.entries) - QUEUE_SHOWN
        note = f"{len(queue.entries)} images in this order"
        note += f" (first {QUEUE_SHOWN} listed)" if more > 0 else ""
        self.queue_note.setText(" ".join(t.rstrip(".") + "." for t in (note, queue.note) if t))
        self.queue_ready.emit(queue.image_ids)

    def _entry_activated(self, item: QListWidgetItem | None) -> None:
        if item is not None:
            self.image_activated.emit(int(item.data(Qt.ItemDataRole.UserRole)))

    def save_settings(self, settings: QSettings) -> None:
        settings.setValue("review/order", self.order_combo.currentData())

    def restore_settings(self, settings: QSettings) -> None:
        order = settings.value("review/order")
        if order:
            self.set_order(str(order))
