"""CSV export and import of image-level tags: one row per image, one column per class.

Format (UTF-8, comma-separated, RFC 4180 quoting, a header row):

    path,split,cat,dog,tree
    /data/photos/0001.jpg,train,1,0,
    /data/photos/0002.jpg,val,,1,1

- `path`: the image file. Export writes absolute paths; import also accepts paths relative to the
  CSV file's folder.
- `split` (optional on import): train, val, test or unassigned; empty leaves the split as it is.
- one column per class (the header is the class name): `1` = positive tag, `0` = negative tag,
  empty = no tag. Import also accepts true/false, yes/no, positive/negative, +/- (any case).

Import creates missing classes, registers files that the project does not know yet through
intake (under the folder that already holds them, else under their common folder) and writes the
tags with source 'import'. An empty cell never removes an existing tag, and a person's tags are
never overwritten. Export followed by import into a fresh project restores the same tags and
splits.
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import UserError
from engine.exchange import (
    ExportSummary,
    ImportSummary,
    apply_import_tags,
    atomic_import,
    ensure_classes,
)
from engine.files import write_text_atomic
from engine.images import is_image_path
from engine.intake import canonical_path, register_files
from engine.progress import Progress
from engine.store.schema import SPLITS
from engine.store.tags import class_name_problem

if TYPE_CHECKING:
    from engine.store import Store

POSITIVE = {"1", "true", "yes", "y", "positive", "pos", "+", "x"}
NEGATIVE = {"0", "false", "no", "n", "negative", "neg", "-"}
RESERVED = ("path", "split")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _needs_quote(text: str) -> bool:
    return text.startswith(FORMULA_START) or (text.startswith("'") and _needs_quote(text[1:]))


def spreadsheet_safe(text: str) -> str:
    """`text` as a CSV cell a spreadsheet will not run: one starting with '=', '+', '-', '@', a tab
    or a carriage return gets a leading "'" (OWASP's advice); so does one that would otherwise be
    read back as such a quote, which keeps `from_spreadsheet(spreadsheet_safe(t)) == t` exact."""
    return "'" + text if _needs_quote(text) else text


def from_spreadsheet(text: str) -> str:
    """The inverse of `spreadsheet_safe` (an import reads both quoted and raw files)."""
    return text[1:] if text.startswith("'") and _needs_quote(text[1:]) else text


def export_csv(store: Store, out_path: Path | str, progress: Progress = None,
               raw: bool = False) -> ExportSummary:
    """Write every image present in the project, with its split and tags (module doc). Class
    names and paths that a spreadsheet would run as a formula are quoted (`spreadsheet_safe`)
    unless `raw`."""
    cell = (lambda text: text) if raw else spreadsheet_safe
    out_path = Path(out_path).expanduser()
    classes = store.classes.list()
    clash = next((c.name for c in classes if c.name.lower() in RESERVED), None)
    if clash is not None:
        raise UserError(f"A class named {clash!r} cannot be a CSV column; rename it first.")
    images = store.images.list()
    paths = store.images.paths([image.id for image in images]) if images else {}
    tags = store.tags.for_images([image.id for image in images])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "split", *(cell(c.name) for c in classes)])
    rows = sorted(images, key=lambda image: paths[image.id].as_posix())
    for k, image in enumerate(rows):
        states = {t.class_id: "1" if t.positive else "0" for t in tags.get(image.id, [])}
        writer.writerow([cell(paths[image.id].as_posix()), image.split,
                         *(states.get(c.id, "") for c in classes)])
        if progress is not None:
            progress(k + 1, len(rows))
    write_text_atomic(out_path, buffer.getvalue())
    return ExportSummary(target=out_path, images=len(rows), files=1)


def read_csv(csv_path: Path | str) -> tuple[list[str], list[tuple[Path, str | None, dict]]]:
    """Parse and validate a tags CSV: (class names, [(absolute path, split, {class: state})])."""
    path = Path(csv_path).expanduser()
    rows = _read_rows(path)
    layout = _layout(path, rows[0])
    base = path.resolve().parent
    entries = []
    seen: set[Path] = set()
    for line, row in enumerate(rows[1:], start=2):
        entries.append(_read_entry(path, line, row, layout, base, seen))
    return [name for _, name in layout.class_columns], entries


@dataclass(frozen=True)
class _Layout:
    """The columns of a tags CSV: how many, which holds the split, which hold classes."""

    width: int
    split_column: int | None
    class_columns: list[tuple[int, str]]       # (column, class name)


def _read_rows(path: Path) -> list[list[str]]:
    """The CSV's non-blank rows (at least the header); UserError when unreadable or empty."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise UserError(f"CSV file {path} does not exist.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read CSV file {path}: {getattr(exc, 'strerror', None) or exc}."
                        ) from exc
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise UserError(f"{path} is not a valid CSV file: {exc}.") from exc
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise UserError(f"{path} is empty; expected a header 'path,split,<class>,...'.")
    return rows


def _layout(path: Path, header_row: list[str]) -> _Layout:
    """Check the header ('path' first, names unique and non-empty); the columns' layout."""
    header = [from_spreadsheet(cell.strip()) for cell in header_row]
    if not header or header[0].lower() != "path":
        raise UserError(f"{path}: the first column must be 'path' (header 'path,split,<class>,"
                        "...').")
    if len(set(header)) != len(header):
        raise UserError(f"{path}: the header names a column twice.")
    if any(not name for name in header):
        raise UserError(f"{path}: the header has an empty column name.")
    split_column = next((i for i, name in enumerate(header) if name.lower() == "split"), None)
    class_columns = [(i, name) for i, name in enumerate(header)
                     if i != 0 and i != split_column]
    for _, name in class_columns:
        problem = class_name_problem(name)
        if problem is not None:
            raise UserError(f"{path}: invalid class name {name!r}: {problem}.")
    return _Layout(len(header), split_column, class_columns)


def _read_entry(path: Path, line: int, row: list[str], layout: _Layout, base: Path,
                seen: set[Path]) -> tuple[Path, str | None, dict[str, str]]:
    """One data row: (absolute image path, split or None, {class: 'positive' | 'negative'});
    its path is added to `seen` (a path seen before is an error)."""
    if len(row) > layout.width:
        raise UserError(f"{path}, line {line}: {len(row)} cells for {layout.width} columns.")
    row = row + [""] * (layout.width - len(row))
    row[0] = from_spreadsheet(row[0].strip())
    if not row[0]:
        raise UserError(f"{path}, line {line}: the path is empty.")
    image_path = canonical_path(base / Path(row[0].strip()).expanduser())
    if image_path in seen:
        raise UserError(f"{path}, line {line}: {row[0].strip()} appears twice.")
    seen.add(image_path)
    split = row[layout.split_column].strip() if layout.split_column is not None else ""
    if split and split not in SPLITS:
        raise UserError(f"{path}, line {line}: unknown split {split!r}; use one of "
                        f"{', '.join(SPLITS)}.")
    return image_path, split or None, _tag_states(path, line, row, layout.class_columns)


def _tag_states(path: Path, line: int, row: list[str],
                class_columns: list[tuple[int, str]]) -> dict[str, str]:
    """{class: 'positive' | 'negative'} of the row's non-empty class cells."""
    states: dict[str, str] = {}
    for column, name in class_columns:
        value = row[column].strip().lower()
        if not value:
            continue
        if value in POSITIVE:
            states[name] = "positive"
        elif value in NEGATIVE:
            states[name] = "negative"
        else:
            raise UserError(f"{path}, line {line}, column {name!r}: {row[column]!r} is not "
                            "a tag value (use 1 for positive, 0 for negative, empty for none).")
    return states


def _check_inside(store: Store, csv_path: Path, entries: list, images_dir: Path | str | None
                  ) -> None:
    """Every path must lie inside a project folder (a root), the CSV's own folder or
    `images_dir`, or name an image file (as `export csv` writes them): a row such as
    '../../etc/passwd' or '/etc/passwd' never registers a file."""
    allowed = [Path(root.path) for root in store.roots.list()]
    allowed.append(canonical_path(csv_path).parent)
    if images_dir is not None:
        folder = Path(images_dir).expanduser()
        if not folder.is_dir():
            raise UserError(f"Images folder {folder} does not exist.")
        allowed.append(folder.resolve())
    outside = [p for p, _, _ in entries if not any(p.is_relative_to(a) for a in allowed)
               and not is_image_path(p)]
    if outside:
        raise UserError(f"{csv_path}: {len(outside)} paths lie outside the project's folders and "
                        f"the CSV's folder, e.g. {outside[0]}; name their folder with --images.")


@atomic_import
def import_csv(store: Store, csv_path: Path | str, progress: Progress = None,
               images_dir: Path | str | None = None) -> ImportSummary:
    """Import tags (and splits) from a CSV file (module doc). Paths must lie inside the
    project's folders, the CSV's folder or `images_dir`."""
    class_names, entries = read_csv(csv_path)
    _check_inside(store, Path(csv_path), entries, images_dir)
    summary = ImportSummary(source=Path(csv_path))
    present = [(p, split, states) for p, split, states in entries
               if p.exists() or p.is_symlink()]
    summary.missing = [str(p) for p, _, _ in entries if not (p.exists() or p.is_symlink())]
    class_ids = ensure_classes(store, class_names, None, summary)

    roots = sorted((Path(r.path) for r in store.roots.list()), key=lambda p: -len(p.parts))
    groups: dict[tuple[Path | None, str | None], list[Path]] = defaultdict(list)
    for image_path, split, _ in present:
        owner = next((root for root in roots if image_path.is_relative_to(root)), None)
        groups[(owner, split)].append(image_path)
    loose = [p for (owner, _), paths in groups.items() if owner is None for p in paths]
    common = (Path(os.path.commonpath([str(p.parent) for p in loose])) if loose else None)
    image_ids: dict[Path, int] = {}
    for (owner, split), paths in groups.items():
        report = register_files(store, owner or common, paths, split=split, progress=progress)
        summary.unreadable += report.unreadable
        image_ids.update(report.image_ids)
    summary.images = len(image_ids)
    decisions = {}
    for image_path, _, states in present:
        image_id = image_ids.get(image_path)
        if image_id is None:
            continue
        positives = [class_ids[n] for n, s in states.items() if s == "positive"]
        negatives = [class_ids[n] for n, s in states.items() if s == "negative"]
        decisions[image_id] = (positives, negatives)
    apply_import_tags(store, decisions, summary)
    return summary
