"""Training checkpoints: one dict, written atomically, that a resume restores whole.

Keys written by the training loop:
    "model"        state dict of the network
    "model_config" the network's constructor arguments (its `config` attribute)
    "meta"         what inference needs to prepare inputs (scales, proposal source, ...)
    "class_names"  the K class names, in output order
    "optimizer", "scheduler", "scaler"  their state dicts (scaler None without AMP scaling)
    "epoch"        completed epochs
    "config"       the TrainConfig as a dict
    "history"      per-epoch reports (EpochReport.to_dict())
    "run_id", "stage", "format"
Everything is plain data and tensors, so `torch.load(..., weights_only=True)` reads it.

When a run completes, an inference copy lies next to its checkpoint (`weights_path`:
`<version>.weights.pt`): the same dict less the optimizer, scheduler, scaler and history, which
are most of a checkpoint's bytes (89.5 of 134 MB for a ResNet-50 student). Tagging, detection,
warm starts and quick rounds read it (`engine.models.registry.load_weights_of`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from engine.errors import UserError
from engine.files import atomic_output

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically: a temporary file in the same folder, then
    `os.replace`, so a crash mid-write leaves the previous checkpoint intact."""
    with atomic_output(path, "wb", durable=True) as file:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, file)


TRAINING_ONLY = ("optimizer", "scheduler", "scaler", "history")


def weights_path(checkpoint: str | Path) -> Path:
    """Where the inference copy of `checkpoint` lies: `<name>.weights.pt` beside it."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.weights.pt")


def save_weights(checkpoint: str | Path, state: dict[str, Any]) -> Path:
    """Write the inference copy of `checkpoint` (atomically): `state` less `TRAINING_ONLY`."""
    path = weights_path(checkpoint)
    save_checkpoint(path, {k: v for k, v in state.items() if k not in TRAINING_ONLY})
    return path


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (raises UserError when it is damaged)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise UserError(f"Checkpoint {path} does not exist.") from exc
    except Exception as exc:  # noqa: BLE001 - truncated or foreign file
        raise UserError(f"Checkpoint {path} cannot be read ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"Checkpoint {path} is not a training checkpoint of this tool.")
    return state
