"""Training: one loop with callbacks, atomic checkpoints, and the teacher and student stages.

Public entry: `train(store, config, callbacks) -> list[TrainingRun]` with `TrainConfig`,
`EpochReport` and `TrainCallbacks` (see `engine.training.api`).
"""

from engine.training.api import EpochReport, TrainCallbacks, TrainConfig, train

__all__ = ["EpochReport", "TrainCallbacks", "TrainConfig", "train"]
