"""XMP sidecar documents: safe parsing, merging our keywords in, writing them back out.

A sidecar is updated, never replaced: every other field, attribute, comment and namespace is kept;
in `dc:subject` and `lr:hierarchicalSubject` our positives are added (`dc:subject` with every level
of the hierarchy) and the keywords of rejected classes (negative tags) are removed; other keywords
stay. The `mlic:` bags (exact positives and negatives) are rewritten.

Everything around the root element is kept byte for byte (`Envelope`): the XML declaration, the
xpacket header and trailer with the trailer's padding (the room photo tools keep for rewriting in
place), and processing instructions and comments outside the root; those inside it stay in the tree.

Parsing is safe: the document is checked with `defusedxml` first (no DTD, no entities, nothing
external), then read with ElementTree, keeping comments and namespace prefixes.
"""

from __future__ import annotations

import codecs
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError
from engine.exchange.keywords import check_safe_xml

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


# ---------------------------------------------------------------------------------------------
# sidecar documents


@dataclass(frozen=True)
class Envelope:
    """The text of a sidecar before its root element (`prolog`) and after it (`epilog`)."""

    prolog: str = ""
    epilog: str = "\n"


def _envelope(text: str, bom: bool) -> Envelope:
    start = re.search(r"<(?![?!])([^\s/>]+)", text)
    if start is None:
        return Envelope()
    prolog = ("\ufeff" if bom else "") + text[:start.start()]
    end = text.rfind(f"</{start[1]}")
    close = text.find(">", end) if end >= 0 else -1
    return Envelope(prolog, text[close + 1:] if close >= 0 else "\n")


def parse_sidecar(path: Path) -> tuple[ET.ElementTree, Envelope]:
    """Parse a sidecar, registering its namespace prefixes so they are written back unchanged.
    Returns (tree, what surrounds its root element, for `serialise`)."""
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read XMP sidecar {path}: "
                        f"{getattr(exc, 'strerror', None) or exc}.") from exc
    try:
        check_safe_xml(text)
    except ValueError as exc:
        raise UserError(f"XMP sidecar {path} is not valid XML: {exc}.") from exc
    try:
        for _event, (prefix, uri) in ET.iterparse(
                io.BytesIO(text.encode("utf-8")), events=("start-ns",)):
            if prefix and not re.fullmatch(r"ns\d+", prefix) and prefix != "xml":
                try:
                    ET.register_namespace(prefix, uri)
                except ValueError:
                    pass
        parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))
        root = ET.fromstring(text, parser=parser)
    except ET.ParseError as exc:
        raise UserError(f"XMP sidecar {path} is not valid XML: {exc}.") from exc
    return ET.ElementTree(root), _envelope(text, raw.startswith(codecs.BOM_UTF8))


def new_document() -> ET.ElementTree:
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


def merged_lists(subjects: list[str], paths: list[str], positives: list[str],
                 negatives: list[str], hierarchy: dict[str, str | None]
                 ) -> tuple[list[str], list[str]]:
    """New (`dc:subject`, `lr:hierarchicalSubject`) values: our positives added (every level of
    their paths in `dc:subject`), the rejected classes' keywords removed, the rest kept."""
    wanted_paths = [class_path(p, hierarchy) for p in positives]
    wanted_paths = [p for p in wanted_paths  # an ancestor's path is implied by a deeper one
                    if not any(other.startswith(p + "|") for other in wanted_paths)]
    levels = list(dict.fromkeys(level for path in wanted_paths for level in path.split("|")))
    rejected = set(negatives) - set(levels)
    new_subjects = [s for s in subjects if s not in rejected]
    new_subjects += [level for level in levels if level not in new_subjects]
    new_paths = [p for p in paths if p.split("|")[-1].strip() not in rejected]
    for path in wanted_paths:   # a path already implied by a deeper kept one is not repeated
        if path not in new_paths and not any(p.startswith(path + "|") for p in new_paths):
            new_paths.append(path)
    return new_subjects, new_paths


def merge_keywords(tree: ET.ElementTree, positives: list[str], negatives: list[str],
                   hierarchy: dict[str, str | None]) -> tuple[list[str], list[str], bool]:
    """Write our keywords into `tree`, keeping every foreign field and foreign keyword.
    Returns the `dc:subject` keywords (added, removed) and whether a keyword field changed
    (`dc:subject`, `lr:hierarchicalSubject`, or the `mlic:` bags where the sidecar had them)."""
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
    old_paths = (_bag_values(found["lr:hierarchicalSubject"][1])
                 if "lr:hierarchicalSubject" in found else [])
    subjects, paths = merged_lists(old_subjects, old_paths, positives, negatives, hierarchy)
    changed = subjects != old_subjects or paths != old_paths
    changed = changed or bool(negatives and "mlic:negative" not in found)  # keep rejections
    for key, values in (("mlic:positive", positives), ("mlic:negative", negatives)):
        if key in found:
            changed = changed or _bag_values(found[key][1]) != list(values)
    for key, values in (("dc:subject", subjects), ("lr:hierarchicalSubject", paths),
                        ("mlic:positive", list(positives)), ("mlic:negative", list(negatives))):
        prefix, local = key.split(":")
        description, element = found.get(key, (target, None))
        if element is None and not values and key.startswith("mlic"):
            continue
        _set_bag(description, _q(prefix, local), values, element)
    return ([s for s in subjects if s not in old_subjects],
            [s for s in old_subjects if s not in subjects], changed)


def class_path(name: str, hierarchy: dict[str, str | None]) -> str:
    """`grandparent|parent|name` through the class hierarchy (cycles are cut)."""
    chain = [name]
    parent = hierarchy.get(name)
    while parent and parent not in chain:
        chain.append(parent)
        parent = hierarchy.get(parent)
    return "|".join(reversed(chain))


def serialise(tree: ET.ElementTree, envelope: Envelope | bool) -> str:
    """The document's text: inside the `Envelope` its sidecar had, or for a new one with (True)
    or without (False) a standard xpacket wrapper."""
    ET.indent(tree, space=" ")
    body = ET.tostring(tree.getroot(), encoding="unicode")
    if isinstance(envelope, Envelope):
        return envelope.prolog + body + envelope.epilog
    return (_XPACKET_BEGIN + body + _XPACKET_END) if envelope else body + "\n"


