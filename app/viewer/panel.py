"""The review view: the large image with the active teacher's regions, a per-class toggle for each
class that has regions, a score slider, and zoom buttons. The image is decoded in the pool."""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.state import ProjectState
from app.viewer.flow_layout import FlowLayout
from app.viewer.image_view import ImageView
from app.viewer.on_demand import RegionsOnDemand
from engine.store.queries import ImageDetail, image_detail

VIEW_MAX_SIDE = 4096      # decode at most this long side for the viewer (zoom still works)
VERSION_LINE_MAX = 420    # pixels of the viewer's "regions of ..." line before it wraps
SHOWN_UNDER = 3           # classes under the score slider named in the viewer's line (all: tooltip)


def load_for_view(path: str, max_side: int = VIEW_MAX_SIDE) -> tuple[QImage, tuple[int, int]]:
    """Decode an image for the viewer (pool thread): (QImage, original size)."""
    from engine.images import load_rgb

    rgb = load_rgb(path, max_side=max_side)
    data = rgb.tobytes()
    image = QImage(data, rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888).copy()
    return image, tuple(rgb.info.get("original_size", rgb.size))


def colour_icon(colour: QColor, size: int = 12) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(colour)
    return QIcon(pixmap)


class ViewerPanel(QWidget):
    """Shows one `ImageDetail`. `image_loaded(image_id)` fires once its pixels are shown."""

    image_loaded = Signal(int)

    def __init__(self, state: ProjectState, settings: QSettings, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.settings = settings
        self.detail: ImageDetail | None = None
        self._request = 0
        self.hidden: set[int] = set()
        self.on_demand = RegionsOnDemand(state.workers, self)
        self.on_demand.ready.connect(self._regions_computed)
        self.view = ImageView()
        self.show_regions = QCheckBox("Regions", checked=True, toolTip=(
            "Show the teacher's regions: where the detector found each class (R)"))
        self.best_only = QCheckBox("Best only", checked=True, toolTip=(
            "Show only each class's highest-scoring region (the evidence for its tag)"))
        self.slider = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100)
        self.slider.setToolTip("Hide regions whose teacher score is below this value")
        self.slider.setMinimumWidth(90)
        self.slider.setMaximumWidth(180)
        self.slider.setObjectName("scoreSlider")
        self.score_label = QLabel()
        self.score_label.setMinimumWidth(34)
        self.class_box = QWidget()
        self.class_bar = FlowLayout(self.class_box)
        self.class_buttons: dict[int, QToolButton] = {}
        self.version_label = QLabel()
        self.version_label.setObjectName("versionLabel")
        self.version_label.setStyleSheet("color: gray; padding-left: 4px;")
        self.version_label.setWordWrap(True)
        self.class_bar.addWidget(self.version_label)
        self.on_demand.failed.connect(self._set_version_text)
        fit = QToolButton(text="Fit", toolTip="Fit the image to the view (Ctrl+0)")
        fit.clicked.connect(self.view.fit)
        one = QToolButton(text="1:1", toolTip="Actual size (Ctrl+1)")
        one.clicked.connect(self.view.actual_size)
        self.zoom_label = QLabel()
        self._lay_out(fit, one)
        self.view.zoom_changed.connect(lambda z: self.zoom_label.setText(f"{z * 100:.0f}%"))
        self.slider.valueChanged.connect(self._filter_changed)
        self.show_regions.toggled.connect(self._filter_changed)
        self.best_only.toggled.connect(self._filter_changed)
        self.slider.setValue(int(float(settings.value("viewer/min_score", 0.2)) * 100))
        self.show_regions.setChecked(settings.value("viewer/show_regions", "true") in
                                     (True, "true"))
        self.best_only.setChecked(settings.value("viewer/best_only", "true") in (True, "true"))
        self._hidden_names = set(settings.value("viewer/hidden_classes", []) or [])
        self.view.clear("No image selected")
        state.classes_changed.connect(self._rebuild_regions)

    def _lay_out(self, fit: QToolButton, one: QToolButton) -> None:
        bar = QHBoxLayout()
        bar.addWidget(self.show_regions)
        bar.addWidget(self.best_only)
        bar.addWidget(QLabel("min score"))
        bar.addWidget(self.slider)
        bar.addWidget(self.score_label)
        bar.addStretch(1)
        bar.addWidget(self.zoom_label)
        bar.addWidget(fit)
        bar.addWidget(one)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(bar)
        layout.addWidget(self.class_box)
        layout.addWidget(self.view, 1)

    @property
    def min_score(self) -> float:
        return self.slider.value() / 100.0

    # -- content ---------------------------------------------------------------------------------
    def show_detail(self, detail: ImageDetail | None) -> None:
        """Show an image; regions and toggles are refreshed even when it is the same image."""
        same_image = (detail is not None and self.detail is not None
                      and detail.image_id == self.detail.image_id and self.view.has_image())
        self.detail = detail
        if detail is None:
            self.state.workers.cancel(self._request)
            self.on_demand.cancel()
            self.view.clear("No image selected")
            self._rebuild_toggles()
            return
        if same_image:
            self._rebuild_regions()
            return
        if detail.status == "unreadable":
            self.view.clear(f"Cannot show this file: {detail.reason or 'unreadable'}")
            self._rebuild_toggles()
            return
        self.view.clear("Loading…")
        image_id = detail.image_id
        self._request = self.state.workers.pool(
            load_for_view, detail.path, key="viewer-image", priority=1 << 30,
            on_done=lambda result: self._loaded(image_id, result),
            on_error=lambda exc: self.view.clear(f"Cannot show this file: "
                                                 f"{getattr(exc, 'reason', exc)}"))

    def _loaded(self, image_id: int, result) -> None:
        if self.detail is None or self.detail.image_id != image_id:
            return
        image, original = result
        self.view.set_image(image, original)
        self._rebuild_regions()
        self.image_loaded.emit(image_id)
        if self.on_demand.request(self.detail):
            self._set_version_text(f"computing the regions of {self.detail.versions.teacher}…")

    def _regions_computed(self, image_id: int) -> None:
        """The teacher's regions of `image_id` were just stored: show them if it is still here."""
        if self.detail is not None and self.detail.image_id == image_id:
            self.state.workers.db(image_detail, image_id, self.state.versions,
                                  key="viewer-regions", on_done=self._fresh_detail)

    def _fresh_detail(self, detail: ImageDetail) -> None:
        if self.detail is not None and detail.image_id == self.detail.image_id:
            self.show_detail(detail)

    def _rebuild_regions(self) -> None:
        self._hidden_from_names()
        if self.detail is not None and self.view.has_image():
            names = {cid: info.name for cid, info in self.state.classes.items()}
            colours = {cid: info.qcolor for cid, info in self.state.classes.items()}
            self.view.set_regions(self.detail.regions, names, colours)
        self._rebuild_toggles()
        self._filter_changed()
        self._show_regions_text()

    def _set_version_text(self, text: str) -> None:
        """One line as wide as the text, up to `VERSION_LINE_MAX` pixels, then wrapped: a long
        line never makes the panel (and so the window) wider."""
        self.version_label.setText(text)
        width = self.version_label.fontMetrics().horizontalAdvance(text) + 12
        self.version_label.setMinimumWidth(min(width, VERSION_LINE_MAX))

    def _show_regions_text(self) -> None:
        text, under = self._regions_text()
        self._set_version_text(text)
        self.version_label.setToolTip(
            f"Every region under {self.min_score:.2f}:\n" + "\n".join(under) if under else "")

    def _regions_text(self) -> tuple[str, list[str]]:
        """Whose regions these are, and the classes whose every region is under the slider (said,
        since nothing is drawn for them): the `SHOWN_UNDER` best in the text, all of them (best
        first) as the second item, for the tooltip; a project of 40 classes lists dozens."""
        versions = self.detail.versions if self.detail else None
        if not versions or not versions.teacher:
            return "no teacher model yet: no regions", []
        best: dict[int, float] = {}
        for region in self.detail.regions:
            best[region.class_id] = max(best.get(region.class_id, 0.0), region.score)
        under = [f"{self.state.class_name(c)} {score:.2f}"
                 for c, score in sorted(best.items(), key=lambda item: -item[1])
                 if score < self.min_score]
        named = ", ".join(under[:SHOWN_UNDER])
        if len(under) > SHOWN_UNDER:
            named += f" and {len(under) - SHOWN_UNDER} more"
        text = f"regions of {versions.teacher}"
        if self.detail.regions and len(under) == len(best):
            return f"{text}: every region is under {self.min_score:.2f} ({named})", under
        if under:
            return f"{text}; under {self.min_score:.2f}: {named}", under
        return text, under

    def _rebuild_toggles(self) -> None:
        for button in self.class_buttons.values():
            self.class_bar.removeWidget(button)
            button.deleteLater()
        self.class_buttons = {}
        if self.detail is None:
            return
        best: dict[int, float] = {}
        for region in self.detail.regions:                 # best first
            best.setdefault(region.class_id, region.score)
        seen = [c for c, score in best.items() if score >= self.min_score]
        for class_id in seen:
            info = self.state.classes.get(class_id)
            button = QToolButton(text=info.name if info else str(class_id), checkable=True)
            button.setChecked(class_id not in self.hidden)
            if info is not None:
                button.setIcon(colour_icon(info.qcolor))
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            button.setToolTip("Show or hide this class's regions")
            button.toggled.connect(lambda on, c=class_id: self.toggle_class(c, on))
            self.class_bar.insertWidget(self.class_bar.count() - 1, button)
            self.class_buttons[class_id] = button

    def toggle_class(self, class_id: int, visible: bool) -> None:
        (self.hidden.discard if visible else self.hidden.add)(class_id)
        button = self.class_buttons.get(class_id)
        if button is not None and button.isChecked() != visible:
            button.setChecked(visible)
        self._filter_changed()

    def highlight(self, class_id: int | None) -> None:
        """Emphasise one class's regions (hover in the tag panel); None restores all."""
        self.view.highlight(class_id)

    def _filter_changed(self, *_args) -> None:
        shown = sorted(self.class_buttons)
        wanted = sorted({r.class_id for r in (self.detail.regions if self.detail else ())
                         if r.score >= self.min_score})
        if shown != wanted:
            self._rebuild_toggles()        # a toggle for each class with a region above the slider
        self.score_label.setText(f"{self.min_score:.2f}")
        if self.on_demand.busy_with is None:
            self._show_regions_text()
        self.view.filter_regions(self.hidden, self.min_score, self.show_regions.isChecked(),
                                 self.best_only.isChecked())

    def _hidden_from_names(self) -> None:
        if self._hidden_names and self.state.classes:
            for cid, info in self.state.classes.items():
                if info.name in self._hidden_names:
                    self.hidden.add(cid)
            self._hidden_names = set()

    def save(self, settings: QSettings) -> None:
        settings.setValue("viewer/min_score", self.min_score)
        settings.setValue("viewer/show_regions", self.show_regions.isChecked())
        settings.setValue("viewer/best_only", self.best_only.isChecked())
        settings.setValue("viewer/hidden_classes",
                          [self.state.class_name(c) for c in sorted(self.hidden)])
