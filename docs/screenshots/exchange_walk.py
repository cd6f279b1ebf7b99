"""The walk of the exchange dialogs on a folder of photos with Lightroom-style keywords (docs/screenshots/*keywords*.png, import-*.png, export-*.png): `DISPLAY=:92 python docs/screenshots/exchange_walk.py import|writeback` on a project made with `mlic add-folder`; between the two steps `mlic train` and `mlic tag` give suggestions."""
import sys, subprocess
from PySide6.QtWidgets import QApplication
from PySide6.QtCore import QSettings, QTimer, QEventLoop
from app.main_window import MainWindow
from app import exchange

OUT = "/work/wt-xmp12/docs/screenshots/"
app = QApplication(sys.argv)
settings = QSettings("/tmp/walk12/settings.ini", QSettings.Format.IniFormat)
window = MainWindow(project_dir="/tmp/walk12/project", settings=settings, offer_demo=False)
window.resize(1300, 820); window.show()

def wait(pred, ms=30000):
    loop_ms = 0
    while not pred() and loop_ms < ms:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50); QTimer.singleShot(0, lambda: None)
        import time; time.sleep(0.05); loop_ms += 50
    return pred()

wait(lambda: window.model.rowCount() == 16)
name = sys.argv[1]
if name == "import":
    d = exchange.show(window, "import-keywords")
    d.move(200, 80)
    d.exclude.setText("People, Places"); d.min_count.setValue(2)
    d.preview(); wait(lambda: not d.jobs.busy and d.table.rowCount() > 0)
    wait(lambda: False, 500)
    d.grab().save(OUT + "import-keywords.png")
    subprocess.run(["import", "-window", "root", "/tmp/walk12/import-screen.png"])
    d.run(); wait(lambda: not d.jobs.busy and d.summary.text().startswith("Imported"))
    print(d.summary.text())
elif name == "writeback":
    window.gallery.setFocus()
    ids = window.selected_image_ids()
    print("selected", ids, "shown suggestions", len(window.tag_panel.shown))
    window.accept_all()                     # the person confirms the student's suggestions
    wait(lambda: False, 800)
    shapes = window.state.class_by_name("Shapes")
    window.toggle_class(shapes.class_id)    # and toggles a class by hand (a person's tag)
    wait(lambda: False, 1500)
    window.grab().save("/tmp/walk12/after-accept.png")
    d = exchange.show(window, "write-keywords")
    d.move(200, 80)
    d.embedded.setChecked(True)
    d.preview(); wait(lambda: not d.jobs.busy)
    wait(lambda: False, 500)
    d.grab().save(OUT + "write-keywords-back.png")
    subprocess.run(["import", "-window", "root", "/tmp/walk12/write-screen.png"])
    d.run(); wait(lambda: not d.jobs.busy)
    print(d.summary.text())
    for other in ("import-csv", "import-coco", "export-csv", "export-coco"):
        e = exchange.show(window, other)
        if other.startswith("export"):
            e.path.setText(f"/tmp/walk12/tags.{'csv' if 'csv' in other else 'json'}")
            e.preview(); wait(lambda: not e.jobs.busy)
        else:
            e.path.setText("/tmp/walk12/tags.csv" if "csv" in other else "/tmp/walk12/tags.json")
        wait(lambda: False, 300)
        e.grab().save(OUT + f"{other}.png")
        e.close()
window.close()
