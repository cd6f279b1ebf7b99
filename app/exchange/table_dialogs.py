"""File > Import CSV…/COCO… and Export CSV…/COCO…: the command line's `import-csv`,
`import-coco` and `export csv|coco` as dialogs with a preview, progress and cancel."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QLineEdit,
    QPushButton,
    QWidget,
)

from app.exchange import jobs
from app.exchange.base import ExchangeDialog
from app.exchange.keywords_dialogs import _row
from engine.store.schema import SPLITS


def _path_row(dialog: QWidget, edit: QLineEdit, choose) -> QWidget:  # noqa: ANN001
    browse = QPushButton("Browse…", dialog)
    browse.clicked.connect(choose)
    edit.setMinimumWidth(420)
    return _row(edit, browse)


class TableImportDialog(ExchangeDialog):
    """Import a CSV (path,split,<class>...) or a COCO file."""

    action_text = "&Import"

    def __init__(self, state, kind: str, parent: QWidget | None = None) -> None:
        super().__init__(state, ["Class in the file", "In the project"], parent)
        self.kind = kind
        self.setWindowTitle(f"Import {kind.upper()}")
        self.path = QLineEdit(self)
        self.form.addRow(f"{kind.upper()} file", _path_row(self, self.path, self.choose_file))
        self.images = QLineEdit(self)
        self.split = QComboBox(self)
        self.split.addItems(["(keep)", *SPLITS])
        self.partial = QCheckBox("Partial labels", self)
        self.partial.setToolTip("The file does not list every class of its images: a category an "
                                "image does not carry stays unknown instead of becoming a "
                                "negative tag")
        if kind == "coco":
            self.form.addRow("Images folder", _path_row(self, self.images, self.choose_images))
            self.form.addRow("Split", self.split)
            self.form.addRow("", self.partial)

    def choose_file(self) -> None:
        pattern = "CSV files (*.csv)" if self.kind == "csv" else "COCO JSON (*.json)"
        path, _ = QFileDialog.getOpenFileName(self, self.windowTitle(), "", pattern)
        if path:
            self.path.setText(path)

    def choose_images(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Images folder")
        if folder:
            self.images.setText(folder)

    def preview(self) -> None:
        self.start("Reading file", jobs.table_file_preview, self.kind, self.path.text().strip(),
                   on_done=self.show_preview)

    def show_preview(self, names: list[str]) -> None:
        known = {c.name for c in self.state.classes.values()}
        self.fill([[name, "exists" if name in known else "new class"] for name in names])
        self.summary.setText(f"{len(names)} classes, "
                             f"{sum(1 for n in names if n not in known)} new")

    def run(self) -> None:
        split = self.split.currentText() if self.split.currentIndex() > 0 else None
        self.start(f"Importing {self.kind.upper()}", jobs.table_import, self.kind,
                   self.path.text().strip(), self.images.text().strip(), split,
                   self.partial.isChecked(), on_done=self.imported)

    def imported(self, summary) -> None:
        self.last_result = summary
        self.summary.setText("Imported: " + summary.summary())
        self.state.reload_classes()
        self.state.notify_images_changed()
        self.state.refresh_counts()


class TableExportDialog(ExchangeDialog):
    """Export the tags as CSV or COCO."""

    action_text = "&Export"

    def __init__(self, state, kind: str, parent: QWidget | None = None) -> None:
        super().__init__(state, ["Export"], parent)
        self.kind = kind
        self.setWindowTitle(f"Export {kind.upper()}")
        self.path = QLineEdit(self)
        self.form.addRow("Write to", _path_row(self, self.path, self.choose_file))

    def choose_file(self) -> None:
        pattern = "CSV files (*.csv)" if self.kind == "csv" else "COCO JSON (*.json)"
        path, _ = QFileDialog.getSaveFileName(self, self.windowTitle(), "", pattern)
        if path:
            self.path.setText(path)

    def preview(self) -> None:
        self.start("Counting", jobs.table_preview, self.kind,
                   on_done=lambda text: (self.fill([[text]]), self.summary.setText(text)))

    def run(self) -> None:
        self.start(f"Exporting {self.kind.upper()}", jobs.table_export, self.kind,
                   self.path.text().strip(), on_done=self.exported)

    def exported(self, summary) -> None:
        self.last_result = summary
        self.summary.setText(summary.summary())
