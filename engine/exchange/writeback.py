"""Writing confirmed keywords back into a photo library: the plan, the writes, backups and undo.

Only tags are written (a person's decisions, model-rule accepts and imported keywords); a model's
pending suggestions are never tags and never written. Each image goes to the place its keywords
came from: its existing sidecar (`IMG.jpg.xmp` or `IMG.xmp`), or, when the person opts in
(`embedded=True`) and the file already carries keywords, the file's own XMP (and IPTC Keywords for
JPEG and TIFF), through exiv2, which rewrites metadata segments only: the image data is untouched.
Otherwise a new `IMG.jpg.xmp` sidecar is made (the default of earlier versions).

Before anything is written every file that will change is copied under
`<project>/backups/keywords-<time>/` with a `manifest.json`; `undo_last_writeback` puts the
copies back and removes the sidecars the write-back created.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import UserError
from engine.exchange import ExportSummary, Progress
from engine.exchange import sidecar as xmp_doc
from engine.exchange.keywords import exiv2, field_values, read_embedded
from engine.files import write_text_atomic

if TYPE_CHECKING:
    from engine.store import Store

IPTC_FORMATS = {".jpg", ".jpeg", ".tif", ".tiff"}
MANIFEST = "manifest.json"


@dataclass
class WriteAction:
    """One file the write-back changes (or would change, in a dry run)."""

    target: Path
    kind: str                   # sidecar | embedded
    positives: list[str]
    negatives: list[str]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    creates: bool = False
    text: str | None = None     # a sidecar's new text


@dataclass
class WritebackSummary(ExportSummary):
    """What a write-back did or, in a dry run, would do."""

    actions: list[WriteAction] = field(default_factory=list)
    dry_run: bool = False
    backup: Path | None = None

    def summary(self) -> str:
        verb = "would change" if self.dry_run else "changed"
        added = sum(len(a.added) for a in self.actions)
        removed = sum(len(a.removed) for a in self.actions)
        embedded = sum(1 for a in self.actions if a.kind == "embedded")
        return (f"{verb} {len(self.actions)} files ({embedded} embedded), "
                f"{added} keywords added, {removed} removed")

    def lines(self) -> list[str]:
        """One line per file: the keywords added and removed."""
        return [f"{a.target}{' (new)' if a.creates else ''}: "
                f"+{', +'.join(a.added) if a.added else '0'}"
                f"{'; -' + ', -'.join(a.removed) if a.removed else ''}" for a in self.actions]


def plan_sidecar(target: Path, positives: list[str], negatives: list[str],
                 hierarchy: dict[str, str | None]) -> WriteAction | None:
    """The change to one sidecar (None when nothing would change)."""
    exists = target.is_file()
    if not exists and not positives and not negatives:
        return None
    tree, xpacket = xmp_doc.parse_sidecar(target) if exists else (xmp_doc.new_document(), False)
    added, removed, changed = xmp_doc.merge_keywords(tree, positives, negatives, hierarchy)
    if exists and not changed:      # the mlic bags alone do not rewrite a photo tool's sidecar
        return None
    text = xmp_doc.serialise(tree, xpacket)
    return WriteAction(target, "sidecar", positives, negatives, added, removed,
                       creates=not exists, text=text)


def has_embedded_keywords(image_path: Path) -> bool:
    try:
        found = read_embedded(image_path, ("embedded", "iptc"))
    except (ValueError, OSError):
        return False
    return any(not keywords.empty() for keywords in found.values())


def plan_embedded(image_path: Path, positives: list[str], negatives: list[str],
                  hierarchy: dict[str, str | None]) -> WriteAction | None:
    """The change to a file's embedded keywords (None when nothing would change)."""
    pyexiv2 = exiv2()
    with pyexiv2.Image(str(image_path)) as image:
        xmp, iptc = image.read_xmp(), image.read_iptc()
    old_subjects = field_values(xmp.get("Xmp.dc.subject"))
    subjects, paths = xmp_doc.merged_lists(
        old_subjects, field_values(xmp.get("Xmp.lr.hierarchicalSubject")), positives, negatives,
        hierarchy)
    action = WriteAction(image_path, "embedded", positives, negatives,
                         [s for s in subjects if s not in old_subjects],
                         [s for s in old_subjects if s not in subjects])
    # The mlic bags ride along with a change; on their own they do not make one (a photo the
    # person did not touch keeps its bytes).
    same_xmp = (subjects == old_subjects
                and paths == field_values(xmp.get("Xmp.lr.hierarchicalSubject"))
                and (not negatives or "Xmp.mlic.negative" in xmp)
                and ("Xmp.mlic.positive" not in xmp
                     or field_values(xmp["Xmp.mlic.positive"]) == positives)
                and ("Xmp.mlic.negative" not in xmp
                     or field_values(xmp["Xmp.mlic.negative"]) == negatives))
    old_iptc = field_values(iptc.get("Iptc.Application2.Keywords"))
    same_iptc = (image_path.suffix.lower() not in IPTC_FORMATS
                 or _iptc_keywords(old_iptc, subjects, negatives) == old_iptc)
    return None if same_xmp and same_iptc else action


def _iptc_keywords(old: list[str], subjects: list[str], negatives: list[str]) -> list[str]:
    kept = [k for k in old if k not in negatives or k in subjects]
    return kept + [s[:64] for s in subjects if s[:64] not in kept]


def write_embedded(action: WriteAction, hierarchy: dict[str, str | None]) -> None:
    """Rewrite the file's keyword fields only (XMP, and IPTC for JPEG/TIFF)."""
    pyexiv2 = exiv2()
    with pyexiv2.Image(str(action.target)) as image:
        xmp, iptc = image.read_xmp(), image.read_iptc()
        subjects, paths = xmp_doc.merged_lists(
            field_values(xmp.get("Xmp.dc.subject")), field_values(xmp.get("Xmp.lr.hierarchicalSubject")),
            action.positives, action.negatives, hierarchy)
        image.modify_xmp({"Xmp.dc.subject": subjects or None,
                          "Xmp.lr.hierarchicalSubject": paths or None,
                          "Xmp.mlic.positive": action.positives or None,
                          "Xmp.mlic.negative": action.negatives or None})
        if action.target.suffix.lower() in IPTC_FORMATS:
            keywords = _iptc_keywords(field_values(iptc.get("Iptc.Application2.Keywords")),
                                      subjects, action.negatives)
            changes: dict = {"Iptc.Application2.Keywords": keywords or None}
            if any(not k.isascii() for k in keywords):
                changes["Iptc.Envelope.CharacterSet"] = "\x1b%G"   # UTF-8
            image.modify_iptc(changes)


# ---------------------------------------------------------------------------------------------
# backups and undo


def backups_dir(store: Store) -> Path:
    paths = getattr(store, "paths", None)
    if paths is None:
        raise UserError("This project has no folder to keep write-back backups in.")
    return Path(paths.root) / "backups"


def make_backup(store: Store, actions: list[WriteAction]) -> Path:
    """Copy every file the actions change; a manifest lists originals and created files."""
    folder = backups_dir(store) / time.strftime("keywords-%Y%m%d-%H%M%S")
    suffix = 0
    while folder.exists():
        suffix += 1
        folder = folder.with_name(folder.name.split(".")[0] + f".{suffix}")
    folder.mkdir(parents=True)
    entries = []
    for k, action in enumerate(actions):
        entry = {"path": str(action.target), "backup": None}
        if not action.creates:
            copy = folder / f"{k:06d}{action.target.suffix}"
            shutil.copy2(action.target, copy)
            entry["backup"] = copy.name
        entries.append(entry)
    write_text_atomic(folder / MANIFEST, json.dumps({"files": entries}, indent=1))
    return folder


def last_backup(store: Store) -> Path | None:
    root = backups_dir(store)
    folders = sorted(p for p in root.glob("keywords-*") if (p / MANIFEST).is_file()) \
        if root.is_dir() else []
    return folders[-1] if folders else None


def undo_last_writeback(store: Store) -> tuple[Path, int]:
    """Put back the files of the last write-back; (its backup folder, files restored)."""
    folder = last_backup(store)
    if folder is None:
        raise UserError("There is no keyword write-back to undo.")
    entries = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
    for entry in entries:
        path = Path(entry["path"])
        if entry["backup"] is None:
            path.unlink(missing_ok=True)
        else:
            shutil.copy2(folder / entry["backup"], path)
    shutil.rmtree(folder)
    return folder, len(entries)


def apply_actions(store: Store, actions: list[WriteAction], hierarchy: dict[str, str | None],
                  backup: bool, progress: Progress | None = None) -> Path | None:
    """Back up, then write every action; the backup folder (None without backup)."""
    folder = make_backup(store, actions) if backup and actions else None
    for k, action in enumerate(actions):
        if action.kind == "embedded":
            write_embedded(action, hierarchy)
        else:
            action.target.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(action.target, action.text or "")
        if progress is not None:
            progress(k + 1, len(actions))
    return folder
