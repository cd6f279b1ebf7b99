"""What the frozen teacher says about each training image for distillation, and its on-disk cache.

For every training image, view (0: the whole image; v > 0: the crop `view_crop(digest, v)`) and flip,
the teacher runs once under `torch.inference_mode` at its own test scale with its own proposals.
Kept per view: the soft target q = sum_r softmax_k(M^c / 0.5) * softmax_r(M^d / 0.5) (prediction
distillation), and the `kd_boxes` highest-scoring boxes with their region features f_r (feature
distillation). The targets are cached per teacher version under `<project>/cache/distill/`, so later
student runs from the same teacher skip the teacher entirely.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.datasets.student import CROP_AREA, crop_pixels, view_crop
from engine.models.checkpoint import save_checkpoint
from engine.models.losses import TEACHER_TEMPERATURE, teacher_soft_targets
from engine.proposals.project import proposals_for_images, source_from_meta
from engine.training.api import TrainCallbacks

log = logging.getLogger(__name__)


TARGETS_FORMAT = 1


@dataclass
class TeacherTargets:
    """What the frozen teacher says about each training image, per view (0: the whole image,
    v > 0: the crop `view_crop(digest, v)`) and flip (0: as is, 1: mirrored).

    soft: (N, V, F, K) float32 soft targets q at T = 0.5; boxes: (N, V, F, R, 4) float32 xyxy as
    fractions of the teacher's input width/height (so they rescale to any input size); features:
    (N, V, F, R, D) float16 region features f_r of those boxes; valid: (N, V, F, R) bool (a view
    with fewer than R proposals pads with invalid boxes).
    """

    soft: torch.Tensor
    boxes: torch.Tensor
    features: torch.Tensor
    valid: torch.Tensor

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[-1])

    def subset(self, rows: list[int]) -> TeacherTargets:
        """The targets of these training images only."""
        return TeacherTargets(self.soft[rows], self.boxes[rows], self.features[rows],
                              self.valid[rows])

    def to(self, device: torch.device) -> TeacherTargets:
        return TeacherTargets(self.soft.to(device), self.boxes.to(device),
                              self.features.to(device), self.valid.to(device))

    def feature_rms(self) -> float:
        """Root mean square norm of the valid teacher region features (for `feature_norm=scale`)."""
        valid = self.features[self.valid].float()
        if valid.numel() == 0:
            return 1.0
        return float(valid.pow(2).sum(dim=1).mean().sqrt().clamp(min=1e-6))


def _targets_cache_path(store: Any, teacher_version: str, kd_boxes: int) -> Path:
    return store.paths.cache_dir / "distill" / f"{teacher_version}-r{kd_boxes}.pt"


def _load_cached_targets(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    if not path.exists():
        return {}
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged cache is recomputed, never trusted
        log.warning("Ignoring damaged distillation cache %s: %s", path, exc)
        return {}
    if not isinstance(state, dict) or state.get("format") != TARGETS_FORMAT:
        return {}
    return dict(state.get("entries", {}))


def _target_key(digest: str, view: int, flip: bool) -> str:
    return f"{digest}:{int(flip)}" if view == 0 else f"{digest}:v{view}:{int(flip)}"


@dataclass
class _TeacherInputs:
    """How the teacher sees the views still to compute: its scale and proposal settings, the
    whole images (with cached proposals) as a `RegionDataset`, and each image's position in it."""

    scale: int
    max_proposals: int
    uses_scores: bool
    source: Any
    whole_set: Any = None
    position: dict[int, int] = field(default_factory=dict)


def compute_teacher_targets(store: Any, teacher: torch.nn.Module, teacher_version: str,
                            image_ids: Sequence[int], paths: Sequence[Path], kd_boxes: int,
                            flips: Sequence[bool], device: torch.device,
                            callbacks: TrainCallbacks, batch_size: int = 8,
                            views: int = 1) -> TeacherTargets | None:
    """Run the frozen teacher (eval mode, inference mode) on every image, view and flip, or read
    its outputs from the project's distillation cache. See `TeacherTargets` and `view_crop`.
    None when `callbacks.should_stop` cancelled the run (what was computed is not kept).

    View 0 is the whole image with the project's cached proposals; a crop view is a new image to
    the teacher: the crop, resized to the teacher's scale, with proposals computed on it by the
    teacher's proposal source."""
    meta = dict(getattr(teacher, "meta", {}) or {})
    inputs = _TeacherInputs(int(meta.get("image_size") or 320),
                            int(meta.get("max_proposals") or 300),
                            bool(meta.get("box_scores", False)), source_from_meta(meta))
    keep = kd_boxes if kd_boxes > 0 else inputs.max_proposals
    digests = content_digests(store, image_ids, paths)
    cache_path = _targets_cache_path(store, teacher_version, kd_boxes)
    cache = _load_cached_targets(cache_path)
    keys = [[[_target_key(digest, v, flip) for flip in flips] for v in range(views)]
            for digest in digests]
    jobs = [(i, v, flip) for i in range(len(digests)) for v in range(views) for flip in flips
            if _target_key(digests[i], v, flip) not in cache]
    if jobs:
        jobs = _prepare_whole_images(store, inputs, jobs, image_ids, paths, callbacks)
        if jobs is None:
            return None
        callbacks.message(f"Running the teacher {teacher_version} on {len(digests)} images "
                          f"({len(jobs)} views)")
        if not _run_teacher(teacher, inputs, jobs, paths, digests, keep, cache, device,
                            callbacks, batch_size):
            return None
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(cache_path, {"model": {}, "format": TARGETS_FORMAT, "entries": cache})
    return _stack_targets(cache, keys, keep, teacher)


def _prepare_whole_images(store: Any, inputs: _TeacherInputs, jobs: list[tuple[int, int, bool]],
                          image_ids: Sequence[int], paths: Sequence[Path],
                          callbacks: TrainCallbacks) -> list[tuple[int, int, bool]] | None:
    """Proposals for the whole-image views still to compute (`inputs.whole_set`); returns the
    jobs the teacher can run (unreadable images left out), None when cancelled."""
    from engine.datasets.regions import RegionDataset

    whole = sorted({i for i, v, _ in jobs if v == 0})
    if not whole:
        return jobs
    callbacks.message(f"Computing {inputs.source.name} proposals for {len(whole)} images")
    proposals, failed = proposals_for_images(
        store, [image_ids[i] for i in whole], [paths[i] for i in whole], inputs.source,
        callbacks.progress_for("teacher proposals"), callbacks.should_stop)
    if callbacks.stopped():
        return None
    for image_id, reason in failed.items():
        log.warning("No teacher targets for image %s: %s", image_id, reason)
    usable = [j for j, p in enumerate(proposals) if p is not None and len(p) > 0]
    inputs.position = {whole[j]: k for k, j in enumerate(usable)}
    inputs.whole_set = RegionDataset(
        [paths[whole[j]] for j in usable], [proposals[j] for j in usable],
        np.zeros((len(usable), 1), np.float32), inputs.max_proposals,
        box_scores=inputs.uses_scores, train=False)
    return [job for job in jobs if job[1] != 0 or job[0] in inputs.position]


def _run_teacher(teacher: torch.nn.Module, inputs: _TeacherInputs,
                 jobs: list[tuple[int, int, bool]], paths: Sequence[Path], digests: list[str],
                 keep: int, cache: dict[str, Any], device: torch.device,
                 callbacks: TrainCallbacks, batch_size: int) -> bool:
    """The teacher on every job, in batches, its targets into `cache`; False when cancelled."""
    from engine.datasets.regions import collate_regions

    teacher.eval()
    decoded: dict[int, Any] = {}
    for start in range(0, len(jobs), batch_size):
        if callbacks.stopped():
            return False
        chunk, samples = [], []
        for i, v, flip in jobs[start:start + batch_size]:
            try:
                samples.append(_teacher_sample(inputs, paths, digests, i, v, flip, decoded))
            except Exception as exc:  # noqa: BLE001 - one unreadable image must not end training
                log.warning("No teacher targets for %s: %s", paths[i], exc)
                continue
            chunk.append((i, v, flip))
        if len(decoded) > 64:
            decoded.clear()
        if samples:
            sizes = [(sample["image"].shape[2], sample["image"].shape[1]) for sample in samples]
            outputs = _run_teacher_batch(teacher, collate_regions(samples), device,
                                         inputs.uses_scores)
            for b, ((i, v, flip), size) in enumerate(zip(chunk, sizes)):
                cache[_target_key(digests[i], v, flip)] = _view_targets(outputs, b, size, keep)
        callbacks.step("teacher targets", min(start + batch_size, len(jobs)), len(jobs))
    return True


def _teacher_sample(inputs: _TeacherInputs, paths: Sequence[Path], digests: list[str], i: int,
                    view: int, flip: bool, decoded: dict[int, Any]) -> dict[str, Any]:
    if view == 0:
        return inputs.whole_set[(inputs.position[i], inputs.scale, flip, 0)]
    return _crop_view_sample(paths[i], view_crop(digests[i], view), inputs.scale, inputs.source,
                             inputs.max_proposals, inputs.uses_scores, flip, decoded, i)


def _view_targets(outputs: Any, b: int, size: tuple[int, int], keep: int) -> dict[str, Any]:
    """One view's cache entry: soft target, the `keep` best boxes (as fractions of the input) and
    their region features."""
    width, height = size
    soft = teacher_soft_targets(outputs.class_logits[b].float().cpu(),
                                outputs.det_logits[b].float().cpu(), TEACHER_TEMPERATURE)
    ranking = outputs.detection_scores(b).float().max(dim=1).values.cpu()
    top = torch.argsort(ranking, descending=True)[:keep]
    boxes = outputs.boxes[b].float().cpu()[top]
    boxes = boxes / torch.tensor([width, height, width, height], dtype=torch.float32)
    return {"soft": soft, "boxes": boxes.clamp(0.0, 1.0),
            "features": outputs.features[b].float().cpu()[top].half()}


def _crop_view_sample(path: Path, crop: tuple[float, float, float, float], scale: int,
                      source: Any, max_proposals: int, uses_scores: bool, flip: bool,
                      decoded: dict[int, Any], index: int) -> dict[str, Any]:
    """A `RegionDataset`-style sample of one crop view: the crop at the teacher's scale with
    proposals computed on the crop (at most the source's `max_side`, as for whole images),
    mirrored when `flip`. The image is decoded only as large as the smallest crop needs."""
    from engine.datasets.regions import (
        image_to_tensor,
        resize_longest,
        select_proposals,
    )
    from engine.images import load_rgb

    image = decoded.get(index)
    if image is None:
        needed = max(scale, source.max_side) / math.sqrt(CROP_AREA[0])
        image = decoded[index] = load_rgb(path, max_side=int(math.ceil(needed)))
    region = image.crop(crop_pixels(image.size, crop))
    pixels = region if max(region.size) <= source.max_side else resize_longest(region, source.max_side)
    proposals = source.propose_array(np.asarray(pixels), region.size)
    if len(proposals) == 0:
        raise ValueError("no proposals in the crop")
    region = resize_longest(region, scale)
    width, height = region.size
    sx, sy = width / proposals.size[0], height / proposals.size[1]
    boxes, scores = select_proposals(proposals, max_proposals, None, uses_scores)
    boxes = boxes * np.array([sx, sy, sx, sy], dtype=np.float32)
    tensor = image_to_tensor(region)
    if flip:
        tensor = tensor.flip(-1)
        boxes = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1)
    return {"image": tensor, "boxes": torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)),
            "box_scores": None if scores is None else torch.from_numpy(scores),
            "labels": torch.zeros(1), "index": index,
            "to_original": torch.ones(4, dtype=torch.float32)}


def _run_teacher_batch(teacher: torch.nn.Module, batch: dict[str, Any], device: torch.device,
                       uses_scores: bool) -> Any:
    """The frozen teacher's region outputs for one collated batch (eval, inference mode)."""
    with torch.inference_mode():
        return teacher.region_outputs(
            batch["images"].to(device), [b.to(device) for b in batch["boxes"]],
            None if batch["box_scores"] is None or not uses_scores
            else [s.to(device) for s in batch["box_scores"]])


def _stack_targets(cache: dict[str, dict[str, torch.Tensor]], keys: list[list[list[str]]],
                   keep: int, teacher: torch.nn.Module) -> TeacherTargets:
    """Stack cached entries into (N, V, F, ...) tensors; missing entries: NaN soft targets."""
    first = next(iter(cache.values()), None)
    num_classes = int(getattr(teacher, "num_classes", 0) or (first["soft"].shape[0] if first else 1))
    dim = int(getattr(teacher, "feature_dim", 0) or (first["features"].shape[1] if first else 1))
    n = len(keys)
    v = len(keys[0]) if keys else 1
    f = len(keys[0][0]) if keys else 1
    soft = torch.full((n, v, f, num_classes), float("nan"))
    boxes = torch.zeros(n, v, f, keep, 4)
    features = torch.zeros(n, v, f, keep, dim, dtype=torch.float16)
    valid = torch.zeros(n, v, f, keep, dtype=torch.bool)
    for i, per_view in enumerate(keys):
        for j, per_flip in enumerate(per_view):
            for k, key in enumerate(per_flip):
                entry = cache.get(key)
                if entry is None:
                    continue
                r = min(keep, int(entry["boxes"].shape[0]))
                soft[i, j, k] = entry["soft"]
                boxes[i, j, k, :r] = entry["boxes"][:r]
                features[i, j, k, :r] = entry["features"][:r]
                valid[i, j, k, :r] = True
    return TeacherTargets(soft, boxes, features, valid)


def content_digests(store: Any, image_ids: Sequence[int], paths: Sequence[Path]) -> list[str]:
    wanted = set(image_ids)
    rows = {image.id: image for image in store.images.list(include_missing=True)
            if image.id in wanted}
    digests = []
    for image_id, path in zip(image_ids, paths):
        row = rows.get(image_id)
        digest = row.content_hash if row is not None and row.content_hash else None
        digests.append(digest or hashlib.sha1(str(path).encode()).hexdigest())
    return digests
