"""Keywords of a photo library: fixtures written with exiftool in the real tools' conventions
(sidecars of both namings, embedded XMP and IPTC, the three hierarchy forms, a malformed and an
XXE sidecar), imported through the vocabulary step, written back and read back with exiftool as
the independent reader."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.cli.main import main
from engine.exchange.vocabulary import VocabularyOptions
from engine.exchange.xmp import (
    PARTIAL_SETTING,
    export_xmp,
    import_xmp,
    undo_last_writeback,
)
from engine.intake import scan_folder
from engine.store import TagEdit

EXIFTOOL = shutil.which("exiftool")
pytestmark = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool (libimage-exiftool-perl) "
                                                          "is the independent reader; .ci/run "
                                                          "installs it")
XXE = """<?xml version="1.0"?>
<!DOCTYPE x [ <!ENTITY e SYSTEM "file://{secret}"> ]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
<dc:subject><rdf:Bag><rdf:li>&e;</rdf:li></rdf:Bag></dc:subject>
</rdf:Description></rdf:RDF></x:xmpmeta>
"""
BOMB_ENTITIES = "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'
                        for i in range(9))
BOMB = (f'<?xml version="1.0"?>\n<!DOCTYPE l [<!ENTITY a "lol">{BOMB_ENTITIES}]>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag><rdf:li>&j;</rdf:li>'
        '</rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>')


def exiftool(*args: str | Path) -> None:
    subprocess.run([EXIFTOOL, "-q", "-q", "-overwrite_original", *map(str, args)], check=True)


def read_back(path: Path) -> dict[str, object]:
    """What exiftool reads: group:tag -> value (lists for list-valued tags)."""
    out = subprocess.run([EXIFTOOL, "-j", "-G1", "-a", "-struct", str(path)],
                         capture_output=True, check=True, text=True).stdout
    return json.loads(out)[0]


def as_set(value) -> set[str]:  # noqa: ANN001
    if value is None:
        return set()
    return {str(v) for v in (value if isinstance(value, list) else [value])}


def photo(path: Path, seed: int) -> Path:
    array = (np.random.default_rng(seed).random((48, 64, 3)) * 255).astype("uint8")
    Image.fromarray(array).save(path)
    return path


def sidecar(path: Path, *tags: str) -> None:
    """A sidecar made by exiftool from an empty one (as a photo tool would)."""
    subprocess.run([EXIFTOOL, "-q", "-q", "-o", str(path), *tags, str(photo(
        path.parent / f".src{path.stem}.png", 99))], check=True)
    (path.parent / f".src{path.stem}.png").unlink()


@pytest.fixture
def library(tmp_path):
    """A photo library with keywords in every place photo tools keep them."""
    lib = tmp_path / "lib"
    lib.mkdir()
    photo(lib / "a.jpg", 1)                       # digiKam: a.jpg.xmp, TagsList
    sidecar(lib / "a.jpg.xmp", "-XMP-dc:Subject=Heron", "-XMP-digiKam:TagsList=Animals/Birds/Heron")
    photo(lib / "b.jpg", 2)                       # Lightroom: b.xmp, hierarchicalSubject
    sidecar(lib / "b.xmp", "-XMP-dc:Subject=Animals", "-XMP-dc:Subject=Mammals",
            "-XMP-dc:Subject=Fox", "-XMP-dc:Subject=Ada", "-XMP-lr:HierarchicalSubject="
            "Animals|Mammals|Fox", "-XMP-lr:HierarchicalSubject=People|Ada", "-XMP-xmp:Rating=4",
            "-XMP-dc:Creator=Ada Lovelace")
    photo(lib / "c.jpg", 3)                       # embedded XMP + IPTC, GPS, artist
    exiftool("-XMP-dc:Subject=Fox", "-XMP-dc:Subject=Mammals", "-XMP-lr:HierarchicalSubject="
             "Animals|Mammals|Fox", "-IPTC:Keywords=Fox", "-IPTC:Keywords=Mammals",
             "-EXIF:Artist=Grace", "-GPSLatitude=51.5", "-GPSLatitudeRef=N", "-XMP-xmp:Rating=5",
             lib / "c.jpg")
    photo(lib / "d.tif", 4)                       # Microsoft hierarchy in a TIFF
    exiftool("-XMP-microsoft:LastKeywordXMP=Animals/Birds/Heron", "-XMP-dc:Subject=Heron",
             lib / "d.tif")
    photo(lib / "e.png", 5)
    exiftool("-XMP-dc:Subject=Heron", "-XMP-dc:Subject=Birds", lib / "e.png")
    photo(lib / "f.webp", 6)
    exiftool("-XMP-dc:Subject=Fox", lib / "f.webp")
    photo(lib / "g.jpg", 7)                       # IPTC only
    exiftool("-IPTC:Keywords=Heron", "-IPTC:Keywords=kitty", lib / "g.jpg")
    photo(lib / "h.jpg", 8)                       # sidecar and embedded disagree
    exiftool("-XMP-dc:Subject=Fox", lib / "h.jpg")
    sidecar(lib / "h.jpg.xmp", "-XMP-dc:Subject=Heron")
    photo(lib / "i.jpg", 9)
    (lib / "i.jpg.xmp").write_text("<x:xmpmeta broken", encoding="utf-8")
    photo(lib / "j.jpg", 10)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET", encoding="utf-8")
    (lib / "j.jpg.xmp").write_text(XXE.format(secret=secret), encoding="utf-8")
    photo(lib / "k.jpg", 11)
    (lib / "k.jpg.xmp").write_text(BOMB, encoding="utf-8")
    return lib


def drop_broken(lib: Path) -> None:
    """A broken sidecar stops a write-back before anything is written; the write-back tests
    leave them out."""
    for name in ("i.jpg.xmp", "j.jpg.xmp", "k.jpg.xmp"):
        (lib / name).unlink()


def positives(store) -> dict[str, set[str]]:
    names = {c.id: c.name for c in store.classes.list()}
    paths = store.images.paths(store.images.ids())
    tags = store.tags.for_images(store.images.ids())
    return {paths[i].name: {names[t.class_id] for t in ts if t.positive} for i, ts in tags.items()
            if any(t.positive for t in ts)}


def test_import_reads_every_place_and_hierarchy(empty_project, library):
    scan_folder(empty_project, library)
    summary = import_xmp(empty_project, options=VocabularyOptions(
        exclude_prefixes=["People"], merges={"kitty": "cat"}))
    assert positives(empty_project) == {
        "a.jpg": {"Heron"}, "b.jpg": {"Animals", "Mammals", "Fox"}, "c.jpg": {"Fox", "Mammals"},
        "d.tif": {"Heron"}, "e.png": {"Heron", "Birds"}, "f.webp": {"Fox"},
        "g.jpg": {"Heron", "cat"}, "h.jpg": {"Heron"}}
    classes = {c.id: c for c in empty_project.classes.list()}
    parent = {c.name: classes[c.parent_id].name if c.parent_id else None
              for c in classes.values()}
    assert parent["Heron"] == "Birds" and parent["Birds"] == "Animals"
    assert parent["Fox"] == "Mammals" and parent["Mammals"] == "Animals"
    assert "Ada" not in parent and "People" not in parent and "kitty" not in parent
    assert summary.conflicts == 1             # h: sidecar Heron, embedded Fox; c's XMP = IPTC
    assert summary.sources == {"sidecar": 3, "embedded": 4, "iptc": 1}
    unreadable = {path.name: reason for path, reason in summary.unreadable}
    assert set(unreadable) == {"i.jpg", "j.jpg", "k.jpg"}
    assert "refused" in unreadable["j.jpg"] and "refused" in unreadable["k.jpg"]
    assert "TOP-SECRET" not in repr(positives(empty_project)) + repr(summary.vocabulary)
    assert set(empty_project.settings.get(PARTIAL_SETTING)["keywords"]) >= {"Heron", "Fox"}
    assert not any(not t.positive for ts in empty_project.tags.for_images(
        empty_project.images.ids()).values() for t in ts)     # partial: never negatives


def test_vocabulary_minimum_sources_and_dry_run(empty_project, library):
    scan_folder(empty_project, library)
    dry = import_xmp(empty_project, sources=("iptc",), dry_run=True)
    assert empty_project.classes.names() == [] and dry.dry_run
    assert {e.name: e.count for e in dry.vocabulary.entries} == {
        "Fox": 1, "Mammals": 1, "Heron": 1, "kitty": 1}
    summary = import_xmp(empty_project, options=VocabularyOptions(min_count=3))
    counts = {e.name: (e.count, e.status) for e in summary.vocabulary.entries}
    assert counts["Heron"] == (5, "class") and counts["Fox"] == (3, "class")
    assert counts["Birds"][1] == "below minimum"
    assert set(empty_project.classes.names()) >= {"Heron", "Fox"}
    assert "Ada" not in empty_project.classes.names()


def test_writeback_sidecars_both_namings_keeps_fields(empty_project, library):
    drop_broken(library)
    scan_folder(empty_project, library)
    import_xmp(empty_project, sources=("sidecar",), options=VocabularyOptions(
        exclude_prefixes=["People"]))
    ids = {p.name: i for i, p in empty_project.images.paths(empty_project.images.ids()).items()}
    heron, fox = empty_project.classes.get("Heron").id, empty_project.classes.get("Fox").id
    empty_project.tags.apply([TagEdit(ids["b.jpg"], fox, "negative"),
                              TagEdit(ids["b.jpg"], heron, "positive")])
    summary = export_xmp(empty_project, in_place=True)
    assert not (library / "b.jpg.xmp").exists()       # Lightroom's b.xmp was updated
    b = read_back(library / "b.xmp")
    assert as_set(b["XMP-dc:Subject"]) == {"Animals", "Mammals", "Ada", "Birds", "Heron"}
    assert as_set(b["XMP-lr:HierarchicalSubject"]) == {"People|Ada", "Animals|Birds|Heron",
                                                         "Animals|Mammals"}
    assert b["XMP-xmp:Rating"] == 4 and as_set(b["XMP-dc:Creator"]) == {"Ada Lovelace"}
    a = read_back(library / "a.jpg.xmp")
    assert as_set(a["XMP-dc:Subject"]) == {"Heron", "Birds", "Animals"}
    assert as_set(a["XMP-digiKam:TagsList"]) == {"Animals/Birds/Heron"}
    assert summary.backup is not None and not summary.dry_run


def jpeg_scan_data(path: Path) -> bytes:
    """Everything from the start-of-scan marker on (the compressed image data)."""
    data = path.read_bytes()
    i = 2
    while data[i + 1] != 0xDA:
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return data[i:]


def test_writeback_embedded_leaves_pixels_untouched(empty_project, library):
    drop_broken(library)
    scan_folder(empty_project, library)
    import_xmp(empty_project, sources=("embedded", "iptc"))
    ids = {p.name: i for i, p in empty_project.images.paths(empty_project.images.ids()).items()}
    fox, mammals = empty_project.classes.get("Fox").id, empty_project.classes.get("Mammals").id
    heron = empty_project.classes.get("Heron").id
    empty_project.tags.apply([TagEdit(ids["c.jpg"], fox, "negative"),
                              TagEdit(ids["c.jpg"], heron, "positive"),
                              TagEdit(ids["d.tif"], mammals, "positive")])
    before = {name: (np.asarray(Image.open(library / name)).copy()) for name in ("c.jpg", "d.tif")}
    scan = jpeg_scan_data(library / "c.jpg")
    dry = export_xmp(empty_project, embedded=True, dry_run=True)
    assert {a.target.name for a in dry.actions} >= {"c.jpg", "d.tif"}
    assert read_back(library / "c.jpg")["XMP-dc:Subject"] == ["Fox", "Mammals"]   # untouched
    export_xmp(empty_project, embedded=True)
    c = read_back(library / "c.jpg")
    assert as_set(c["XMP-dc:Subject"]) == {"Mammals", "Heron", "Birds", "Animals"}
    assert as_set(c["IPTC:Keywords"]) == {"Mammals", "Heron", "Birds", "Animals"}
    assert as_set(c["XMP-lr:HierarchicalSubject"]) == {"Animals|Birds|Heron", "Animals|Mammals"}
    assert c["IFD0:Artist"] == "Grace" and c["XMP-xmp:Rating"] == 5
    assert abs(float(str(c["GPS:GPSLatitude"]).split()[0]) - 51) < 1
    assert jpeg_scan_data(library / "c.jpg") == scan
    d = read_back(library / "d.tif")
    assert as_set(d["XMP-dc:Subject"]) == {"Heron", "Birds", "Animals", "Mammals"}
    for name, pixels in before.items():
        assert np.array_equal(np.asarray(Image.open(library / name)), pixels)
    assert not (library / "c.jpg.xmp").exists() and not (library / "c.xmp").exists()


def test_dry_run_writes_nothing_and_undo_restores(empty_project, library):
    drop_broken(library)
    scan_folder(empty_project, library)
    import_xmp(empty_project, options=VocabularyOptions(exclude_prefixes=["People"]))
    ids = {p.name: i for i, p in empty_project.images.paths(empty_project.images.ids()).items()}
    fox = empty_project.classes.get("Fox").id
    empty_project.tags.apply([TagEdit(ids[n], fox, "positive") for n in ("b.jpg", "c.jpg")]
                             + [TagEdit(ids["i.jpg"], fox, "positive")])
    snapshot = {p.name: p.read_bytes() for p in library.iterdir()}
    dry = export_xmp(empty_project, in_place=True, embedded=True, dry_run=True)
    assert {p.name: p.read_bytes() for p in library.iterdir()} == snapshot
    assert any(a.creates for a in dry.actions) and dry.lines()
    export_xmp(empty_project, in_place=True, embedded=True)
    assert {p.name: p.read_bytes() for p in library.iterdir()} != snapshot
    undo_last_writeback(empty_project)
    assert {p.name: p.read_bytes() for p in library.iterdir()} == snapshot


def test_cli_import_and_export_options(tmp_path, library, capsys):
    project = tmp_path / "project"

    def mlic(*argv: str) -> tuple[int, str]:
        code = main(["--project", str(project), *argv])
        return code, capsys.readouterr().out

    drop_broken(library)
    assert mlic("init")[0] == 0                  # only init makes a project
    assert mlic("add-folder", str(library))[0] == 0
    code, out = mlic("import-xmp", "--sources", "sidecar,embedded", "--min-count", "2",
                     "--exclude-prefix", "People", "--dry-run")
    assert code == 0 and "dry run" in out and "(excluded)" in out and "Animals|Birds|Heron" in out
    assert mlic("classes")[1] == ""
    code, out = mlic("import-xmp", "--exclude-prefix", "People", "--merge", "kitty=cat")
    assert code == 0 and "conflict" not in out.lower() or "disagree" in out
    assert "cat" in mlic("classes")[1].split()
    snapshot = (library / "c.jpg").read_bytes()
    code, out = mlic("export", "xmp", "--embedded", "--dry-run")
    assert code == 0 and "would change" in out and (library / "c.jpg").read_bytes() == snapshot
    assert mlic("export", "csv", str(tmp_path / "x.csv"), "--dry-run")[0] == 2
    code, out = mlic("export", "xmp", "--in-place")
    code, out = mlic("export", "xmp", "--undo")
    assert code == 0 and "Put back" in out
