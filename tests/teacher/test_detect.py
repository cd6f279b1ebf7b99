"""Teacher inference: detect_paths results, regions stored in the project, `mlic detect` output,
and `mlic train` on a tiny demo project."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engine.cli.main import main
from engine.errors import UserError
from engine.inference.detect import detect_paths, select_regions
from engine.store.versions import active_run


def test_select_regions_nms_and_top_k():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 40, 40], [50, 50, 60, 70]], np.float32)
    scores = np.array([[0.9, 0.0], [0.8, 0.0], [0.5, 0.0005], [0.1, 0.3]], np.float32)
    regions = select_regions(boxes, scores, ["a", "b"], top_k=2, nms_iou=0.3, min_score=1e-3)
    # class a: box 1 is suppressed by box 0 (IoU 0.68); the best two that remain: boxes 0 and 2
    assert [(r.class_name, r.bbox, r.score) for r in regions[:2]] == [
        ("a", (0.0, 0.0, 10.0, 10.0), pytest.approx(0.9)), ("a", (20.0, 20.0, 20.0, 20.0), pytest.approx(0.5))]
    # class b: box 2 is under min_score; box 3 only
    assert [(r.class_name, r.bbox) for r in regions[2:]] == [("b", (50.0, 50.0, 10.0, 20.0))]


def test_detect_paths_scores_regions_and_storage(trained_project):
    store = trained_project
    run = active_run(store, "teacher")
    images = store.images.list(split="test")[:6]
    paths = [store.images.paths([i.id])[i.id] for i in images]
    result = detect_paths(store, paths, top_k=3, device="cpu")
    assert result.model_version == run.model_version and not result.unreadable
    assert [item.path for item in result] == paths
    for item, image in zip(result, images):
        assert item.image_id == image.id and item.size == (image.width, image.height)
        assert item.image_scores.shape == (len(run.class_names),)
        assert ((item.image_scores > 0) & (item.image_scores < 1)).all()
        per_class: dict[str, int] = {}
        for region in item.regions:
            x, y, w, h = region.bbox
            assert 0 <= x and 0 <= y and w > 0 and h > 0
            assert x + w <= image.width + 1e-3 and y + h <= image.height + 1e-3
            assert 0 < region.score <= 1
            per_class[region.class_name] = per_class.get(region.class_name, 0) + 1
        assert all(count <= 3 for count in per_class.values())
        stored = store.regions.for_image(image.id, run.model_version)
        assert len(stored) == len(item.regions)


def test_detect_skips_unreadable_and_unregistered_files(trained_project, tmp_path):
    store = trained_project
    source = store.images.paths([store.images.list(split="test")[0].id])
    good = tmp_path / "good.jpg"
    shutil.copy(next(iter(source.values())), good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    result = detect_paths(store, [good, bad], device="cpu")
    assert [item.path for item in result] == [good]
    assert result[0].image_id is None                     # not registered: not stored
    assert [path for path, _ in result.unreadable] == [bad]


def mlic(capsys, project, *argv):
    code = main(["--project", str(project), *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_detect_command_writes_regions_json(trained_project, tmp_path, capsys):
    store = trained_project
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for k, image in enumerate(store.images.list(split="test")[:3]):
        src = store.images.paths([image.id])[image.id]
        shutil.copy(src, (folder / "sub" if k else folder) / f"img{k}.jpg")
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "regions.json"
    code, stdout, stderr = mlic(capsys, store.paths.root, "detect", str(folder), "--out", str(out),
                                "--top", "2", "--device", "cpu")
    assert code == 0, stderr
    assert "broken.png" in stderr
    records = json.loads(out.read_text())
    assert records and isinstance(records, list)
    assert {r["path"] for r in records} <= {"img0.jpg", "sub/img1.jpg", "sub/img2.jpg"}
    classes = set(store.classes.names())
    counts: dict[tuple[str, str], int] = {}
    for record in records:
        assert set(record) == {"path", "class", "bbox", "score"}
        assert record["class"] in classes
        assert len(record["bbox"]) == 4 and record["bbox"][2] > 0 and record["bbox"][3] > 0
        assert 0 < record["score"] <= 1
        counts[record["path"], record["class"]] = counts.get((record["path"], record["class"]), 0) + 1
    assert max(counts.values()) <= 2
    # the images were registered and their regions stored under the model version
    version = active_run(store, "teacher").model_version
    image = store.images.find_by_path(folder / "img0.jpg")
    assert image is not None and store.regions.for_image(image.id, version)


def test_detect_without_teacher_is_a_clear_error(empty_project, tmp_path, capsys):
    code, _, stderr = mlic(capsys, empty_project.paths.root, "detect", str(tmp_path),
                           "--out", str(tmp_path / "r.json"))
    assert code == 2 and "no trained teacher" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()
    with pytest.raises(UserError):
        detect_paths(empty_project, [], device="cpu")


def test_train_command_on_a_tiny_demo_project(demo_project, capsys):
    code, out, err = mlic(capsys, demo_project.paths.root, "train", "--stage", "teacher",
                          "--epochs", "1", "--image-size", "64", "--max-proposals", "8",
                          "--proposals", "sliding",
                          "--batch-size", "16", "--device", "cpu", "--seed", "3", "--no-refine")
    assert code == 0, err
    run = active_run(demo_project, "teacher")
    assert run is not None and run.status == "completed"
    assert f"{run.model_version} epoch 1/1" in out and "loss=" in out
    assert run.config["seed"] == 3 and run.config["refine"] is False
    assert run.config["image_size"] == 64
    assert (demo_project.paths.root / run.checkpoint).is_file()


def test_train_command_defaults():
    from engine.cli.main import build_parser

    args = build_parser().parse_args(["train"])
    assert args.stage == "teacher" and args.proposals == "selective_search"
    assert not args.no_refine and not args.resume and args.weights is None


def test_train_command_rejects_bad_values(demo_project, capsys):
    code, _, err = mlic(capsys, demo_project.paths.root, "train", "--epochs", "0")
    assert code == 2 and "Epochs must be at least 1" in err
    code, _, err = mlic(capsys, demo_project.paths.root, "train", "--device", "tpu")
    assert code == 2 and "Unknown device" in err


def test_train_round_command_runs_what_the_app_runs(demo_project, capsys):
    """`mlic train --round` is the app's Train button: splits, training, calibration and the
    round's validation figures, printed after the run."""
    code, out, err = mlic(capsys, demo_project.paths.root, "train", "--round", "--stage",
                          "student", "--no-kd", "--epochs", "1", "--student-image-size", "64",
                          "--batch-size", "16", "--device", "cpu", "--student-epochs", "1")
    assert code == 0, err
    run = active_run(demo_project, "student")
    assert run is not None and run.status == "completed"
    assert f"{run.model_version} on val: mAP=" in out
    assert (run.metrics or {}).get("review", {}).get("n_images", 0) > 0
    assert run.config["student"]["epochs"] == 1
