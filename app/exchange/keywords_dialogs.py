"""File > Import Keywords… and File > Write Keywords Back…: the photo library's keywords in
(`engine.exchange.xmp.import_xmp`), a person's confirmed tags out (`export_xmp`), with the
command line's options, a dry-run preview, progress and cancel.

The import's preview is the vocabulary step: every keyword with its path, how many images carry
it and what becomes of it; unticking a row leaves that keyword's hierarchy out.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidgetItem,
    QWidget,
)

from app.exchange import jobs
from app.exchange.base import ExchangeDialog


def _row(*widgets: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    layout.addStretch(1)
    return box


class ImportKeywordsDialog(ExchangeDialog):
    """Read keywords from sidecars, embedded XMP and IPTC; the vocabulary step; import."""

    action_text = "&Import"

    def __init__(self, state, parent: QWidget | None = None) -> None:
        super().__init__(state, ["Use", "Keyword", "Hierarchy", "Images", "Becomes"], parent)
        self.setWindowTitle("Import Keywords")
        self.sources = {name: QCheckBox(label, self) for name, label in
                        (("sidecar", "XMP sidecars (IMG.jpg.xmp, IMG.xmp)"),
                         ("embedded", "Embedded XMP"), ("iptc", "IPTC Keywords"))}
        for box in self.sources.values():
            box.setChecked(True)
        self.folder = QLineEdit(self)
        self.folder.setPlaceholderText("next to the images")
        self.min_count = QSpinBox(self)
        self.min_count.setRange(1, 100000)
        self.exclude = QLineEdit(self)
        self.exclude.setPlaceholderText("e.g. People, Places, Camera|Lens")
        self.merges = QLineEdit(self)
        self.merges.setPlaceholderText("e.g. kitty=cat, puss=cat")
        self.form.addRow("Read from", _row(*self.sources.values()))
        self.form.addRow("Mirrored sidecars under", self.folder)
        self.form.addRow("Minimum images per keyword", self.min_count)
        self.form.addRow("Leave out hierarchies", self.exclude)
        self.form.addRow("Merge synonyms", self.merges)

    def options(self):
        from engine.exchange.vocabulary import VocabularyOptions

        excluded = [p.strip() for p in self.exclude.text().split(",") if p.strip()]
        for r in range(self.table.rowCount()):
            use = self.table.item(r, 0)
            if use is not None and use.checkState() == Qt.CheckState.Unchecked:
                excluded.append(self.table.item(r, 2).text())
        merges = {}
        for item in self.merges.text().split(","):
            old, sep, new = item.partition("=")
            if sep and old.strip() and new.strip():
                merges[old.strip()] = new.strip()
        return VocabularyOptions(self.min_count.value(), list(dict.fromkeys(excluded)), merges)

    def chosen_sources(self) -> tuple[str, ...]:
        return tuple(name for name, box in self.sources.items() if box.isChecked())

    def preview(self) -> None:
        self.start("Reading keywords", jobs.keywords_import, self.folder.text().strip(),
                   self.chosen_sources(), self.options(), True, on_done=self.show_preview)

    def run(self) -> None:
        self.start("Importing keywords", jobs.keywords_import, self.folder.text().strip(),
                   self.chosen_sources(), self.options(), False, on_done=self.imported)

    def show_preview(self, summary) -> None:
        self.last_result = summary
        entries = summary.vocabulary.entries if summary.vocabulary else []
        self.table.setRowCount(len(entries))
        for r, entry in enumerate(entries):
            use = QTableWidgetItem()
            use.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            use.setCheckState(Qt.CheckState.Unchecked if entry.status == "excluded"
                              else Qt.CheckState.Checked)
            self.table.setItem(r, 0, use)
            for c, text in enumerate((entry.name, "|".join(entry.path), str(entry.count),
                                      entry.status), start=1):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.summary.setText(summary.summary())

    def imported(self, summary) -> None:
        self.last_result = summary
        self.summary.setText("Imported: " + summary.summary())
        self.state.reload_classes()
        self.state.notify_images_changed()
        self.state.refresh_counts()


class WriteBackDialog(ExchangeDialog):
    """Write the project's tags back: existing sidecars, or embedded metadata (opt-in)."""

    action_text = "&Write"

    def __init__(self, state, parent: QWidget | None = None) -> None:
        super().__init__(state, ["File", "Where", "Added", "Removed"], parent)
        self.setWindowTitle("Write Keywords Back")
        self.folder = QLineEdit(self)
        self.folder.setPlaceholderText("next to the images (each image's existing sidecar)")
        self.embedded = QCheckBox("Write into the image files that already carry keywords "
                                  "(XMP and IPTC; image data untouched)", self)
        self.backup = QCheckBox("Back up every changed file first (undo below)", self)
        self.backup.setChecked(True)
        self.undo_button = QPushButton("&Undo Last Write-Back", self)
        self.undo_button.clicked.connect(self.undo)
        self.form.addRow("Sidecars into folder", self.folder)
        self.form.addRow("", self.embedded)
        self.form.addRow("", _row(self.backup, self.undo_button))

    def _args(self, dry_run: bool) -> tuple:
        return (self.folder.text().strip(), self.embedded.isChecked(), self.backup.isChecked(),
                dry_run)

    def preview(self) -> None:
        self.start("Planning write-back", jobs.keywords_writeback, *self._args(True),
                   on_done=self.show_plan)

    def run(self) -> None:
        self.start("Writing keywords", jobs.keywords_writeback, *self._args(False),
                   on_done=self.written)

    def undo(self) -> None:
        self.start("Undoing write-back", jobs.keywords_undo,
                   on_done=lambda text: self.summary.setText(text))

    def show_plan(self, summary) -> None:
        self.last_result = summary
        self.fill([[str(a.target), a.kind + (" (new)" if a.creates else ""),
                    ", ".join(a.added), ", ".join(a.removed)] for a in summary.actions])
        self.summary.setText(summary.summary())

    def written(self, summary) -> None:
        self.show_plan(summary)
        if summary.backup is not None:
            self.summary.setText(summary.summary() + f"; backup in {summary.backup}")
