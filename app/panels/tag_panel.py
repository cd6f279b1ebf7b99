"""The tag panel: an image's confirmed tags, the student's suggestions with confidence bars, and a
field to add a tag (with autocomplete). With several images selected it becomes the bulk editor:
add a tag to all, or remove a tag from all, as one undoable step.

A suggestion never becomes a tag until a person accepts it: accepting records a positive tag,
rejecting a negative one (so the model learns from the "no" too), both as the person's reviewed
decision. Keyboard (wired by the main window): 1-9 accept the n-th suggestion, Space accepts all
shown at or above their threshold and `ACCEPT_FLOOR` (and says what it skipped), Delete rejects the
outlined one, ] and [ move the outline. The add-tag field gives the keys back (`typing_done`) after
a tag is added or on Escape; an unknown name asks before it creates a class.
"""

from __future__ import annotations

from PySide6.QtCore import QStringListModel, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QCompleter,
    QFrame,
    QLabel,
    QLineEdit,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import dialogs
from app.panels.tag_rows import SuggestionRow, TagChip, confidence_text
from app.state import ProjectState
from app.undo import TagEditCommand
from engine.store import TagEdit
from engine.store import queries as gq

# Space never accepts a suggestion below this confidence, whatever the class threshold says
# (a calibrated threshold can end up near zero); the number keys still can, one at a time.
ACCEPT_FLOOR = 0.05
# More "not" tags than this fold into one "Show N “not” tags" button.
FOLD_NEGATIVES = 3


class TagPanel(QWidget):
    """Edits the tags of the current image, or of the whole selection."""

    hovered = Signal(int)             # class id under the pointer, -1 for none
    typing_done = Signal()            # the add-tag field is done: give the keys back
    all_decided = Signal(int)         # the person decided the image's last shown suggestion

    def __init__(self, state: ProjectState, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.detail: gq.ImageDetail | None = None
        self.selection: list[int] = []
        self.shown: list[gq.ScoreInfo] = []
        self.current_class: int | None = None
        self.title = QLabel("No image selected")
        self.title.setWordWrap(True)
        self.title.setObjectName("tagPanelTitle")
        self.add_field = self._make_add_field()
        self._decided_image: int | None = None
        self._outline_position = 0        # kept when the outlined suggestion leaves the list
        self._negatives_open = False      # the "not" chips of an image with many of them
        self.tags_box = QVBoxLayout()
        self.tags_box.setSpacing(1)
        self.suggestion_title = QLabel("Suggestions")
        self.suggestion_title.setStyleSheet("font-weight: bold;")
        self.show_below = QCheckBox("Show below threshold")
        self.show_below.setToolTip("Also list the student's low-confidence classes")
        self.show_below.toggled.connect(lambda _on: self._rebuild())
        self.suggestions_box = QVBoxLayout()
        self.suggestions_box.setSpacing(1)
        self.notice = QLabel()
        self.notice.setObjectName("tagPanelNotice")
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("color: #e08a00;")
        self.notice.hide()
        self.hint = QLabel("1-9 accept · Space accepts all shown · ] [ move the outline · "
                           "Delete rejects the outlined one")
        self.hint.setStyleSheet("color: gray;")
        self.hint.setWordWrap(True)

        inner = QWidget()
        layout = QVBoxLayout(inner)
        layout.addWidget(self.title)
        tags_title = QLabel("Tags")
        tags_title.setStyleSheet("font-weight: bold;")
        layout.addWidget(tags_title)
        layout.addLayout(self.tags_box)
        layout.addWidget(self.add_field)
        layout.addSpacing(8)
        layout.addWidget(self.suggestion_title)
        layout.addLayout(self.suggestions_box)
        layout.addWidget(self.notice)
        layout.addWidget(self.show_below)
        layout.addWidget(self.hint)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        state.classes_changed.connect(self._classes_changed)
        self._selection_counts: dict[int, int] = {}

    def _make_add_field(self) -> QLineEdit:
        """The add-tag field with completion over the class names."""
        field = QLineEdit(placeholderText="Add a tag…  (T)")
        field.setObjectName("addTag")
        field.setToolTip("Type a class name and press Enter (a new name asks before it "
                         "creates the class); Escape gives the keys back")
        field.installEventFilter(self)
        self._names = QStringListModel(self)
        completer = QCompleter(self._names, self)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        field.setCompleter(completer)
        completer.activated[str].connect(self._completion_chosen)
        field.returnPressed.connect(self._add_from_field)
        return field

    # -- content ---------------------------------------------------------------------------------
    def set_detail(self, detail: gq.ImageDetail | None) -> None:
        """One image (or none)."""
        if detail is None or self.detail is None or detail.image_id != self.detail.image_id:
            self.notice.hide()
            self.current_class, self._outline_position = None, 0
        self.detail = detail
        self.selection = [detail.image_id] if detail else []
        self._rebuild()

    def set_selection(self, image_ids: list[int]) -> None:
        """Several images: the panel edits all of them."""
        self.selection = list(image_ids)
        if len(self.selection) > 1:
            self.detail = None
            self.state.workers.db(gq.selection_summary, self.selection, key="selection-summary",
                                  on_done=self._summary_arrived)
        self._rebuild()

    def is_bulk(self) -> bool:
        return len(self.selection) > 1

    def _summary_arrived(self, counts: dict[int, int]) -> None:
        self._selection_counts = counts
        self._rebuild()

    def _classes_changed(self) -> None:
        self._names.setStringList(sorted((c.name for c in self.state.classes.values()),
                                         key=str.lower))
        self._rebuild()

    def _rebuild(self) -> None:
        _clear(self.tags_box)
        _clear(self.suggestions_box)
        self.shown = []
        for widget in (self.show_below, self.hint):
            widget.setVisible(not self.is_bulk())
        if self.is_bulk():
            self._build_bulk()
            return
        detail = self.detail
        if detail is None:
            self.title.setText("No image selected")
            self.suggestion_title.setText("Suggestions")
            return
        status = "" if detail.status == "readable" else \
            f"<br><span style='color:#e57373'>Unreadable: {detail.reason}</span>"
        size = f"{detail.width}×{detail.height} · " if detail.width else ""
        self.title.setText(f"<b>{detail.name}</b><br><span style='color:gray'>{size}"
                           f"split {detail.split}</span>{status}")
        decided = {t.class_id for t in detail.tags}
        negatives = sum(not t.positive for t in detail.tags)
        folded = negatives > FOLD_NEGATIVES and not self._negatives_open
        for tag in sorted(detail.tags, key=lambda t: (not t.positive, self.state.class_name(
                t.class_id).lower())):
            info = self.state.classes.get(tag.class_id)
            if info is None or (folded and not tag.positive):
                continue
            chip = TagChip(info, tag.positive, tag.source if tag.reviewed else f"{tag.source}?")
            chip.setToolTip(f"Set by {tag.source}" + ("" if tag.reviewed else
                                                      "; not reviewed by a person yet"))
            chip.remove.connect(self.remove_tag)
            chip.hovered.connect(self._hover)
            self.tags_box.addWidget(chip)
        if negatives > FOLD_NEGATIVES:
            self.tags_box.addWidget(self._negatives_toggle(negatives))
        if not detail.tags:
            self.tags_box.addWidget(QLabel("<span style='color:gray'>No tags yet</span>"))
        version = detail.versions.student
        self.suggestion_title.setText(f"Suggestions ({version})" if version else
                                      "Suggestions (no student model yet)")
        for suggestion in detail.suggestions:
            info = self.state.classes.get(suggestion.class_id)
            if info is None or suggestion.class_id in decided:
                continue
            below = suggestion.confidence < info.threshold
            if below and not self.show_below.isChecked():
                continue
            self.shown.append(suggestion)
            row = SuggestionRow(len(self.shown), info, suggestion.confidence, info.threshold, below)
            row.accept.connect(lambda c: self.decide([c], "positive"))
            row.reject.connect(lambda c: self.decide([c], "negative"))
            row.hovered.connect(self._hover)
            row.clicked.connect(self._set_current)
            self.suggestions_box.addWidget(row)
        if not self.shown:
            self.suggestions_box.addWidget(QLabel("<span style='color:gray'>Nothing pending"
                                                  "</span>"))
        self._keep_outline(detail.image_id)

    def _negatives_toggle(self, count: int) -> QToolButton:
        """Shows or hides the image's "not" chips (an exhaustive import gives every image one per
        class it lacks); the choice stays for the next images."""
        button = QToolButton(checkable=True, checked=self._negatives_open, autoRaise=True)
        button.setObjectName("negativesToggle")
        button.setText(f"Hide the {count} “not” tags" if self._negatives_open
                       else f"Show {count} “not” tags")
        button.setToolTip("Classes decided as absent on this image (rejected, or from an "
                          "exhaustive import)")
        button.toggled.connect(self._set_negatives_open)
        return button

    def _set_negatives_open(self, opened: bool) -> None:
        self._negatives_open = opened
        QTimer.singleShot(0, self, self._rebuild)      # not inside the button's own signal

    def _keep_outline(self, image_id: int) -> None:
        """The outline stays where it was; `all_decided` once the person emptied the list."""
        shown_ids = [s.class_id for s in self.shown]
        if self.current_class not in shown_ids:
            position = min(self._outline_position, len(shown_ids) - 1)
            self.current_class = shown_ids[position] if shown_ids else None
        self._mark_current()
        if self._decided_image == image_id and not self.shown:
            self._decided_image = None
            self.all_decided.emit(image_id)

    def _build_bulk(self) -> None:
        count = len(self.selection)
        self.title.setText(f"<b>{count:,} images selected</b><br><span style='color:gray'>"
                           "Adding or removing a tag applies to all of them (one undo step)</span>")
        self.suggestion_title.setText("")
        for class_id, n in sorted(self._selection_counts.items(),
                                  key=lambda kv: self.state.class_name(kv[0]).lower()):
            info = self.state.classes.get(class_id)
            if info is None:
                continue
            chip = TagChip(info, True, f"{n:,} of {count:,}")
            chip.remove.connect(self.remove_tag)
            self.tags_box.addWidget(chip)

    def _set_current(self, class_id: int) -> None:
        self.current_class = class_id
        self._mark_current()

    def move_current(self, delta: int) -> bool:
        """Move the outline to the next (+1) or previous (-1) shown suggestion, wrapping."""
        if self.is_bulk() or not self.shown:
            return False
        ids = [s.class_id for s in self.shown]
        position = ids.index(self.current_class) if self.current_class in ids else -delta
        self._set_current(ids[(position + delta) % len(ids)])
        return True

    def _mark_current(self) -> None:
        ids = [s.class_id for s in self.shown]
        if self.current_class in ids:
            self._outline_position = ids.index(self.current_class)
        for n in range(self.suggestions_box.count()):
            widget = self.suggestions_box.itemAt(n).widget()
            if isinstance(widget, SuggestionRow):
                widget.set_current(widget.class_id == self.current_class)

    def _hover(self, class_id: int) -> None:
        self.hovered.emit(class_id)

    # -- actions (also bound to keys by the main window) -----------------------------------------
    def accept_nth(self, number: int) -> bool:
        """Accept the number-th shown suggestion (1-based)."""
        if self.is_bulk() or not 1 <= number <= len(self.shown):
            return False
        self.decide([self.shown[number - 1].class_id], "positive")
        return True

    def accept_all_shown(self) -> bool:
        """Accept the shown suggestions at or above their class threshold and `ACCEPT_FLOOR`;
        the notice names those left for the person to decide one by one."""
        if self.is_bulk() or not self.shown:
            return False
        ok, skipped = [], []
        for suggestion in self.shown:
            info = self.state.classes.get(suggestion.class_id)
            threshold = info.threshold if info else 0.0
            floor = max(threshold, ACCEPT_FLOOR)
            (ok if suggestion.confidence >= floor else skipped).append(suggestion)
        if skipped:
            names = ", ".join(f"{self.state.class_name(s.class_id)} "
                              f"({confidence_text(s.confidence)})" for s in skipped)
            self.notice.setText(f"Space left {len(skipped)} low-confidence suggestion(s) "
                                f"undecided: {names}. Below the class threshold or "
                                f"{ACCEPT_FLOOR:.2f}, accept each with its number key.")
            self.notice.show()
        if not ok:
            return False
        self.decide([s.class_id for s in ok], "positive", text=f"Accept {len(ok)} suggestions")
        return True

    def reject_current(self) -> bool:
        if self.is_bulk() or self.current_class is None:
            return False
        self.decide([self.current_class], "negative")
        return True

    def decide(self, class_ids: list[int], state: str, text: str | None = None) -> None:
        """Record the person's decision for classes of the current image."""
        if self.detail is None:
            return
        image_id = self.detail.image_id
        self._decided_image = image_id
        names = ", ".join(self.state.class_name(c) for c in class_ids)
        verb = "Accept" if state == "positive" else "Reject" if state == "negative" else "Remove"
        self.state.undo_stack.push(TagEditCommand(
            self.state, text or f"{verb} {names}",
            [TagEdit(image_id, class_id, state) for class_id in class_ids]))

    def remove_tag(self, class_id: int) -> None:
        ids = self.selection
        if not ids:
            return
        self.state.undo_stack.push(TagEditCommand(
            self.state, f"Remove {self.state.class_name(class_id)}"
                        + (f" from {len(ids):,} images" if len(ids) > 1 else ""),
            [TagEdit(image_id, class_id, None) for image_id in ids]))

    def add_tag(self, name: str) -> None:
        """Add a positive tag to the current image or every selected one (new names create the
        class)."""
        name = name.strip()
        ids = list(self.selection)
        if not name or not ids:
            return
        info = self.state.class_by_name(name)
        label = f"Add {info.name if info else name}" + (f" to {len(ids):,} images"
                                                         if len(ids) > 1 else "")
        if info is not None:
            edits = [TagEdit(image_id, info.class_id, "positive") for image_id in ids]
            self.state.undo_stack.push(TagEditCommand(self.state, label, edits))
            return
        if dialogs.refuse_class_name(self, name):
            return
        if not dialogs.ask(self, "New class", f"There is no class {name!r}. Create it and add the "
                                              "tag?\n\nEnter creates it; Escape keeps the classes "
                                              "as they are."):
            return

        def plan(store, name=name, ids=ids):
            class_id = store.classes.ensure([name])[0].id
            return [TagEdit(image_id, class_id, "positive") for image_id in ids]

        self.state.undo_stack.push(TagEditCommand(self.state, label, plan, ids))
        self.state.reload_classes()

    def _add_from_field(self) -> None:
        text = self.add_field.text()
        self.add_field.clear()
        if text.strip():
            self.add_tag(text)
            self.typing_done.emit()

    def _completion_chosen(self, text: str) -> None:
        """A completion chosen from the list is added at once; the field empties after the line
        edit has copied the completion into itself."""
        if not text.strip():
            return
        self.add_field.clear()
        QTimer.singleShot(0, self.add_field, self.add_field.clear)
        self.add_tag(text)
        self.typing_done.emit()

    def eventFilter(self, watched, event) -> bool:
        if (watched is self.add_field and event.type() == event.Type.KeyPress
                and event.key() == Qt.Key.Key_Escape):
            popup = self.add_field.completer().popup() if self.add_field.completer() else None
            if popup is None or not popup.isVisible():
                self.add_field.clear()
                self.typing_done.emit()
                return True
        return super().eventFilter(watched, event)

    def focus_add_field(self) -> None:
        self.add_field.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.add_field.selectAll()


def _clear(layout) -> None:
    while layout.count():
        item = layout.takeAt(0)
        widget = item.widget()
        if widget is not None:
            widget.hide()
            widget.deleteLater()
