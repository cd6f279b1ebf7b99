"""The File menu's exchange dialogs: keywords in and out, CSV and COCO import and export.

`show(window, name)` opens one (non-modal, one per name and window) and returns it; names:
`import-keywords`, `write-keywords`, `import-csv`, `import-coco`, `export-csv`, `export-coco`.
"""

from __future__ import annotations

from PySide6.QtWidgets import QDialog

NAMES = ("import-keywords", "write-keywords", "import-csv", "import-coco", "export-csv",
         "export-coco")


def make(state, name: str, parent=None) -> QDialog:  # noqa: ANN001
    from app.exchange.keywords_dialogs import ImportKeywordsDialog, WriteBackDialog
    from app.exchange.table_dialogs import TableExportDialog, TableImportDialog

    if name == "import-keywords":
        return ImportKeywordsDialog(state, parent)
    if name == "write-keywords":
        return WriteBackDialog(state, parent)
    verb, kind = name.split("-")
    cls = TableImportDialog if verb == "import" else TableExportDialog
    return cls(state, kind, parent)


def show(window, name: str) -> QDialog:  # noqa: ANN001
    """Open (or raise) the window's dialog `name`."""
    open_dialogs = getattr(window, "_exchange_dialogs", None)
    if open_dialogs is None:
        open_dialogs = {}
        window._exchange_dialogs = open_dialogs
    dialog = open_dialogs.get(name)
    if dialog is None:
        dialog = open_dialogs[name] = make(window.state, name, window)
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog
