"""Region data: multi-scale resizing and horizontal flips move the boxes with the pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.datasets.regions import (
    RegionDataset,
    ScaleBatchSampler,
    collate_regions,
    default_scales,
    select_proposals,
)
from engine.proposals import Proposals


@pytest.fixture
def dataset(tmp_path):
    pixels = np.zeros((100, 200, 3), np.uint8)
    pixels[20:60, 30:90] = 255                          # white block at x 30..90, y 20..60
    Image.fromarray(pixels).save(tmp_path / "a.png")
    proposals = Proposals(np.array([[0, 0, 200, 100], [30, 20, 90, 60]], np.float32),
                          np.array([0.5, 0.25], np.float32), (200, 100))
    return RegionDataset([tmp_path / "a.png"], [proposals], np.array([[1.0, 0.0]]),
                         max_proposals=10)


@pytest.mark.parametrize("flip", [False, True])
def test_boxes_follow_resize_and_flip(dataset, flip):
    sample = dataset[(0, 100, flip, 0)]               # longest side 200 -> 100: scale 0.5
    image, boxes = sample["image"], sample["boxes"]
    assert image.shape == (3, 50, 100)
    x1, y1, x2, y2 = boxes[1].round().int().tolist()
    expected = [55, 10, 85, 30] if flip else [15, 10, 45, 30]
    assert [x1, y1, x2, y2] == expected
    inside = image[:, y1 + 1:y2 - 1, x1 + 1:x2 - 1]
    assert inside.min() > 0.9                          # the box still frames the white block
    # scores are divided by the image's best score; to_original undoes the resize
    assert torch.allclose(sample["box_scores"], torch.tensor([1.0, 0.5]))
    assert torch.allclose(sample["to_original"], torch.tensor([2.0, 2.0, 2.0, 2.0]))


def test_collate_pads_with_the_mean_colour(dataset):
    batch = collate_regions([dataset[(0, 100, False, 0)], dataset[(0, 60, True, 0)]])
    assert batch["images"].shape == (2, 3, 50, 100) and batch["labels"].shape == (2, 2)
    assert torch.allclose(batch["images"][1, :, 40, 80], torch.tensor([0.485, 0.456, 0.406]))
    assert [len(b) for b in batch["boxes"]] == [2, 2] and batch["errors"] == []


def test_unscored_proposals_are_subsampled_in_training():
    boxes = np.tile(np.array([[0, 0, 10, 10]], np.float32), (50, 1)) + np.arange(50)[:, None]
    proposals = Proposals(boxes.astype(np.float32), None, (100, 100))
    rng = np.random.default_rng(0)
    picked, scores = select_proposals(proposals, 10, rng, use_scores=True)
    assert scores is None and len(picked) == 10 and picked[0, 0] == 0
    assert picked[:, 0].max() < 20                     # drawn from the first 2 x 10
    fixed, _ = select_proposals(proposals, 10, None, use_scores=True)
    assert np.array_equal(fixed, boxes[:10])


def test_sampler_gives_one_scale_per_batch():
    sampler = ScaleBatchSampler(10, 4, scales=(64, 96), seed=1)
    batches = list(sampler)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(i for b in batches for i, _, _, _ in b) == list(range(10))
    for batch in batches:
        assert len({scale for _, scale, _, _ in batch}) == 1
    sampler.set_epoch(1)
    assert list(sampler) != batches
    assert default_scales(672) == (480, 576, 672, 736, 832)
