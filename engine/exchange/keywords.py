"""Keywords where photo tools keep them, read through exiv2 (the `pyexiv2` binding).

Sources of one image `IMG_0001.jpg`:

- `sidecar`: an XMP sidecar in either naming convention, `IMG_0001.jpg.xmp` (darktable, digiKam;
  preferred when both exist) or `IMG_0001.xmp` (Lightroom, Capture One), next to the image or
  mirrored under a folder;
- `embedded`: the XMP packet inside the file (JPEG, TIFF, PNG, WebP; HEIC where exiv2 can);
- `iptc`: IPTC-IIM `Keywords` inside the file.

Keyword fields: `dc:subject` (flat), `lr:hierarchicalSubject` (`Animals|Birds|Heron`),
`digiKam:TagsList` and `MicrosoftPhoto:LastKeywordXMP` (`Animals/Birds/Heron`), and our own
`mlic:positive` / `mlic:negative` bags (exact decisions, written by `export_xmp`).

When sources disagree the sidecar wins, then embedded XMP, then IPTC (the photo tools' rule); the
disagreement is counted. Safety: every XMP document (sidecar or embedded packet) is checked with
`defusedxml` before exiv2 reads it; a DTD, an entity declaration or an external reference is
refused, so an XXE sidecar cannot read local files and an entity bomb cannot exhaust memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

SOURCES = ("sidecar", "embedded", "iptc")
MLIC_NS = "http://ns.mlic.dev/xmp/1.0/"
HIERARCHY_FIELDS = {"Xmp.lr.hierarchicalSubject": "|", "Xmp.digiKam.TagsList": "/",
                    "Xmp.MicrosoftPhoto.LastKeywordXMP": "/"}
log = logging.getLogger(__name__)


class UnsafeXmp(ValueError):
    """An XMP document that declares a DTD or entities (refused, never expanded)."""


@dataclass
class FoundKeywords:
    """What one place (a sidecar, the embedded XMP, IPTC) says about an image."""

    flat: list[str] = field(default_factory=list)                 # dc:subject / IPTC Keywords
    paths: list[tuple[str, ...]] = field(default_factory=list)    # hierarchies, root first
    positive: list[str] | None = None                             # mlic:positive (None: absent)
    negative: list[str] | None = None                             # mlic:negative

    def empty(self) -> bool:
        return not (self.flat or self.paths or self.positive or self.negative)

    def names(self) -> set[str]:
        """Every keyword named, flat or as a leaf."""
        return set(self.flat) | {path[-1] for path in self.paths}


@dataclass
class ImageKeywords:
    """The keywords of one image, by source, and the source that was chosen."""

    image_path: Path
    by_source: dict[str, FoundKeywords] = field(default_factory=dict)
    sidecar: Path | None = None
    chosen: str | None = None
    conflict: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def keywords(self) -> FoundKeywords:
        return self.by_source[self.chosen] if self.chosen else FoundKeywords()


def exiv2():
    import pyexiv2

    try:
        pyexiv2.registerNs(MLIC_NS, "mlic")
    except Exception:  # noqa: BLE001 - already registered
        pass
    return pyexiv2


def check_safe_xml(data: bytes | str) -> None:
    """Raise `UnsafeXmp` for a document with a DTD or entities; `ValueError` if it is not XML."""
    import defusedxml
    from defusedxml import ElementTree as SafeET

    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (defusedxml.DTDForbidden, defusedxml.EntitiesForbidden,
            defusedxml.ExternalReferenceForbidden) as exc:
        raise UnsafeXmp(f"declares a DTD or entities ({type(exc).__name__}); refused") from exc
    except SafeET.ParseError as exc:
        raise ValueError(str(exc)) from exc


def sidecar_candidates(image_path: Path, mirror: Path | None = None) -> list[Path]:
    """The sidecar names of an image, preferred first: `IMG.jpg.xmp`, `IMG.xmp` (and `.XMP`)."""
    base = mirror if mirror is not None else image_path
    names = [base.name + ".xmp", base.stem + ".xmp", base.name + ".XMP", base.stem + ".XMP"]
    return [base.with_name(name) for name in names]


def find_sidecar(image_path: Path, mirror: Path | None = None) -> Path | None:
    for candidate in sidecar_candidates(image_path, mirror):
        if candidate.is_file():
            return candidate
    return None


def field_values(value) -> list[str]:  # noqa: ANN001 - exiv2 gives a str or a list
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [str(item).strip() for item in items if str(item).strip()]


def keywords_from_xmp(xmp: dict) -> FoundKeywords:
    """Our view of an exiv2 XMP dictionary (`Image.read_xmp()`)."""
    found = FoundKeywords(flat=field_values(xmp.get("Xmp.dc.subject")))
    for key, separator in HIERARCHY_FIELDS.items():
        for text in field_values(xmp.get(key)):
            path = tuple(part.strip() for part in text.split(separator) if part.strip())
            if path and path not in found.paths:
                found.paths.append(path)
    if "Xmp.mlic.positive" in xmp:
        found.positive = field_values(xmp.get("Xmp.mlic.positive"))
    if "Xmp.mlic.negative" in xmp:
        found.negative = field_values(xmp.get("Xmp.mlic.negative"))
    return found


def read_sidecar(path: Path) -> FoundKeywords:
    """Keywords of one XMP sidecar (checked for safety first). Raises ValueError/OSError."""
    data = path.read_bytes()
    check_safe_xml(data)
    pyexiv2 = exiv2()
    try:
        with pyexiv2.ImageData(data) as image:
            return keywords_from_xmp(image.read_xmp())
    except RuntimeError as exc:
        raise ValueError(str(exc)) from exc


def read_embedded(path: Path, sources: tuple[str, ...]) -> dict[str, FoundKeywords]:
    """Embedded XMP and IPTC keywords of an image file (only the `sources` asked for)."""
    pyexiv2 = exiv2()
    result: dict[str, FoundKeywords] = {}
    try:
        image = pyexiv2.Image(str(path))
    except RuntimeError as exc:
        raise ValueError(str(exc)) from exc
    try:
        if "embedded" in sources:
            raw = image.read_raw_xmp()
            if raw and raw.strip():
                check_safe_xml(raw.strip().strip("\x00"))
                result["embedded"] = keywords_from_xmp(image.read_xmp())
        if "iptc" in sources:
            iptc = image.read_iptc()
            words = field_values(iptc.get("Iptc.Application2.Keywords"))
            if words:
                result["iptc"] = FoundKeywords(flat=words)
    finally:
        image.close()
    return result


def read_image(image_path: Path, sources: tuple[str, ...] = SOURCES,
               mirror: Path | None = None) -> ImageKeywords:
    """Every asked-for source of one image; the chosen one and whether they disagree."""
    found = ImageKeywords(image_path=image_path)
    if "sidecar" in sources:
        found.sidecar = find_sidecar(image_path, mirror)
        if found.sidecar is not None:
            try:
                found.by_source["sidecar"] = read_sidecar(found.sidecar)
            except (ValueError, OSError) as exc:
                found.errors.append(f"{found.sidecar}: {exc}")
    if "embedded" in sources or "iptc" in sources:
        try:
            found.by_source.update(read_embedded(image_path, sources))
        except (ValueError, OSError) as exc:
            found.errors.append(f"{image_path}: {exc}")
    present = [s for s in SOURCES if s in found.by_source and not found.by_source[s].empty()]
    if present:
        found.chosen = present[0]
        chosen = found.by_source[present[0]].names()
        found.conflict = any(found.by_source[s].names() != chosen for s in present[1:])
    return found
