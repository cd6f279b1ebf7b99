"""Which trained model of each stage is in use: the *active* version.

The active version of a stage is the one set with `set_active` (a roll back or forward; a newly
completed training run also becomes active), else the latest completed run of that stage. It is kept
in the project's settings, so every process that opens the project agrees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import UserError

if TYPE_CHECKING:
    from engine.store import Store
    from engine.store.schema import TrainingRun


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
