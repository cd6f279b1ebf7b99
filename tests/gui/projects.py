"""Small projects for GUI tests, built without intake or training: a folder of generated images
registered in bulk, classes, and (optionally) a fake active teacher/student with regions and
suggestions stored directly."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from engine.images import file_digest
from engine.store import BoxRow, Store, TagEdit

CLASSES = ("cat", "dog", "car", "tree")


def write_images(folder: Path, count: int, size: tuple[int, int] = (96, 64)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        image = Image.new("RGB", size, ((i * 37) % 255, (i * 91) % 255, (i * 53) % 255))
        ImageDraw.Draw(image).ellipse((10, 10, 40 + i % 20, 40), fill=(255, 255, 255))
        path = folder / f"img_{i:03d}.jpg"
        image.save(path, quality=85)
        paths.append(path)
    return paths


def register(store: Store, folder: Path, paths: list[Path], split: str = "train") -> list[int]:
    """Register files as readable images (what intake would do, without probing)."""
    root = store.roots.get_or_create(folder)
    rows = []
    for path in paths:
        with Image.open(path) as image:
            width, height = image.size
        rows.append({"root_id": root.id, "rel_path": path.relative_to(folder).as_posix(),
                     "content_hash": file_digest(path), "file_size": path.stat().st_size,
                     "width": width, "height": height, "split": split})
    return store.images.add_many(rows)


def fake_models(store: Store) -> tuple[str, str]:
    """A completed teacher and student run, so the registry reports them active."""
    versions = []
    for stage in ("teacher", "student"):
        run = store.runs.create(stage, {"fake": True}, list(CLASSES))
        store.runs.update(run.id, status="completed", finished=True)
        versions.append(run.model_version)
    return versions[0], versions[1]


def build_project(root: Path, count: int = 12, models: bool = True) -> dict:
    """A project under `root/project` with `count` images in `root/photos`, classes, a few tags
    and, with `models`, student suggestions and teacher regions on every image."""
    store = Store.open(root / "project")
    folder = root / "photos"
    ids = register(store, folder, write_images(folder, count))
    classes = {c.name: c.id for c in store.classes.ensure(CLASSES)}
    store.tags.apply([TagEdit(ids[0], classes["cat"], "positive")], source="import", reviewed=False)
    info = {"store": store, "ids": ids, "classes": classes, "folder": folder,
            "project": root / "project"}
    if models:
        teacher, student = fake_models(store)
        rows, boxes = [], []
        for n, image_id in enumerate(ids):
            rows += [(image_id, classes["dog"], 0.9 - 0.01 * n), (image_id, classes["car"], 0.7),
                     (image_id, classes["tree"], 0.1)]
            boxes += [BoxRow(image_id, classes["dog"], 5, 5, 40, 30, 0.8),
                      BoxRow(image_id, classes["car"], 50, 20, 30, 30, 0.3)]
        store.suggestions.replace(student, ids, rows)
        store.regions.replace(teacher, ids, boxes)
        info.update(teacher=teacher, student=student)
    return info
