"""Every modal question and message of the app goes through these functions, so that errors are
shown the same way everywhere (a sentence, never a raw traceback) and tests can answer them."""

from __future__ import annotations

from PySide6.QtWidgets import QInputDialog, QMessageBox, QWidget

from app.workers import describe_error
from engine.errors import UserError
from engine.store.tags import class_name_problem


def show_error(parent: QWidget | None, exc: BaseException, title: str = "mlic") -> None:
    """A UserError's message; anything else as 'Something went wrong' with the details folded."""
    message, details = describe_error(exc)
    box = QMessageBox(QMessageBox.Icon.Warning if details is None else QMessageBox.Icon.Critical,
                      title, message, QMessageBox.StandardButton.Ok, parent)
    if details:
        box.setInformativeText("This is a bug; the details below help to fix it.")
        box.setDetailedText(details)
    box.exec()


def refuse_class_name(parent: QWidget | None, name: str) -> bool:
    """True, after saying why, when `name` cannot name a class (control characters, commas,
    empty); False, with nothing shown, when it can. Checked before any question or undo step."""
    problem = class_name_problem(name)
    if problem is None:
        return False
    show_error(parent, UserError(f"Invalid class name {name!r}: {problem}."), title="Class name")
    return True


def ask(parent: QWidget | None, title: str, text: str, danger: bool = False) -> bool:
    """Yes/No question; `danger` makes No the default."""
    buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
    default = QMessageBox.StandardButton.No if danger else QMessageBox.StandardButton.Yes
    icon = QMessageBox.Icon.Warning if danger else QMessageBox.Icon.Question
    box = QMessageBox(icon, title, text, buttons, parent)
    box.setDefaultButton(default)
    return box.exec() == QMessageBox.StandardButton.Yes


def get_text(parent: QWidget | None, title: str, label: str, text: str = "") -> str | None:
    value, ok = QInputDialog.getText(parent, title, label, text=text)
    return value.strip() if ok and value.strip() else None


def get_item(parent: QWidget | None, title: str, label: str, items: list[str]) -> str | None:
    value, ok = QInputDialog.getItem(parent, title, label, items, 0, False)
    return value if ok and value else None


def inform(parent: QWidget | None, title: str, text: str) -> None:
    QMessageBox.information(parent, title, text)


def ask_without_teacher(parent: QWidget, reason: str) -> str:
    """'without' (train the student without distillation), 'teacher' (train the teacher, then
    the student) or 'cancel'."""
    box = QMessageBox(QMessageBox.Icon.Question, "Student without a teacher", reason,
                      parent=parent)
    without = box.addButton("Train without distillation", QMessageBox.ButtonRole.AcceptRole)
    teacher = box.addButton("Train the teacher first", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(without)
    box.exec()
    clicked = box.clickedButton()
    return "without" if clicked is without else "teacher" if clicked is teacher else "cancel"
