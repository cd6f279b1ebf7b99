"""COCO import and export (read through pycocotools).

Import (`import_coco(store, json_path, images_dir, split=None, partial=False)`):

- `categories` become classes (by name). Our own optional category field `"parent"` (a category
  name) restores a class hierarchy; plain COCO's `supercategory` is ignored.
- `images[].file_name` is looked up under `images_dir`; found files are registered through
  intake (hashed, probed), missing ones are listed in the summary and skipped.
- `annotations` (instances) become image-level **positive** tags, source 'import'. Their `bbox`
  values are stored only as evaluation ground truth (`store.boxes`), never used for training.
  Re-importing replaces the ground-truth boxes of those images (idempotent).
- The image-level labels field below is read when present, so images without boxes keep their tags.
- COCO is exhaustive: every category of the file that an image does not carry (nor a descendant
  of it) becomes a **negative** tag of that image (docs/label-states.md), unless `partial=True`
  (`mlic import-coco --partial`: such categories stay unknown) or the image carries our
  `negative_labels` field, which then lists its negatives exactly (so an export round-trips its
  unknown pairs).
- The split comes from `split=`, else from our optional image field `"split"`.

Image-level labels field (plain COCO has none). Each entry of `images` may carry:

    "labels":          [category ids present in the image]      -> positive tags
    "negative_labels": [category ids known to be absent]         -> negative tags
    "split":           "train" | "val" | "test" | "unassigned"

Export (`export_coco(store, out_path)`) writes every image present in the project with
`id` (the project's image id), `file_name` (relative to `info.images_dir`, the common folder of the
project's roots), `width`, `height`, the three fields above, one category per class (`id` = class id,
`name`, `supercategory` = parent name or "none", `parent` = parent name or null) and one annotation
per ground-truth box (`bbox` [x, y, w, h] in original pixels, `area`, `iscrowd` 0). Importing that
file with `--images <info.images_dir>` into a fresh project restores the same tags, splits, classes
and boxes.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from engine.errors import UserError
from engine.exchange import (
    ExportSummary,
    ImportSummary,
    apply_import_tags,
    atomic_import,
    ensure_classes,
)
from engine.files import write_text_atomic
from engine.intake import canonical_path, register_files
from engine.progress import Progress
from engine.store.schema import SPLITS
from engine.store.tags import class_name_problem

if TYPE_CHECKING:
    from engine.store import BoxRow, Store

LABELS_FIELD = "labels"
NEGATIVE_LABELS_FIELD = "negative_labels"
SPLIT_FIELD = "split"
PARENT_FIELD = "parent"
LABELS_DOC = ("mlic image-level labels: each image's 'labels' lists the category ids tagged "
              "positive, 'negative_labels' those tagged negative (absent), 'split' its split. "
              "Annotations are evaluation-only ground-truth boxes.")


def load_coco(json_path: Path | str) -> Any:
    """Read and validate a COCO file; a pycocotools `COCO` object with its index built."""
    from pycocotools.coco import COCO

    path = Path(json_path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UserError(f"COCO file {path} does not exist.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read COCO file {path}: {getattr(exc, 'strerror', None) or exc}."
                        ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                        f"column {exc.colno}.") from exc
    except RecursionError as exc:
        raise UserError(f"{path} is not a usable COCO file: it is nested too deeply.") from exc
    _validate(path, data)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _validate(path: Path, data: Any) -> None:
    def fail(reason: str) -> NoReturn:
        raise UserError(f"{path} is not a usable COCO file: {reason}.")

    if not isinstance(data, dict):
        fail("the top level is not an object")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            fail(f"'{key}' is missing or not a list")
    data.setdefault("annotations", [])
    if not isinstance(data["annotations"], list):
        fail("'annotations' is not a list")
    category_ids = _validate_categories(data["categories"], fail)
    image_ids = _validate_images(data["images"], category_ids, fail)
    _validate_annotations(data["annotations"], image_ids, category_ids, fail)


def _validate_categories(categories: list[Any], fail: Callable[[str], NoReturn]) -> set[int]:
    """Check ids and names are unique and parents known; the category ids."""
    category_ids = set()
    names = set()
    for k, category in enumerate(categories):
        if not isinstance(category, dict) or not isinstance(category.get("id"), int) \
                or not isinstance(category.get("name"), str) or not category["name"].strip():
            fail(f"category #{k} needs an integer 'id' and a non-empty 'name'")
        if category["id"] in category_ids:
            fail(f"category id {category['id']} appears twice")
        if category["name"].strip() in names:
            fail(f"category name {category['name']!r} appears twice")
        problem = class_name_problem(category["name"])
        if problem is not None:
            fail(f"category name {category['name']!r} is not a usable class name: {problem}")
        category_ids.add(category["id"])
        names.add(category["name"].strip())
    for category in categories:
        parent = category.get(PARENT_FIELD)
        if parent is not None and (not isinstance(parent, str) or parent.strip() not in names):
            fail(f"category {category['name']!r} has an unknown parent {parent!r}")
    return category_ids


def _validate_images(images: list[Any], category_ids: set[int],
                     fail: Callable[[str], NoReturn]) -> set[int]:
    """Check ids are unique, labels name known categories and splits are known; the image ids."""
    image_ids = set()
    for k, image in enumerate(images):
        if not isinstance(image, dict) or not isinstance(image.get("id"), int) \
                or not isinstance(image.get("file_name"), str) or not image["file_name"]:
            fail(f"image #{k} needs an integer 'id' and a 'file_name'")
        if image["id"] in image_ids:
            fail(f"image id {image['id']} appears twice")
        image_ids.add(image["id"])
        for key in (LABELS_FIELD, NEGATIVE_LABELS_FIELD):
            labels = image.get(key, [])
            if not isinstance(labels, list) or any(not isinstance(c, int) for c in labels):
                fail(f"image {image['id']}: '{key}' must be a list of category ids")
            unknown = set(labels) - category_ids
            if unknown:
                fail(f"image {image['id']}: '{key}' refers to unknown categories "
                     f"{sorted(unknown)}")
        split = image.get(SPLIT_FIELD)
        if split is not None and split not in SPLITS:
            fail(f"image {image['id']}: unknown split {split!r}")
    return image_ids


def _validate_annotations(annotations: list[Any], image_ids: set[int], category_ids: set[int],
                          fail: Callable[[str], NoReturn]) -> None:
    """Check each annotation names a known image and category and has a usable bbox (an
    annotation without an id gets its position, from 1)."""
    for k, annotation in enumerate(annotations):
        if not isinstance(annotation, dict):
            fail(f"annotation #{k} is not an object")
        annotation.setdefault("id", k + 1)
        if not _is_id(annotation.get("id")):
            fail(f"annotation #{k}: 'id' must be an integer")
        if not _is_id(annotation.get("image_id")) or annotation["image_id"] not in image_ids:
            fail(f"annotation {annotation['id']} refers to unknown image "
                 f"{annotation.get('image_id')!r}")
        if not _is_id(annotation.get("category_id")) \
                or annotation["category_id"] not in category_ids:
            fail(f"annotation {annotation['id']} refers to unknown category "
                 f"{annotation.get('category_id')!r}")
        bbox = annotation.get("bbox")
        if bbox is not None and (not isinstance(bbox, list) or len(bbox) != 4 or any(
                not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)
                for v in bbox)):
            fail(f"annotation {annotation['id']}: 'bbox' must be [x, y, width, height] of "
                 "finite numbers")


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@atomic_import
def import_coco(store: Store, json_path: Path | str, images_dir: Path | str,
                split: str | None = None, progress: Progress = None,
                partial: bool = False) -> ImportSummary:
    """Import a COCO file (see the module docstring): exhaustive, unless `partial`. Returns what
    was done."""
    if split is not None and split not in SPLITS:
        raise UserError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    coco = load_coco(json_path)
    images_root = Path(images_dir).expanduser()
    if not images_root.is_dir():
        raise UserError(f"Images folder {images_root} does not exist.")
    images_root = images_root.resolve()
    summary = ImportSummary(source=Path(json_path))
    dataset = coco.dataset
    found = _find_images(dataset["images"], images_root, summary)
    class_of = _import_categories(store, dataset["categories"], summary)
    image_row = _register_images(store, dataset["images"], found, images_root, split, progress,
                                 summary)
    summary.images = len(image_row)
    decisions, boxes = _tags_and_boxes(coco, image_row, class_of)
    if not partial:
        _add_exhaustive_negatives(store, coco.dataset["images"], image_row, decisions,
                                  set(class_of.values()))
    apply_import_tags(store, decisions, summary)
    store.boxes.replace_for_images(list(decisions), boxes)
    summary.boxes = len(boxes)
    return summary


def _find_images(images: list[dict[str, Any]], images_root: Path,
                 summary: ImportSummary) -> dict[int, Path]:
    """COCO image id -> its file under `images_root`; names not found there go to `missing`."""
    found: dict[int, Path] = {}
    for image in images:
        candidate = canonical_path(images_root / image["file_name"])
        if not candidate.is_relative_to(images_root):
            summary.missing.append(image["file_name"])
        elif candidate.exists() or candidate.is_symlink():
            found[image["id"]] = candidate
        else:
            summary.missing.append(image["file_name"])
    return found


def _import_categories(store: Store, categories: list[dict[str, Any]],
                       summary: ImportSummary) -> dict[int, int]:
    """Create the categories' classes (with their parents); COCO category id -> class id."""
    parents = {c["name"].strip(): (c.get(PARENT_FIELD) or "").strip() or None for c in categories}
    class_ids = ensure_classes(store, [c["name"].strip() for c in categories], parents, summary)
    return {c["id"]: class_ids[c["name"].strip()] for c in categories}


def _register_images(store: Store, images: list[dict[str, Any]], found: dict[int, Path],
                     images_root: Path, split: str | None, progress: Progress,
                     summary: ImportSummary) -> dict[int, int]:
    """Register the found files, by split when the file carries one per image; COCO image id ->
    image row id."""
    by_split: dict[str | None, list[int]] = defaultdict(list)
    for image in images:
        if image["id"] in found:
            by_split[split or image.get(SPLIT_FIELD)].append(image["id"])
    image_row: dict[int, int] = {}
    for image_split, coco_ids in by_split.items():
        report = register_files(store, images_root, [found[i] for i in coco_ids],
                                split=image_split, progress=progress)
        summary.unreadable += report.unreadable
        for coco_id in coco_ids:
            image_row[coco_id] = report.image_ids[found[coco_id]]
    return image_row


def _add_exhaustive_negatives(store: Store, images: list[dict[str, Any]], image_row: dict[int, int],
                              decisions: dict[int, tuple[set[int], set[int]]],
                              file_classes: set[int]) -> None:
    """An exhaustive file: every class of the file an image lacks is a negative of it, except the
    ancestors of its positives (a kitten is a cat) and images that list their own negatives."""
    parent = {c.id: c.parent_id for c in store.classes.list()}
    for image in images:
        row_id = image_row.get(image["id"])
        if row_id is None or NEGATIVE_LABELS_FIELD in image:
            continue
        positives, negatives = decisions[row_id]
        present = set(positives)
        for class_id in positives:
            while parent.get(class_id) is not None and parent[class_id] not in present:
                class_id = parent[class_id]
                present.add(class_id)
        negatives |= file_classes - present


def _tags_and_boxes(coco: Any, image_row: dict[int, int], class_of: dict[int, int]
                    ) -> tuple[dict[int, tuple[set[int], set[int]]], list[BoxRow]]:
    """Per registered image its (positive, negative) class ids, from the labels fields and the
    annotations; and the annotations' non-empty boxes as ground truth."""
    from engine.store import BoxRow

    decisions: dict[int, tuple[set[int], set[int]]] = {}
    boxes: list[BoxRow] = []
    for image in coco.dataset["images"]:
        row_id = image_row.get(image["id"])
        if row_id is None:
            continue
        positives = {class_of[c] for c in image.get(LABELS_FIELD, [])}
        negatives = {class_of[c] for c in image.get(NEGATIVE_LABELS_FIELD, [])}
        for annotation in coco.imgToAnns.get(image["id"], []):
            class_id = class_of[annotation["category_id"]]
            positives.add(class_id)
            bbox = annotation.get("bbox")
            if bbox is not None and bbox[2] > 0 and bbox[3] > 0:
                boxes.append(BoxRow(row_id, class_id, *(float(v) for v in bbox)))
        decisions[row_id] = (positives, negatives)
    return decisions, boxes


def export_coco(store: Store, out_path: Path | str,
                progress: Progress = None) -> ExportSummary:
    """Write the project's images, classes, tags and ground-truth boxes as COCO (module doc)."""
    out_path = Path(out_path).expanduser()
    images = store.images.list(include_missing=False)
    paths = store.images.paths([image.id for image in images]) if images else {}
    common = _common_folder(list(paths.values()))
    classes = store.classes.list()
    name_of = {c.id: c.name for c in classes}
    categories = [{"id": c.id, "name": c.name,
                   "supercategory": name_of.get(c.parent_id, "none") if c.parent_id else "none",
                   PARENT_FIELD: name_of.get(c.parent_id) if c.parent_id else None}
                  for c in classes]
    ids = [image.id for image in images]
    tags = store.tags.for_images(ids)
    boxes = store.boxes.for_images(ids)
    entries: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for k, image in enumerate(images):
        image_tags = tags.get(image.id, [])
        entries.append({
            "id": image.id,
            "file_name": paths[image.id].relative_to(common).as_posix(),
            "width": image.width or 0,
            "height": image.height or 0,
            LABELS_FIELD: sorted(t.class_id for t in image_tags if t.positive),
            NEGATIVE_LABELS_FIELD: sorted(t.class_id for t in image_tags if not t.positive),
            SPLIT_FIELD: image.split,
        })
        for box in boxes.get(image.id, []):
            annotations.append({"id": len(annotations) + 1, "image_id": image.id,
                                "category_id": box.class_id,
                                "bbox": [box.x, box.y, box.w, box.h],
                                "area": box.w * box.h, "iscrowd": 0})
        if progress is not None:
            progress(k + 1, len(images))
    document = {
        "info": {"description": "exported by mlic", "images_dir": str(common),
                 "mlic_image_labels": LABELS_DOC},
        "licenses": [],
        "images": entries,
        "annotations": annotations,
        "categories": categories,
    }
    write_text_atomic(out_path, json.dumps(document, indent=1))
    return ExportSummary(target=out_path, images=len(entries), files=1)


def _common_folder(paths: list[Path]) -> Path:
    if not paths:
        return Path.cwd()
    if len(paths) == 1:
        return paths[0].parent
    return Path(os.path.commonpath([str(p) for p in paths]))
