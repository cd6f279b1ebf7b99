"""Capture the screenshots in this folder from a real window on an X server (e.g. Xvfb).

    Xvfb :99 -screen 0 1600x1000x24 &
    DISPLAY=:99 python docs/screenshots/capture.py --project PROJECT [--out docs/screenshots]
        [--shots gallery,review,dark,classes,shortcuts,loop,docks,per-class]

PROJECT is a project with the demo data imported and a trained teacher and student (regions and
suggestions stored), e.g. built with `mlic demo`, `mlic import-coco`, `mlic train --stage all`,
`mlic detect` and `mlic tag`; for the committed shots the tags of the val and test images were
removed afterwards, as for a newly added folder, so that their suggestions are pending. The
`loop` shot (the Review loop dock: queue and validation figures over rounds) wants a project
with several training rounds, e.g. one kept by `benchmarks/review_loop.py --keep DIR`
(DIR/seed-0/project-mistakes). The `docks` shots show the window at its default size (1400x860)
with the Training dock and then the Review loop dock (Rounds) open, light and dark
(`window-training[-dark].png`, `window-review-loop[-dark].png`). The `per-class` shot shows
the Review loop dock's Per class tab (a class's precision-recall curve, the prediction heat map)
in the default-size window (`per-class.png`). The main window is shown full-screen; the screen is captured with
ImageMagick's `import -window root` when available (else `QScreen.grabWindow`), dialogs with
`QWidget.grab()`.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QDockWidget  # noqa: E402


def wait(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_until(predicate, timeout_ms: int = 30000) -> None:
    waited = 0
    while not predicate() and waited < timeout_ms:
        wait(50)
        waited += 50


SHOTS = ("gallery", "review", "dark", "classes", "shortcuts", "loop", "docks", "per-class")


def capture_docks(window, out: Path) -> None:
    """The default-size window with the Training dock, then the Review loop dock, light and
    dark: what a person sees on a first start with those docks open."""
    from app.style import switch_theme

    docks = window.loop_docks
    window.showNormal()
    window.setGeometry(0, 0, 1400, 860)
    window.splitter.setSizes([560, 540])
    window._default_dock_sizes()
    window.filters.set_state(None)
    window.gallery.select_row(3)
    for theme in ("light", "dark"):
        switch_theme(window.settings, theme)
        suffix = "" if theme == "light" else "-dark"
        for dock, name in ((docks.training_dock, "training"), (docks.review_dock, "review-loop")):
            dock.show()
            dock.raise_()
            if dock is docks.review_dock:
                docks.review.tabs.setCurrentIndex(2)
                docks.review.refresh()
            else:                                       # the curves of the last run
                charts = docks.training.charts
                wait_until(lambda: charts.history.rowCount() > 0)
                charts.history.clearSelection()
                charts.history.selectRow(charts.history.rowCount() - 1)
                charts.setCurrentIndex(0)
            wait(2500)
            window.grab().save(str(out / f"window-{name}{suffix}.png"))
    switch_theme(window.settings, "light")


def capture_per_class(window, target: Path, class_name: str | None = None) -> None:
    """The default-size window with the Review loop dock on its Per class tab: the curve of a
    class with positives (`class_name`, else the first), the prediction heat map beside it."""
    docks = window.loop_docks
    window.showNormal()
    window.setGeometry(0, 0, 1400, 860)
    window.splitter.setSizes([560, 540])
    window._default_dock_sizes()
    window.resizeDocks([docks.review_dock], [430], Qt.Orientation.Vertical)
    docks.review_dock.show()
    docks.review_dock.raise_()
    tab = docks.review.per_class_tab
    docks.review.tabs.setCurrentWidget(tab)
    wait_until(lambda: tab.views is not None and docks.review.job is None, timeout_ms=300000)
    names = tab.views.class_names
    tab.class_combo.setCurrentIndex(names.index(class_name) if class_name in names else 0)
    wait(2500)
    window.grab().save(str(target))


def capture_loop(app: QApplication, window, gallery_width: int, target: Path) -> None:
    """The Review loop dock under the gallery: the most-uncertain queue on the left of the
    window, the validation figures over rounds and the model versions in the dock."""
    docks = window.loop_docks
    panel = docks.review
    docks.review_dock.show()
    docks.review_dock.raise_()
    window.resizeDocks([docks.review_dock], [int(window.height() * 0.42)], Qt.Orientation.Vertical)
    window.splitter.setSizes([gallery_width * 5 // 10, gallery_width * 5 // 10])
    panel.refresh()
    panel.set_order("uncertain")
    panel.build_queue()
    wait_until(lambda: panel.queue_list.count() > 0)
    window.filters.set_state(None)
    window.gallery.select_image(panel.queue_list.item(0).data(Qt.ItemDataRole.UserRole))
    panel.tabs.setCurrentIndex(2)                       # Rounds
    wait_until(lambda: bool(panel.rounds))
    panel.evaluate_missing()                            # rounds trained without evaluation
    wait_until(lambda: all(not math.isnan(r.CF1) for r in panel.rounds), timeout_ms=300000)
    wait(2500)
    capture_screen(app, target)


def capture_screen(app: QApplication, target: Path) -> None:
    if shutil.which("import"):
        subprocess.run(["import", "-window", "root", str(target)], check=True)
    else:
        app.primaryScreen().grabWindow(0).save(str(target))


def pick_review_image(project: Path) -> int | None:
    """An image whose best pending suggestion is backed by a strong teacher region of its class
    (the case the review view is for), preferring images with several objects."""
    from engine.store import queries as gq
    from engine.store import Store

    store = Store.open(project)
    try:
        versions = gq.active_versions(store)
        thresholds = {c.id: c.threshold for c in store.classes.list()}
        best, best_key = None, -1.0
        for image_id in gq.query_ids(store, gq.GalleryFilter(has_suggestions=True), versions):
            detail = gq.image_detail(store, image_id, versions)
            decided = {t.class_id for t in detail.tags}
            pending = [s for s in detail.suggestions if s.class_id not in decided
                       and s.confidence >= thresholds[s.class_id]]
            regions = {}
            for region in detail.regions:
                regions.setdefault(region.class_id, region.score)
            backed = [regions.get(s.class_id, 0.0) for s in pending]
            if not backed or min(backed) < 0.5:
                continue
            key = min(backed) + 0.2 * len(pending)
            if key > best_key:
                best, best_key = image_id, key
        return best
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True, type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--image", type=int, help="image id for the review shot")
    parser.add_argument("--per-class", help="the class shown in the per-class shot")
    parser.add_argument("--shots", default=",".join(SHOTS),
                        help=f"which shots, comma-separated (default: {','.join(SHOTS)})")
    args = parser.parse_args()
    shots = {s.strip() for s in args.shots.split(",") if s.strip()}
    if shots - set(SHOTS):
        parser.error(f"unknown shots {sorted(shots - set(SHOTS))}; use {', '.join(SHOTS)}")
    app = QApplication(sys.argv[:1])
    app.setApplicationName("mlic-gui")

    from app.icons import icon
    from app.main_window import MainWindow
    from app.style import apply_style, switch_theme

    app.setWindowIcon(icon("mlic"))
    apply_style(app, "light")
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(project_dir=args.project, settings=settings, offer_demo=False)
    screen = app.primaryScreen().geometry()
    window.setGeometry(screen)
    window.show()
    wait_until(lambda: window.model.rowCount() > 0)
    wait_until(lambda: window.tag_panel.detail is not None)
    wait(2500)                                      # thumbnails
    args.out.mkdir(parents=True, exist_ok=True)

    # Review shot: an image with several suggestions and regions, one suggestion hovered.
    image_id = args.image or pick_review_image(args.project)
    for dock in window.findChildren(QDockWidget):       # other features' panels: their own shots
        if window.dockWidgetArea(dock) == Qt.DockWidgetArea.BottomDockWidgetArea:
            dock.hide()
    gallery_width = screen.width() - window.tags_dock.width()

    # Gallery: every image (tagged ones first), a wide grid.
    window.splitter.setSizes([gallery_width * 6 // 10, gallery_width * 4 // 10])
    window.gallery.select_row(4)
    wait_until(lambda: window.tag_panel.detail is not None and window.viewer.view.has_image())
    wait(2000)
    if "gallery" in shots:
        capture_screen(app, args.out / "gallery.png")

    # Review: images with pending suggestions, most confident first; one suggestion hovered.
    window.filters.set_state("has_suggestions")
    window.filters.sort_combo.setCurrentIndex(window.filters.sort_combo.findData("confidence"))
    wait(300)
    wait_until(lambda: window.model.rowCount() > 0 and not window.model.loading)
    if not (image_id and window.gallery.select_image(image_id)):
        window.gallery.select_row(0)
    window.splitter.setSizes([gallery_width * 3 // 10, gallery_width * 7 // 10])
    wait_until(lambda: window.tag_panel.detail is not None and window.viewer.view.has_image())
    wait(1500)
    if window.tag_panel.shown:
        window.tag_panel.hovered.emit(window.tag_panel.shown[0].class_id)
    wait(500)
    if "review" in shots:
        capture_screen(app, args.out / "review.png")
    window.tag_panel.hovered.emit(-1)

    # Dark theme: a multi-selection of tagged images in the bulk editor.
    switch_theme(settings, "dark")
    window.filters.set_state(None)
    window.filters.sort_combo.setCurrentIndex(window.filters.sort_combo.findData("added"))
    window.splitter.setSizes([gallery_width * 6 // 10, gallery_width * 4 // 10])
    wait(300)
    wait_until(lambda: not window.model.loading)
    window.gallery.select_row(0)
    for row in (1, 3, 4):
        index = window.model.index(row, 0)
        window.gallery.selectionModel().select(
            index, window.gallery.selectionModel().SelectionFlag.Select)
    wait(2500)
    if "dark" in shots:
        capture_screen(app, args.out / "gallery-dark.png")
    switch_theme(settings, "light")

    if "classes" in shots:
        window.show_classes()
        dialog = window._classes_dialog
        dialog.resize(760, 480)
        wait(1500)
        dialog.grab().save(str(args.out / "classes.png"))
        dialog.close()
    if "shortcuts" in shots:
        sheet = window.show_shortcuts()
        sheet.resize(560, 760)
        wait(500)
        sheet.grab().save(str(args.out / "shortcuts.png"))
        sheet.close()
    if "loop" in shots:
        capture_loop(app, window, gallery_width, args.out / "review-loop.png")
    if "docks" in shots:
        capture_docks(window, args.out)
    if "per-class" in shots:
        capture_per_class(window, args.out / "per-class.png", args.per_class)
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
