"""Gallery speed at scale: time to first paint and scroll frame times on a 100,000-image project.

    python benchmarks/gallery.py [--images 100000] [--distinct 64] [--dir DIR] [--frames 300]

Builds the project quickly: `--distinct` small JPEGs are generated once and hard-linked (or
copied, where links are not possible) under 100 sub-folders as N files; rows are bulk-inserted
(images, tags on a third of them, three student suggestions each, a fake active student). Then,
offscreen, it opens the real main window on it twice (cold thumbnail cache, then warm) and prints:

- first paint: from creating the window to the first gallery paint showing images (ms);
- first screen complete: until every visible cell has its row facts and thumbnail (ms);
- scroll: a 60 Hz timer scrolls the grid by a fixed step per tick over many thousand rows; for
  each tick the GUI-thread time (scroll + synchronous repaint) and the tick-to-tick interval,
  as median / 95th percentile / max, and the count of frames over 50 ms (stalls).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from engine.images import file_digest  # noqa: E402

CLASSES = [f"class_{k:02d}" for k in range(12)]


def build_project(root: Path, n_images: int, distinct: int, seed: int = 0) -> Path:
    """A project with `n_images` rows over `distinct` real files; returns the project folder."""
    from sqlalchemy import insert

    from engine.store import Store
    from engine.store.schema import Image as ImageRow
    from engine.store.schema import Suggestion, Tag

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    sources = root / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    facts = []
    for k in range(distinct):
        pixels = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
        pixels[12:36, 16:48] = rng.integers(0, 255, 3, dtype=np.uint8)
        path = sources / f"src_{k:03d}.jpg"
        Image.fromarray(pixels).resize((320, 240), Image.Resampling.NEAREST).save(path, quality=80)
        facts.append((path, file_digest(path), path.stat().st_size))
    photos = root / "photos"
    link = _linker()
    rows = []
    for i in range(n_images):
        folder = photos / f"{i % 100:02d}"
        if i < 100:
            folder.mkdir(parents=True, exist_ok=True)
        source, digest, size = facts[i % distinct]
        rel = f"{i % 100:02d}/img_{i:06d}.jpg"
        link(source, photos / rel)
        rows.append({"root_id": 1, "rel_path": rel, "content_hash": digest, "file_size": size,
                     "width": 320, "height": 240, "split": "train"})
    files_done = time.perf_counter()
    store = Store.open(root / "project")
    store.roots.get_or_create(photos)
    classes = [c.id for c in store.classes.ensure(CLASSES)]
    run = store.runs.create("student", {"benchmark": True}, CLASSES)
    store.runs.update(run.id, status="completed", finished=True)
    with store.engine.begin() as connection:
        connection.execute(insert(ImageRow), rows)
        tags = [{"image_id": i + 1, "class_id": classes[i % len(classes)], "positive": True,
                 "source": "import", "reviewed": False} for i in range(0, n_images, 3)]
        connection.execute(insert(Tag), tags)
        scores = rng.random((n_images, 3))
        suggestions = [{"image_id": i + 1, "class_id": classes[(i + j) % len(classes)],
                        "confidence": float(scores[i, j]), "model_version": run.model_version}
                       for i in range(n_images) for j in range(3)]
        connection.execute(insert(Suggestion), suggestions)
    store.close()
    print(f"built {n_images:,} images ({distinct} distinct files) in "
          f"{time.perf_counter() - started:.1f} s (files {files_done - started:.1f} s)")
    return root / "project"


def _linker():
    def link(source: Path, target: Path) -> None:
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    return link


def measure(project: Path, settings_file: Path, frames: int, label: str) -> dict:
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    settings = QSettings(str(settings_file), QSettings.Format.IniFormat)
    settings.clear()
    clock = QElapsedTimer()
    clock.start()
    window = MainWindow(project_dir=project, settings=settings, offer_demo=False)
    window.resize(1280, 900)
    window.show()
    gallery = window.gallery
    marks: dict[str, float] = {}

    def visible_indexes():
        model = gallery.model()
        viewport = gallery.viewport().rect()
        return [model.index(r, 0) for r in gallery.visible_rows()
                if gallery.visualRect(model.index(r, 0)).intersects(viewport)]

    def on_paint():
        if "first_paint" not in marks and gallery.model().rowCount() > 0:
            marks["first_paint"] = clock.nsecsElapsed() / 1e6

    gallery.painted.connect(on_paint)
    loop = QEventLoop()

    def check_complete():
        indexes = visible_indexes()
        model = gallery.model()
        if indexes and all(model.row_facts(i.row()) is not None and model.thumbnail(i.row())
                           is not None for i in indexes):
            marks["complete"] = clock.nsecsElapsed() / 1e6
            loop.quit()
        else:
            QTimer.singleShot(2, check_complete)

    QTimer.singleShot(0, check_complete)
    QTimer.singleShot(60000, loop.quit)
    loop.exec()

    # The batched layout goes on in the background; scroll once it has placed every item.
    bar = gallery.verticalScrollBar()
    expected = (window.model.rowCount() + gallery.columns() - 1) // gallery.columns() * \
        gallery.gridSize().height() - gallery.viewport().height()
    layout_loop = QEventLoop()

    def check_layout():
        if bar.maximum() >= expected * 0.99:
            marks["layout"] = clock.nsecsElapsed() / 1e6
            layout_loop.quit()
        else:
            QTimer.singleShot(5, check_layout)

    QTimer.singleShot(0, check_layout)
    QTimer.singleShot(30000, layout_loop.quit)
    layout_loop.exec()

    # Scroll: 60 Hz ticks, each moving the grid by about a third of a screen.
    step = max(1, gallery.viewport().height() // 3)
    work, intervals = [], []
    last = [time.perf_counter()]
    ticks = [0]
    scroll_loop = QEventLoop()

    def tick():
        now = time.perf_counter()
        intervals.append((now - last[0]) * 1000)
        last[0] = now
        started = time.perf_counter()
        bar.setValue(min(bar.maximum(), bar.value() + step))
        gallery.viewport().repaint()
        work.append((time.perf_counter() - started) * 1000)
        ticks[0] += 1
        if ticks[0] >= frames:
            scroll_loop.quit()

    timer = QTimer(interval=16)
    timer.timeout.connect(tick)
    last[0] = time.perf_counter()
    timer.start()
    scroll_loop.exec()
    timer.stop()
    rows_scrolled = gallery.visible_rows().start

    # Jump: drag the scroll bar to the middle of the project, wait for a complete screen.
    jump_loop = QEventLoop()
    started_jump = clock.nsecsElapsed() / 1e6

    def check_jump():
        indexes = visible_indexes()
        if indexes and all(model.row_facts(i.row()) is not None and model.thumbnail(i.row())
                           is not None for i in indexes):
            marks["jump"] = clock.nsecsElapsed() / 1e6 - started_jump
            jump_loop.quit()
        else:
            QTimer.singleShot(2, check_jump)

    model = gallery.model()
    bar.setValue(bar.maximum() // 2)
    QTimer.singleShot(0, check_jump)
    QTimer.singleShot(30000, jump_loop.quit)
    jump_loop.exec()
    result = {
        "label": label,
        "images": window.model.rowCount(),
        "first_paint_ms": round(marks.get("first_paint", float("nan")), 1),
        "first_screen_complete_ms": round(marks.get("complete", float("nan")), 1),
        "layout_complete_ms": round(marks.get("layout", float("nan")), 1),
        "scroll_frames": len(work),
        "scrolled_to_row": rows_scrolled,
        "frame_work_ms": _stats(work),
        "frame_interval_ms": _stats(intervals[1:]),
        "frames_over_50ms": sum(1 for t in intervals[1:] if t > 50),
        "jump_to_middle_complete_ms": round(marks.get("jump", float("nan")), 1),
        "middle_row": gallery.visible_rows().start,
        "thumbnails_decoded": window.thumbnails.decoded,
        "thumbnails_skipped": window.thumbnails.skipped,
    }
    window.close()
    app.processEvents()
    return result


STARTUP_CHILD = """
import sys, time
started = float(sys.argv[3])
sys.argv = [sys.argv[0]]
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication
app = QApplication([])
from app.main_window import MainWindow
window = MainWindow(project_dir=PROJECT, settings=QSettings(SETTINGS, QSettings.Format.IniFormat),
                    offer_demo=False)
window.resize(1280, 900)
window.show()
print("shown", (time.time() - started) * 1000, flush=True)
def painted():
    if window.model.rowCount():
        print("painted", (time.time() - started) * 1000, flush=True)
        QTimer.singleShot(0, app.quit)
window.gallery.painted.connect(painted)
app.exec()
"""


def measure_startup(project: Path, settings_file: Path) -> dict:
    """Process start to first gallery paint, as a user launching the app sees it."""
    import subprocess

    code = STARTUP_CHILD.replace("PROJECT", repr(str(project))).replace(
        "SETTINGS", repr(str(settings_file)))
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    started = time.time()
    output = subprocess.run([sys.executable, "-c", code, "x", "y", str(started)], env=env,
                            capture_output=True, text=True, timeout=120).stdout
    figures = {line.split()[0]: float(line.split()[1]) for line in output.splitlines()
               if line.split() and line.split()[0] in ("shown", "painted")}
    return {"window_shown_ms": figures.get("shown", float("nan")),
            "first_paint_ms": figures.get("painted", float("nan"))}


def _stats(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), 2),
            "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
            "max": round(ordered[-1], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=3000,
                        help="distinct image files (the rest are hard links to them)")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--dir", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="mlic-gallery-bench-"))
    project = root / "project"
    if not (project / "project.sqlite").exists():
        project = build_project(root, args.images, args.distinct)
    shutil.rmtree(project / "cache" / "thumbnails", ignore_errors=True)
    startup = measure_startup(project, root / "startup.ini")
    results = [measure(project, root / "settings.ini", args.frames, "cold thumbnail cache"),
               measure(project, root / "settings.ini", args.frames, "warm thumbnail cache")]
    print(f"\nfrom process start (python main.py --project ...): window shown "
          f"{startup['window_shown_ms']:.0f} ms, first gallery paint with images "
          f"{startup['first_paint_ms']:.0f} ms")
    for result in results:
        print(f"\n[{result['label']}] {result['images']:,} images")
        print(f"  first paint            {result['first_paint_ms']:8.1f} ms")
        print(f"  first screen complete  {result['first_screen_complete_ms']:8.1f} ms "
              f"(thumbnails and badges of every visible cell)")
        print(f"  layout of all items    {result['layout_complete_ms']:8.1f} ms (batched, "
              f"in the background)")
        work, gaps = result["frame_work_ms"], result["frame_interval_ms"]
        print(f"  scroll: {result['scroll_frames']} frames to row {result['scrolled_to_row']:,}; "
              f"GUI work per frame median {work['median']} / p95 {work['p95']} / max "
              f"{work['max']} ms; frame interval median {gaps['median']} / p95 {gaps['p95']} / "
              f"max {gaps['max']} ms; {result['frames_over_50ms']} frames over 50 ms")
        print(f"  jump to the middle (row {result['middle_row']:,}): screen complete in "
              f"{result['jump_to_middle_complete_ms']} ms")
        print(f"  thumbnails decoded {result['thumbnails_decoded']}, skipped (scrolled away) "
              f"{result['thumbnails_skipped']}")
    if args.json:
        args.json.write_text(json.dumps({"startup": startup, "runs": results}, indent=2))
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
