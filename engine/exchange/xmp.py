"""XMP and keywords: import a photo library's keywords as tags, write confirmed tags back.

Reading (`import_xmp`) goes through `engine.exchange.keywords` (exiv2): XMP sidecars in both
namings (`IMG_0001.jpg.xmp`, `IMG_0001.xmp`), XMP embedded in the image, IPTC-IIM Keywords; the
sidecar wins when they disagree and the conflicts are counted. The keywords then pass the
vocabulary step (`engine.exchange.vocabulary`: counts, minimum count, excluded hierarchies,
merges) before any becomes a class. `dry_run=True` reports and changes nothing.

Keywords are partial labels: they give positives only, and the classes they fed are recorded in
the project setting `labels.partial_classes` (`{"keywords": [class names]}`) so that a three-state
label model can treat an image without the keyword as unknown rather than negative. Our own
`mlic:positive` / `mlic:negative` bags are exact and keep their negatives.

Writing (`export_xmp`): sidecars under `out_dir`, mirroring each image's path below its project
folder (`out_dir/<folder name>/<relative path>.xmp`; `<folder name>` suffixed with `-<root id>`
when two roots share a name), or in place: the image's existing sidecar of either naming, the
file's embedded metadata with `embedded=True` when the file has embedded keywords, else a new
`<image>.xmp`. Merging keeps every other field (`engine.exchange.sidecar`); all existing sidecars
are parsed before anything is written, so a broken one stops the export with nothing written.
In place, every file to change is backed up first (`engine.exchange.writeback`, undo with
`undo_last_writeback`). `dry_run=True` lists the files and keywords without writing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import UserError
from engine.exchange import (
    ImportSummary,
    Progress,
    apply_import_tags,
    atomic_import,
    class_parents,
    ensure_classes,
)
from engine.exchange.keywords import SOURCES, ImageKeywords, find_sidecar, read_image
from engine.exchange.sidecar import NS, SUFFIX, class_path, merge_keywords  # noqa: F401
from engine.exchange.vocabulary import Vocabulary, VocabularyOptions, build_vocabulary
from engine.exchange.writeback import (  # noqa: F401 - undo re-exported for the CLI and GUI
    WriteAction,
    WritebackSummary,
    apply_actions,
    has_embedded_keywords,
    plan_embedded,
    plan_sidecar,
    undo_last_writeback,
)
from engine.images import is_image_path

if TYPE_CHECKING:
    from engine.progress import ShouldStop
    from engine.store import Store

PARTIAL_SETTING = "labels.partial_classes"


@dataclass
class KeywordImportSummary(ImportSummary):
    """What a keyword import did (or, in a dry run, would do)."""

    sources: dict[str, int] = field(default_factory=dict)    # images per chosen source
    conflicts: int = 0
    vocabulary: Vocabulary | None = None
    dry_run: bool = False

    def summary(self) -> str:
        vocabulary = self.vocabulary or Vocabulary()
        kept = len(vocabulary.classes)
        left_out = len(vocabulary.entries) - kept
        head = "dry run: would import " if self.dry_run else ""
        text = head + super().summary()
        by_source = ", ".join(f"{n} from {s}" for s, n in self.sources.items() if n)
        text += f"; {kept} keywords kept, {left_out} left out"
        if by_source:
            text += f"; {by_source}"
        if self.conflicts:
            text += f"; {self.conflicts} images whose sources disagree (sidecar used)"
        return text


# ---------------------------------------------------------------------------------------------
# where the sidecars are


def sidecar_locations(store: Store, out_dir: Path | None, in_place: bool
                      ) -> dict[int, tuple[Path, Path]]:
    """image id -> (image path, sidecar path) for every image present in the project."""
    roots = store.roots.list()
    names: dict[int, str] = {}
    used: set[str] = set()
    for root in roots:
        name = Path(root.path).name or "root"
        if name in used:
            name = f"{name}-{root.id}"
        used.add(name)
        names[root.id] = name
    result = {}
    for image in store.images.list():
        image_path = Path(next(r.path for r in roots if r.id == image.root_id)) / image.rel_path
        if not is_image_path(image_path) or ".." in Path(image.rel_path).parts:
            continue  # only next to (and mirroring) registered image files
        if in_place or out_dir is None:
            sidecar = image_path.with_name(image_path.name + SUFFIX)
        else:
            sidecar = Path(out_dir) / names[image.root_id] / (image.rel_path + SUFFIX)
        result[image.id] = (image_path, sidecar)
    return result


def read_library(store: Store, sources: tuple[str, ...] = SOURCES,
                 sidecar_dir: Path | str | None = None, progress: Progress | None = None,
                 should_stop: ShouldStop | None = None) -> dict[int, ImageKeywords]:
    """The keywords of every present image of the project, by image id (module doc)."""
    unknown = set(sources) - set(SOURCES)
    if unknown or not sources:
        raise UserError(f"Unknown keyword source {', '.join(sorted(unknown)) or '(none)'}; "
                        f"choose from {', '.join(SOURCES)}.")
    source = Path(sidecar_dir).expanduser() if sidecar_dir is not None else None
    if source is not None and not source.is_dir():
        raise UserError(f"Folder {source} does not exist.")
    mirrored = source is not None
    locations = sidecar_locations(store, source, in_place=not mirrored)
    found: dict[int, ImageKeywords] = {}
    for k, (image_id, (image_path, sidecar)) in enumerate(locations.items()):
        if should_stop is not None and should_stop():
            raise UserError("Keyword import cancelled; nothing was imported.")
        mirror = sidecar.with_name(image_path.name) if mirrored else None
        found[image_id] = read_image(image_path, tuple(sources), mirror)
        if progress is not None:
            progress(k + 1, len(locations))
    return found


@atomic_import
def import_xmp(store: Store, sidecar_dir: Path | str | None = None,
               progress: Progress | None = None, *, sources: tuple[str, ...] = SOURCES,
               options: VocabularyOptions | None = None, dry_run: bool = False,
               should_stop: ShouldStop | None = None) -> KeywordImportSummary:
    """Read the keywords of the project's images and import them as tags (module doc)."""
    found = read_library(store, sources, sidecar_dir, progress, should_stop)
    summary = KeywordImportSummary(source=Path(sidecar_dir or "."), dry_run=dry_run)
    for record in found.values():
        summary.unreadable += [(record.image_path, error) for error in record.errors]
        if record.chosen:
            summary.sources[record.chosen] = summary.sources.get(record.chosen, 0) + 1
    vocabulary = build_vocabulary({i: r for i, r in found.items() if r.chosen}, options)
    summary.vocabulary, summary.conflicts = vocabulary, vocabulary.conflicts
    summary.images = len(vocabulary.per_image)
    if dry_run:
        known = set(store.classes.names())
        wanted = vocabulary.classes + [p for p in vocabulary.parents.values() if p]
        summary.classes_added = [n for n in dict.fromkeys(wanted) if n not in known]
        summary.tags_set = sum(len(p) + len(n) for p, n in vocabulary.per_image.values())
        return summary
    wanted = [n for pos, neg in vocabulary.per_image.values() for n in pos + neg]
    class_ids = ensure_classes(store, wanted, vocabulary.parents, summary)
    decisions = {image_id: ([class_ids[p] for p in pos], [class_ids[n] for n in neg])
                 for image_id, (pos, neg) in vocabulary.per_image.items()}
    apply_import_tags(store, decisions, summary)
    if vocabulary.partial_classes:
        partial = dict(store.settings.get(PARTIAL_SETTING, None) or {})
        partial["keywords"] = sorted(set(partial.get("keywords", [])) | vocabulary.partial_classes)
        store.settings.set(PARTIAL_SETTING, partial)
    return summary


def export_xmp(store: Store, out_dir: Path | str | None = None, in_place: bool = False,
               progress: Progress | None = None, *, embedded: bool = False,
               dry_run: bool = False, backup: bool = True) -> WritebackSummary:
    """Write (merge) the project's tags into sidecars or, opted in, embedded metadata (module
    doc). In place, the files are backed up first unless `backup=False`."""
    if embedded and out_dir is not None and not in_place:
        raise UserError("Embedded keywords are written into the images themselves; "
                        "do not give a folder.")
    in_place = in_place or embedded
    if out_dir is None and not in_place:
        raise UserError("Give a folder for the XMP sidecars, or write them next to the images.")
    target = Path(out_dir).expanduser() if out_dir is not None and not in_place else None
    actions = plan_writeback(store, target, embedded)
    hierarchy = class_parents(store)
    summary = WritebackSummary(target=target or Path("."), actions=actions, dry_run=dry_run)
    summary.images = summary.files = len(actions)
    if not dry_run:
        summary.backup = apply_actions(store, actions, hierarchy, backup and in_place, progress)
    return summary


def plan_writeback(store: Store, target: Path | None, embedded: bool) -> list[WriteAction]:
    """Every file the write-back changes, with its keywords added and removed."""
    locations = sidecar_locations(store, target, in_place=target is None)
    hierarchy = class_parents(store)
    names = {c.id: c.name for c in store.classes.list()}
    tags = store.tags.for_images(list(locations))
    actions: list[WriteAction] = []
    for image_id, (image_path, default) in locations.items():
        image_tags = tags.get(image_id, [])
        positives = sorted(names[t.class_id] for t in image_tags if t.positive)
        negatives = sorted(names[t.class_id] for t in image_tags if not t.positive)
        mirror = default.with_name(image_path.name) if target is not None else None
        existing = find_sidecar(image_path, mirror)
        if existing is None and embedded and has_embedded_keywords(image_path):
            action = plan_embedded(image_path, positives, negatives, hierarchy)
        else:
            action = plan_sidecar(existing or default, positives, negatives, hierarchy)
        if action is not None:
            actions.append(action)
    return actions
