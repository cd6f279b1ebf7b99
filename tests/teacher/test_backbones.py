"""Backbones: shapes and strides, ImageNet weights (offline error, local file, bundled Lite0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from engine.errors import UserError
from engine.models import backbones
from engine.models.backbones import BACKBONE_NAMES, build_backbone


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_feature_maps_have_the_announced_channels_and_stride(name):
    torch.manual_seed(0)
    for stride in (16, 32):
        spec = build_backbone(name, stride=stride)
        spec.module.eval()
        with torch.inference_mode():
            out = spec.module(torch.rand(1, 3, 96, 128))
        assert spec.stride == stride
        assert out.shape == (1, spec.out_channels, 96 // stride, 128 // stride)


def test_offline_download_failure_is_a_user_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.models, "resnet18", offline)
    with pytest.raises(UserError, match="efficientnet_lite0.*bundled.*--weights PATH.*--no-pretrained"):
        build_backbone("resnet18", pretrained=True)


def test_local_weights_file(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    spec = build_backbone("resnet18", weights=tmp_path / "r18.pth")
    assert torch.equal(spec.module[1].weight, reference.conv1.weight)     # [0] is Normalize
    with pytest.raises(UserError, match="does not fit"):
        build_backbone("resnet50", weights=tmp_path / "r18.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(UserError, match="Cannot read"):
        build_backbone("resnet18", weights=tmp_path / "junk.pth")
    with pytest.raises(UserError, match="does not exist"):
        build_backbone("resnet18", weights=tmp_path / "missing.pth")


def test_bundled_efficientnet_lite0_weights_load_strictly():
    state = backbones._efficientnet_lite0_package_weights()
    assert state["_fc.weight"].shape == (1000, 1280)              # an ImageNet classifier
    net = backbones.EfficientNetLite0()
    net.load_state_dict(state)                                    # strict: every key matches
    spec = build_backbone("efficientnet_lite0", pretrained=True)
    assert torch.equal(spec.module[1].conv.weight, state["_conv_stem.weight"])
    # trained batch-norm statistics, not the defaults of a fresh network
    assert not torch.allclose(state["_bn0.running_var"], torch.ones(32))


def test_unknown_backbone():
    with pytest.raises(UserError, match="Unknown backbone"):
        build_backbone("alexnet")


@pytest.mark.parametrize("name,dim", [("resnet18", 512), ("mobilenet_v3_large", 960),
                                      ("vgg16", 4096)])
def test_region_stages_continue_the_stride_16_trunk(name, dim):
    from engine.models.backbones import build_region_stage

    torch.manual_seed(0)
    trunk = build_backbone(name, stride=16)
    stage, out = build_region_stage(name)
    with torch.inference_mode():
        pooled = torch.rand(3, trunk.out_channels, 7, 7)
        assert out == dim and stage.eval()(pooled).shape == (3, dim)


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_a_dilated_trunk_keeps_every_stage_at_stride_16(name):
    torch.manual_seed(0)
    whole = build_backbone(name, stride=32)
    spec = build_backbone(name, dilated=True)
    with torch.inference_mode():
        out = spec.module.eval()(torch.rand(1, 3, 96, 128))
    assert spec.stride == 16 and spec.out_channels == whole.out_channels
    assert out.shape == (1, whole.out_channels, 6, 8)
    with pytest.raises(ValueError, match="16 when dilated"):
        build_backbone(name, stride=32, dilated=True)


def test_the_dilated_lite0_sees_what_the_imagenet_network_sees():
    """Dilation instead of the last stride keeps the pretrained features' meaning: pooled over
    the image they nearly equal the plain network's, and ImageNet's classifier reads the same
    top classes from them (a structured picture: the demo's shapes on a textured ground)."""
    from engine.demo import render_scene

    state = backbones._efficientnet_lite0_package_weights()
    net = backbones.EfficientNetLite0().eval()
    net.load_state_dict(state)
    dilated = build_backbone("efficientnet_lite0", pretrained=True, dilated=True).module.eval()
    plain = build_backbone("efficientnet_lite0", pretrained=True, stride=32).module.eval()
    images = torch.stack([torch.from_numpy(np.array(render_scene(0, index)[0].convert("RGB")
                                                       .resize((224, 224))))
                          .permute(2, 0, 1).float() / 255 for index in range(3)])
    with torch.inference_mode():
        wide, narrow = dilated(images).mean((2, 3)), plain(images).mean((2, 3))
        assert torch.nn.functional.cosine_similarity(wide, narrow).min() > 0.95
        top_wide, top_narrow = net._fc(wide).topk(5).indices, net._fc(narrow).topk(5).indices
    for a, b in zip(top_wide.tolist(), top_narrow.tolist()):
        assert a[0] in b and len(set(a) & set(b)) >= 3
    # [0] Normalize, [1] the stem, [2 + i] block i
    assert dilated[2 + 11]._depthwise_conv.stride == (1, 1)       # the stride block 11 had
    assert dilated[2 + 12]._depthwise_conv.dilation == (2, 2)     # dilation from block 12 on
