"""Augmented views: the crops the teacher labelled are exactly the crops the student sees."""

from __future__ import annotations

from engine.training.student import CROP_AREA, CROP_RATIO, ViewBatchSampler, view_crop


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
