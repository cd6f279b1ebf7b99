"""Look and feel: the Fusion style with a palette that follows the system's dark/light scheme
(QStyleHints.colorScheme), or a theme the user picked (View > Theme: `switch_theme`); pyqtgraph
plots styled from the same palette (`style_plot`), restyled at once when the theme changes; spin
boxes and combo boxes take the mouse wheel only when they have the focus (`WheelGuard`)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QSettings, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QComboBox

THEMES = ("system", "light", "dark")

# Badge and overlay colours used by the delegate and the viewer (readable on both schemes).
TAG_BADGE = QColor("#2e7d32")
PENDING_BADGE = QColor("#ef6c00")
UNREADABLE_BADGE = QColor("#c62828")
REVIEWED_MARK = QColor("#66bb6a")
DUPLICATE_BADGE = QColor("#5c6bc0")


def is_dark(theme: str = "system") -> bool:
    """Whether `theme` resolves to a dark palette right now."""
    if theme == "dark":
        return True
    if theme == "light":
        return False
    hints = QGuiApplication.styleHints()
    return hints.colorScheme() == Qt.ColorScheme.Dark


def dark_palette() -> QPalette:
    palette = QPalette()
    window, base, text = QColor(45, 45, 48), QColor(30, 30, 32), QColor(225, 225, 225)
    disabled = QColor(127, 127, 127)
    for role, colour in (
            (QPalette.ColorRole.Window, window), (QPalette.ColorRole.WindowText, text),
            (QPalette.ColorRole.Base, base), (QPalette.ColorRole.AlternateBase, window),
            (QPalette.ColorRole.ToolTipBase, QColor(60, 60, 64)),
            (QPalette.ColorRole.ToolTipText, text), (QPalette.ColorRole.Text, text),
            (QPalette.ColorRole.Button, window), (QPalette.ColorRole.ButtonText, text),
            (QPalette.ColorRole.BrightText, QColor(255, 80, 80)),
            (QPalette.ColorRole.Link, QColor(90, 160, 255)),
            (QPalette.ColorRole.Highlight, QColor(42, 110, 200)),
            (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
            (QPalette.ColorRole.PlaceholderText, disabled),
            (QPalette.ColorRole.Mid, QColor(70, 70, 74)), (QPalette.ColorRole.Dark, QColor(25, 25, 27)),
            (QPalette.ColorRole.Light, QColor(80, 80, 84))):
        palette.setColor(role, colour)
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText,
                 QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    return palette


def apply_style(app: QApplication, theme: str = "system") -> None:
    """Fusion style with the palette of `theme` ('system' follows the OS scheme)."""
    app.setStyle("Fusion")
    app.setPalette(dark_palette() if is_dark(theme) else app.style().standardPalette())


def switch_theme(settings: QSettings, theme: str) -> None:
    """View > Theme: remember `theme` in `settings` and apply it to the running app now."""
    settings.setValue("theme", theme)
    apply_style(QApplication.instance(), theme)
    restyle_plots()


def restyle_plots() -> None:
    """Every open pyqtgraph plot takes the palette now in force (no restart needed)."""
    for widget in QApplication.allWidgets():
        if hasattr(widget, "getPlotItem") and hasattr(widget, "setBackground"):
            style_plot(widget, QApplication.palette())
            widget.viewport().update()


def follow_system_scheme(app: QApplication, current_theme) -> None:
    """Re-apply the palette when the OS switches dark/light, while the theme is 'system'.
    `current_theme` is a callable returning the theme now chosen."""
    def changed(_scheme) -> None:
        if current_theme() == "system":
            apply_style(app, "system")
            restyle_plots()

    QGuiApplication.styleHints().colorSchemeChanged.connect(changed)


def style_plot(plot, palette: QPalette | None = None) -> None:  # noqa: ANN001 - a PlotWidget
    """Plot colours from `palette` (default: the widget's; light or dark scheme) instead of
    pyqtgraph's black default; a minimum height that keeps the axes readable."""
    palette = palette if palette is not None else plot.palette()
    plot.setBackground(palette.color(QPalette.ColorRole.Base))
    text = palette.color(QPalette.ColorRole.Text)
    item = plot.getPlotItem()
    for name in ("left", "bottom", "right", "top"):
        axis = item.getAxis(name)
        axis.setPen(text)
        axis.setTextPen(text)
    item.titleLabel.setAttr("color", text.name())
    item.titleLabel.setText(item.titleLabel.text)
    plot.setMinimumHeight(140)


class WheelGuard(QObject):
    """Application-wide: a wheel over a spin box or a combo box that does not have the focus
    scrolls the form around it instead of changing the value (Epochs 1 -> 6 unnoticed). Such
    widgets get the focus by click or Tab, never by the wheel."""

    _TYPES = (QEvent.Type.Wheel, QEvent.Type.Polish)

    def eventFilter(self, watched, event) -> bool:
        kind = event.type()
        if kind not in self._TYPES or not isinstance(watched, (QAbstractSpinBox, QComboBox)):
            return False
        if kind == QEvent.Type.Polish:
            if watched.focusPolicy() == Qt.FocusPolicy.WheelFocus:
                watched.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            return False
        if watched.hasFocus():
            return False
        event.ignore()                 # ignored: the wheel goes on to the scroll area around it
        return True


def install_wheel_guard(app: QApplication) -> None:
    """Install `WheelGuard` once on `app`."""
    if app.property("mlic_wheel_guard"):
        return
    guard = WheelGuard(app)
    app.installEventFilter(guard)
    app.setProperty("mlic_wheel_guard", True)
