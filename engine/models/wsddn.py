"""The teacher: WSDDN (Bilen & Vedaldi, CVPR 2016) with OICR refinement (Tang et al., CVPR 2017).

Pipeline for one image with R proposals and K classes (Bilen & Vedaldi, CVPR 2016; OICR: Tang et al., CVPR 2017):

    conv map  = backbone(image)                          (1, C, H/16, W/16)
    pooled_r  = RoIAlign(conv map, box_r) * e_r           (R, C, 7, 7)   e_r: proposal score or 1
    f_r       = fc7(fc6(pooled_r))                       (R, D)         ReLU + dropout each
    M^c, M^d  = cls_stream(f_r), det_stream(f_r)          (R, K) each
    S         = softmax_k(M^c) * softmax_r(M^d)           (R, K)         region scores
    p_k       = sum_r S_rk                                (K,)           image scores, in (0, 1)
    loss      = BCE(clamp(p, 1e-4, 1 - 1e-4), y)

OICR: `refine_branches` extra linear classifiers over K + 1 classes (0 = background) on f_r. Branch
t learns from pseudo-labels made from branch t-1's region scores (branch 1 from S): for each
positive class its top-scoring proposal is a pseudo ground-truth box weighted by its score;
proposals with IoU >= 0.5 to one take its class, the others are background (IoU < 0.1: ignored);
the loss is the weighted cross-entropy. At test time the region (detection) scores are the mean of
the refinement branches' foreground probabilities; the image scores stay WSDDN's p.

RoI operation: RoIAlign (sampling ratio 2, aligned corners) by default — the paper's RoIPool
quantises box edges to the stride-16 grid, which costs localisation on small images; `roi_op="pool"`
restores it. On the CPU, RoIAlign runs as two matrix products (`roi_align_separable`, same result
as torchvision's kernel, 2-3x faster forward + backward); on CUDA torchvision's kernel.

Box conventions: boxes given to the model are xyxy in the model's *input* pixels (after resizing),
one tensor per image. Images are float RGB in [0, 1], (N, 3, H, W), padded to a common size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence
from torchvision.ops import roi_align, roi_pool

from engine.models import REGION_HEADS
from engine.models.backbones import build_backbone, build_region_stage
from engine.models.losses import tag_weights

__all__ = ["WSDDN", "RegionOutputs", "build_teacher", "load_teacher", "oicr_loss",
           "oicr_pseudo_labels", "padded_pseudo_labels", "padded_wsddn_scores",
           "roi_align_separable", "wsddn_loss", "wsddn_scores"]

SCORE_EPS = 1e-4


# ---------------------------------------------------------------------------------- functions


def wsddn_scores(class_logits: Tensor, det_logits: Tensor,
                 temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """WSDDN's two-stream combination for one image.

    class_logits M^c and det_logits M^d: (R, K). Returns `(S, p)`: region scores
    S = softmax over classes (dim 1) of M^c / T times softmax over regions (dim 0) of M^d / T,
    shape (R, K), and image scores p = S.sum(0), shape (K,), each in [0, 1]. Computed in float32.
    With T = 0.5 this is the student's soft target q of prediction distillation.
    """
    if class_logits.shape != det_logits.shape or class_logits.dim() != 2:
        raise ValueError(f"wsddn_scores: logits must both be (R, K), got {tuple(class_logits.shape)} "
                         f"and {tuple(det_logits.shape)}")
    mc = class_logits.float() / temperature
    md = det_logits.float() / temperature
    region = torch.softmax(mc, dim=1) * torch.softmax(md, dim=0)
    return region, region.sum(dim=0)


def wsddn_loss(image_scores: Tensor, labels: Tensor, unknown_weight: float = 0.0) -> Tensor:
    """Binary cross-entropy of image scores p (N, K) in [0, 1] with 0/1 labels (N, K), p clamped
    to [1e-4, 1 - 1e-4]; mean over images and classes. Float32. An UNKNOWN (-1) label is an
    undecided pair: a negative of weight `unknown_weight` (`engine.models.losses.tag_weights`)."""
    if image_scores.shape != labels.shape:
        raise ValueError(f"wsddn_loss: scores {tuple(image_scores.shape)} vs labels "
                         f"{tuple(labels.shape)}")
    p = image_scores.float().clamp(SCORE_EPS, 1.0 - SCORE_EPS)
    y, weights = tag_weights(labels.float(), unknown_weight)
    # written out: F.binary_cross_entropy checks p's range, an assert on the device that a NaN
    # (which the training loop reports in its own words) would trip
    return -(weights * (y * p.log() + (1.0 - y) * (1.0 - p).log())).mean()


def padded_wsddn_scores(class_logits: Tensor, det_logits: Tensor, valid: Tensor) -> Tensor:
    """`wsddn_scores`' region scores S for a padded batch: logits (N, R, K), valid (N, R) bool
    (False: padding). (N, R, K) float32, 0 on padded regions; S.sum(1) is the image scores p."""
    mask = valid.unsqueeze(-1)
    det = det_logits.float().masked_fill(~mask, float("-inf"))
    over_regions = torch.softmax(det, dim=1).masked_fill(~mask, 0.0)   # 0/0 of no region -> 0
    return torch.softmax(class_logits.float(), dim=-1) * over_regions


def _pairwise_iou(boxes: Tensor, others: Tensor) -> Tensor:
    """IoU of every box with every other box of the same image: (N, R, 4) x (N, P, 4) xyxy ->
    (N, R, P), torchvision's `box_iou` per image."""
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    other_area = (others[..., 2] - others[..., 0]) * (others[..., 3] - others[..., 1])
    top_left = torch.maximum(boxes[:, :, None, :2], others[:, None, :, :2])
    bottom_right = torch.minimum(boxes[:, :, None, 2:], others[:, None, :, 2:])
    size = (bottom_right - top_left).clamp(min=0)
    inter = size[..., 0] * size[..., 1]
    return inter / (area[:, :, None] + other_area[:, None, :] - inter)


@torch.no_grad()
def padded_pseudo_labels(scores: Tensor, boxes: Tensor, labels: Tensor, valid: Tensor,
                         fg_iou: float = 0.5, ignore_iou: float = 0.1) -> tuple[Tensor, Tensor]:
    """OICR supervision for a padded batch, on the device without host synchronisation.

    scores: (N, R, K) foreground scores of the previous branch; boxes: (N, R, 4) xyxy; labels:
    (N, K) 0/1; valid: (N, R) bool. Returns `(targets, weights)`, (N, R) each, as
    `oicr_pseudo_labels` per image (padded regions: target 0, weight 0).
    """
    ranked = scores.float().masked_fill(~valid.unsqueeze(-1), -1.0)
    top_score, top_index = ranked.max(dim=1)                              # (N, K)
    top_boxes = boxes.float().gather(1, top_index.unsqueeze(-1).expand(-1, -1, 4))
    overlaps = _pairwise_iou(boxes.float(), top_boxes)                    # (N, R, K)
    overlaps = overlaps.masked_fill(~(labels > 0.5).unsqueeze(1), -1.0)   # absent classes
    best_iou, best = overlaps.max(dim=2)                                  # (N, R)
    targets = torch.where(best_iou >= fg_iou, best + 1, torch.zeros_like(best))
    weights = top_score.gather(1, best)
    weights = torch.where(valid & (best_iou >= ignore_iou), weights, torch.zeros_like(weights))
    return targets, weights


def oicr_pseudo_labels(scores: Tensor, boxes: Tensor, labels: Tensor, fg_iou: float = 0.5,
                       ignore_iou: float = 0.1) -> tuple[Tensor, Tensor]:
    """OICR supervision for one image from the previous branch's region scores.

    scores: (R, K) foreground scores of the previous branch (WSDDN's S, or a refinement
    branch's softmax without its background column); boxes: (R, 4) xyxy; labels: (K,) 0/1.
    Returns `(targets, weights)`: targets (R,) long in [0, K] (0 = background, k + 1 = class k)
    and weights (R,) float: the score of the pseudo ground-truth box each region was matched to
    (the top-scoring box of a positive class; regions with IoU >= `fg_iou` to it take its
    class, the others are background); 0 for regions whose best IoU is below `ignore_iou`, and
    for all regions of an image with no positive label.
    """
    valid = torch.ones(1, scores.shape[0], dtype=torch.bool, device=scores.device)
    targets, weights = padded_pseudo_labels(scores[None], boxes[None], labels[None], valid,
                                            fg_iou, ignore_iou)
    return targets[0], weights[0]


def oicr_loss(logits: Tensor, targets: Tensor, weights: Tensor,
              counts: Tensor | None = None) -> Tensor:
    """Weighted cross-entropy over K + 1 classes: -(1/R) sum_r w_r log softmax(logits_r)[t_r].

    One image: logits (R, K + 1), targets (R,) long, weights (R,). A padded batch: (N, R, K + 1),
    (N, R), (N, R) with weight 0 on padding and `counts` (N,) each image's own number of regions
    (default R), averaged over the images. Float32 scalar (0 without regions)."""
    if logits.dim() == 2:
        return oicr_loss(logits[None], targets[None], weights[None], counts)
    if logits.shape[0] == 0 or logits.shape[1] == 0:
        return logits.sum() * 0.0
    log_probs = F.log_softmax(logits.float(), dim=-1)
    picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)       # (N, R)
    per_image = -(weights * picked).sum(dim=1)
    if counts is not None:
        return (per_image / counts.clamp(min=1)).mean()
    return per_image.mean() / logits.shape[1]


# ---------------------------------------------------------------------------------- RoIAlign


def _axis_weights(start: Tensor, length: Tensor, size: int, out: int, ratio: int) -> Tensor:
    """Bilinear-sampling weights along one axis, averaged over the `ratio` samples of each of the
    `out` bins: (R, out, size). `start` and `length` (R,) are in feature-map coordinates."""
    steps = (torch.arange(out * ratio, device=start.device, dtype=start.dtype) + 0.5) / (out * ratio)
    pos = start[:, None] + length[:, None] * steps[None]                    # (R, out * ratio)
    valid = ((pos >= -1.0) & (pos <= size)).to(start.dtype)                 # outside: weight 0
    pos = pos.clamp(min=0)
    low = pos.floor().clamp(max=size - 1)
    pos = torch.where(low >= size - 1, low, pos)
    frac = pos - low
    low_index = low.long()
    high_index = (low_index + 1).clamp(max=size - 1)
    weights = start.new_zeros(start.shape[0], out * ratio, size)
    weights.scatter_add_(2, low_index[..., None], ((1 - frac) * valid)[..., None])
    weights.scatter_add_(2, high_index[..., None], (frac * valid)[..., None])
    return weights.view(-1, out, ratio, size).mean(dim=2)


def roi_align_separable(feature_map: Tensor, boxes: list[Tensor], output_size: int,
                        spatial_scale: float, sampling_ratio: int = 2) -> Tensor:
    """`torchvision.ops.roi_align(..., aligned=True)` computed as two matrix products.

    Bilinear sampling on a regular grid of points is separable: a bin's value is
    A_y[r, i, :] @ F[c] @ A_x[r, j, :]^T with per-axis weight matrices (the 2 x 2 samples per bin
    averaged inside them). On the CPU this runs 2-3x faster than torchvision's kernel, forward
    and backward, with the same result (to float rounding). (sum R_i, C, s, s).
    """
    _, channels, height, width = feature_map.shape
    pooled = []
    for index, rois in enumerate(boxes):
        count = rois.shape[0]
        rois = rois.to(feature_map.dtype)
        ax = _axis_weights(rois[:, 0] * spatial_scale - 0.5, (rois[:, 2] - rois[:, 0]) * spatial_scale,
                           width, output_size, sampling_ratio)             # (R, s, W)
        ay = _axis_weights(rois[:, 1] * spatial_scale - 0.5, (rois[:, 3] - rois[:, 1]) * spatial_scale,
                           height, output_size, sampling_ratio)            # (R, s, H)
        rows = feature_map[index].permute(1, 0, 2).reshape(height, channels * width)
        along_y = (ay.reshape(count * output_size, height) @ rows).view(count, output_size * channels, width)
        both = torch.bmm(along_y, ax.transpose(1, 2))                      # (R, s * C, s)
        pooled.append(both.view(count, output_size, channels, output_size).permute(0, 2, 1, 3))
    return torch.cat(pooled).contiguous()


# ---------------------------------------------------------------------------------- the model


@dataclass
class RegionOutputs:
    """Per-image region outputs of the teacher (lists of length N, image i has R_i regions).

    boxes: (R_i, 4) xyxy in the model's input pixels (as given); features: f_r, the fc7 output
    (R_i, D) after ReLU (dropout inactive in eval); class_logits M^c and det_logits M^d: (R_i, K);
    refine_logits: per refinement branch (R_i, K + 1) (column 0 = background), empty without
    refinement.
    """

    boxes: list[Tensor]
    features: list[Tensor]
    class_logits: list[Tensor]
    det_logits: list[Tensor]
    refine_logits: list[list[Tensor]] = field(default_factory=list)

    def region_scores(self, i: int) -> Tensor:
        """WSDDN region scores S (R_i, K) of image i."""
        return wsddn_scores(self.class_logits[i], self.det_logits[i])[0]

    def image_scores(self, i: int) -> Tensor:
        """WSDDN image scores p (K,) of image i."""
        return wsddn_scores(self.class_logits[i], self.det_logits[i])[1]

    def detection_scores(self, i: int) -> Tensor:
        """Scores to rank boxes by, (R_i, K): the mean foreground probability of the refinement
        branches when there are any, else WSDDN's S."""
        if self.refine_logits and self.refine_logits[i]:
            probs = [torch.softmax(logits.float(), dim=1)[:, 1:] for logits in self.refine_logits[i]]
            return torch.stack(probs).mean(dim=0)
        return self.region_scores(i)


class WSDDN(nn.Module):
    """WSDDN + OICR teacher.

    Args:
        num_classes: K.
        backbone: name for `engine.models.backbones.build_backbone` (stride 16 trunk).
        hidden: width D of fc6 and fc7 (the paper: 4096; smaller for CPU training).
        roi_op: "align" (RoIAlign) or "pool" (RoIPool, as the paper).
        roi_size: pooled size (7 as the paper).
        refine_branches: number of OICR branches (0 = plain WSDDN).
        dropout: dropout after fc6 and fc7.
        region_head: "fc" (fc6/fc7 of width `hidden`, random init), "trunk" (the backbone's
            layers after stride 16 with their pretrained weights, `build_region_stage`, run per
            region), or "dilated" (the whole pretrained trunk runs once per image at stride 16,
            `build_backbone(dilated=True)`, and a region's feature is the mean of its RoIAlign
            cells: no random layer before the streams). `hidden` and `dropout` only for "fc".
    """

    def __init__(self, num_classes: int, backbone: str = "resnet18", *, pretrained: bool = False,
                 weights: str | None = None, hidden: int = 512, roi_op: str = "align",
                 roi_size: int = 7, refine_branches: int = 3, dropout: float = 0.5,
                 region_head: str = "fc") -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"WSDDN: num_classes must be positive, got {num_classes}")
        if roi_op not in ("align", "pool"):
            raise ValueError(f"WSDDN: roi_op must be 'align' or 'pool', got {roi_op!r}")
        if region_head not in REGION_HEADS:
            raise ValueError(f"WSDDN: region_head must be one of {', '.join(REGION_HEADS)}, "
                             f"got {region_head!r}")
        self.config: dict[str, Any] = {
            "num_classes": num_classes, "backbone": backbone, "hidden": hidden, "roi_op": roi_op,
            "roi_size": roi_size, "refine_branches": refine_branches, "dropout": dropout,
            "region_head": region_head}
        spec = build_backbone(backbone, pretrained=pretrained, weights=weights, stride=16,
                              dilated=region_head == "dilated")
        self.backbone = spec.module
        self.stride = spec.stride
        self.channels = spec.out_channels
        self.num_classes = num_classes
        self.roi_op = roi_op
        self.roi_size = roi_size
        if region_head == "trunk":
            self.head, hidden = build_region_stage(backbone, pretrained=pretrained, weights=weights)
        elif region_head == "dilated":
            self.head, hidden = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), spec.out_channels
        else:
            self.head = nn.Sequential(
                nn.Flatten(),
                nn.Linear(spec.out_channels * roi_size * roi_size, hidden), nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                nn.Dropout(dropout),
            )
        self.feature_dim = hidden
        self.cls_stream = nn.Linear(hidden, num_classes)
        self.det_stream = nn.Linear(hidden, num_classes)
        self.refiners = nn.ModuleList(nn.Linear(hidden, num_classes + 1)
                                      for _ in range(refine_branches))
        for layer in (self.cls_stream, self.det_stream, *self.refiners):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)
        # What inference needs to prepare inputs like training did (set by the trainer).
        self.meta: dict[str, Any] = {}

    # -- building blocks ------------------------------------------------------------------------

    def pool_regions(self, feature_map: Tensor, boxes: list[Tensor],
                     box_scores: list[Tensor] | None = None) -> Tensor:
        """RoI-pool `boxes` (N tensors (R_i, 4), xyxy input pixels) from (N, C, h, w);
        multiply each by its proposal score when `box_scores` is given. (sum R_i, C, s, s)."""
        rois = [b.to(device=feature_map.device, dtype=feature_map.dtype) for b in boxes]
        if self.roi_op == "align" and feature_map.device.type == "cpu":
            pooled = roi_align_separable(feature_map, rois, self.roi_size, 1.0 / self.stride)
        elif self.roi_op == "align":
            pooled = roi_align(feature_map, rois, output_size=self.roi_size,
                               spatial_scale=1.0 / self.stride, sampling_ratio=2, aligned=True)
        else:
            pooled = roi_pool(feature_map, rois, output_size=self.roi_size,
                              spatial_scale=1.0 / self.stride)
        if box_scores is not None:
            scale = torch.cat([s.to(device=pooled.device, dtype=pooled.dtype) for s in box_scores])
            pooled = pooled * scale.view(-1, 1, 1, 1)
        return pooled

    def region_outputs(self, images: Tensor, boxes: list[Tensor],
                       box_scores: list[Tensor] | None = None) -> RegionOutputs:
        """Region features and stream logits for a batch (the student's distillation inputs).

        images: (N, 3, H, W) float RGB in [0, 1]; boxes: N tensors (R_i, 4) xyxy in input
        pixels; box_scores: None or N tensors (R_i,) multiplied into the pooled features (pass
        the same as in training: `self.meta["box_scores"]` says whether the teacher used them).
        Call in eval mode (and under torch.inference_mode) for distillation targets.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"WSDDN: images must be (N, 3, H, W), got {tuple(images.shape)}")
        if len(boxes) != images.shape[0]:
            raise ValueError(f"WSDDN: {len(boxes)} box sets for {images.shape[0]} images")
        feature_map = self.backbone(images)
        features = self.head(self.pool_regions(feature_map, boxes, box_scores))
        class_logits = self.cls_stream(features)
        det_logits = self.det_stream(features)
        refine = [refiner(features) for refiner in self.refiners]
        counts = [int(b.shape[0]) for b in boxes]
        split = lambda t: list(torch.split(t, counts))  # noqa: E731
        per_branch = [split(r) for r in refine]
        return RegionOutputs(
            boxes=list(boxes), features=split(features), class_logits=split(class_logits),
            det_logits=split(det_logits),
            refine_logits=[[branch[i] for branch in per_branch] for i in range(len(counts))])

    # -- training and inference -----------------------------------------------------------------

    def losses(self, outputs: RegionOutputs, labels: Tensor,
               unknown_weight: float = 0.0) -> dict[str, Tensor]:
        """Training losses for a batch: {"wsddn": BCE, "refine": sum of OICR branch losses
        (averaged over images), "loss": their sum}. labels: (N, K) 1, 0 or UNKNOWN -1 (an
        undecided pair weighs `unknown_weight` in the BCE and gives OICR no pseudo-box). The
        images' regions are padded to one (N, R, ...) batch, so nothing waits on the host."""
        valid = pad_sequence([torch.ones(len(b), dtype=torch.bool, device=b.device)
                              for b in outputs.boxes], batch_first=True)
        region = padded_wsddn_scores(pad_sequence(outputs.class_logits, batch_first=True),
                                     pad_sequence(outputs.det_logits, batch_first=True), valid)
        losses = {"wsddn": wsddn_loss(region.sum(dim=1), labels, unknown_weight)}
        if not self.refiners:
            losses["loss"] = losses["wsddn"]
            return losses
        boxes = pad_sequence(list(outputs.boxes), batch_first=True)
        counts = valid.sum(dim=1)
        previous, total = region.detach(), region.new_zeros(())
        for branch in range(len(self.refiners)):
            logits = pad_sequence([per_image[branch] for per_image in outputs.refine_logits],
                                  batch_first=True)
            targets, weights = padded_pseudo_labels(previous, boxes, labels, valid)
            total = total + oicr_loss(logits, targets, weights, counts)
            previous = torch.softmax(logits.detach().float(), dim=-1)[..., 1:]
        losses["refine"] = total
        losses["loss"] = losses["wsddn"] + losses["refine"]
        return losses

    def forward(self, images: Tensor, boxes: list[Tensor], box_scores: list[Tensor] | None = None,
                labels: Tensor | None = None, unknown_weight: float = 0.0
                ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """With `labels` (N, K): the dict of losses (`losses`). Without: per image a dict with
        "image_scores" (K,) = p, "region_scores" (R_i, K) = detection scores (refined when the
        model has refinement branches), "boxes" (R_i, 4) as given."""
        outputs = self.region_outputs(images, boxes, box_scores)
        if labels is not None:
            return self.losses(outputs, labels, unknown_weight)
        return [{"image_scores": outputs.image_scores(i), "region_scores": outputs.detection_scores(i),
                 "boxes": outputs.boxes[i]} for i in range(len(boxes))]


def build_teacher(config: dict[str, Any], pretrained: bool = False,
                  weights: str | None = None) -> WSDDN:
    """A teacher from its recorded `WSDDN.config` dict."""
    known = {"num_classes", "backbone", "hidden", "roi_op", "roi_size", "refine_branches", "dropout",
             "region_head"}
    return WSDDN(**{k: v for k, v in config.items() if k in known}, pretrained=pretrained,
                 weights=weights)


def load_teacher(checkpoint: dict[str, Any], run: Any, device: torch.device) -> WSDDN:
    """Registry loader: rebuild the teacher of a checkpoint (see engine.models.registry)."""
    model = build_teacher(checkpoint["model_config"])
    model.load_state_dict(checkpoint["model"])
    model.meta = dict(checkpoint.get("meta", {}))
    model.meta.setdefault("class_names", list(checkpoint.get("class_names", [])))
    return model.to(device).eval()
