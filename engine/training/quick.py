"""The quick round: refit only the student's classifier head on cached embeddings.

A person corrects tags in bursts and wants to see the model learn from them at once. The student's
backbone stays as the last deep round left it; its pooled features of every image are cached
(`engine.inference.embeddings`), so a new head is a small convex problem: one logistic regression
per class (L-BFGS, L2-regularised towards zero, warm-started from the current head; a class added
since starts at zero) on the train split's labels. The result is a complete student version
(`student-<id>`, the backbone's weights with the new head, no optimizer state) whose run records
`quick: true` and the `backbone_version` whose embeddings it reads. Scoring the project with it
needs no decoding (`engine.inference.embeddings.rescore_project`); `engine.review.rounds` does that
and calibrates the thresholds.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from engine.errors import UserError
from engine.inference.embeddings import (
    Embeddings,
    backbone_version,
    ensure_embeddings,
    score_embeddings,
)
from engine.metrics import mean_average_precision
from engine.models.checkpoint import save_checkpoint
from engine.models.losses import bce_with_tags
from engine.models.registry import load_weights_of, resolve_run
from engine.store.versions import set_active
from engine.training.api import TrainCallbacks, TrainConfig
from engine.training.loop import relative_to_project

if TYPE_CHECKING:
    from engine.store import Store
    from engine.store.schema import TrainingRun

log = logging.getLogger(__name__)

L2 = 1e-3               # weight decay of the head, per image (mean loss + L2 * |W|^2)
MAX_ITERATIONS = 100    # L-BFGS iterations; converges well before on thousands of images


def train_quick(store: Store, config: TrainConfig,
                callbacks: TrainCallbacks | None = None) -> TrainingRun:
    """One quick round from the active student (or `config.init_from`); returns its run (status
    'completed', or 'cancelled' when stopped while embeddings were computed)."""
    callbacks = callbacks or TrainCallbacks()
    parent = resolve_run(store, "student", config.init_from)
    backbone = backbone_version(parent)
    matrix = store.tags.label_matrix("train", as_of_change=config.labels_as_of,
                                     class_names=config.class_names)
    if not matrix.image_ids or not matrix.labels.any():
        raise UserError("The train split has no positive tags to learn from.")
    run = store.runs.create("student", {**config.to_dict(), "stage": "quick", "quick": True,
                                        "backbone_version": backbone,
                                        "init_from": parent.model_version},
                            list(matrix.class_names), parent_run_id=parent.id)
    started = time.perf_counter()
    try:
        callbacks.message(f"Embeddings of {backbone} for the project's images")
        embeddings = ensure_embeddings(store, backbone, device=config.device,
                                       progress=callbacks.progress_for("embeddings"),
                                       should_stop=callbacks.should_stop)
        if callbacks.stopped():
            store.runs.update(run.id, status="cancelled", finished=True)
            return store.runs.get(run.id)
        weight, bias, report = _fit(store, parent, embeddings, matrix, config)
        _save_version(store, run, backbone, weight, bias, list(matrix.class_names), report,
                      time.perf_counter() - started)
    except BaseException:
        store.runs.update(run.id, status="failed", finished=True)
        raise
    set_active(store, "student", run.model_version)
    callbacks.message(f"{run.model_version}: head refit on {report['images']} images "
                      f"in {time.perf_counter() - started:.1f} s")
    return store.runs.get(run.id)


def _fit(store: Store, parent: TrainingRun, embeddings: Embeddings, matrix: Any,
         config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    rows = embeddings.rows(matrix.image_ids)
    known = rows >= 0
    if not known.any():
        raise UserError("No training image could be read for the quick round.")
    features = torch.from_numpy(np.asarray(embeddings.features[rows[known]], dtype=np.float32))
    labels = torch.from_numpy(matrix.targets(config.untagged_as_negative)[known])
    weight, bias = _start(store, parent, list(matrix.class_names), features.shape[1])
    weight, bias = fit_head(features, labels, weight, bias, unknown_weight=config.unknown_weight)
    report = {"images": float(known.sum()), "train_mAP": float(mean_average_precision(
        score_embeddings(features.numpy(), weight, bias), labels.numpy()))}
    report.update(_validation(store, embeddings, config, list(matrix.class_names), weight, bias))
    return weight, bias, report


def _start(store: Store, parent: TrainingRun, class_names: list[str],
           width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The parent's head for the classes it knows, zeros for classes added since."""
    state = load_weights_of(store, parent)["model"]
    old = {name: k for k, name in enumerate(parent.class_names or [])}
    weight = torch.zeros(len(class_names), width)
    bias = torch.zeros(len(class_names))
    for k, name in enumerate(class_names):
        if name in old:
            weight[k] = state["classifier.weight"][old[name]].float()
            bias[k] = state["classifier.bias"][old[name]].float()
    return weight, bias


def fit_head(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor,
             bias: torch.Tensor, l2: float = L2, iterations: int = MAX_ITERATIONS,
             unknown_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logistic regression per class: minimise mean BCE(sigmoid(X W^T + b), Y) + l2 |W|^2 by
    L-BFGS from (weight, bias). X (N, C) float32, Y (N, K) in {0, 1} or UNKNOWN -1 (a negative of
    weight `unknown_weight`, `engine.models.losses.bce_with_tags`)."""
    weight = weight.clone().requires_grad_(True)
    bias = bias.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=iterations,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = features @ weight.T + bias
        loss = bce_with_tags(logits, labels, unknown_weight)
        loss = loss + l2 * weight.pow(2).sum() / max(1, labels.shape[1])
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def _validation(store: Store, embeddings: Embeddings, config: TrainConfig,
                class_names: list[str], weight: torch.Tensor,
                bias: torch.Tensor) -> dict[str, float]:
    matrix = store.tags.label_matrix("val", as_of_change=config.labels_as_of,
                                     class_names=config.class_names)
    if not matrix.image_ids or list(matrix.class_names) != class_names:
        return {}
    rows = embeddings.rows(matrix.image_ids)
    known = rows >= 0
    if not known.any():
        return {}
    scores = score_embeddings(np.asarray(embeddings.features[rows[known]]), weight, bias)
    return {"val_mAP": float(mean_average_precision(scores, matrix.targets()[known]))}


def _save_version(store: Store, run: TrainingRun, backbone: str, weight: torch.Tensor,
                  bias: torch.Tensor, class_names: list[str], report: dict[str, float],
                  seconds: float) -> None:
    """The new version's checkpoint: the backbone's weights, the new head, no optimizer state."""
    base = load_weights_of(store, resolve_run(store, "student", backbone))
    state = dict(base["model"])
    state["classifier.weight"], state["classifier.bias"] = weight, bias
    old_inv = state.get("temperature.inv_temperature")
    if old_inv is not None and old_inv.shape[0] != len(class_names):
        state["temperature.inv_temperature"] = torch.full((len(class_names),),
                                                          float(old_inv.mean()))
    meta = {**dict(base.get("meta") or {}), "class_names": class_names, "quick": True,
            "backbone_version": backbone}
    path = store.paths.models_dir / f"{run.model_version}.pt"
    save_checkpoint(path, {"model": state, "meta": meta, "class_names": class_names,
                           "model_config": {**dict(base["model_config"]),
                                            "num_classes": len(class_names)},
                           "config": run.config, "epoch": 1, "stage": "student"})
    epoch = {"stage": "student", "run_id": run.id, "model_version": run.model_version,
             "epoch": 1, "epochs": 1, "losses": {}, "metrics": report, "seconds": seconds}
    store.runs.update(run.id, status="completed", finished=True,
                      checkpoint=relative_to_project(store, path),
                      metrics={"epochs": [epoch], "last": report})
