"""The demo-data generator and its import."""

from __future__ import annotations

import json

from PIL import Image

from engine.demo import CLASS_NAMES, SCENES, generate_demo, render_scene


def test_generated_files_and_splits(demo_data):
    assert len(CLASS_NAMES) >= 12
    assert set(demo_data.split_files) == {"train", "val", "test"}
    counts = {}
    seen_ids = set()
    for split, path in demo_data.split_files.items():
        data = json.loads(path.read_text())
        counts[split] = len(data["images"])
        assert [c["name"] for c in data["categories"]] == list(CLASS_NAMES)
        for image in data["images"]:
            assert image["id"] not in seen_ids
            seen_ids.add(image["id"])
            assert 224 <= image["width"] <= 288 and 192 <= image["height"] <= 256
            assert 1 <= len(image["labels"]) <= 4
            with Image.open(demo_data.images_dir / image["file_name"]) as im:
                assert im.size == (image["width"], image["height"]) and im.format == "JPEG"
        by_image = {}
        for ann in data["annotations"]:
            by_image.setdefault(ann["image_id"], set()).add(ann["category_id"])
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0
        for image in data["images"]:
            assert sorted(by_image[image["id"]]) == image["labels"]
    assert sum(counts.values()) == 120
    assert counts == {"train": 84, "val": 18, "test": 18}


def test_deterministic_and_seed_dependent(tmp_path):
    a, scene_a, objects_a = render_scene(0, 5)
    b, scene_b, objects_b = render_scene(0, 5)
    assert a.tobytes() == b.tobytes() and objects_a == objects_b and scene_a == scene_b
    c, _, _ = render_scene(1, 5)
    assert c.tobytes() != a.tobytes()
    first = generate_demo(tmp_path / "a", n_images=10, seed=3)
    second = generate_demo(tmp_path / "b", n_images=10, seed=3)
    for split in ("train", "val", "test"):
        assert first.split_files[split].read_text() == second.split_files[split].read_text()


def test_objects_sizes_and_scene_cooccurrence():
    sizes = []
    favoured = 0
    total = 0
    for index in range(150):
        image, scene, objects = render_scene(0, index)
        short = min(image.size)
        assert 1 <= len(objects) <= 4
        for obj in objects:
            sizes.append(max(obj.bbox[2], obj.bbox[3]) / short)
            favoured += obj.class_name in SCENES[scene]
            total += 1
    assert min(sizes) >= 0.08 and max(sizes) <= 0.65
    assert favoured / total > 0.75
    seen = {o.class_name for i in range(150) for o in render_scene(0, i)[2]}
    assert seen == set(CLASS_NAMES)


def test_demo_project_fixture(demo_project):
    assert demo_project.images.counts_by_split() == {"train": 84, "val": 18, "test": 18}
    assert demo_project.classes.names() == list(CLASS_NAMES)
    assert set(demo_project.tags.counts_by_source()) == {"import"}
    matrix = demo_project.tags.label_matrix(split="train")
    assert matrix.labels.shape == (84, len(CLASS_NAMES))
    assert (matrix.labels.sum(axis=1) >= 1).all()
    boxes = demo_project.boxes.for_images(matrix.image_ids)
    assert all(boxes[i] for i in matrix.image_ids)
