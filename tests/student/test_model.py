"""Student network: shapes of logits and region features, projection, checkpoint round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.models.losses import FeatureProjection
from engine.models.student import Student, build_student, load_student


@pytest.fixture(scope="module")
def student() -> Student:
    torch.manual_seed(0)
    return Student("resnet18", num_classes=5, teacher_feature_dim=48, region_dim=32, image_size=96)


def test_forward_gives_one_logit_per_class(student):
    images = torch.rand(3, 3, 96, 96)
    logits = student(images)
    assert logits.shape == (3, 5)
    feature_map = student.feature_map(images)
    assert feature_map.shape == (3, 512, 3, 3)          # resnet18 trunk, stride 32
    assert torch.allclose(student.classify(feature_map), logits)


def test_region_features_follow_the_boxes_and_reach_the_teacher_width(student):
    images = torch.rand(2, 3, 96, 96)
    boxes = [torch.tensor([[0.0, 0.0, 48.0, 48.0], [10.0, 20.0, 90.0, 95.0], [0, 0, 96, 96]]),
             torch.tensor([[5.0, 5.0, 60.0, 40.0]])]
    g = student.region_features(student.feature_map(images), boxes)
    assert g.shape == (4, 48)                            # 3 + 1 boxes, projected 32 -> 48
    assert isinstance(student.projection, FeatureProjection)


def test_no_projection_when_widths_match():
    same = Student("resnet18", num_classes=3, teacher_feature_dim=64, region_dim=64)
    assert isinstance(same.projection, nn.Identity)
    g = same.region_features(same.feature_map(torch.rand(1, 3, 64, 64)),
                             [torch.tensor([[0.0, 0.0, 32.0, 32.0]])])
    assert g.shape == (1, 64)


def test_distillation_parameters_are_the_training_only_parts(student):
    ids = {id(p) for p in student.distillation_parameters()}
    assert id(student.temperature.inv_temperature) in ids
    assert all(id(p) not in ids for p in student.classifier.parameters())
    assert all(id(p) not in ids for p in student.backbone.parameters())


def test_load_student_needs_only_its_checkpoint(student):
    checkpoint = {"model_config": dict(student.config), "model": student.state_dict()}
    loaded = load_student(checkpoint, None, "cpu")
    assert not loaded.training
    images = torch.rand(2, 3, 96, 96)
    student.eval()
    with torch.inference_mode():
        assert torch.allclose(loaded(images), student(images), atol=1e-5)
    assert build_student(student.config).config == student.config
    with pytest.raises(ValueError, match="not a student checkpoint"):
        load_student({"model": {}}, None, "cpu")


def test_bad_input_is_rejected(student):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        student(torch.rand(3, 96, 96))
    with pytest.raises(ValueError, match="box sets"):
        student.region_features(torch.rand(2, 512, 3, 3), [torch.zeros(1, 4)])
