"""Augmented views: the crops the teacher labelled are exactly the crops the student sees."""

from __future__ import annotations

from engine.datasets.student import CROP_AREA, CROP_RATIO, ViewBatchSampler, view_crop


def test_view_zero_is_the_whole_image():
    assert view_crop("abc", 0) == (0.0, 0.0, 1.0, 1.0)


def test_crops_are_fixed_by_content_and_view_and_lie_inside_the_image():
    crops = [view_crop(f"digest{i}", v) for i in range(50) for v in (1, 2, 3)]
    assert crops == [view_crop(f"digest{i}", v) for i in range(50) for v in (1, 2, 3)]
    assert view_crop("digest0", 1) != view_crop("digest0", 2)
    for x0, y0, x1, y1 in crops:
        assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0
        area, ratio = (x1 - x0) * (y1 - y0), (x1 - x0) / (y1 - y0)
        assert area <= CROP_AREA[1] + 1e-9
        # clipping to the image can shrink a crop, never stretch it past the ratio range
        assert CROP_RATIO[0] - 1e-6 <= ratio <= CROP_RATIO[1] + 1e-6 or area < CROP_AREA[0]
    assert min((c[2] - c[0]) * (c[3] - c[1]) for c in crops) >= CROP_AREA[0] * 0.5


def test_sampler_draws_one_view_per_image_per_epoch_deterministically():
    sampler = ViewBatchSampler(10, batch_size=4, views=2, seed=3)
    first = [item for batch in sampler for item in batch]
    assert sorted(i for i, _, _ in first) == list(range(10))       # every image once
    assert {v for _, v, _ in first} <= {0, 1}
    assert first == [item for batch in sampler for item in batch]  # same (seed, epoch)
    sampler.set_epoch(1)
    assert first != [item for batch in sampler for item in batch]


def test_crop_views_of_a_large_photo_are_proposed_at_the_sources_size(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    from engine.datasets.teacher_views import TeacherViews
    from engine.proposals import get_source

    path = tmp_path / "big.jpg"
    pixels = np.zeros((1500, 2000, 3), dtype=np.uint8)
    pixels[300:900, 400:1200] = (200, 40, 40)              # an object on a plain background
    Image.fromarray(pixels).save(path)
    source = get_source("edgeboxes")                       # works on pixels, at 512 px
    seen = []
    original = type(source).propose_array

    def spy(self, rgb, size):
        seen.append(rgb.shape[:2])
        return original(self, rgb, size)

    monkeypatch.setattr(type(source), "propose_array", spy)
    views = TeacherViews([path], ["d"], 2, (False, True), 192, source, 50, False, tmp_path / "p")
    item = views[0]
    assert len(seen) == 2                                  # the whole image, then the crop once
    assert all(max(shape) <= source.max_side for shape in seen)   # not the 2000-pixel original
    crop = item["samples"][2]
    assert max(crop["image"].shape[1:]) == 192 and len(crop["boxes"]) > 0
