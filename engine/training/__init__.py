"""Training: one loop with callbacks, atomic checkpoints, and the teacher and student stages.

Public entry: `train(store, config, callbacks) -> list[TrainingRun]` with `TrainConfig`,
`EpochReport` and `TrainCallbacks` (see `engine.training.api`; `train` from `engine.training.stages`).
"""

from engine.training.api import EpochReport, TrainCallbacks, TrainConfig
from engine.training.stages import train

__all__ = ["EpochReport", "TrainCallbacks", "TrainConfig", "train"]
