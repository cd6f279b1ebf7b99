"""The student: a plain multi-label classifier distilled from the WSDDN teacher.

Inference path (all that runs at tagging time): backbone -> global average pooling -> one linear
layer -> K logits z; probabilities are sigmoid(z). No proposals, no teacher.

Training-only parts, kept in the same module so one checkpoint holds everything:
- `region_head`: RoI-aligns the student's *own* last conv map with the teacher's boxes (rescaled to
  the student's input) and runs two fc layers to region features g_r (feature distillation);
- `projection`: a learned linear map from the region width to the teacher's width when they differ;
- `temperature`: the per-class learnable 1/t of prediction distillation.

Boxes are xyxy in the student's input pixels. Images are (N, 3, H, W) float RGB in [0, 1]; the
backbone normalises them itself (see engine.models.backbones).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

from engine.models.losses import FeatureProjection, LearnableTemperature

__all__ = ["Student", "build_student", "load_student"]


class Student(nn.Module):
    """Backbone + global pooling + linear classifier, with a region head for feature distillation.

    Args:
        backbone: a name understood by `engine.models.backbones.build_backbone`.
        num_classes: K.
        teacher_feature_dim: width of the teacher's region features f_r (None: no projection).
        region_dim: width of the student's region features g_r.
        roi_size: output size of RoI align on the student's map (its maps are small, ~4-8 cells).
        region_layers: 2: the region head is two fc layers (width `region_dim`) on the RoI cells,
            as the paper's fc6/fc7; 0: the RoI's mean feature (width C) and the learned
            projection alone, so the backbone's own features must predict the teacher's (the
            features the global-pooling classifier reads).
        image_size: the student's square input size (recorded for inference).
        stride: 32 (the whole trunk, as a classifier) or 16 (cut where region heads read).
    """

    def __init__(self, backbone: str, num_classes: int, *, pretrained: bool = False,
                 weights: str | None = None, teacher_feature_dim: int | None = None,
                 region_dim: int = 256, roi_size: int = 2, image_size: int = 160,
                 dropout: float = 0.0, stride: int = 32, region_layers: int = 2) -> None:
        super().__init__()
        from engine.models.backbones import build_backbone

        if num_classes <= 0:
            raise ValueError(f"Student: num_classes must be positive, got {num_classes}")
        self.config: dict[str, Any] = {
            "backbone": backbone, "num_classes": num_classes, "teacher_feature_dim": teacher_feature_dim,
            "region_dim": region_dim, "roi_size": roi_size, "image_size": image_size,
            "dropout": dropout, "stride": stride, "region_layers": region_layers,
        }
        self.backbone, channels, stride = build_backbone(backbone, pretrained=pretrained,
                                                         weights=weights, stride=stride)
        self.channels = channels
        self.stride = stride
        self.image_size = image_size
        self.num_classes = num_classes
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(channels, num_classes)
        self.roi_size = roi_size
        if region_layers not in (0, 2):
            raise ValueError(f"Student: region_layers must be 0 or 2, got {region_layers}")
        if region_layers == 2:      # fc6-fc7 style: RoI cells -> fc -> ReLU -> fc -> ReLU
            self.region_head = nn.Sequential(
                nn.Flatten(),
                nn.Linear(channels * roi_size * roi_size, region_dim), nn.ReLU(inplace=True),
                nn.Linear(region_dim, region_dim), nn.ReLU(inplace=True),
            )
        else:                       # the RoI's mean feature; the projection is the only layer
            self.region_head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            region_dim = channels
        self.region_dim = region_dim
        if teacher_feature_dim is not None and teacher_feature_dim != region_dim:
            self.projection: nn.Module = FeatureProjection(region_dim, teacher_feature_dim)
        else:
            self.projection = nn.Identity()
        self.temperature = LearnableTemperature(num_classes)
        # What inference needs besides the weights (class names, teacher version; set in training).
        self.meta: dict[str, Any] = {}

    # -- inference ---------------------------------------------------------------------------
    def feature_map(self, images: Tensor) -> Tensor:
        """The last conv map (N, C, H / stride, W / stride)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"Student: images must be (N, 3, H, W), got {tuple(images.shape)}")
        return self.backbone(images)

    def classify(self, feature_map: Tensor) -> Tensor:
        """Global average pooling + linear layer: (N, C, h, w) -> logits (N, K)."""
        return self.classifier(self.dropout(self.pool(feature_map).flatten(1)))

    def forward(self, images: Tensor) -> Tensor:
        """Logits z (N, K); probabilities are sigmoid(z)."""
        return self.classify(self.feature_map(images))

    # -- feature distillation ----------------------------------------------------------------
    def region_features(self, feature_map: Tensor, boxes: list[Tensor]) -> Tensor:
        """Region features g_r for the teacher's boxes, projected to the teacher's width.

        feature_map: (N, C, h, w) from `feature_map`; boxes: N tensors (R_i, 4), xyxy in the
        student's input pixels. Returns (sum R_i, D_teacher) in the order of the boxes.
        """
        if len(boxes) != feature_map.shape[0]:
            raise ValueError(f"Student.region_features: {len(boxes)} box sets for "
                             f"{feature_map.shape[0]} images")
        rois = [b.to(dtype=feature_map.dtype, device=feature_map.device) for b in boxes]
        pooled = roi_align(feature_map, rois, output_size=self.roi_size,
                           spatial_scale=1.0 / self.stride, sampling_ratio=2, aligned=True)
        return self.projection(self.region_head(pooled))

    def distillation_parameters(self) -> list[nn.Parameter]:
        """Parameters used only in training (region head, projection, temperature)."""
        return [*self.region_head.parameters(), *self.projection.parameters(),
                *self.temperature.parameters()]


def build_student(config: dict[str, Any], pretrained: bool = False, weights: str | None = None) -> Student:
    """A student from its recorded `Student.config` dict."""
    known = {"backbone", "num_classes", "teacher_feature_dim", "region_dim", "roi_size", "image_size",
             "dropout", "stride", "region_layers"}
    return Student(**{k: v for k, v in config.items() if k in known}, pretrained=pretrained,
                   weights=weights)


def load_student(checkpoint: dict[str, Any], run: Any = None,
                 device: str | torch.device = "cpu") -> Student:
    """Rebuild a trained student from its checkpoint (the registry's loader for stage 'student').

    `checkpoint` is the dict of `engine.models.checkpoint.save_checkpoint`: "model_config" (the
    `Student.config`; "model_args" is accepted too) and "model" (its state dict). No teacher is needed: the region head and
    projection used in training live in the student's own state dict. Returned in eval mode.
    """
    config = checkpoint.get("model_config") or checkpoint.get("model_args")
    if config is None or "model" not in checkpoint:
        raise ValueError("not a student checkpoint: it lacks 'model_config' or 'model'")
    student = build_student(config)
    student.load_state_dict(checkpoint["model"])
    student.meta = dict(checkpoint.get("meta", {}))
    return student.to(device).eval()
