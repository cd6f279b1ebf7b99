"""Fixtures for the evaluation and tagging tests: a project with a (random-init) student."""

from __future__ import annotations

import pytest


def install_student(store, image_size: int = 64, backbone: str = "resnet18", seed: int = 0):
    """Register a completed student run with a random-init network (what training would leave:
    a run, its class names and a checkpoint). Returns (run, model)."""
    import torch

    from engine.models.checkpoint import save_checkpoint
    from engine.models.student import Student

    names = store.classes.names()
    torch.manual_seed(seed)
    model = Student(backbone, len(names), image_size=image_size).eval()
    run = store.runs.create("student", {"student_image_size": image_size,
                                        "student_backbone": backbone}, names)
    path = store.paths.models_dir / f"{run.model_version}.pt"
    save_checkpoint(path, {"model": model.state_dict(), "model_args": model.config,
                           "model_config": model.config, "class_names": names,
                           "stage": "student", "run_id": run.id})
    store.runs.update(run.id, status="completed", checkpoint=str(path.relative_to(store.paths.root)),
                      finished=True)
    return store.runs.get(run.id), model


@pytest.fixture
def student_project(demo_project):
    """`demo_project` plus a completed random-init student (64 px input)."""
    run, model = install_student(demo_project)
    return demo_project, run, model


def install_teacher(store, image_size: int = 128, max_proposals: int = 40, seed: int = 0):
    """Register a completed teacher run with a random-init WSDDN + OICR network (sliding-window
    proposals). Returns (run, model)."""
    import torch

    from engine.models.checkpoint import save_checkpoint
    from engine.models.wsddn import WSDDN

    names = store.classes.names()
    torch.manual_seed(seed)
    model = WSDDN(len(names), "resnet18", hidden=64, refine_branches=2).eval()
    meta = {"image_size": image_size, "proposals": "sliding", "max_proposals": max_proposals,
            "box_scores": False, "class_names": names}
    run = store.runs.create("teacher", {"image_size": image_size}, names)
    path = store.paths.models_dir / f"{run.model_version}.pt"
    save_checkpoint(path, {"model": model.state_dict(), "model_config": model.config, "meta": meta,
                           "class_names": names, "stage": "teacher", "run_id": run.id})
    store.runs.update(run.id, status="completed", checkpoint=str(path.relative_to(store.paths.root)),
                      finished=True)
    return store.runs.get(run.id), model
