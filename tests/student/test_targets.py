"""Teacher targets on disk: memory-mapped records per image, a resumable pass, lazy reads, and
flipped views that mirror one proposal run per crop."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from engine.datasets.student import CROP_AREA, StudentImages, crop_pixels, view_crop
from engine.datasets.targets import TargetFiles, TargetLayout, TeacherTargets
from engine.datasets.teacher_views import TeacherViews
from engine.images import load_rgb
from engine.proposals import ProposalSource, get_source

LAYOUT = TargetLayout(views=2, flips=2, classes=3, boxes=4, dim=5)


def _record(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    record = LAYOUT.empty()
    record["soft"] = rng.random(record["soft"].shape)
    record["boxes"] = rng.random(record["boxes"].shape)
    record["features"] = rng.normal(size=record["features"].shape)
    record["valid"][0, :, :, :3] = True
    return record


def test_records_round_trip_through_memory_mapped_files(tmp_path):
    files = TargetFiles(tmp_path / "t", LAYOUT)
    record = _record(0)
    files.write("abcdef", record)
    read = files.read("abcdef")
    assert isinstance(read, np.memmap)
    assert read["features"].dtype == np.float16 and read["boxes"].dtype == np.float16
    targets = TeacherTargets(files, ["abcdef"], (False, True))
    view = targets.sample(0, 1, True)
    assert torch.equal(view["soft"], torch.from_numpy(record["soft"][0, 1, 1]))
    assert torch.equal(view["boxes"], torch.from_numpy(record["boxes"][0, 1, 1].astype(np.float32)))
    assert torch.equal(view["features"], torch.from_numpy(record["features"][0, 1, 1]))
    assert view["valid"].tolist() == [True, True, True, False]
    assert targets.available() == [0]
    whole = files.path("abcdef").read_bytes()
    files.path("abcdef").write_bytes(whole[:-10])            # torn: missing, never trusted
    assert files.read("abcdef") is None
    files.path("abcdef").write_bytes(b"torn")
    assert files.read("abcdef") is None
    assert TargetFiles(tmp_path / "t", TargetLayout(2, 2, 3, 4, 6)).read("abcdef") is None


def test_the_student_dataset_reads_each_samples_targets_lazily(tmp_path, monkeypatch):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (40, 30), (40 * i, 20, 20)).save(paths[-1])
    files = TargetFiles(tmp_path / "t", LAYOUT)
    for i in range(3):
        files.write(f"d{i}", _record(i))
    reads = []
    original = TargetFiles.read
    monkeypatch.setattr(TargetFiles, "read", lambda self, d: reads.append(d) or original(self, d))
    images = StudentImages(paths, np.zeros((3, 3), np.float32), 32, digests=["d0", "d1", "d2"],
                           views=2, targets=TeacherTargets(files, ["d0", "d1", "d2"]))
    assert reads == []                                         # nothing read up front
    sample = images[(2, 1, False)]
    assert reads == ["d2"]                                     # one record, one view of it
    assert torch.equal(sample["targets"]["soft"], torch.from_numpy(_record(2)["soft"][0, 1, 0]))


class ColourBoxes(ProposalSource):
    """Deterministic, content-driven test source: the bounding box of each colour channel's bright
    pixels (so it sees the image, unlike sliding windows)."""

    name = "colour-boxes"

    def params(self) -> dict:
        return {}

    def compute(self, rgb: np.ndarray) -> tuple[np.ndarray, None]:
        boxes = []
        for channel in range(3):
            ys, xs = np.nonzero(rgb[:, :, channel] > 128)
            if len(xs):
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        return np.asarray(boxes, np.float32).reshape(-1, 4), None


def _scene(path):
    pixels = np.zeros((90, 120, 3), np.uint8)
    pixels[10:50, 20:70, 0] = 255                              # off-centre objects
    pixels[40:80, 60:110, 1] = 255
    pixels[5:85, 90:100, 2] = 255
    Image.fromarray(pixels).save(path)


@pytest.mark.parametrize("source", [ColourBoxes(), get_source("sliding")],
                         ids=["colour-boxes", "sliding"])
def test_a_flipped_crop_mirrors_the_proposals_of_the_flipped_crop(tmp_path, monkeypatch, source):
    path = tmp_path / "scene.png"
    _scene(path)
    seen = []
    original = type(source).propose_array
    monkeypatch.setattr(type(source), "propose_array",
                        lambda self, rgb, size: seen.append(rgb.shape) or original(self, rgb, size))
    views = TeacherViews([path], ["digest"], 2, (False, True), 96, source, 10_000, False,
                         tmp_path / "proposals")
    flipped = views[0]["samples"][3]                           # view 1 (a crop), flipped
    image = load_rgb(path, max_side=int(math.ceil(max(96, source.max_side) / math.sqrt(CROP_AREA[0]))))
    crop = image.crop(crop_pixels(image.size, view_crop("digest", 1)))
    assert seen.count((crop.height, crop.width, 3)) == 1       # the crop: proposed once
    mirrored = np.asarray(crop)[:, ::-1].copy()                # propose on the flipped crop itself
    expected = original(source, mirrored, crop.size).boxes
    sx, sy = flipped["image"].shape[2] / crop.size[0], flipped["image"].shape[1] / crop.size[1]
    got = flipped["boxes"].numpy() / np.array([sx, sy, sx, sy], np.float32)
    assert got.shape == expected.shape and len(got) > 0
    distance = np.abs(got[:, None, :] - expected[None, :, :]).max(axis=2)
    assert distance.min(axis=0).max() < 0.01 and distance.min(axis=1).max() < 0.01


def _tiny_setup(tmp_path):
    """A tiny random teacher, four small images and a stand-in for the project's store."""
    from engine.models.wsddn import WSDDN

    torch.manual_seed(0)
    teacher = WSDDN(3, "resnet18", hidden=8, refine_branches=1)
    teacher.meta = {"image_size": 64, "max_proposals": 8, "proposals": "sliding"}
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        _scene(paths[-1]) if i == 0 else Image.new("RGB", (60 + i, 50), (9 * i, 90, 30)).save(paths[-1])
    store = SimpleNamespace(paths=SimpleNamespace(cache_dir=tmp_path / "cache",
                                                  proposals_cache=tmp_path / "proposals"),
                            images=SimpleNamespace(list=lambda include_missing: []))
    return teacher, paths, store


def test_a_cancelled_pass_keeps_finished_images_and_resumes_with_the_rest(tmp_path, monkeypatch):
    import engine.training.distill as distill
    from engine.training.api import TrainCallbacks

    teacher, paths, store = _tiny_setup(tmp_path)
    stale = store.paths.cache_dir / "distill" / "teacher-1-r4.pt"   # an earlier version's cache
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    steps = []
    run = dict(store=store, teacher=teacher, teacher_version="teacher-1", image_ids=[1, 2, 3, 4],
               paths=paths, kd_boxes=4, flips=(False, True), device=torch.device("cpu"),
               batch_size=4, views=2, workers=0)
    cancelled = distill.compute_teacher_targets(
        callbacks=TrainCallbacks(on_step=lambda *step: steps.append(step),
                                 should_stop=lambda: len(steps) >= 2), **run)
    assert cancelled is None and steps[-1] == ("teacher targets", 8, 16)
    assert not stale.exists()
    forwards = []
    original = distill._run_teacher_batch
    monkeypatch.setattr(distill, "_run_teacher_batch",
                        lambda *args: forwards.append(len(args[1]["boxes"])) or original(*args))
    # resumed with a loader worker process (the inputs must travel to it)
    targets = distill.compute_teacher_targets(callbacks=TrainCallbacks(), **{**run, "workers": 1})
    assert forwards == [4, 4]                                  # only the two images left
    assert targets.available() == [0, 1, 2, 3]
    view = targets.sample(0, 1, True)
    assert view["soft"].shape == (3,) and view["features"].shape == (4, 8)
    assert bool(view["valid"].all()) and 0.0 <= float(view["boxes"].min()) <= 1.0
    root = store.paths.cache_dir / "distill" / "teacher-1-r4-v2-f2"
    assert len(list(root.glob("*/*.npy"))) == 4


def test_targets_on_the_fly_equal_the_cached_ones(tmp_path):
    """The student's step can run the teacher itself (on a GPU): same inputs, same code, same
    targets as the pass writes to disk (up to float16 storage)."""
    from engine.datasets.student import collate_student
    from engine.training.api import TrainCallbacks
    from engine.training.distill import (
        OnlineTeacher,
        TeacherPass,
        compute_teacher_targets,
    )

    teacher, paths, store = _tiny_setup(tmp_path)
    cpu = torch.device("cpu")
    cached = compute_teacher_targets(store, teacher, "teacher-1", [1, 2, 3, 4], paths, 4, (False,),
                                     cpu, TrainCallbacks(), batch_size=1, views=1, workers=0)
    online = OnlineTeacher(teacher, TeacherPass.of(teacher, 4, 1, (False,)), cpu)
    images = StudentImages(paths, np.zeros((4, 3), np.float32), 32, digests=cached.digests,
                           teacher_views=online.views_of(paths, cached.digests,
                                                         store.paths.proposals_cache))
    for i in range(4):
        computed = online(collate_student([images[(i, 0, False)]])["teacher"])
        stored = cached.sample(i, 0, False)
        assert torch.allclose(computed["soft"][0], stored["soft"], atol=1e-6)
        assert torch.allclose(computed["boxes"][0], stored["boxes"], atol=1e-3)
        assert torch.equal(computed["features"][0], stored["features"])
        assert torch.equal(computed["valid"][0], stored["valid"])
