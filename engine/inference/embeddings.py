"""Student embeddings of the project's images, cached on disk, and scoring from them.

The student's classifier is one linear layer on the pooled backbone features, so once every image's
features (its *embedding*) are known, a new classifier head scores the whole project with one
matrix product, without decoding a single image: that is what makes a quick round take seconds.

Embeddings are computed once per image and *backbone version* (the deep-trained student whose
backbone they come from; a quick round reuses its parent's) and kept under
`<project>/cache/embeddings/<version>/` as three `.npy` files: `ids` (int64), `hashes` (the image's
content hash when computed, so a changed file is recomputed) and `features` (float16, N x C, read
memory-mapped). `ensure_embeddings` computes what is missing in the background-friendly batched
loader of `engine.inference.tagging` and rewrites the files atomically.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from engine.files import atomic_output
from engine.inference.tagging import predict_files, save_suggestions
from engine.models.registry import load_model, load_weights_of, resolve_run
from engine.progress import Progress, ShouldStop

if TYPE_CHECKING:
    from engine.store import Store
    from engine.store.schema import TrainingRun

log = logging.getLogger(__name__)

SCORE_CHUNK = 8192          # images per matrix product when scoring from embeddings


@dataclass
class Embeddings:
    """Embeddings of project images: `features[i]` (float16, maybe memory-mapped) is image
    `ids[i]`'s; `rows(image_ids)` finds them."""

    ids: np.ndarray
    hashes: np.ndarray
    features: np.ndarray

    def rows(self, image_ids: Sequence[int]) -> np.ndarray:
        """Row of each id in `features` (-1 where it has none)."""
        index = {int(i): k for k, i in enumerate(self.ids.tolist())}
        return np.array([index.get(int(i), -1) for i in image_ids], dtype=np.int64)


def backbone_version(run: TrainingRun) -> str:
    """The deep-trained student whose backbone a student version uses (itself, unless it is a
    quick round's head on its parent's backbone)."""
    return (run.config or {}).get("backbone_version") or run.model_version or ""


def _folder(store: Store, version: str) -> Path:
    return store.paths.cache_dir / "embeddings" / version


def load_embeddings(store: Store, version: str) -> Embeddings:
    """The cached embeddings of a backbone version (empty when none are cached)."""
    folder = _folder(store, version)
    try:
        return Embeddings(np.load(folder / "ids.npy"), np.load(folder / "hashes.npy"),
                          np.load(folder / "features.npy", mmap_mode="r"))
    except (OSError, ValueError) as exc:
        if folder.exists():
            log.warning("Ignoring damaged embeddings cache %s: %s", folder, exc)
        return Embeddings(np.zeros(0, np.int64), np.zeros(0, "U64"), np.zeros((0, 0), np.float16))


def save_embeddings(store: Store, version: str, embeddings: Embeddings) -> None:
    """Write a backbone version's embeddings (atomically, file by file)."""
    folder = _folder(store, version)
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in (("features", embeddings.features), ("hashes", embeddings.hashes),
                        ("ids", embeddings.ids)):
        with atomic_output(folder / f"{name}.npy", "wb") as handle:
            np.save(handle, np.ascontiguousarray(array))


def ensure_embeddings(store: Store, version: str, image_ids: Sequence[int] | None = None,
                      device: str = "auto", progress: Progress = None,
                      should_stop: ShouldStop = None, batch_size: int = 64) -> Embeddings:
    """Embeddings of `image_ids` (default: every readable image) under the backbone of student
    `version`, computing those missing or whose file changed. A cancel keeps what was computed."""
    if image_ids is None:
        image_ids = store.images.ids()
    cached = load_embeddings(store, version)
    rows = store.images.by_ids(image_ids)
    known = dict(zip(cached.ids.tolist(), cached.hashes.tolist()))
    missing = [i for i in image_ids if i in rows
               and known.get(i, None) != (rows[i].content_hash or "")]
    if not missing:
        return cached
    model, run = load_model(store, "student", version, device=device)
    paths = store.images.paths(missing)
    missing = [i for i in missing if i in paths]
    sizes = [(rows[i].width, rows[i].height) if rows[i].width and rows[i].height else None
             for i in missing]
    features, reasons, _ = predict_files(
        model, [paths[i] for i in missing], int(model.image_size), next(model.parameters()).device,
        batch_size=batch_size, sizes=sizes, progress=progress, should_stop=should_stop,
        embed=True)
    done = [k for k, reason in enumerate(reasons) if not reason]
    replaced = set(missing[k] for k in done)
    keep = np.array([i not in replaced for i in cached.ids.tolist()], dtype=bool)
    merged = Embeddings(
        np.concatenate([cached.ids[keep], np.array([missing[k] for k in done], np.int64)]),
        np.concatenate([cached.hashes[keep].astype("U64"),
                        np.array([rows[missing[k]].content_hash or "" for k in done], "U64")]),
        np.concatenate([np.asarray(cached.features[keep]).reshape(-1, features.shape[1]),
                        features[done].astype(np.float16)]))
    save_embeddings(store, version, merged)
    log.info("Embeddings of %s: %d computed, %d cached", version, len(done), len(cached.ids))
    return load_embeddings(store, version)


def classifier_of(store: Store, version: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(weight (K, C), bias (K,), class names) of a student version's classifier."""
    run = resolve_run(store, "student", version)
    state = load_weights_of(store, run)["model"]
    return state["classifier.weight"].float(), state["classifier.bias"].float(), \
        list(run.class_names or [])


def score_embeddings(features: np.ndarray, weight: torch.Tensor, bias: torch.Tensor) -> np.ndarray:
    """sigmoid(features @ weight.T + bias), in chunks: (N, K) float32."""
    scores = np.empty((len(features), weight.shape[0]), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(features), SCORE_CHUNK):
            chunk = torch.from_numpy(np.asarray(features[start:start + SCORE_CHUNK],
                                                dtype=np.float32))
            scores[start:start + SCORE_CHUNK] = torch.sigmoid(chunk @ weight.T + bias).numpy()
    return scores


def rescore_project(store: Store, version: str, progress: Progress = None) -> int:
    """Store suggestions of student `version` for every image with a cached embedding of its
    backbone, scored from the embeddings (no decoding); returns how many images."""
    run = resolve_run(store, "student", version)
    embeddings = load_embeddings(store, backbone_version(run))
    weight, bias, class_names = classifier_of(store, version)
    present = set(store.images.ids())
    rows = [k for k, i in enumerate(embeddings.ids.tolist()) if i in present]
    for start in range(0, len(rows), SCORE_CHUNK):
        chunk = rows[start:start + SCORE_CHUNK]
        scores = score_embeddings(embeddings.features[chunk], weight, bias)
        save_suggestions(store, run.model_version, class_names, embeddings.ids[chunk].tolist(),
                         scores)
        if progress is not None:
            progress(min(start + SCORE_CHUNK, len(rows)), len(rows))
    return len(rows)
