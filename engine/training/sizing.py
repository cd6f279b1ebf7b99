"""Batch size and learning rate sized for the training set, where a config leaves them open.

One rule for both stages (measured on the photo benchmark, docs/distillation.md): what decides is
the number of optimizer steps. On 1,120 photographs the student at batch 32 and 2e-3 beat batch 4
at 1e-3 by 15 points and the teacher at batch 16 and 2e-3 beat it by 17 and 13 (2 of 2 seeds each);
on 168 images batch 4 had won (a batch of 32 leaves 5 steps an epoch). So the batch grows with
the training set, one image per `IMAGES_PER_BATCH` training images, from a floor (4) up to the
stage's cap, and the learning rate with the square root of the batch from a measured point.
"""

from __future__ import annotations

import math

IMAGES_PER_BATCH = 32       # one image of batch per this many training images (about 32 steps)
MIN_BATCH = 4               # the floor where a config gives none


def sized_batch(train_images: int, cap: int, floor: int = MIN_BATCH) -> int:
    """The batch for `train_images`: one per IMAGES_PER_BATCH images, at least `floor`, at most
    `cap` (unless the floor is above it)."""
    return max(int(floor), min(int(cap), int(train_images) // IMAGES_PER_BATCH))


def sqrt_scaled_lr(batch: int, reference_lr: float, reference_batch: int) -> float:
    """The learning rate at `batch`, scaled by the square root of the batch from a measured
    (reference_batch, reference_lr)."""
    return float(reference_lr) * math.sqrt(batch / reference_batch)
