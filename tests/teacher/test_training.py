"""Teacher training on the demo project: runs in the store, checkpoints, resume, cancel,
non-finite loss, and the model registry."""

from __future__ import annotations

import math
import os

import pytest
import torch

from engine.errors import UserError
from engine.models import registry
from engine.models.checkpoint import TRAINING_ONLY, load_checkpoint, weights_path
from engine.models.wsddn import WSDDN
from engine.store import versions
from engine.training import TrainCallbacks, train
from engine.training.loop import NonFiniteLossError

from .conftest import tiny_config


def test_one_epoch_records_the_run(demo_project):
    reports, steps = [], []
    runs = train(demo_project, tiny_config(),
                 TrainCallbacks(on_epoch=reports.append, on_step=lambda *a: steps.append(a)))
    assert len(runs) == 1
    run = runs[0]
    assert run.status == "completed" and run.stage == "teacher"
    assert run.model_version == f"teacher-{run.id}"
    assert run.config["epochs"] == 1 and run.config["refine"] is True
    assert run.class_names == demo_project.classes.names()
    assert len(reports) == 1 and reports[0].epoch == 1 and reports[0].model_version == run.model_version
    assert {"wsddn", "refine", "loss"} <= set(reports[0].losses)
    assert 0.0 <= reports[0].metrics["val_mAP"] <= 1.0          # the demo has a val split
    assert run.metrics["epochs"][0]["losses"]["loss"] == pytest.approx(reports[0].losses["loss"])
    teacher_steps = [s for s in steps if s[0] == "teacher"]
    assert teacher_steps[-1][1] == teacher_steps[-1][2]          # done == total at the end
    path = demo_project.paths.root / run.checkpoint
    assert path.is_file() and path.parent == demo_project.paths.models_dir
    checkpoint = load_checkpoint(path)
    assert checkpoint["epoch"] == 1 and checkpoint["config"]["stage"] == "teacher"
    assert {"model", "optimizer", "scheduler", "scaler", "model_config", "meta"} <= set(checkpoint)
    assert versions.active_run(demo_project, "teacher").id == run.id
    # the inference copy beside it: the same weights, no optimizer state
    weights = load_checkpoint(weights_path(path))
    assert not set(TRAINING_ONLY) & set(weights) and weights["meta"] == checkpoint["meta"]
    assert all(torch.equal(weights["model"][k], v) for k, v in checkpoint["model"].items())
    assert weights_path(path).stat().st_size < path.stat().st_size / 2


def test_models_load_from_the_inference_copy_while_it_is_fresh(demo_project, monkeypatch):
    run = train(demo_project, tiny_config())[0]
    real = registry.load_checkpoint_of
    monkeypatch.setattr(registry, "load_checkpoint_of", lambda *a, **k: pytest.fail("full read"))
    model, loaded = registry.load_model(demo_project, "teacher", device="cpu")
    assert loaded.id == run.id and isinstance(model, WSDDN)
    path = demo_project.paths.root / run.checkpoint
    newer = weights_path(path).stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(newer, newer))                # a checkpoint written after the copy
    read = []
    monkeypatch.setattr(registry, "load_checkpoint_of",
                        lambda *a, **k: read.append(1) or real(*a, **k))
    registry.load_model(demo_project, "teacher", device="cpu")
    assert read == [1]


def test_cancel_then_resume_continues_the_same_run(demo_project):
    state = {"stop": False}

    def on_epoch(report):
        state["stop"] = True                     # cancel as soon as epoch 1 is done

    first = train(demo_project, tiny_config(epochs=2),
                  TrainCallbacks(on_epoch=on_epoch, should_stop=lambda: state["stop"]))[0]
    assert first.status == "cancelled"
    saved = load_checkpoint(demo_project.paths.root / first.checkpoint)
    assert saved["epoch"] == 1
    assert versions.active_run(demo_project, "teacher") is None   # nothing completed yet

    seen = []
    # a resume finishes the run as planned (2 epochs), whatever this call's epochs say
    resumed = train(demo_project, tiny_config(epochs=5, resume=True),
                    TrainCallbacks(on_epoch=seen.append))[0]
    assert resumed.id == first.id and resumed.status == "completed"
    assert [r.epoch for r in seen] == [2]                          # only the missing epoch
    assert [e["epoch"] for e in resumed.metrics["epochs"]] == [1, 2]
    assert load_checkpoint(demo_project.paths.root / resumed.checkpoint)["epoch"] == 2
    with pytest.raises(UserError):                                 # nothing left to resume
        train(demo_project, tiny_config(resume=True))


def test_non_finite_loss_stops_with_a_clear_error(demo_project, monkeypatch):
    original = WSDDN.losses

    def broken(self, outputs, labels, unknown_weight=0.0):
        losses = original(self, outputs, labels, unknown_weight)
        losses["loss"] = losses["loss"] * float("nan")
        return losses

    monkeypatch.setattr(WSDDN, "losses", broken)
    with pytest.raises(NonFiniteLossError, match="loss became nan"):
        train(demo_project, tiny_config())
    run = demo_project.runs.list("teacher")[-1]
    assert run.status == "failed"


def test_registry_active_and_rollback(demo_project):
    first = train(demo_project, tiny_config(refine=False))[0]
    second = train(demo_project, tiny_config(seed=1))[0]
    assert versions.active_run(demo_project, "teacher").id == second.id
    versions.set_active(demo_project, "teacher", first.model_version)
    assert versions.active_run(demo_project, "teacher").id == first.id
    model, run = registry.load_model(demo_project, "teacher", device="cpu")
    assert run.id == first.id and isinstance(model, WSDDN) and not model.training
    assert len(model.refiners) == 0 and model.meta["class_names"] == first.class_names
    versions.set_active(demo_project, "teacher", None)             # back to the latest
    assert versions.active_run(demo_project, "teacher").id == second.id
    with pytest.raises(UserError):
        versions.set_active(demo_project, "student", first.model_version)
    with pytest.raises(UserError):
        versions.set_active(demo_project, "teacher", "teacher-999")


def test_no_training_data_is_a_user_error(empty_project):
    with pytest.raises(UserError, match="train split"):
        train(empty_project, tiny_config())
    with pytest.raises(UserError, match="no trained teacher"):
        registry.load_model(empty_project, "teacher")


def test_gradient_accumulation_and_box_scores(demo_project):
    run = train(demo_project, tiny_config(grad_accum=2, batch_size=8, proposals="edgeboxes",
                                          proposal_params={"max_side": 96}))[0]
    assert run.status == "completed"
    model, _ = registry.load_model(demo_project, "teacher", device="cpu")
    assert model.meta["box_scores"] is True and model.meta["proposals"] == "edgeboxes"
    assert all(math.isfinite(v) for v in run.metrics["last"].values())
    assert torch.isfinite(next(model.parameters())).all()


def test_cancel_before_training_starts(demo_project):
    run = train(demo_project, tiny_config(), TrainCallbacks(should_stop=lambda: True))[0]
    assert run.status == "cancelled" and run.checkpoint is None
    assert versions.active_run(demo_project, "teacher") is None
