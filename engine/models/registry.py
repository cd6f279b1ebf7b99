"""Which trained model is in use, and loading it: the model registry.

A training run's `model_version` is '<stage>-<run id>'. Which version is active is the store's to
say (`engine.store.versions`); `resolve_run` names a version or falls back to the active one, and
`load_model` rebuilds the network of a version from its
checkpoint, in eval mode on the requested device.

Each stage's loader (`engine.models.wsddn.load_teacher`, `engine.models.student.load_student`) has
the signature `(checkpoint: dict, run: TrainingRun, device: torch.device) -> torch.nn.Module`; the checkpoint is
the dict written by `engine.models.checkpoint.save_checkpoint` (keys "model", "model_args",
"class_names", "config", ...).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import UserError
from engine.store.versions import active_run

if TYPE_CHECKING:
    import torch

    from engine.store import Store
    from engine.store.schema import TrainingRun

log = logging.getLogger(__name__)

def _model_loader(stage: str) -> Any:
    """The function that rebuilds a `stage` network from its checkpoint, imported on first use
    (torch and the model code load only when a model is)."""
    if stage == "teacher":
        from engine.models.wsddn import load_teacher

        return load_teacher
    if stage == "student":
        from engine.models.student import load_student

        return load_student
    raise UserError(f"No model loader for stage {stage!r}.")


def resolve_run(store: Store, stage: str, model_version: str | None = None) -> TrainingRun:
    """The run of `model_version` (checked to be of `stage`), or the active one of `stage`."""
    if model_version is None:
        run = active_run(store, stage)
        if run is None:
            raise UserError(f"This project has no trained {stage} yet; train one first with "
                            f"`mlic train --stage {stage}`.")
        return run
    run = store.runs.by_version(model_version)
    if run.stage != stage:
        raise UserError(f"Model version {model_version!r} is a {run.stage} model, not a {stage}.")
    return run


def checkpoint_path(store: Store, run: TrainingRun) -> Path:
    """Absolute path of a run's checkpoint (stored relative to the project folder)."""
    if not run.checkpoint:
        raise UserError(f"Model version {run.model_version!r} has no checkpoint.")
    path = Path(run.checkpoint)
    return path if path.is_absolute() else store.paths.root / path


def load_checkpoint_of(store: Store, run: TrainingRun, device: Any = "cpu") -> dict[str, Any]:
    """The checkpoint dict of a run, tensors mapped to `device`."""
    from engine.models.checkpoint import load_checkpoint

    path = checkpoint_path(store, run)
    if not path.exists():
        raise UserError(f"The checkpoint of {run.model_version} is missing ({path}).")
    return load_checkpoint(path, map_location=device)


def load_weights_of(store: Store, run: TrainingRun, device: Any = "cpu") -> dict[str, Any]:
    """What inference needs of a run (model, model_config, meta, class_names, config): its
    inference copy when one is at least as new as the checkpoint, else the whole checkpoint."""
    from engine.models.checkpoint import load_checkpoint, weights_path

    path = checkpoint_path(store, run)
    weights = weights_path(path)
    try:
        fresh = path.exists() and weights.stat().st_mtime_ns >= path.stat().st_mtime_ns
    except OSError:
        fresh = False
    if fresh:
        return load_checkpoint(weights, map_location=device)
    return load_checkpoint_of(store, run, device)


def load_model(store: Store, stage: str, model_version: str | None = None,
               device: Any = "auto") -> tuple[torch.nn.Module, TrainingRun]:
    """Rebuild a trained model: `(module in eval mode on device, its TrainingRun)`.

    `model_version` None means the active version of `stage`. Raises UserError when the project has
    no such model or its checkpoint is missing.
    """
    from engine.device import resolve_device

    run = resolve_run(store, stage, model_version)
    loader = _model_loader(stage)
    torch_device = resolve_device(device)
    checkpoint = load_weights_of(store, run, device="cpu")
    _check_classes(run, checkpoint)
    try:
        model = loader(checkpoint, run, torch_device)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"The checkpoint of {run.model_version} cannot be loaded: it does not fit "
                        f"the model it names ({type(exc).__name__}: {str(exc)[:200]}).") from exc
    model.eval()
    return model, run


def _check_classes(run: TrainingRun, checkpoint: dict[str, Any]) -> None:
    """Refuse a checkpoint whose class list is not the run's (a file of another project)."""
    saved = checkpoint.get("class_names")
    if saved is None:
        return
    if list(saved) != list(run.class_names or []):
        raise UserError(f"The checkpoint of {run.model_version} was trained on {len(saved)} "
                        f"classes, but this project's run lists {len(run.class_names or [])}: it "
                        "belongs to another project. Train again.")
