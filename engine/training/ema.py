"""An exponential moving average of a model's weights, for the shared training loop.

torch's `AveragedModel` keeps the copy (parameters and buffers, BatchNorm statistics included);
the decay warms up as in timm's ModelEmaV3: after n updates it is min(decay, (1 + n) / (10 + n)),
so a short run (a few hundred optimizer steps, common here) averages its recent weights instead of
staying near the initial ones. The loop validates the average, keeps it in every checkpoint so a
resumed run continues it, and makes it the model's weights when the run completes (what tagging
and warm starts then use). Nothing in an update waits for the GPU: the warm-up counts updates in
Python, and AveragedModel's own counter stays on the CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class WeightAverage:
    """The running average of `model`'s weights with decay `decay` (0 < decay < 1)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be between 0 and 1, got {decay}")
        self.decay = float(decay)
        self.updates = 0           # counted here: AveragedModel's own count lives on the device
        self.average = AveragedModel(model, multi_avg_fn=self._update, use_buffers=True)

    def _update(self, averaged: list[torch.Tensor], current: list[torch.Tensor],
                _num_averaged: torch.Tensor) -> None:
        n = float(self.updates)    # reading `_num_averaged` would wait for the GPU every step
        decay = min(self.decay, (1.0 + n) / (10.0 + n))
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1.0 - decay)
        for a, c in zip(averaged, current):
            if not a.is_floating_point():
                a.copy_(c)                 # counters such as BatchNorm's num_batches_tracked

    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights in (after an optimizer step)."""
        self.average.update_parameters(model)
        self.updates += 1

    @property
    def module(self) -> nn.Module:
        """The averaged model (same class and call as the trained one)."""
        return self.average.module

    def state_dict(self) -> dict[str, Any]:
        return self.average.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average.load_state_dict(state)
        self.updates = int(state["n_averaged"])

    def copy_to(self, model: nn.Module) -> None:
        """Make the average the model's own weights."""
        model.load_state_dict(self.module.state_dict())
