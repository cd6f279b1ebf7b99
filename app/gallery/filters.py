"""The filter bar above the gallery: search box (debounced), class, state, split, confidence range
and sort order. It only builds an `engine.store.queries.GalleryFilter`; the query runs in the
database thread."""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QToolButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from app.elided import ElidedLabel
from app.state import ProjectState
from engine.store import queries as gq
from engine.store import search
from engine.store.schema import SPLITS

SEARCH_DELAY_MS = 250

STATES = [  # (label, GalleryFilter field or None, tooltip)
    ("All images", None, "Every image of the project"),
    ("Untagged", "untagged", "Images without any positive tag"),
    ("Unreviewed", "unreviewed", "Images no person has reviewed yet (imports and untouched)"),
    ("Has suggestions", "has_suggestions",
     "Images with a student suggestion at or above its class threshold that no one has "
     "accepted or rejected yet"),
    ("Uncertain", "uncertain",
     "Images with an undecided suggestion close to its class threshold (within 0.1): where a "
     "decision teaches the model most"),
    ("Teacher ≠ student", "disagreement",
     "Images where the teacher (detector) and the student fall on different sides of a class "
     "threshold: likely mistakes of one of them, or of a tag"),
    ("Unreadable", "unreadable", "Files that could not be read, with the reason"),
    ("Duplicates", "duplicates",
     "Files with the same bytes as another image of the project (copies under other names)"),
]

SORTS = [
    ("Added", "added", "In the order images were added"),
    ("Name", "name", "By file path"),
    ("Confidence", "confidence", "Most confident undecided suggestion first"),
    ("Uncertainty", "uncertainty", "Undecided suggestion closest to its threshold first"),
    ("Disagreement", "disagreement", "Largest teacher-student gap first"),
    ("Tag count", "tags", "Fewest positive tags first"),
]

SEARCH_HELP = "<b>Search</b><table>" + "".join(
    f"<tr><td><code>{example}</code></td><td>{meaning}</td></tr>"
    for example, meaning in search.SYNTAX) + "</table>Full list: Help > Keyboard Shortcuts."
INVALID_STYLE = "QLineEdit#search { border: 2px solid #e53935; border-radius: 3px; }"


class FilterBar(QWidget):
    """Emits `filter_changed(GalleryFilter)`."""

    filter_changed = Signal(object)
    search_problem_found = Signal(str)     # what is wrong with the search (for the status bar)

    def __init__(self, state: ProjectState, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self._building = False
        self._make_controls()
        self._lay_out()
        self._connect()
        state.classes_changed.connect(self._fill_classes)
        self._fill_classes()

    def _make_controls(self) -> None:
        self.search = QLineEdit(placeholderText="Search paths and tags…  (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip(SEARCH_HELP)
        self.search.setObjectName("search")
        self.class_combo = QComboBox(toolTip="Show images with a positive tag of this class")
        self.class_mode = QComboBox(toolTip="Tagged: a person or an import tagged it. "
                                            "Suggested: a pending suggestion. Either: both.")
        for label, mode in (("tagged", "tagged"), ("suggested", "suggested"), ("either", "either")):
            self.class_mode.addItem(label, mode)
        self.state_combo = QComboBox()
        for n, (label, field, tip) in enumerate(STATES):
            self.state_combo.addItem(label, field)
            self.state_combo.setItemData(n, tip, Qt.ItemDataRole.ToolTipRole)
        self.state_combo.setToolTip("Which images to show (hover the entries for details)")
        self.split_combo = QComboBox(toolTip="Only images of this split")
        self.split_combo.addItem("Any split", None)
        for split in SPLITS:
            self.split_combo.addItem(split, split)
        self.sort_combo = QComboBox()
        for n, (label, key, tip) in enumerate(SORTS):
            self.sort_combo.addItem(label, key)
            self.sort_combo.setItemData(n, tip, Qt.ItemDataRole.ToolTipRole)
        self.sort_combo.setToolTip("Order of the gallery (hover the entries for details)")
        self.descending = QToolButton(checkable=True, text="↓", toolTip="Reverse the order")
        self.use_confidence = QCheckBox("Confidence", toolTip=(
            "Only images with a student suggestion (of the chosen class, if any) in this range"))
        self.min_conf = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, decimals=2,
                                       value=0.5, enabled=False)
        self.max_conf = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, decimals=2,
                                       value=1.0, enabled=False)
        self.count_label = ElidedLabel("")     # "60 shown", or what is wrong with the search
        self.count_label.setObjectName("filterCount")
        self.count_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.count_label.setMinimumWidth(70)
        self.search.setMinimumWidth(110)
        for combo in (self.class_combo, self.class_mode, self.state_combo, self.split_combo,
                      self.sort_combo):        # narrow panes: combos shrink, popups stay wide
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(6)

    def _lay_out(self) -> None:
        top = QHBoxLayout()
        top.addWidget(self.search, 3)
        top.addWidget(self.state_combo, 1)
        top.addWidget(QLabel("Sort"))
        top.addWidget(self.sort_combo)
        top.addWidget(self.descending)
        bottom = QHBoxLayout()
        bottom.addWidget(QLabel("Class"))
        bottom.addWidget(self.class_combo, 1)
        bottom.addWidget(self.class_mode)
        bottom.addWidget(self.split_combo)
        bottom.addWidget(self.use_confidence)
        bottom.addWidget(self.min_conf)
        bottom.addWidget(QLabel("–"))
        bottom.addWidget(self.max_conf)
        bottom.addWidget(self.count_label, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 2)
        layout.setSpacing(3)
        layout.addLayout(top)
        layout.addLayout(bottom)

    def _connect(self) -> None:
        self._search_timer = QTimer(self, singleShot=True, interval=SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self._emit)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.search.returnPressed.connect(self._emit)
        for combo in (self.class_combo, self.class_mode, self.state_combo, self.split_combo,
                      self.sort_combo):
            combo.currentIndexChanged.connect(self._emit)
        self.descending.toggled.connect(self._emit)
        self.use_confidence.toggled.connect(self._confidence_toggled)
        self.min_conf.valueChanged.connect(self._emit)
        self.max_conf.valueChanged.connect(self._emit)

    # -- building the filter ---------------------------------------------------------------------
    def current_filter(self) -> gq.GalleryFilter:
        kwargs = {}
        field = self.state_combo.currentData()
        if field:
            kwargs[field] = True
        if self.use_confidence.isChecked():
            kwargs["min_confidence"] = self.min_conf.value()
            kwargs["max_confidence"] = self.max_conf.value()
        return gq.GalleryFilter(
            class_id=self.class_combo.currentData(), class_mode=self.class_mode.currentData(),
            split=self.split_combo.currentData(), search=self.search.text().strip(),
            sort=self.sort_combo.currentData(), descending=self.descending.isChecked(), **kwargs)

    def set_state(self, field: str | None) -> None:
        """Select a state entry by its GalleryFilter field (None = all images)."""
        index = self.state_combo.findData(field)
        if index >= 0:
            self.state_combo.setCurrentIndex(index)

    def set_class(self, class_id: int | None) -> None:
        index = self.class_combo.findData(class_id)
        if index >= 0:
            self.class_combo.setCurrentIndex(index)

    def show_count(self, shown: int) -> None:
        if not getattr(self, "search_problem", None):
            self.count_label.setText(f"{shown:,} shown")

    def _emit(self, *_args) -> None:
        if self._building:
            return
        self._search_timer.stop()
        if self._show_search_problem():
            return
        self.filter_changed.emit(self.current_filter())

    def _show_search_problem(self) -> str | None:
        """A search the engine cannot answer gets a red outline, the reason as its tooltip and
        in place of the count; the gallery keeps what it showed."""
        problem = search.search_problem(self.search.text(),
                                        (c.name for c in self.state.classes.values()))
        self.search_problem = problem
        self.search.setStyleSheet(INVALID_STYLE if problem else "")
        self.search.setToolTip(f"<b>{_html(problem)}</b><br>{SEARCH_HELP}" if problem
                               else SEARCH_HELP)
        if problem:
            self.count_label.setText("⚠ " + problem)
            self.search_problem_found.emit(problem)
            if self.search.hasFocus():
                QToolTip.showText(self.search.mapToGlobal(self.search.rect().bottomLeft()),
                                  problem, self.search)
        return problem

    def _confidence_toggled(self, on: bool) -> None:
        self.min_conf.setEnabled(on)
        self.max_conf.setEnabled(on)
        self._emit()

    def _fill_classes(self) -> None:
        current = self.class_combo.currentData()
        self._building = True
        self.class_combo.clear()
        self.class_combo.addItem("Any class", None)
        for info in sorted(self.state.classes.values(), key=lambda c: c.name.lower()):
            self.class_combo.addItem(info.name, info.class_id)
        index = self.class_combo.findData(current)
        self.class_combo.setCurrentIndex(max(index, 0))
        self._building = False
        if current is not None and index < 0:
            self._emit()

    # -- persistence -----------------------------------------------------------------------------
    def save(self, settings: QSettings) -> None:
        settings.setValue("filter/state", self.state_combo.currentIndex())
        settings.setValue("filter/sort", self.sort_combo.currentIndex())
        settings.setValue("filter/descending", self.descending.isChecked())
        settings.setValue("filter/use_confidence", self.use_confidence.isChecked())
        settings.setValue("filter/min_confidence", self.min_conf.value())
        settings.setValue("filter/max_confidence", self.max_conf.value())

    def restore(self, settings: QSettings) -> None:
        self._building = True
        try:
            self.state_combo.setCurrentIndex(int(settings.value("filter/state", 0)))
            self.sort_combo.setCurrentIndex(int(settings.value("filter/sort", 0)))
            self.descending.setChecked(_as_bool(settings.value("filter/descending", False)))
            self.min_conf.setValue(float(settings.value("filter/min_confidence", 0.5)))
            self.max_conf.setValue(float(settings.value("filter/max_confidence", 1.0)))
            self.use_confidence.setChecked(_as_bool(settings.value("filter/use_confidence", False)))
        finally:
            self._building = False


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _as_bool(value) -> bool:
    return value in (True, "true", "True", 1, "1")
