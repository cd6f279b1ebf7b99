"""Proposal sources and the per-image cache (hit / miss, keyed by content and parameters)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.errors import UserError
from engine.images import file_digest
from engine.proposals import (
    Proposals,
    ProposalCache,
    ProposalJob,
    SlidingWindows,
    compute_proposals,
    get_source,
)


def _scene(path, size=(160, 120)):
    rng = np.random.default_rng(0)
    pixels = (rng.random((size[1], size[0], 3)) * 30 + 100).astype(np.uint8)
    pixels[30:80, 20:70] = (230, 40, 40)            # a red square at x 20..70, y 30..80
    Image.fromarray(pixels).save(path)
    return path


def test_sliding_windows_cover_the_image_in_original_pixels(tmp_path):
    path = _scene(tmp_path / "a.png")
    proposals = SlidingWindows().propose(path)
    assert proposals.size == (160, 120) and proposals.scores is None
    boxes = proposals.boxes
    assert boxes.dtype == np.float32 and boxes.shape[1] == 4 and len(boxes) > 100
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 160).all() and (boxes[:, 3] <= 120).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert boxes[0].tolist() == [0, 0, 160, 120]    # the whole image comes first
    # some window fits the square well
    x1 = np.maximum(boxes[:, 0], 20); y1 = np.maximum(boxes[:, 1], 30)
    x2 = np.minimum(boxes[:, 2], 70); y2 = np.minimum(boxes[:, 3], 80)
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert (inter / (area + 2500 - inter)).max() > 0.7


@pytest.mark.parametrize("name", ["edgeboxes", "selective_search"])
def test_opencv_sources_find_the_object(tmp_path, name):
    path = _scene(tmp_path / "a.png")
    proposals = get_source(name).propose(path)
    assert len(proposals) > 0 and proposals.size == (160, 120)
    if name == "edgeboxes":
        assert proposals.scores is not None and proposals.scores.shape == (len(proposals),)
        assert (np.diff(proposals.scores) <= 1e-6).all()        # best first
    boxes = proposals.boxes
    x1 = np.maximum(boxes[:, 0], 20); y1 = np.maximum(boxes[:, 1], 30)
    x2 = np.minimum(boxes[:, 2], 70); y2 = np.minimum(boxes[:, 3], 80)
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert (inter / (area + 2500 - inter)).max() > 0.7


def test_unknown_source_is_a_user_error():
    with pytest.raises(UserError):
        get_source("magic")


def test_cache_miss_then_hit(tmp_path):
    paths = [_scene(tmp_path / f"{i}.png", size=(160 + 8 * i, 120)) for i in range(3)]
    jobs = [ProposalJob(p, file_digest(p)) for p in paths]
    cache = ProposalCache(tmp_path / "cache")
    source = SlidingWindows()
    seen = []
    first = compute_proposals(jobs, source, cache, workers=1, progress=lambda d, t: seen.append((d, t)))
    assert first.cache_hits == 0 and first.computed == 3 and not first.failed
    assert seen[-1] == (3, 3)
    assert all(cache.path(source, job.digest).exists() for job in jobs)
    second = compute_proposals(jobs, source, cache, workers=1)
    assert second.cache_hits == 3 and second.computed == 0
    for job in jobs:
        assert np.array_equal(first.proposals[job.digest].boxes, second.proposals[job.digest].boxes)
    # other parameters are another cache entry
    other = SlidingWindows(step=0.5)
    assert other.cache_key() != source.cache_key()
    third = compute_proposals(jobs, other, cache, workers=1)
    assert third.cache_hits == 0 and third.computed == 3
    # a moved file with the same content hits the cache
    moved = tmp_path / "moved.png"
    paths[0].rename(moved)
    fourth = compute_proposals([ProposalJob(moved, jobs[0].digest)], source, cache, workers=1)
    assert fourth.cache_hits == 1


def test_parallel_workers_and_unreadable_files(tmp_path):
    paths = [_scene(tmp_path / f"{i}.jpg", size=(120 + 8 * i, 100)) for i in range(4)]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    jobs = [ProposalJob(p, file_digest(p)) for p in paths] + [ProposalJob(broken, "broken")]
    result = compute_proposals(jobs, get_source("edgeboxes"), ProposalCache(tmp_path / "c"),
                               workers=2)
    assert result.computed == 4 and set(result.failed) == {"broken"}
    assert all(len(result.proposals[j.digest]) > 0 for j in jobs[:4])


def test_no_key_writes_outside_the_cache(tmp_path):
    """A key that is a path (a script passing image paths as digests) stays inside the cache: it
    once wrote `<image>-v1-d650.npz` files beside system wallpapers."""
    cache = ProposalCache(tmp_path / "cache")
    source = SlidingWindows()
    outside = tmp_path / "photos" / "wallpaper.webp-v1-d650"
    proposals = Proposals(np.array([[0, 0, 10, 10]], np.float32), None, (20, 20))
    for key in (str(outside), "../../escape", "a/b"):
        cache.put(source, key, proposals)
        assert cache.path(source, key).resolve().is_relative_to((tmp_path / "cache").resolve())
        assert np.array_equal(cache.get(source, key).boxes, proposals.boxes)
    assert not outside.parent.exists() and not (tmp_path / "escape.npz").exists()
    digest = "0123abcd" * 5                                  # content hashes keep their file name
    assert cache.path(source, digest).name == f"{digest}.npz"


def test_damaged_cache_file_is_a_miss(tmp_path):
    path = _scene(tmp_path / "a.png")
    job = ProposalJob(path, file_digest(path))
    cache = ProposalCache(tmp_path / "cache")
    source = SlidingWindows()
    compute_proposals([job], source, cache, workers=1)
    cache.path(source, job.digest).write_bytes(b"garbage")
    assert cache.get(source, job.digest) is None
    again = compute_proposals([job], source, cache, workers=1)
    assert again.computed == 1
