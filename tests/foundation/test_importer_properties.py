"""Property test of the importers (issue 15): random and mutated COCO, CSV and XMP inputs end
either as an import (exit 0) or as exactly one `mlic: error:` line, and then the project folder
is byte-for-byte what it was."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from engine.cli.main import main  # noqa: E402

from .reliability_helpers import write_images  # noqa: E402

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
NAMES = ["a.png", "b.png", "sub/c.png"]
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 5) | st.floats() | TEXT,
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A project with three images, two classes and a tag, and its image folder."""
    base = tmp_path_factory.mktemp("prop")
    write_images(base / "imgs", NAMES)
    project = base / "project"
    for argv in (["init"], ["add-folder", str(base / "imgs")], ["classes", "--add", "cat", "dog"]):
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["--project", str(project), *argv]) == 0
    return base


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _run_import(template: Path, write_input, argv) -> None:  # noqa: ANN001
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        shutil.copytree(template, base, dirs_exist_ok=True)
        project = base / "project"
        extra = write_input(base)
        before = _files(project)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["--project", str(project), *argv(base), *extra])
        lines = [line for line in err.getvalue().splitlines() if line.startswith("mlic: error:")]
        if code == 0:
            assert not lines
            with contextlib.redirect_stdout(io.StringIO()):
                assert main(["--project", str(project), "status"]) == 0
        else:
            assert code == 2, err.getvalue()
            assert len(lines) == 1 and "Traceback" not in err.getvalue(), err.getvalue()
            assert _files(project) == before


def _coco_base() -> dict:
    return {"images": [{"id": k + 1, "file_name": n} for k, n in enumerate(NAMES)],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "bird"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5]}]}


@SETTINGS
@given(path=st.lists(st.sampled_from(["images", "categories", "annotations", 0, 1, "id",
                                      "file_name", "name", "image_id", "category_id", "bbox",
                                      "labels", "split", 2]), min_size=1, max_size=3),
       value=JSON)
def test_coco_import_is_whole_or_nothing(template, path, value):
    document = _coco_base()
    node = document
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    with contextlib.suppress(TypeError, IndexError):
        node[path[-1]] = value

    def write(base: Path) -> list[str]:
        (base / "in.json").write_text(json.dumps(document), encoding="utf-8")
        return []

    _run_import(template, write, lambda base: ["import-coco", str(base / "in.json"),
                                               "--images", str(base / "imgs")])


CELLS = st.sampled_from(["1", "0", "", "x", "-", "+", "2", "train", "val", "bogus"]) | TEXT
PATHS = st.sampled_from(NAMES + ["../../etc/passwd", "/etc/passwd", "missing.png", "", "a.png"]) \
    | TEXT


@SETTINGS
@given(header=st.lists(st.sampled_from(["path", "split", "cat", "dog", "new"]) | TEXT,
                       min_size=1, max_size=5),
       rows=st.lists(st.tuples(PATHS, st.lists(CELLS, max_size=5)), max_size=5))
def test_csv_import_is_whole_or_nothing(template, header, rows):
    import csv

    def write(base: Path) -> list[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        for path, cells in rows:
            writer.writerow([path, *cells])
        (base / "imgs" / "in.csv").write_text(buffer.getvalue(), encoding="utf-8",
                                              errors="surrogatepass")
        return []

    _run_import(template, write, lambda base: ["import-csv", str(base / "imgs" / "in.csv")])


SIDECAR = ('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
           '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
           'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/">'
           '<dc:subject><rdf:Bag><rdf:li>cat</rdf:li><rdf:li>owl</rdf:li></rdf:Bag></dc:subject>'
           '</rdf:Description></rdf:RDF></x:xmpmeta>\n<?xpacket end="w"?>')


@SETTINGS
@given(cut=st.integers(0, len(SIDECAR)), insert=TEXT, drop=st.integers(0, 20))
def test_xmp_import_is_whole_or_nothing(template, cut, insert, drop):
    text = SIDECAR[:cut] + insert + SIDECAR[cut + drop:]

    def write(base: Path) -> list[str]:
        (base / "imgs" / "a.png.xmp").write_bytes(text.encode("utf-8", "surrogatepass"))
        (base / "imgs" / "b.png.xmp").write_text(SIDECAR, encoding="utf-8")
        return []

    _run_import(template, write, lambda base: ["import-xmp"])
