"""Pieces every training stage shares: learning-rate schedules.
"""

from __future__ import annotations

import math


def staged_lr(total_epochs: int, steps_per_epoch: int, restart_epoch: int,
              warmup_steps: int = 20, floor: float = 0.02):  # noqa: ANN201
    """LR multiplier per optimizer step: warm-up then cosine decay within each phase; with a
    staged schedule a second warm-up + cosine starts at `restart_epoch` (stage 2)."""
    bounds = [0, restart_epoch * steps_per_epoch] if restart_epoch > 0 else [0]
    total = total_epochs * steps_per_epoch

    def factor(step: int) -> float:
        start = max(b for b in bounds if b <= step)
        end = next((b for b in bounds if b > start), total)
        length = max(1, end - start)
        local = step - start
        warm = min(warmup_steps, max(1, length // 5))
        if local < warm:
            return 0.1 + 0.9 * local / warm
        progress = min(1.0, (local - warm) / max(1, length - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def warmup_cosine(total_steps: int, warmup_steps: int, floor: float = 0.02):  # noqa: ANN201
    """LR multiplier: linear warm-up from 0.1, then cosine decay to `floor`."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return 0.1 + 0.9 * step / max(1, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor
