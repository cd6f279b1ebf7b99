"""Classification and distillation losses for the student (Liu et al., ACM MM 2018).

Free, typed functions plus thin modules where a loss owns parameters:

- `bce_with_tags(z, y, unknown_weight)`: binary cross-entropy of sigmoid(z) with the image-level
  tags; an UNKNOWN (-1) target is an undecided pair, a negative of weight `unknown_weight` (0:
  ignored; `tag_weights`).
- `asymmetric_loss(z, y, ...)`: ASL (Ridnik et al., ICCV 2021), an option in place of BCE.
- `teacher_soft_targets(M_c, M_d, temperature=0.5)`: the teacher's soft image-level target
  q_k = sum_r softmax_k(M^c / T)_rk * softmax_r(M^d / T)_rk.
- `prediction_distillation_loss(z, q, inv_temperature, pairs)`: BCE(sigmoid(z / t), q) with t per
  class, over every pair or only the `pairs` given (the undecided ones, by default in training).
- `feature_distillation_loss(g, f, projection=None)`: L_f = 1 / (2 N R) sum_r ||f_r - g_r||^2.
- `LearnableTemperature(K)`: holds 1/t (one per class, initialised to 0.2, i.e. t = 5).
- `FeatureProjection(d_student, d_teacher)`: the learned linear map used when the widths differ.

Reductions: classification terms average over every (image, class) pair (PyTorch's default mean),
so the tag term and the prediction-distillation term are on the same scale and the paper's weights
1 and 1 keep their meaning (undecided pairs weigh `unknown_weight` in that sum). Prediction
distillation covers the undecided pairs by default (`StudentSettings.distil_pairs`): the teacher's
soft target is what a partially tagged image lacks, while on a decided pair the tag is the better
signal (measured: docs/distillation.md); a pair left out adds 0 to the same N x K mean.
The feature term follows the paper's normalisation 1 / (2 N R) with N the number of images and R
the boxes per image (for ragged boxes, N R is the total number of boxes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.store import UNKNOWN

__all__ = [
    "FeatureProjection",
    "LearnableTemperature",
    "asymmetric_loss",
    "bce_with_tags",
    "classification_loss",
    "feature_distillation_loss",
    "prediction_distillation_loss",
    "tag_weights",
    "teacher_soft_targets",
]

TEACHER_TEMPERATURE = 0.5
INITIAL_INV_TEMPERATURE = 0.2  # t = 5


def _check_pair(name: str, logits: Tensor, targets: Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"{name}: logits must be (N, K), got shape {tuple(logits.shape)}")
    if targets.shape != logits.shape:
        raise ValueError(f"{name}: targets {tuple(targets.shape)} do not match logits "
                         f"{tuple(logits.shape)}")


def tag_weights(targets: Tensor, unknown_weight: float = 0.0) -> tuple[Tensor, Tensor]:
    """(targets with UNKNOWN pairs as 0, per-pair weights: 1 where decided, `unknown_weight` where
    UNKNOWN). Every weight is 1 when nothing is unknown, so the losses are the plain means then."""
    if not 0.0 <= unknown_weight <= 1.0:
        raise ValueError(f"unknown_weight must be in [0, 1], got {unknown_weight}")
    unknown = targets <= UNKNOWN / 2
    weights = torch.where(unknown, torch.full_like(targets, float(unknown_weight)),
                          torch.ones_like(targets))
    return targets.masked_fill(unknown, 0.0), weights


def bce_with_tags(logits: Tensor, targets: Tensor, unknown_weight: float = 0.0) -> Tensor:
    """Mean binary cross-entropy of sigmoid(logits) with {0, 1} (or soft) targets, UNKNOWN pairs
    weighted by `unknown_weight` (as negatives).

    logits, targets: (N, K) float. Returns a scalar (the weighted sum over N * K, divided by N * K).
    """
    _check_pair("bce_with_tags", logits, targets)
    y, weights = tag_weights(targets.to(logits.dtype), unknown_weight)
    return F.binary_cross_entropy_with_logits(logits, y, weight=weights)


def asymmetric_loss(logits: Tensor, targets: Tensor, gamma_neg: float = 4.0, gamma_pos: float = 0.0,
                    clip: float = 0.05, eps: float = 1e-8, unknown_weight: float = 0.0) -> Tensor:
    """Asymmetric loss (Ridnik et al., "Asymmetric Loss For Multi-Label Classification", ICCV 2021).

    With p = sigmoid(z) and the shifted negative probability p_m = max(p - clip, 0):
        L+ = (1 - p)^gamma_pos * log(p)          for y = 1
        L- = p_m^gamma_neg * log(1 - p_m)          for y = 0
    Returns -mean over N * K of (y L+ + (1 - y) L-). The defaults (4, 0, 0.05) are the
    paper's recommended COCO setting. logits, targets: (N, K); UNKNOWN pairs weigh
    `unknown_weight` (`tag_weights`).
    """
    _check_pair("asymmetric_loss", logits, targets)
    if gamma_neg < 0 or gamma_pos < 0 or not 0 <= clip < 1:
        raise ValueError(f"asymmetric_loss: bad parameters gamma_neg={gamma_neg}, "
                         f"gamma_pos={gamma_pos}, clip={clip}")
    y, weights = tag_weights(targets.to(logits.dtype), unknown_weight)
    p = torch.sigmoid(logits)
    p_neg = 1.0 - p
    if clip > 0:
        p_neg = (p_neg + clip).clamp(max=1.0)  # 1 - p_m
    log_pos = torch.log(p.clamp(min=eps))
    log_neg = torch.log(p_neg.clamp(min=eps))
    loss = y * log_pos * (1.0 - p).pow(gamma_pos) + (1.0 - y) * log_neg * (1.0 - p_neg).pow(gamma_neg)
    return -(weights * loss).mean()


def classification_loss(name: str, logits: Tensor, targets: Tensor,
                        unknown_weight: float = 0.0) -> Tensor:
    """The tag loss selected by name: 'bce' or 'asl'; UNKNOWN pairs weigh `unknown_weight`."""
    if name == "bce":
        return bce_with_tags(logits, targets, unknown_weight)
    if name == "asl":
        return asymmetric_loss(logits, targets, unknown_weight=unknown_weight)
    raise ValueError(f"unknown classification loss {name!r} (expected 'bce' or 'asl')")


def teacher_soft_targets(class_logits: Tensor | list[Tensor], det_logits: Tensor | list[Tensor],
                         temperature: float = TEACHER_TEMPERATURE) -> Tensor:
    """The teacher's soft image-level target q (N, K) from its two streams.

    q_k = sum_r softmax over classes (M^c / T)_rk * softmax over regions (M^d / T)_rk.

    Accepts one image (R, K) tensors -> (K,), a batch (N, R, K) -> (N, K), or lists of per-image
    (R_i, K) tensors (ragged box counts) -> (N, K). The result lies in [0, 1].
    """
    if temperature <= 0:
        raise ValueError(f"teacher_soft_targets: temperature must be > 0, got {temperature}")
    if isinstance(class_logits, (list, tuple)):
        if not isinstance(det_logits, (list, tuple)) or len(det_logits) != len(class_logits):
            raise ValueError("teacher_soft_targets: class and detection streams differ in length")
        return torch.stack([teacher_soft_targets(c, d, temperature)
                            for c, d in zip(class_logits, det_logits, strict=True)])
    if class_logits.shape != det_logits.shape or class_logits.dim() not in (2, 3):
        raise ValueError(f"teacher_soft_targets: streams must both be (R, K) or (N, R, K), got "
                         f"{tuple(class_logits.shape)} and {tuple(det_logits.shape)}")
    s_c = torch.softmax(class_logits / temperature, dim=-1)   # over classes
    s_d = torch.softmax(det_logits / temperature, dim=-2)     # over regions
    return (s_c * s_d).sum(dim=-2).clamp(0.0, 1.0)


def prediction_distillation_loss(logits: Tensor, soft_targets: Tensor,
                                 inv_temperature: Tensor | float,
                                 pairs: Tensor | None = None) -> Tensor:
    """BCE(sigmoid(z / t), q) = BCE(sigmoid(z * (1/t)), q), mean over N * K.

    logits: (N, K) student logits z; soft_targets: (N, K) teacher q in [0, 1];
    inv_temperature: (K,) per-class 1/t (or a scalar); pairs: None (every pair) or a bool (N, K)
    of the pairs distilled, the others adding 0 to the mean.
    """
    _check_pair("prediction_distillation_loss", logits, soft_targets)
    inv_t = torch.as_tensor(inv_temperature, dtype=logits.dtype, device=logits.device)
    if inv_t.dim() == 1 and inv_t.shape[0] != logits.shape[1]:
        raise ValueError(f"prediction_distillation_loss: {inv_t.shape[0]} temperatures for "
                         f"{logits.shape[1]} classes")
    if pairs is None:
        return F.binary_cross_entropy_with_logits(logits * inv_t, soft_targets.to(logits.dtype))
    each = F.binary_cross_entropy_with_logits(logits * inv_t, soft_targets.to(logits.dtype),
                                              reduction="none")
    return torch.where(pairs, each, 0.0).mean()


def feature_distillation_loss(student_features: Tensor, teacher_features: Tensor,
                              projection: nn.Module | None = None, normalize: bool = False,
                              mask: Tensor | None = None) -> Tensor:
    """L_f = 1 / (2 N R) sum_r ||f_r - P(g_r)||^2 (the paper's Euclidean feature loss).

    student_features g: (N, R, Ds) or (M, Ds) with M = N R boxes in all;
    teacher_features f: (N, R, Dt) or (M, Dt), treated as constants (detached);
    projection P: a module mapping Ds -> Dt, required when Ds != Dt.
    normalize: L2-normalise each region feature of both sides first (scale-free variant).
    mask: None, or bool of the boxes' shape ((N, R) or (M,)): only True boxes count, N R being
    their number (padded boxes stay in the tensors, so nothing waits for the device to count).
    """
    g, f = student_features, teacher_features.detach()
    if g.shape[:-1] != f.shape[:-1] or g.dim() not in (2, 3):
        raise ValueError(f"feature_distillation_loss: student {tuple(g.shape)} and teacher "
                         f"{tuple(f.shape)} must be (N, R, D) or (M, D) over the same boxes")
    if mask is not None and mask.shape != g.shape[:-1]:
        raise ValueError(f"feature_distillation_loss: mask {tuple(mask.shape)} does not match "
                         f"the boxes {tuple(g.shape[:-1])}")
    if projection is not None:
        g = projection(g)
    if g.shape[-1] != f.shape[-1]:
        raise ValueError(f"feature_distillation_loss: widths differ ({g.shape[-1]} vs "
                         f"{f.shape[-1]}); pass a projection")
    if normalize:
        g = F.normalize(g, dim=-1)
        f = F.normalize(f, dim=-1)
    squared = (f - g).pow(2).sum(dim=-1)
    if mask is not None:
        return torch.where(mask, squared, 0.0).sum() / (2.0 * mask.sum().clamp(min=1))
    boxes = g.shape[0] * g.shape[1] if g.dim() == 3 else g.shape[0]
    if boxes == 0:
        return g.sum() * 0.0
    return squared.sum() / (2.0 * boxes)


class FeatureProjection(nn.Linear):
    """The learned linear bridge from the student's region width to the teacher's."""

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__(student_dim, teacher_dim)


class LearnableTemperature(nn.Module):
    """Per-class distillation temperature t, learnt as its inverse 1/t (initialised to 0.2, t = 5).

    `forward()` returns 1/t (K,), kept at least `min_inv` so the sign of z never flips.
    """

    def __init__(self, num_classes: int, init_inv: float = INITIAL_INV_TEMPERATURE,
                 min_inv: float = 1e-2) -> None:
        super().__init__()
        if num_classes <= 0 or init_inv <= 0:
            raise ValueError(f"LearnableTemperature: bad num_classes={num_classes} or "
                             f"init_inv={init_inv}")
        self.inv_temperature = nn.Parameter(torch.full((num_classes,), float(init_inv)))
        self.min_inv = float(min_inv)

    def forward(self) -> Tensor:
        # clamp keeps the value's gradient while it is above the floor
        return self.inv_temperature.clamp(min=self.min_inv)

    @property
    def temperature(self) -> Tensor:
        return 1.0 / self.forward().detach()
