"""Image intake: register the image files of a folder in the project, and keep them in sync.

`scan_folder(store, folder, split=None, progress=None)` walks `folder` recursively (file names with
one of `engine.images.IMAGE_SUFFIXES`; hidden files and folders, folder symlinks and the project's
own folder are skipped) and compares what it finds with what the project holds:

- **added**: a file the project did not know; hashed, probed (headers only) and inserted;
- **changed**: a known path whose size or modification time differ and whose content hash changed;
  re-hashed and re-probed (a file that was only touched keeps its row and counts as unchanged);
- **moved**: a new path whose content hash equals that of a row that vanished (in this scan, or
  earlier); the row — and so its tags, suggestions and splits — follows the file;
- **vanished**: a known path no longer on disk; the row is marked `present=False` and keeps its tags
  (it comes back, tags and all, if the file reappears);
- **restored**: a vanished row whose file is back at the same path;
- **unreadable**: files registered with status 'unreadable' and the reason (zero bytes, truncated,
  not an image, too large, permission denied, broken symbolic link, ...). Unreadable rows are
  re-probed on every scan, so a fixed file becomes readable.

Only headers are read (`probe_image`) plus one streaming pass for the content hash; nothing is
decoded. Hashing and probing run in a thread pool; database writes are a few bulk transactions.
Intake never aborts on a bad file and never deletes a row. Re-scanning is idempotent.

`register_files(store, folder, files, split=None)` registers given files under `folder` (used by
the importers) with the same rules, without looking for vanished files.

`split`, when given, is set on every image found by the scan (new or known).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import UserError
from engine.images import IMAGE_SUFFIXES, UnreadableImageError, file_digest, probe_image
from engine.progress import Progress
from engine.store.schema import SPLITS, Image

if TYPE_CHECKING:
    from engine.store import Store

log = logging.getLogger(__name__)

# Image types a photo folder holds that intake does not read: named in the report, not registered.
_VECTOR = "vector image, not read: export it as PNG to tag it"
_RAW = "camera raw file, not read: tag its JPEG/TIFF rendering (or its XMP sidecar)"
SKIPPED_TYPES = {
    ".svg": _VECTOR, ".svgz": _VECTOR, ".eps": _VECTOR, ".ai": _VECTOR,
    ".heic": "HEIC/HEIF image, not read: convert it to JPEG", ".heif": "HEIF image, not read",
    ".avif": "AVIF image, not read", ".jxl": "JPEG XL image, not read",
    ".psd": "Photoshop document, not read", ".xcf": "GIMP document, not read",
    **{suffix: _RAW for suffix in (".cr2", ".cr3", ".nef", ".arw", ".dng", ".raf", ".orf",
                                   ".rw2", ".pef", ".srw")},
}
_WRITE_CHUNK = 5000


@dataclass
class ScanReport:
    """What a scan found. Paths are absolute; `image_ids` maps every file seen to its row id."""

    folder: Path
    added: list[Path] = field(default_factory=list)
    changed: list[Path] = field(default_factory=list)
    moved: list[tuple[Path, Path]] = field(default_factory=list)  # (old path, new path)
    vanished: list[Path] = field(default_factory=list)
    restored: list[Path] = field(default_factory=list)
    unchanged: int = 0
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # (path, reason)
    skipped: list[tuple[Path, str]] = field(default_factory=list)     # image types not read
    image_ids: dict[Path, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Image files present in the scanned folder."""
        return len(self.image_ids)

    def merge(self, other: ScanReport) -> None:
        self.added += other.added
        self.changed += other.changed
        self.moved += other.moved
        self.vanished += other.vanished
        self.restored += other.restored
        self.unchanged += other.unchanged
        self.unreadable += other.unreadable
        self.skipped += other.skipped
        self.image_ids.update(other.image_ids)

    def summary(self) -> str:
        """One line for people: counts of each kind."""
        return (f"{self.total} images: {len(self.added)} added, {len(self.changed)} changed, "
                f"{len(self.moved)} moved, {len(self.restored)} restored, "
                f"{len(self.vanished)} vanished, {self.unchanged} unchanged, "
                f"{len(self.unreadable)} unreadable"
                + (f", {len(self.skipped)} skipped by type ("
                   + ", ".join(path.name for path, _ in self.skipped[:3])
                   + (", …" if len(self.skipped) > 3 else "") + ")" if self.skipped else ""))


@dataclass(frozen=True)
class _FileFacts:
    rel_path: str
    size: int
    mtime: float
    content_hash: str | None
    width: int | None
    height: int | None
    status: str
    reason: str | None

    def columns(self) -> dict[str, Any]:
        return {"content_hash": self.content_hash, "file_size": self.size, "mtime": self.mtime,
                "width": self.width, "height": self.height, "status": self.status,
                "reason": self.reason}


def scan_folder(store: Store, folder: Path | str, split: str | None = None,
                progress: Progress = None) -> ScanReport:
    """Register every image file under `folder` and reconcile with the project (module doc)."""
    folder = _check_folder(folder)
    _check_split(split)
    roots = {Path(root.path): root for root in store.roots.list()}
    owner = next((path for path in sorted(roots, key=lambda p: len(p.parts), reverse=True)
                  if folder == path or folder.is_relative_to(path)), None)
    nested = [path for path in roots if path != folder and path.is_relative_to(folder)
              and (owner is None or path.is_relative_to(owner))]
    if owner is None:
        owner = folder
        root_id = store.roots.get_or_create(folder).id
    else:
        root_id = roots[owner].id
    prefix = "" if folder == owner else folder.relative_to(owner).as_posix() + "/"
    excluded = {path for path in nested} | {store.paths.root.resolve()}
    skipped: list[tuple[Path, str]] = []
    rel_paths = sorted(_walk(folder, owner, excluded, skipped))
    report = _reconcile(store, owner, root_id, rel_paths, prefix, True, split, progress)
    report.folder = folder
    report.skipped = sorted(skipped)
    for path in nested:  # folders added before as their own roots keep their rows
        if path.is_dir():
            report.merge(scan_folder(store, path, split=split, progress=progress))
    return report


def register_files(store: Store, folder: Path | str, files: Iterable[Path | str],
                   split: str | None = None, progress: Progress = None) -> ScanReport:
    """Register the given files (which must lie under `folder`). A file under a folder that is
    already a root (the folder itself, one above it or one inside it, as `scan_folder` finds
    them) is registered under that root, so an image is never registered twice; the others
    under `folder` as a new root."""
    folder = _check_folder(folder)
    _check_split(split)
    roots = sorted(((Path(root.path), root.id) for root in store.roots.list()),
                   key=lambda item: len(item[0].parts), reverse=True)
    limit = next((root for root, _ in roots if folder.is_relative_to(root)), folder)
    by_owner: dict[Path, list[str]] = {}
    for file in files:
        path = canonical_path(Path(folder, file))
        if not path.is_relative_to(limit):
            raise UserError(f"{path} is not inside {folder}.")
        owner = next((root for root, _ in roots if path.is_relative_to(root)), folder)
        by_owner.setdefault(owner, []).append(path.relative_to(owner).as_posix())
    report = ScanReport(folder=folder)
    root_ids = dict(roots)
    for owner, rel_paths in by_owner.items():
        root_id = root_ids.get(owner) or store.roots.get_or_create(owner).id
        report.merge(_reconcile(store, owner, root_id, sorted(set(rel_paths)), None, False, split,
                                progress))
    return report


def canonical_path(path: Path | str) -> Path:
    """Absolute path with its folders resolved (symlinks included) but the file name kept, so
    a symlinked image stays itself. `ScanReport.image_ids` is keyed by such paths."""
    absolute = Path(os.path.abspath(Path(path).expanduser()))
    return absolute.parent.resolve() / absolute.name


# ---------------------------------------------------------------------------------------------


def _check_folder(folder: Path | str) -> Path:
    path = Path(folder).expanduser()
    if not path.exists():
        raise UserError(f"Folder {path} does not exist.")
    if not path.is_dir():
        raise UserError(f"{path} is not a folder.")
    if not os.access(path, os.R_OK | os.X_OK):
        raise UserError(f"Folder {path} cannot be read (permission denied).")
    return path.resolve()


def _check_split(split: str | None) -> None:
    if split is not None and split not in SPLITS:
        raise UserError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")


def _walk(folder: Path, owner: Path, excluded: set[Path],
          skipped: list[tuple[Path, str]] | None = None) -> Iterator[str]:
    """Relative (to `owner`) POSIX paths of image files under `folder`; unreadable sub-folders
    are logged and skipped; image files of a type intake does not read go to `skipped`."""
    stack = [folder]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            log.warning("skipping folder %s: %s", directory, exc.strerror)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    path = Path(entry.path)
                    if path not in excluded:
                        stack.append(path)
                    continue
                is_link = entry.is_symlink()
                if not (entry.is_file() or is_link):
                    continue
            except OSError:
                continue
            suffix = os.path.splitext(entry.name)[1].lower()
            if suffix in SKIPPED_TYPES and skipped is not None:
                skipped.append((Path(entry.path), SKIPPED_TYPES[suffix]))
            if suffix in IMAGE_SUFFIXES:
                if is_link and Path(entry.path).is_dir():
                    continue
                yield Path(entry.path).relative_to(owner).as_posix()


def _stat(path: Path) -> tuple[int, float]:
    """(size, mtime) of a file, of the link itself when it is broken."""
    try:
        info = path.stat()
    except OSError:
        try:
            info = path.lstat()
        except OSError:
            return 0, 0.0
        return 0, info.st_mtime
    return (info.st_size if stat.S_ISREG(info.st_mode) else 0), info.st_mtime


def _inspect(owner: Path, rel_path: str) -> _FileFacts:
    """Hash and probe one file; never raises for a bad file."""
    path = owner / rel_path
    size, mtime = _stat(path)
    digest: str | None = None
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or /dev/zero would hang the hash
            return _FileFacts(rel_path, 0, mtime, None, None, None, "unreadable",
                              "not a regular file")
    except OSError:
        pass  # missing or broken: the loader below says why
    try:
        digest = file_digest(path)
        probe = probe_image(path)
    except UnreadableImageError as exc:
        return _FileFacts(rel_path, size, mtime, digest, None, None, "unreadable", exc.reason)
    except Exception as exc:  # noqa: BLE001 - intake never aborts on one file
        log.exception("unexpected error reading %s", path)
        return _FileFacts(rel_path, size, mtime, digest, None, None, "unreadable",
                          f"cannot read file ({type(exc).__name__}: {exc})")
    return _FileFacts(rel_path, size, mtime, digest, probe.width, probe.height, "readable", None)


@dataclass
class _Writes:
    """The row changes a reconciliation decided on, written in a few bulk transactions."""

    inserts: list[dict[str, Any]] = field(default_factory=list)
    insert_paths: list[Path] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    moved_ids: set[int] = field(default_factory=set)


def _reconcile(store: Store, owner: Path, root_id: int, rel_paths: list[str], prefix: str | None,
               detect_vanished: bool, split: str | None, progress: Progress) -> ScanReport:
    report = ScanReport(folder=owner)
    rel_paths = _encodable(owner, rel_paths, report)
    known = store.images.in_root(root_id)
    total = len(rel_paths)
    to_inspect = _skip_unchanged(owner, rel_paths, known, report)
    done = total - len(to_inspect)
    if progress is not None and done:
        progress(done, total)
    facts = _inspect_all(owner, to_inspect, done, total, progress)
    vanished_rows = _vanished_rows(known, set(rel_paths), prefix) if detect_vanished else []
    candidates = _move_candidates(store, known, facts, vanished_rows)
    writes = _plan_writes(store, owner, root_id, split, known, facts, candidates, report)
    for row in vanished_rows:
        if row.id not in writes.moved_ids:
            writes.updates.append({"id": row.id, "present": False})
            report.vanished.append(owner / row.rel_path)
    _write(store, writes, split, report)
    if progress is not None:
        progress(total, total)
    log.info("scan of %s: %s", owner, report.summary())
    return report


def _encodable(owner: Path, rel_paths: list[str], report: ScanReport) -> list[str]:
    """The paths that can be stored as text; the others are reported unreadable."""
    encodable = []
    for rel in rel_paths:
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes in the name: cannot be stored as text
            report.unreadable.append((owner / rel, "file name is not valid UTF-8 (not registered)"))
        else:
            encodable.append(rel)
    return encodable


def _skip_unchanged(owner: Path, rel_paths: list[str], known: dict[str, Image],
                    report: ScanReport) -> list[str]:
    """The paths that need hashing (new paths, changed stat, unreadable or vanished rows); the
    others are counted unchanged in `report`."""
    to_inspect: list[str] = []
    for rel in rel_paths:
        row = known.get(rel)
        if row is None or row.status != "readable" or not row.present:
            to_inspect.append(rel)
            continue
        size, mtime = _stat(owner / rel)
        if size == row.file_size and mtime == row.mtime:
            report.unchanged += 1
            report.image_ids[owner / rel] = row.id
        else:
            to_inspect.append(rel)
    return to_inspect


def _inspect_all(owner: Path, to_inspect: list[str], done: int, total: int,
                 progress: Progress) -> list[_FileFacts]:
    """Hash and probe in a thread pool (hashlib and file reads release the GIL)."""
    facts: list[_FileFacts] = []
    if not to_inspect:
        return facts
    workers = min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="intake") as pool:
        for fact in pool.map(lambda rel: _inspect(owner, rel), to_inspect):
            facts.append(fact)
            done += 1
            if progress is not None and (done % 64 == 0 or done == total):
                progress(done, total)
    return facts


def _vanished_rows(known: dict[str, Image], seen: set[str], prefix: str | None) -> list[Image]:
    """Known, present rows inside the scanned subtree that were not found now."""
    return [row for rel, row in known.items()
            if row.present and rel not in seen and rel.startswith(prefix or "")]


def _move_candidates(store: Store, known: dict[str, Image], facts: list[_FileFacts],
                     vanished_rows: list[Image]) -> dict[str, list[Image]]:
    """Rows a new file may have moved from, by content hash: this scan's vanished rows, then
    rows that vanished earlier anywhere."""
    candidates: dict[str, list[Image]] = {}
    has_new = any(fact.rel_path not in known for fact in facts)
    earlier = ([r for r in store.images.list(include_missing=True) if not r.present]
               if has_new else [])
    for row in vanished_rows + earlier:
        if row.content_hash:
            bucket = candidates.setdefault(row.content_hash, [])
            if all(existing.id != row.id for existing in bucket):
                bucket.append(row)
    return candidates


def _plan_writes(store: Store, owner: Path, root_id: int, split: str | None,
                 known: dict[str, Image], facts: list[_FileFacts],
                 candidates: dict[str, list[Image]], report: ScanReport) -> _Writes:
    """Decide for each inspected file: update its known row, follow a move, or insert a row."""
    root_paths = {root.id: Path(root.path) for root in store.roots.list()}
    writes = _Writes()
    for fact in facts:
        path = owner / fact.rel_path
        if fact.status == "unreadable":
            report.unreadable.append((path, fact.reason or "unreadable"))
        row = known.get(fact.rel_path)
        source = None
        if row is None and fact.status == "readable":
            source = next((c for c in candidates.get(fact.content_hash or "", [])
                           if c.id not in writes.moved_ids), None)
        if row is not None:
            _update_known(row, fact, path, writes, report)
        elif source is not None:
            writes.moved_ids.add(source.id)
            report.moved.append((root_paths.get(source.root_id, owner) / source.rel_path, path))
            writes.updates.append({"id": source.id, "root_id": root_id,
                                   "rel_path": fact.rel_path, "present": True, **fact.columns()})
            report.image_ids[path] = source.id
        else:
            writes.inserts.append({"root_id": root_id, "rel_path": fact.rel_path,
                                   "present": True, "split": split or "unassigned",
                                   **fact.columns()})
            writes.insert_paths.append(path)
            report.added.append(path)
    return writes


def _update_known(row: Image, fact: _FileFacts, path: Path, writes: _Writes,
                  report: ScanReport) -> None:
    """A file at a known path: restored, changed or (only touched) unchanged."""
    if not row.present:
        report.restored.append(path)
    elif row.content_hash != fact.content_hash or row.status != fact.status:
        report.changed.append(path)
    else:
        report.unchanged += 1
    writes.updates.append({"id": row.id, "present": True, **fact.columns()})
    report.image_ids[path] = row.id


def _write(store: Store, writes: _Writes, split: str | None, report: ScanReport) -> None:
    """Write the planned changes; moves go first, to free their old paths."""
    moved_updates = [u for u in writes.updates if "rel_path" in u]
    other_updates = [u for u in writes.updates if "rel_path" not in u]
    for chunk in _chunks(moved_updates + other_updates):
        store.images.update_many(chunk)
    for start in range(0, len(writes.inserts), _WRITE_CHUNK):
        ids = store.images.add_many(writes.inserts[start:start + _WRITE_CHUNK])
        for path, image_id in zip(writes.insert_paths[start:start + _WRITE_CHUNK], ids):
            report.image_ids[path] = image_id
    if split is not None:
        store.images.set_split(sorted(report.image_ids.values()), split)


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), _WRITE_CHUNK):
        yield rows[start:start + _WRITE_CHUNK]
