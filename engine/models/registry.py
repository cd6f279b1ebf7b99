"""Which trained model is in use, and loading it: the model registry.

A training run's `model_version` is '<stage>-<run id>'. The *active* version of a stage is the one
set with `set_active` (a roll back or forward; a newly completed training run also becomes active),
else the latest completed run of that stage. `load_model` rebuilds the network of a version from its
checkpoint, in eval mode on the requested device.

Loaders are registered per stage in `MODEL_LOADERS` as "module:function" with the signature
`(checkpoint: dict, run: TrainingRun, device: torch.device) -> torch.nn.Module`; the checkpoint is
the dict written by `engine.training.checkpoint.save_checkpoint` (keys "model", "model_args",
"class_names", "config", ...).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import UserError

if TYPE_CHECKING:
    import torch

    from engine.store import Store
    from engine.store.schema import TrainingRun

log = logging.getLogger(__name__)

MODEL_LOADERS: dict[str, str] = {
    "teacher": "engine.models.wsddn:load_teacher",
    "student": "engine.models.student:load_student",
}


def _setting_key(stage: str) -> str:
    return f"active_model.{stage}"


def active_run(store: Store, stage: str) -> TrainingRun | None:
    """The active run of `stage`: the version set with `set_active`, else the latest completed
    run of that stage; None when the stage has no completed run."""
    version = store.settings.get(_setting_key(stage))
    if version:
        try:
            run = store.runs.by_version(version)
        except UserError:
            run = None                      # the run was deleted: fall back to the latest
        if run is not None and run.stage == stage and run.status == "completed":
            return run
    return store.runs.latest(stage, status="completed")


def set_active(store: Store, stage: str, model_version: str | None) -> TrainingRun | None:
    """Make `model_version` the active model of `stage` (roll back / forward).

    `None` clears the choice (the latest completed run becomes active again). Raises UserError for
    an unknown version, a version of another stage, or a run that did not complete.
    """
    if model_version is None:
        store.settings.set(_setting_key(stage), None)
        return active_run(store, stage)
    run = store.runs.by_version(model_version)
    if run.stage != stage:
        raise UserError(f"Model version {model_version!r} is a {run.stage} model, not a {stage}.")
    if run.status != "completed":
        raise UserError(f"Model version {model_version!r} did not complete training "
                        f"(status {run.status}); it cannot be made active.")
    store.settings.set(_setting_key(stage), model_version)
    return run


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
    from engine.training.checkpoint import load_checkpoint

    path = checkpoint_path(store, run)
    if not path.exists():
        raise UserError(f"The checkpoint of {run.model_version} is missing ({path}).")
    return load_checkpoint(path, map_location=device)


def load_model(store: Store, stage: str, model_version: str | None = None,
               device: Any = "auto") -> tuple[torch.nn.Module, TrainingRun]:
    """Rebuild a trained model: `(module in eval mode on device, its TrainingRun)`.

    `model_version` None means the active version of `stage`. Raises UserError when the project has
    no such model or its checkpoint is missing.
    """
    from engine.device import resolve_device

    run = resolve_run(store, stage, model_version)
    target = MODEL_LOADERS.get(stage)
    if target is None:
        raise UserError(f"No model loader for stage {stage!r}.")
    module_name, _, function_name = target.partition(":")
    try:
        loader = getattr(importlib.import_module(module_name), function_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise UserError(f"Loading a {stage} model is not available in this version.") from exc
        raise
    torch_device = resolve_device(device)
    checkpoint = load_checkpoint_of(store, run, device="cpu")
    model = loader(checkpoint, run, torch_device)
    model.eval()
    return model, run
