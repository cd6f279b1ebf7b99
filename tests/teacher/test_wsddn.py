"""WSDDN + OICR: scores and losses against hand-computed values, shapes and ranges, RoIAlign."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import roi_align

from engine.models.wsddn import (
    WSDDN,
    oicr_loss,
    oicr_pseudo_labels,
    roi_align_separable,
    wsddn_loss,
    wsddn_scores,
)

LN3 = math.log(3.0)


def test_two_stream_scores_of_a_toy_case():
    # M^c rows: softmax over classes of [0, ln 3] = [1/4, 3/4]; of [0, 0] = [1/2, 1/2]
    # M^d columns: softmax over regions of [ln 3, 0] = [3/4, 1/4]; of [0, 0] = [1/2, 1/2]
    class_logits = torch.tensor([[0.0, LN3], [0.0, 0.0]])
    det_logits = torch.tensor([[LN3, 0.0], [0.0, 0.0]])
    region, image = wsddn_scores(class_logits, det_logits)
    expected = torch.tensor([[3 / 16, 3 / 8], [1 / 8, 1 / 4]])
    assert torch.allclose(region, expected, atol=1e-6)
    assert torch.allclose(image, torch.tensor([5 / 16, 5 / 8]), atol=1e-6)
    # BCE with labels [1, 0]: -(ln 5/16 + ln (1 - 5/8)) / 2
    loss = wsddn_loss(image[None], torch.tensor([[1.0, 0.0]]))
    assert loss.item() == pytest.approx(-(math.log(5 / 16) + math.log(3 / 8)) / 2, rel=1e-5)


def test_temperature_sharpens_both_streams():
    class_logits = torch.tensor([[0.0, LN3], [0.0, 0.0]])
    det_logits = torch.tensor([[LN3, 0.0], [0.0, 0.0]])
    region, _ = wsddn_scores(class_logits, det_logits, temperature=0.5)
    # logits doubled: ln 9 -> softmax [1/10, 9/10] and [9/10, 1/10]
    assert region[0, 0].item() == pytest.approx(1 / 10 * 9 / 10, rel=1e-5)
    assert region[0, 1].item() == pytest.approx(9 / 10 * 1 / 2, rel=1e-5)


def test_loss_clamps_scores():
    scores = torch.tensor([[0.0, 1.0]])
    loss = wsddn_loss(scores, torch.tensor([[1.0, 0.0]]))
    assert loss.item() == pytest.approx(-math.log(1e-4), rel=1e-3)
    assert math.isfinite(loss.item())


def test_pseudo_labels_follow_the_top_box():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 9], [5, 0, 15, 10], [20, 20, 30, 30.0]])
    scores = torch.tensor([[0.6, 0.9], [0.3, 0.0], [0.05, 0.0], [0.05, 0.1]])
    labels = torch.tensor([1.0, 0.0])         # class 1 absent: its scores are ignored
    targets, weights = oicr_pseudo_labels(scores, boxes, labels)
    # box 0 is the top box of class 0 (weight 0.6); box 1 overlaps it with IoU 0.9 -> class 0;
    # box 2 has IoU 1/3 -> background; box 3 has IoU 0 (< 0.1) -> ignored
    assert targets.tolist() == [1, 1, 0, 0]
    assert torch.allclose(weights, torch.tensor([0.6, 0.6, 0.6, 0.0]))
    none_targets, none_weights = oicr_pseudo_labels(scores, boxes, torch.zeros(2))
    assert none_targets.tolist() == [0, 0, 0, 0] and none_weights.sum().item() == 0


def test_refinement_loss_value():
    logits = torch.zeros(3, 3)                 # uniform over K + 1 = 3: log p = -ln 3
    targets = torch.tensor([1, 1, 0])
    weights = torch.tensor([0.6, 0.6, 0.0])
    assert oicr_loss(logits, targets, weights).item() == pytest.approx(0.4 * LN3, rel=1e-6)


def test_separable_roi_align_matches_torchvision():
    torch.manual_seed(0)
    features = torch.rand(2, 8, 6, 7, requires_grad=True)
    corners = torch.rand(2, 12, 2) * torch.tensor([140.0, 120.0]) - 10
    sizes = torch.rand(2, 12, 2) * 60 + 1
    boxes = [torch.cat([c, c + s], dim=1) for c, s in zip(corners, sizes)]
    expected = roi_align(features, boxes, 5, 1 / 16, sampling_ratio=2, aligned=True)
    got = roi_align_separable(features, boxes, 5, 1 / 16)
    assert torch.allclose(got, expected, atol=1e-5)
    grad_expected = torch.autograd.grad(expected.square().sum(), features)[0]
    grad_got = torch.autograd.grad(got.square().sum(), features)[0]
    assert torch.allclose(grad_got, grad_expected, atol=1e-4)


@pytest.fixture(scope="module")
def model() -> WSDDN:
    torch.manual_seed(0)
    return WSDDN(4, "resnet18", hidden=32, refine_branches=2)


def _batch():
    images = torch.rand(2, 3, 96, 112)
    boxes = [torch.tensor([[0, 0, 112, 96], [10, 10, 60, 50], [40, 30, 100, 90.0]]),
             torch.tensor([[0, 0, 50, 50], [20, 20, 90, 80.0]])]
    labels = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]])
    return images, boxes, labels


def test_training_losses(model):
    images, boxes, labels = _batch()
    model.train()
    losses = model(images, boxes, labels=labels)
    assert set(losses) == {"wsddn", "refine", "loss"}
    assert all(v.dim() == 0 and math.isfinite(v.item()) and v.item() >= 0 for v in losses.values())
    assert losses["loss"].item() == pytest.approx(losses["wsddn"].item() + losses["refine"].item())
    losses["loss"].backward()
    assert model.cls_stream.weight.grad is not None and model.refiners[0].weight.grad is not None


def test_inference_outputs_shapes_and_ranges(model):
    images, boxes, _ = _batch()
    model.eval()
    with torch.inference_mode():
        outputs = model(images, boxes)
        regions = model.region_outputs(images, boxes, [torch.ones(3), torch.full((2,), 0.5)])
    assert len(outputs) == 2
    for out, b in zip(outputs, boxes):
        assert out["image_scores"].shape == (4,)
        assert ((out["image_scores"] > 0) & (out["image_scores"] < 1)).all()
        assert out["region_scores"].shape == (len(b), 4)
        assert ((out["region_scores"] >= 0) & (out["region_scores"] <= 1)).all()
    assert [f.shape for f in regions.features] == [(3, 32), (2, 32)]
    assert [m.shape for m in regions.class_logits] == [(3, 4), (2, 4)]
    assert [m.shape for m in regions.det_logits] == [(3, 4), (2, 4)]
    assert [len(r) for r in regions.refine_logits] == [2, 2]
    assert regions.refine_logits[0][0].shape == (3, 5)
    # the image score is the sum of the region scores
    assert torch.allclose(regions.region_scores(0).sum(0), regions.image_scores(0))


def test_box_scores_scale_pooled_features(model):
    images, boxes, _ = _batch()
    model.eval()
    with torch.inference_mode():
        feature_map = model.backbone(images)
        plain = model.pool_regions(feature_map, boxes)
        scaled = model.pool_regions(feature_map, boxes, [torch.full((3,), 0.5), torch.ones(2)])
    assert torch.allclose(scaled[:3], plain[:3] * 0.5) and torch.allclose(scaled[3:], plain[3:])


def test_plain_wsddn_has_no_refinement():
    plain = WSDDN(3, "resnet18", hidden=16, refine_branches=0)
    images, boxes, _ = _batch()
    losses = plain(images, boxes, labels=torch.tensor([[1.0, 0, 0], [0, 0, 1]]))
    assert set(losses) == {"wsddn", "loss"}
    plain.eval()
    with torch.inference_mode():
        out = plain(images, boxes)
        regions = plain.region_outputs(images, boxes)
    assert torch.allclose(out[0]["region_scores"], regions.region_scores(0))


def test_bad_inputs_are_rejected(model):
    with pytest.raises(ValueError):
        model(torch.rand(1, 3, 64, 64), [torch.zeros(1, 4), torch.zeros(1, 4)])
    with pytest.raises(ValueError):
        wsddn_scores(torch.zeros(2, 3), torch.zeros(3, 2))


def test_a_padded_batch_loses_what_its_images_lose_alone(model):
    """The batch's losses (regions padded to one tensor) are the mean of each image's own: the
    padding changes nothing, whatever the images' numbers of regions."""
    images, boxes, labels = _batch()
    model.eval()                               # no dropout: the same features both ways
    with torch.no_grad():
        together = model.losses(model.region_outputs(images, boxes), labels)
        alone = [model.losses(model.region_outputs(images[i:i + 1], boxes[i:i + 1]),
                              labels[i:i + 1]) for i in range(2)]
    for name in ("wsddn", "refine", "loss"):
        expected = (alone[0][name] + alone[1][name]) / 2
        assert together[name].item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_trunk_region_head_reads_the_backbones_pretrained_last_stage():
    from engine.models.backbones import _efficientnet_lite0_package_weights
    from engine.models.wsddn import build_teacher

    torch.manual_seed(0)
    teacher = WSDDN(4, "efficientnet_lite0", pretrained=True, region_head="trunk",
                    refine_branches=1)
    assert teacher.feature_dim == 1280                    # the 1280-channel head conv, pooled
    bundled = _efficientnet_lite0_package_weights()
    assert torch.equal(teacher.head[0]._expand_conv.weight, bundled["_blocks.11._expand_conv.weight"])
    images, boxes, labels = _batch()
    losses = teacher(images, boxes, labels=labels)
    losses["loss"].backward()
    assert teacher.head[0]._expand_conv.weight.grad is not None
    again = build_teacher(teacher.config)                 # the registry rebuilds the same head
    assert again.config["region_head"] == "trunk" and again.feature_dim == 1280
    plain = WSDDN(4, "resnet18", region_head="trunk", refine_branches=0).eval()
    with torch.inference_mode():
        outputs = plain.region_outputs(images, boxes)
    assert outputs.features[0].shape == (3, 512)          # layer4, pooled


def test_a_dilated_region_head_reads_the_whole_pretrained_trunk_once_per_image():
    """region_head="dilated": the trunk runs at stride 16 to its last 1280-channel map, with the
    bundled weights, and a region's feature is the mean of its RoIAlign cells (nothing random
    before the streams); it trains, and the registry rebuilds it from its config."""
    from engine.models.backbones import _efficientnet_lite0_package_weights
    from engine.models.wsddn import build_teacher

    torch.manual_seed(0)
    teacher = WSDDN(4, "efficientnet_lite0", pretrained=True, region_head="dilated",
                    refine_branches=1)
    assert teacher.feature_dim == 1280 and teacher.stride == 16
    bundled = _efficientnet_lite0_package_weights()
    head_conv = teacher.backbone[-1].conv                  # the 1280-channel head conv
    assert torch.equal(head_conv.weight, bundled["_conv_head.weight"])
    assert not any(p.requires_grad for p in teacher.head.parameters())   # no layer of its own
    images, boxes, labels = _batch()
    teacher.eval()
    with torch.inference_mode():
        outputs = teacher.region_outputs(images, boxes)
        feature_map = teacher.backbone(images)
    assert outputs.features[0].shape == (len(boxes[0]), 1280)
    assert feature_map.shape[-2:] == (images.shape[-2] // 16, images.shape[-1] // 16)
    teacher.train()
    teacher(images, boxes, labels=labels)["loss"].backward()
    assert head_conv.weight.grad is not None
    again = build_teacher(teacher.config)
    again.load_state_dict(teacher.state_dict())
    assert again.config["region_head"] == "dilated" and again.feature_dim == 1280

