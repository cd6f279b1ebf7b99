"""COCO / CSV / XMP import and export: validation, round trips, XMP merging."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from engine.errors import UserError
from engine.exchange.coco import export_coco, import_coco
from engine.exchange.csv_tags import export_csv, import_csv
from engine.exchange.xmp import NS, export_xmp, import_xmp
from engine.intake import scan_folder
from engine.store import Store, TagEdit

from .files import gradient_rgb


def tag_state(store: Store) -> dict[tuple[str, str], bool]:
    """(image file path, class name) -> positive?, for every tag of the project."""
    names = {c.id: c.name for c in store.classes.list()}
    images = store.images.list()
    paths = store.images.paths([i.id for i in images])
    tags = store.tags.for_images([i.id for i in images])
    return {(str(paths[i]), names[t.class_id]): t.positive for i, ts in tags.items() for t in ts}


def splits(store: Store) -> dict[str, str]:
    images = store.images.list()
    paths = store.images.paths([i.id for i in images])
    return {str(paths[i.id]): i.split for i in images}


@pytest.fixture
def varied_project(backend_demo_project):
    """The demo project plus negatives, a person's tags, a hierarchy and an untagged image."""
    store = backend_demo_project
    shapes = store.classes.ensure(["shapes"])[0]
    for cls in store.classes.list():
        if cls.name in ("star", "ring"):
            store.classes.update(cls.id, parent_id=shapes.id)
    ids = store.images.ids()
    star = store.classes.get("star").id
    store.tags.apply([TagEdit(ids[0], star, "negative"), TagEdit(ids[1], star, "positive"),
                      TagEdit(ids[2], shapes.id, "positive")], source="person")
    return store


# ---------------------------------------------------------------------------------------------
# COCO


def test_coco_import_of_demo(backend_demo_project, demo_data):
    assert backend_demo_project.images.count() == 120
    boxes = backend_demo_project.boxes.all()
    truth = sum(len(json.loads(p.read_text())["annotations"])
                for p in demo_data.split_files.values())
    assert len(boxes) == truth
    history = backend_demo_project.tags.history()
    assert history and all(change.source == "import" for change in history)


def test_coco_reimport_is_idempotent(backend_demo_project, demo_data):
    before = (tag_state(backend_demo_project), len(backend_demo_project.boxes.all()),
              len(backend_demo_project.tags.history()))
    summary = import_coco(backend_demo_project, demo_data.train_json, demo_data.images_dir,
                          split="train")
    assert summary.tags_set == 0
    after = (tag_state(backend_demo_project), len(backend_demo_project.boxes.all()),
             len(backend_demo_project.tags.history()))
    assert before == after


def test_coco_import_keeps_a_persons_tags(backend_demo_project, demo_data):
    image_id = backend_demo_project.images.ids(split="train")[0]
    positives = [t for t in backend_demo_project.tags.for_image(image_id) if t.positive]
    class_id = positives[0].class_id
    backend_demo_project.tags.set(image_id, class_id, "negative", source="person")
    summary = import_coco(backend_demo_project, demo_data.train_json, demo_data.images_dir)
    assert summary.kept_person_tags == 1
    tag = next(t for t in backend_demo_project.tags.for_image(image_id) if t.class_id == class_id)
    assert tag.positive is False and tag.source == "person"


def _write(path, data):
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[]", "top level"),
    ({"images": []}, "'categories'"),
    ({"images": [{"id": 1}], "categories": []}, "file_name"),
    ({"images": [], "categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}, "twice"),
    ({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "a"}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1]}]},
     "unknown category"),
    ({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "a"}],
      "annotations": [{"id": 1, "image_id": 7, "category_id": 1}]}, "unknown image"),
    ({"images": [{"id": 1, "file_name": "a.jpg", "labels": [5]}],
      "categories": [{"id": 1, "name": "a"}]}, "unknown categories"),
    ({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "a"}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2]}]}, "bbox"),
])
def test_bad_coco_files(backend_project, tmp_path, content, message):
    path = _write(tmp_path / "bad.json", content)
    with pytest.raises(UserError, match=message):
        import_coco(backend_project, path, tmp_path)
    assert backend_project.images.count() == 0 and backend_project.classes.names() == []


def test_coco_missing_files_and_labels_field(backend_project, tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    gradient_rgb().save(images / "a.jpg")
    gradient_rgb(30, 20).save(images / "b.jpg")
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "labels": [2], "negative_labels": [1]},
                   {"id": 2, "file_name": "b.jpg", "split": "val"},
                   {"id": 3, "file_name": "gone.jpg"},
                   {"id": 4, "file_name": "../escape.jpg"}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"},
                       {"id": 3, "name": "kitten", "parent": "cat"}],
        "annotations": [{"id": 1, "image_id": 2, "category_id": 3, "bbox": [1, 2, 10, 5]}],
    }
    summary = import_coco(backend_project, _write(tmp_path / "c.json", data), images)
    assert sorted(summary.missing) == ["../escape.jpg", "gone.jpg"]
    assert summary.images == 2 and summary.boxes == 1
    state = tag_state(backend_project)
    a, b = str((images / "a.jpg").resolve()), str((images / "b.jpg").resolve())
    # a lists its negatives; b's file is exhaustive: dog is a negative, cat (kitten's parent) not
    assert state == {(a, "dog"): True, (a, "cat"): False, (b, "kitten"): True, (b, "dog"): False}
    assert splits(backend_project) == {a: "unassigned", b: "val"}
    kitten = backend_project.classes.get("kitten")
    assert kitten.parent_id == backend_project.classes.get("cat").id


def test_coco_round_trip(varied_project, tmp_path):
    out = tmp_path / "export.json"
    summary = export_coco(varied_project, out)
    assert summary.images == 120
    data = json.loads(out.read_text())
    assert "mlic_image_labels" in data["info"]
    assert all("labels" in i and "negative_labels" in i and "split" in i for i in data["images"])
    assert len(data["annotations"]) == len(varied_project.boxes.all())
    fresh = Store.open(tmp_path / "fresh")
    import_coco(fresh, out, data["info"]["images_dir"])
    assert tag_state(fresh) == tag_state(varied_project)
    assert splits(fresh) == splits(varied_project)
    assert len(fresh.boxes.all()) == len(varied_project.boxes.all())
    star = fresh.classes.get("star")
    assert star.parent_id == fresh.classes.get("shapes").id
    fresh.close()


# ---------------------------------------------------------------------------------------------
# CSV


def test_csv_round_trip(varied_project, tmp_path):
    out = tmp_path / "tags.csv"
    export_csv(varied_project, out)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("path,split,striped_circle,")
    assert len(lines) == 121
    fresh = Store.open(tmp_path / "fresh")
    summary = import_csv(fresh, out)
    assert summary.images == 120 and not summary.missing
    assert tag_state(fresh) == tag_state(varied_project)
    assert splits(fresh) == splits(varied_project)
    assert set(fresh.tags.counts_by_source()) == {"import"}
    # Importing again changes nothing.
    again = import_csv(fresh, out)
    assert again.tags_set == 0
    fresh.close()


def test_csv_relative_paths_values_and_errors(backend_project, tmp_path):
    gradient_rgb().save(tmp_path / "a.jpg")
    (tmp_path / "sub").mkdir()
    gradient_rgb().save(tmp_path / "sub" / "b.png")
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("\ufeffpath,cat,dog,split\n"
                        "a.jpg,yes,-,train\n"
                        "sub/b.png,,TRUE,\n"
                        "missing.jpg,1,,\n")
    summary = import_csv(backend_project, csv_path)
    assert summary.missing == [str(tmp_path.resolve() / "missing.jpg")]
    a, b = str((tmp_path / "a.jpg").resolve()), str((tmp_path / "sub" / "b.png").resolve())
    assert tag_state(backend_project) == {(a, "cat"): True, (a, "dog"): False, (b, "dog"): True}
    assert splits(backend_project) == {a: "train", b: "unassigned"}

    for text, message in [("", "empty"), ("file,cat\nx,1\n", "first column"),
                          ("path,cat\na.jpg,maybe\n", "not a tag value"),
                          ("path,cat,cat\n", "twice"),
                          ("path,split\na.jpg,holdout\n", "unknown split"),
                          ("path,cat\na.jpg,1,1\n", "cells")]:
        csv_path.write_text(text)
        with pytest.raises(UserError, match=message):
            import_csv(backend_project, csv_path)
    with pytest.raises(UserError, match="does not exist"):
        import_csv(backend_project, tmp_path / "nope.csv")


# ---------------------------------------------------------------------------------------------
# XMP


def test_xmp_round_trip_mirrored(varied_project, tmp_path):
    out = tmp_path / "sidecars"
    summary = export_xmp(varied_project, out)
    assert summary.images == 120
    sidecars = sorted(out.rglob("*.xmp"))
    assert len(sidecars) == 120 and sidecars[0].name.endswith(".jpg.xmp")
    fresh = Store.open(tmp_path / "fresh")
    image_dir = varied_project.images.paths(varied_project.images.ids()[:1])
    scan_folder(fresh, next(iter(image_dir.values())).parent)
    import_xmp(fresh, out)
    assert tag_state(fresh) == tag_state(varied_project)
    assert fresh.classes.get("star").parent_id == fresh.classes.get("shapes").id
    fresh.close()


def test_xmp_hierarchy_written(varied_project, tmp_path):
    export_xmp(varied_project, tmp_path / "x")
    ids = varied_project.images.ids()
    path = varied_project.images.paths([ids[1]])[ids[1]]
    sidecar = tmp_path / "x" / path.parent.name / (path.name + ".xmp")
    root = ET.parse(sidecar).getroot()
    hierarchical = [li.text for li in root.iter(f"{{{NS['rdf']}}}li")]
    assert "shapes|star" in hierarchical
    negatives = root.find(f".//{{{NS['mlic']}}}negative")   # the demo's exhaustive negatives
    rejected = [li.text for li in negatives.iter(f"{{{NS['rdf']}}}li")]
    assert rejected and "star" not in rejected


FOREIGN = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 5.6">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
    xmp:Rating="4" crs:Exposure2012="+0.35">
   <!-- edited by hand -->
   <dc:creator><rdf:Seq><rdf:li>Ada</rdf:li></rdf:Seq></dc:creator>
   <dc:subject><rdf:Bag><rdf:li>holiday</rdf:li><rdf:li>cat</rdf:li></rdf:Bag></dc:subject>
   <lr:hierarchicalSubject><rdf:Bag><rdf:li>places|beach</rdf:li><rdf:li>cat</rdf:li>
   </rdf:Bag></lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""


def test_xmp_merge_keeps_foreign_fields(backend_project, tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    gradient_rgb().save(folder / "a.jpg")
    report = scan_folder(backend_project, folder)
    image_id = next(iter(report.image_ids.values()))
    sidecar = folder / "a.jpg.xmp"
    sidecar.write_text(FOREIGN, encoding="utf-8")
    cat, dog = backend_project.classes.ensure(["cat", "dog"])
    backend_project.tags.apply([TagEdit(image_id, dog.id, "positive"),
                              TagEdit(image_id, cat.id, "negative")])
    export_xmp(backend_project, in_place=True)
    text = sidecar.read_text(encoding="utf-8")
    assert text.startswith("<?xpacket begin=") and text.rstrip().endswith('<?xpacket end="w"?>')
    assert 'xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"' in text
    assert "edited by hand" in text
    root = ET.fromstring(text.split("?>", 1)[1].rsplit("<?xpacket", 1)[0])
    description = root.find(f".//{{{NS['rdf']}}}Description")
    assert description.get("{http://ns.adobe.com/xap/1.0/}Rating") == "4"
    assert description.get("{http://ns.adobe.com/camera-raw-settings/1.0/}Exposure2012") == "+0.35"
    creator = description.find(f"{{{NS['dc']}}}creator")
    assert [li.text for li in creator.iter(f"{{{NS['rdf']}}}li")] == ["Ada"]

    def bag(prefix, local):
        element = description.find(f"{{{NS[prefix]}}}{local}")
        return [li.text for li in element.iter(f"{{{NS['rdf']}}}li")]

    assert bag("dc", "subject") == ["holiday", "dog"]          # 'cat' is now a negative
    assert bag("lr", "hierarchicalSubject") == ["places|beach", "dog"]
    assert bag("mlic", "positive") == ["dog"] and bag("mlic", "negative") == ["cat"]

    # A second export is stable, and import in place gives the tags back.
    export_xmp(backend_project, in_place=True)
    assert sidecar.read_text(encoding="utf-8") == text
    fresh = Store.open(tmp_path / "fresh")
    scan_folder(fresh, folder)
    import_xmp(fresh)
    assert tag_state(fresh) == tag_state(backend_project)
    fresh.close()


def test_xmp_foreign_sidecar_import(backend_project, tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    gradient_rgb().save(folder / "a.jpg")
    scan_folder(backend_project, folder)
    (folder / "a.jpg.xmp").write_text(FOREIGN, encoding="utf-8")
    summary = import_xmp(backend_project)
    assert summary.images == 1
    positives = {name for (_, name), positive in tag_state(backend_project).items() if positive}
    assert positives == {"holiday", "cat", "beach"}
    assert backend_project.classes.get("beach").parent_id == backend_project.classes.get("places").id


def test_xmp_broken_sidecar_stops_before_writing(backend_project, tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    gradient_rgb().save(folder / "a.jpg")
    gradient_rgb().save(folder / "b.jpg")
    report = scan_folder(backend_project, folder)
    cat = backend_project.classes.ensure(["cat"])[0]
    backend_project.tags.apply([TagEdit(i, cat.id, "positive") for i in report.image_ids.values()])
    (folder / "b.jpg.xmp").write_text("<x:xmpmeta broken")
    with pytest.raises(UserError, match="not valid XML"):
        export_xmp(backend_project, in_place=True)
    assert not (folder / "a.jpg.xmp").exists()
