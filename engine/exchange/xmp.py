"""XMP sidecars: export tags for photo managers (Lightroom, darktable, digiKam, ...) and read them
back.

Sidecar name: `<image file name>.xmp` (e.g. `IMG_0001.jpg.xmp`, the darktable/digiKam convention;
it never collides when `a.jpg` and `a.png` share a folder).

Where: `export_xmp(store, out_dir)` writes the sidecars under `out_dir`, mirroring each image's
path below its project folder: `out_dir/<folder name>/<relative path>.xmp` (`<folder name>` is the
root folder's name, suffixed with `-<root id>` when two roots share a name).
`export_xmp(store, in_place=True)` writes each sidecar next to its image instead.

What is written, inside `rdf:Description`:

- `dc:subject` (a bag): the names of the image's positive classes;
- `lr:hierarchicalSubject` (a bag): each positive class as its path in the class hierarchy,
  `parent|child` (just `child` for a top-level class);
- `mlic:positive` and `mlic:negative` (bags, namespace `http://ns.mlic.dev/xmp/1.0/`): the exact
  positive and negative class names, so that negatives survive a round trip.

Merging: an existing sidecar is updated, never replaced. Every other field, attribute and namespace
is kept; in `dc:subject` and `lr:hierarchicalSubject` only the entries that name a class of the
project are replaced (other keywords stay), and the `mlic:` bags are rewritten. Images with no tags
get a sidecar only when one exists already (to remove stale keywords). All existing sidecars are
parsed before anything is written, so a broken one stops the export with nothing written.

Import (`import_xmp(store, sidecar_dir=None)`) reads the sidecar of every image of the project
(next to it, or mirrored under `sidecar_dir`). It uses the `mlic:` bags when present; a sidecar
from another tool contributes `dc:subject` keywords and `lr:hierarchicalSubject` leaves as
positive tags, every such keyword becoming a class (its hierarchy taken from the `|` paths).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import UserError
from engine.exchange import (
    ExportSummary,
    ImportSummary,
    Progress,
    apply_import_tags,
    atomic_import,
    class_parents,
    ensure_classes,
)
from engine.files import write_text_atomic
from engine.images import is_image_path

if TYPE_CHECKING:
    from engine.store import Store

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
    "mlic": "http://ns.mlic.dev/xmp/1.0/",
}
SUFFIX = ".xmp"
_XPACKET_BEGIN = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
_XPACKET_END = '\n<?xpacket end="w"?>\n'


def _q(prefix: str, local: str) -> str:
    return f"{{{NS[prefix]}}}{local}"


for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)


@dataclass
class Keywords:
    """What a sidecar says about an image's tags."""

    subjects: list[str] = field(default_factory=list)        # dc:subject
    hierarchical: list[str] = field(default_factory=list)    # lr:hierarchicalSubject
    positive: list[str] | None = None                        # mlic:positive (None: absent)
    negative: list[str] | None = None                        # mlic:negative


# ---------------------------------------------------------------------------------------------
# sidecar documents


def _parse(path: Path) -> tuple[ET.ElementTree, bool]:
    """Parse a sidecar, registering its namespace prefixes so they are written back unchanged.
    Returns (tree, whether it had an xpacket wrapper)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read XMP sidecar {path}: "
                        f"{getattr(exc, 'strerror', None) or exc}.") from exc
    try:
        for _event, (prefix, uri) in ET.iterparse(
                _as_bytes_io(text), events=("start-ns",)):
            if prefix and not re.fullmatch(r"ns\d+", prefix) and prefix != "xml":
                try:
                    ET.register_namespace(prefix, uri)
                except ValueError:
                    pass
        parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
        root = ET.fromstring(text, parser=parser)
    except ET.ParseError as exc:
        raise UserError(f"XMP sidecar {path} is not valid XML: {exc}.") from exc
    return ET.ElementTree(root), "<?xpacket" in text[:200]


def _as_bytes_io(text: str):
    import io

    return io.BytesIO(text.encode("utf-8"))


def _new_document() -> ET.ElementTree:
    root = ET.Element(_q("x", "xmpmeta"))
    rdf = ET.SubElement(root, _q("rdf", "RDF"))
    ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})
    return ET.ElementTree(root)


def _rdf(tree: ET.ElementTree) -> ET.Element:
    root = tree.getroot()
    if root.tag == _q("rdf", "RDF"):
        return root
    rdf = root.find(f".//{_q('rdf', 'RDF')}")
    if rdf is None:
        rdf = ET.SubElement(root, _q("rdf", "RDF"))
    return rdf


def _descriptions(tree: ET.ElementTree) -> list[ET.Element]:
    rdf = _rdf(tree)
    descriptions = rdf.findall(_q("rdf", "Description"))
    if not descriptions:
        descriptions = [ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})]
    return descriptions


def _bag_values(element: ET.Element) -> list[str]:
    return [(li.text or "").strip() for li in element.iter(_q("rdf", "li"))
            if (li.text or "").strip()]


def read_keywords(tree: ET.ElementTree) -> Keywords:
    keywords = Keywords()
    for description in _descriptions(tree):
        for element in description:
            if element.tag == _q("dc", "subject"):
                keywords.subjects += _bag_values(element)
            elif element.tag == _q("lr", "hierarchicalSubject"):
                keywords.hierarchical += _bag_values(element)
            elif element.tag == _q("mlic", "positive"):
                keywords.positive = (keywords.positive or []) + _bag_values(element)
            elif element.tag == _q("mlic", "negative"):
                keywords.negative = (keywords.negative or []) + _bag_values(element)
    return keywords


def _set_bag(description: ET.Element, tag: str, values: list[str], existing: ET.Element | None,
             container: str = "Bag") -> None:
    if existing is None:
        if not values:
            return
        existing = ET.SubElement(description, tag)
    tail = existing.tail
    existing.clear()
    existing.tail = tail
    bag = ET.SubElement(existing, _q("rdf", container))
    for value in values:
        ET.SubElement(bag, _q("rdf", "li")).text = value


def merge_keywords(tree: ET.ElementTree, positives: list[str], negatives: list[str],
                   hierarchy: dict[str, str | None], project_classes: set[str]) -> None:
    """Write our keywords into `tree`, keeping every foreign field and foreign keyword."""
    descriptions = _descriptions(tree)
    found: dict[str, tuple[ET.Element, ET.Element]] = {}
    for description in descriptions:
        for element in list(description):
            for key in ("dc:subject", "lr:hierarchicalSubject", "mlic:positive", "mlic:negative"):
                prefix, local = key.split(":")
                if element.tag == _q(prefix, local):
                    if key in found:  # a duplicate field: fold into the first
                        description.remove(element)
                    else:
                        found[key] = (description, element)
    target = descriptions[0]

    old_subjects = _bag_values(found["dc:subject"][1]) if "dc:subject" in found else []
    subjects = [s for s in old_subjects if s not in project_classes]
    subjects += [p for p in positives if p not in subjects]
    old_paths = (_bag_values(found["lr:hierarchicalSubject"][1])
                 if "lr:hierarchicalSubject" in found else [])
    paths = [p for p in old_paths if p.split("|")[-1] not in project_classes]
    paths += [path for path in (class_path(p, hierarchy) for p in positives) if path not in paths]

    for key, values in (("dc:subject", subjects), ("lr:hierarchicalSubject", paths),
                        ("mlic:positive", list(positives)), ("mlic:negative", list(negatives))):
        prefix, local = key.split(":")
        description, element = found.get(key, (target, None))
        if element is None and not values and key.startswith("mlic"):
            continue
        _set_bag(description, _q(prefix, local), values, element)


def class_path(name: str, hierarchy: dict[str, str | None]) -> str:
    """`grandparent|parent|name` through the class hierarchy (cycles are cut)."""
    chain = [name]
    parent = hierarchy.get(name)
    while parent and parent not in chain:
        chain.append(parent)
        parent = hierarchy.get(parent)
    return "|".join(reversed(chain))


def _serialise(tree: ET.ElementTree, xpacket: bool) -> str:
    ET.indent(tree, space=" ")
    body = ET.tostring(tree.getroot(), encoding="unicode")
    return (_XPACKET_BEGIN + body + _XPACKET_END) if xpacket else body + "\n"


# ---------------------------------------------------------------------------------------------
# project-level export / import


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


def export_xmp(store: Store, out_dir: Path | str | None = None, in_place: bool = False,
               progress: Progress | None = None) -> ExportSummary:
    """Write (merge) XMP sidecars for the project's tagged images (module doc)."""
    if out_dir is None and not in_place:
        raise UserError("Give a folder for the XMP sidecars, or write them next to the images.")
    target = Path(out_dir).expanduser() if out_dir is not None and not in_place else None
    locations = sidecar_locations(store, target, in_place)
    hierarchy = class_parents(store)
    names = {c.id: c.name for c in store.classes.list()}
    project_classes = set(names.values())
    tags = store.tags.for_images(list(locations))

    # Parse every existing sidecar first: a broken one stops the export before any write.
    plans = []
    for image_id, (_image_path, sidecar) in locations.items():
        image_tags = tags.get(image_id, [])
        exists = sidecar.is_file()
        if not image_tags and not exists:
            continue
        tree, xpacket = _parse(sidecar) if exists else (_new_document(), False)
        positives = sorted(names[t.class_id] for t in image_tags if t.positive)
        negatives = sorted(names[t.class_id] for t in image_tags if not t.positive)
        plans.append((sidecar, tree, xpacket, positives, negatives))
    for k, (sidecar, tree, xpacket, positives, negatives) in enumerate(plans):
        merge_keywords(tree, positives, negatives, hierarchy, project_classes)
        write_text_atomic(sidecar, _serialise(tree, xpacket))
        if progress is not None:
            progress(k + 1, len(plans))
    return ExportSummary(target=target or Path("."), images=len(plans), files=len(plans))


@atomic_import
def import_xmp(store: Store, sidecar_dir: Path | str | None = None,
               progress: Progress | None = None) -> ImportSummary:
    """Read the sidecars of the project's images and import their tags (module doc)."""
    source = Path(sidecar_dir).expanduser() if sidecar_dir is not None else None
    if source is not None and not source.is_dir():
        raise UserError(f"Folder {source} does not exist.")
    locations = sidecar_locations(store, source, in_place=source is None)
    summary = ImportSummary(source=source or Path("."))
    found: dict[int, Keywords] = {}
    for k, (image_id, (_image_path, sidecar)) in enumerate(locations.items()):
        if sidecar.is_file():
            found[image_id] = read_keywords(_parse(sidecar)[0])
        if progress is not None:
            progress(k + 1, len(locations))
    wanted: list[str] = []
    parents: dict[str, str | None] = {}
    per_image: dict[int, tuple[list[str], list[str]]] = {}
    for image_id, keywords in found.items():
        for path in keywords.hierarchical:
            parts = [part.strip() for part in path.split("|") if part.strip()]
            for parent, child in zip(parts, parts[1:]):
                parents.setdefault(child, parent)
        if keywords.positive is not None or keywords.negative is not None:
            positives = list(keywords.positive or [])
            negatives = list(keywords.negative or [])
        else:
            positives = list(dict.fromkeys(
                keywords.subjects + [p.split("|")[-1].strip() for p in keywords.hierarchical]))
            negatives = []
        positives = [p for p in positives if p and "," not in p]
        negatives = [n for n in negatives if n and "," not in n]
        wanted += positives + negatives
        per_image[image_id] = (positives, negatives)
    class_ids = ensure_classes(store, wanted, parents, summary)
    decisions = {image_id: ([class_ids[p] for p in pos], [class_ids[n] for n in neg])
                 for image_id, (pos, neg) in per_image.items()}
    summary.images = len(decisions)
    apply_import_tags(store, decisions, summary)
    return summary
