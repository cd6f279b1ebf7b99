"""Teacher inference: image-level scores and per-class regions for image files.

    result = detect_images(store, image_ids, model_version=None, top_k=5, device="auto")
    result = detect_paths(store, paths, ...)   # the same for files, registered or not
    for item in result:                 # one ImageDetections per readable image, in input order
        item.path, item.image_scores    # (K,) WSDDN image scores p in [0, 1]
        for region in item.regions:     # per class the boxes surviving NMS, best first
            region.class_name, region.bbox, region.score   # bbox [x, y, w, h], original pixels
    result.unreadable                   # [(path, reason)] skipped files
    result.class_names, result.model_version

The teacher runs at its test scale (its checkpoint's `meta["image_size"]`, longest side) on the
proposals of the source it was trained with (from the project's proposal cache). Region scores
are the refined detection scores (mean of the OICR branches) or WSDDN's S without refinement.
Per class: NMS at IoU 0.3 over the proposals, boxes below `min_score` dropped, the best `top_k`
kept. Regions of images registered in the project are stored (`store.regions`, by model version,
replacing that version's earlier regions of those images).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.ops import nms

from engine.datasets.regions import RegionDataset, collate_regions, fixed_scale_batches
from engine.errors import UserError
from engine.images import UnreadableImageError, file_digest
from engine.models.registry import load_model
from engine.progress import Progress, ShouldStop
from engine.proposals import ProposalCache, ProposalJob, compute_proposals
from engine.proposals.project import source_from_meta

if TYPE_CHECKING:
    from engine.store import Store

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 5
NMS_IOU = 0.3
MIN_SCORE = 1e-3


@dataclass(frozen=True)
class DetectedRegion:
    """One box of one class: bbox [x, y, w, h] in original (EXIF-corrected) pixels."""

    class_index: int
    class_name: str
    bbox: tuple[float, float, float, float]
    score: float


@dataclass
class ImageDetections:
    """The teacher's output for one image."""

    path: Path
    image_id: int | None              # None when the file is not registered in the project
    image_scores: np.ndarray          # (K,) float32, WSDDN image scores
    regions: list[DetectedRegion]     # grouped by class (class order), best first within a class
    size: tuple[int, int]             # original (width, height)

    def top_box(self, class_name: str) -> DetectedRegion | None:
        """The best region of a class, or None."""
        found = [r for r in self.regions if r.class_name == class_name]
        return max(found, key=lambda r: r.score) if found else None


class DetectionResult(list):
    """`list[ImageDetections]` with `.unreadable` [(path, reason)], `.class_names`,
    `.model_version` and `.cancelled`."""

    def __init__(self, items: Sequence[ImageDetections] = (), *, unreadable: list[tuple[Path, str]] | None = None,
                 class_names: list[str] | None = None, model_version: str = "",
                 cancelled: bool = False) -> None:
        super().__init__(items)
        self.unreadable = unreadable or []
        self.class_names = class_names or []
        self.model_version = model_version
        self.cancelled = cancelled


@dataclass
class RegionPrediction:
    """Raw teacher output for one dataset item: boxes in original pixels (R, 4) xyxy, detection
    scores (R, K), image scores (K,)."""

    index: int
    image_scores: np.ndarray
    boxes: np.ndarray | None = None
    scores: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def predict_regions(model: Any, dataset: RegionDataset, device: torch.device, batch_size: int = 4,
                    scale: int | None = None, keep_regions: bool = True,
                    num_workers: int = 0,
                    progress: Callable[[int, int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> Iterator[RegionPrediction]:
    """Run the teacher (eval mode) over `dataset` at one scale (default: its test scale), unflipped.
    Yields one `RegionPrediction` per item in order; stops early when `should_stop()`."""
    from engine.device import amp_dtype

    scale = scale or int(model.meta.get("image_size", 320))
    use_scores = bool(model.meta.get("box_scores", False))
    batches = fixed_scale_batches(len(dataset), batch_size, scale)
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate_regions,
                        num_workers=num_workers, pin_memory=device.type == "cuda",
                        multiprocessing_context="spawn" if num_workers > 0 else None)
    dtype = amp_dtype(device)
    channels_last = device.type == "cuda"
    was_training = model.training
    model.eval()
    done = 0
    try:
        with torch.inference_mode():
            for batch in loader:
                if should_stop is not None and should_stop():
                    return
                for index, reason in batch["errors"]:
                    yield RegionPrediction(index, np.zeros(0, np.float32), extra={"error": reason})
                if batch["images"] is None:
                    done += len(batch["errors"])
                    continue
                images = batch["images"].to(device, non_blocking=True)
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                boxes = [b.to(device) for b in batch["boxes"]]
                scores = (None if batch["box_scores"] is None or not use_scores
                          else [s.to(device) for s in batch["box_scores"]])
                with torch.autocast("cuda", dtype=dtype) if dtype is not None else _null():
                    outputs = model.region_outputs(images, boxes, scores)
                for i, index in enumerate(batch["index"]):
                    item = RegionPrediction(index, outputs.image_scores(i).float().cpu().numpy())
                    if keep_regions:
                        item.boxes = (outputs.boxes[i].float() * batch["to_original"][i].to(device)
                                      ).cpu().numpy()
                        item.scores = outputs.detection_scores(i).float().cpu().numpy()
                    yield item
                done += len(batch["index"]) + len(batch["errors"])
                if progress is not None:
                    progress(done, len(dataset))
    finally:
        model.train(was_training)


def _null() -> Any:
    import contextlib
    return contextlib.nullcontext()


def select_regions(boxes: np.ndarray, scores: np.ndarray, class_names: Sequence[str],
                   top_k: int = DEFAULT_TOP_K, nms_iou: float = NMS_IOU,
                   min_score: float = MIN_SCORE) -> list[DetectedRegion]:
    """Per class: NMS over all boxes (xyxy, (R, 4)) by that class's scores (R, K), boxes under
    `min_score` dropped, the best `top_k` kept, converted to [x, y, w, h]."""
    regions: list[DetectedRegion] = []
    if len(boxes) == 0:
        return regions
    box_tensor = torch.as_tensor(boxes, dtype=torch.float32)
    for k, name in enumerate(class_names):
        column = torch.as_tensor(scores[:, k], dtype=torch.float32)
        candidates = torch.nonzero(column >= min_score).flatten()
        if candidates.numel() == 0:
            continue
        keep = candidates[nms(box_tensor[candidates], column[candidates], nms_iou)][:top_k]
        for index in keep.tolist():
            x1, y1, x2, y2 = (float(v) for v in boxes[index])
            regions.append(DetectedRegion(k, name, (x1, y1, x2 - x1, y2 - y1), float(scores[index, k])))
    return regions


@dataclass
class _DetectRequest:
    """What one detection call works on: files, their project ids and content hashes (None where
    unknown), and the call's options."""

    files: list[Path]
    image_ids: list[int | None]
    digests: list[str | None]
    top_k: int = DEFAULT_TOP_K
    min_score: float = MIN_SCORE
    batch_size: int | None = None


def detect_images(store: Store, image_ids: Sequence[int], model_version: str | None = None,
                  top_k: int = DEFAULT_TOP_K, device: str = "auto", progress: Progress = None,
                  should_stop: ShouldStop = None, batch_size: int | None = None,
                  min_score: float = MIN_SCORE, store_regions: bool = True) -> DetectionResult:
    """The teacher's image scores and regions for project images (see the module docstring); the
    regions are stored by model version unless `store_regions=False`. `progress(done, total)`
    counts proposal computation and the network pass (total = 2 x images). Raises UserError when
    the project has no trained teacher."""
    paths = store.images.paths(image_ids)
    rows = store.images.by_ids(image_ids)
    ids = [i for i in image_ids if i in paths]
    request = _DetectRequest([paths[i] for i in ids], list(ids),
                             [rows[i].content_hash if i in rows else None for i in ids],
                             top_k, min_score, batch_size)
    return _detect(store, request, model_version, device, progress, should_stop, store_regions)


def detect_paths(store: Store, paths: Sequence[Path | str], model_version: str | None = None,
                 top_k: int = DEFAULT_TOP_K, device: str = "auto", progress: Progress = None,
                 should_stop: ShouldStop = None, batch_size: int | None = None,
                 min_score: float = MIN_SCORE, store_regions: bool = True) -> DetectionResult:
    """`detect_images` for files, registered in the project or not: regions are stored for those
    registered (unless `store_regions=False`); others are only returned."""
    files = [Path(p) for p in paths]
    registered = _registered_images(store, files)
    request = _DetectRequest(files, [registered[f][0] if f in registered else None for f in files],
                             [registered[f][1] if f in registered else None for f in files],
                             top_k, min_score, batch_size)
    return _detect(store, request, model_version, device, progress, should_stop, store_regions)


def _detect(store: Store, request: _DetectRequest, model_version: str | None, device: str,
            progress: Progress, should_stop: ShouldStop, store_regions: bool) -> DetectionResult:
    if request.top_k < 1:
        raise UserError(f"--top must be at least 1, not {request.top_k}.")
    model, run = load_model(store, "teacher", model_version=model_version, device=device)
    class_names = list(model.meta.get("class_names") or run.class_names)
    total = 2 * len(request.files)
    result = DetectionResult(class_names=class_names, model_version=run.model_version or "")
    items = _with_proposals(store, request, source_from_meta(model.meta), result.unreadable,
                            (lambda d, t: progress(d, total)) if progress else None, should_stop)
    if should_stop is not None and should_stop():
        result.cancelled = True
        return result
    predictions = _predict_items(model, items, request, result.unreadable,
                                 (lambda d, t: progress(len(request.files) + d, total))
                                 if progress else None, should_stop)
    result.cancelled = bool(should_stop is not None and should_stop())
    for k, (i, proposals) in enumerate(items):
        prediction = predictions.get(k)
        if prediction is not None:
            result.append(ImageDetections(
                path=request.files[i], image_id=request.image_ids[i],
                image_scores=prediction.image_scores, size=proposals.size,
                regions=select_regions(prediction.boxes, prediction.scores, class_names,
                                       top_k=request.top_k, min_score=request.min_score)))
    if store_regions:
        _store_regions(store, result)
    return result


def _with_proposals(store: Store, request: _DetectRequest, source: Any,
                    unreadable: list[tuple[Path, str]], progress: Progress,
                    should_stop: ShouldStop) -> list[tuple[int, Any]]:
    """(file index, proposals) of every file that has proposals; the others into `unreadable`."""
    jobs: list[ProposalJob | None] = []
    for path, digest in zip(request.files, request.digests):
        if digest is None:
            try:
                digest = file_digest(path)
            except UnreadableImageError as exc:
                unreadable.append((path, exc.reason))
                jobs.append(None)
                continue
        jobs.append(ProposalJob(path, digest))
    batch = compute_proposals([j for j in jobs if j is not None], source,
                              ProposalCache(store.paths.proposals_cache), progress=progress,
                              should_stop=should_stop)
    items: list[tuple[int, Any]] = []
    for i, job in enumerate(jobs):
        if job is None:
            continue
        found = batch.proposals.get(job.digest)
        if found is not None and len(found) > 0:
            items.append((i, found))
        elif job.digest in batch.failed:
            unreadable.append((request.files[i], batch.failed[job.digest]))
    return items


def _predict_items(model: Any, items: list[tuple[int, Any]], request: _DetectRequest,
                   unreadable: list[tuple[Path, str]], progress: Progress,
                   should_stop: ShouldStop) -> dict[int, RegionPrediction]:
    """The teacher's predictions per item index; files it cannot decode into `unreadable`."""
    device = next(model.parameters()).device
    dataset = RegionDataset([request.files[i] for i, _ in items], [p for _, p in items],
                            np.zeros((len(items), len(model.meta.get("class_names") or [0])),
                                     np.float32),
                            int(model.meta.get("max_proposals", 300)),
                            box_scores=bool(model.meta.get("box_scores", False)),
                            skip_unreadable=True)
    batch_size = request.batch_size or (16 if device.type == "cuda" else 4)
    predictions: dict[int, RegionPrediction] = {}
    for prediction in predict_regions(
            model, dataset, device, batch_size=batch_size,
            num_workers=min(4, len(items) // 64) if device.type == "cuda" else 0,
            progress=progress, should_stop=should_stop):
        if "error" in prediction.extra:
            unreadable.append((request.files[items[prediction.index][0]],
                               prediction.extra["error"]))
        else:
            predictions[prediction.index] = prediction
    return predictions


def _registered_images(store: Store, files: Sequence[Path]) -> dict[Path, tuple[int, str | None]]:
    """path -> (image id, content hash) for the files registered in the project."""
    wanted = {}
    for path in files:
        try:
            wanted[path.resolve()] = path
        except OSError:
            continue
    if not wanted:
        return {}
    found: dict[Path, tuple[int, str | None]] = {}
    rows = {image.id: image for image in store.images.list()}
    for image_id, path in store.images.paths().items():
        original = wanted.get(Path(path).resolve())
        if original is not None and image_id in rows:
            found[original] = (image_id, rows[image_id].content_hash)
    return found


def _store_regions(store: Any, result: DetectionResult) -> None:
    from engine.store import BoxRow

    class_ids = {c.name: c.id for c in store.classes.list()}
    image_ids: list[int] = []
    rows: list[Any] = []
    for item in result:
        if item.image_id is None:
            continue
        image_ids.append(item.image_id)
        for region in item.regions:
            class_id = class_ids.get(region.class_name)
            if class_id is None:
                continue
            x, y, w, h = region.bbox
            rows.append(BoxRow(item.image_id, class_id, x, y, w, h, region.score))
    if image_ids:
        store.regions.replace(result.model_version, image_ids, rows)
