"""Distillation's teacher pass: what the frozen teacher says about each training image, on disk.

For every training image, view (0: the whole image; v > 0: the crop `view_crop(digest, v)`) and flip,
the teacher runs once under `torch.no_grad` at its own test scale with its own proposals.
Kept per view: the soft target q = sum_r softmax_k(M^c / 0.5) * softmax_r(M^d / 0.5) (prediction
distillation), and the `kd_boxes` highest-scoring boxes with their region features f_r (feature
distillation). The targets go to one memory-mapped record per image (`engine.datasets.targets`)
under `<project>/cache/distill/<teacher>-r<boxes>-v<views>-f<flips>/`, so later student runs from
the same teacher skip the teacher, a cancelled pass resumes, and the student reads them lazily.
Decoding and proposals run in DataLoader workers (`engine.datasets.teacher_views`), overlapping the
teacher's forward passes; `teacher_pass` works on any list of images, so ranks can share the work.
`OnlineTeacher` computes the same targets on the fly inside the student's step instead (on a GPU,
where the teacher's forward is cheap), from the same inputs and through the same code.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from engine.datasets.regions import collate_regions
from engine.datasets.targets import TargetFiles, TargetLayout, TeacherTargets
from engine.datasets.teacher_views import TeacherViews, collate_views
from engine.models.losses import TEACHER_TEMPERATURE, teacher_soft_targets
from engine.proposals.project import source_from_meta
from engine.training.api import TrainCallbacks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherPass:
    """How the teacher sees the views: its scale and proposals, the views and flips per image,
    and how many boxes per view are kept (`keep`)."""

    scale: int
    max_proposals: int
    uses_scores: bool
    source: Any
    views: int
    flips: tuple[bool, ...]
    keep: int

    @classmethod
    def of(cls, teacher: torch.nn.Module, kd_boxes: int, views: int,
           flips: Sequence[bool]) -> TeacherPass:
        meta = dict(getattr(teacher, "meta", {}) or {})
        max_proposals = int(meta.get("max_proposals") or 300)
        return cls(int(meta.get("image_size") or 320), max_proposals,
                   bool(meta.get("box_scores", False)), source_from_meta(meta), max(1, int(views)),
                   tuple(bool(f) for f in flips), kd_boxes if kd_boxes > 0 else max_proposals)


def target_files(store: Any, teacher: torch.nn.Module, teacher_version: str, kd_boxes: int,
                 settings: TeacherPass) -> TargetFiles:
    """The record files of this teacher and setting (`cache/distill/<teacher>-r..-v..-f..`)."""
    name = f"{teacher_version}-r{kd_boxes}-v{settings.views}-f{len(settings.flips)}"
    layout = TargetLayout(settings.views, len(settings.flips), int(teacher.num_classes),
                          settings.keep, int(teacher.feature_dim))
    return TargetFiles(store.paths.cache_dir / "distill" / name, layout)


def compute_teacher_targets(store: Any, teacher: torch.nn.Module, teacher_version: str,
                            image_ids: Sequence[int], paths: Sequence[Path], kd_boxes: int,
                            flips: Sequence[bool], device: torch.device,
                            callbacks: TrainCallbacks, batch_size: int = 8, views: int = 1,
                            workers: int | None = None) -> TeacherTargets | None:
    """The teacher's targets of every image, view and flip, computed where the project's
    distillation cache has none (see the module docstring). None when `callbacks.should_stop`
    cancelled the pass (the images finished so far stay on disk and are not computed again).
    Images the teacher could not read have no record (`TeacherTargets.available`)."""
    settings = TeacherPass.of(teacher, kd_boxes, views, flips)
    files = target_files(store, teacher, teacher_version, kd_boxes, settings)
    for stale in files.root.parent.glob("*.pt"):    # the whole-set cache files of earlier versions
        stale.unlink(missing_ok=True)
    digests = content_digests(store, image_ids, paths)
    todo = {digest: Path(path) for digest, path in zip(digests, paths) if not files.has(digest)}
    if todo:
        callbacks.message(f"Running the teacher {teacher_version} on {len(todo)} of "
                          f"{len(digests)} images ({settings.views} view(s), "
                          f"{len(settings.flips)} flip(s) each)")
        items = [(path, digest) for digest, path in todo.items()]
        if not teacher_pass(store, teacher, settings, items, files, device, callbacks,
                            batch_size, workers):
            return None
    return TeacherTargets(files, digests, settings.flips)


def pass_workers(workers: int | None, device: torch.device) -> int:
    """Loader processes of the pass: as asked; else on CUDA one per spare core, on a CPU of 4 or
    more cores half of them (at most 8). The teacher's forward uses every core itself; on photos
    a crop's selective search (~0.65 CPU s) costs more than the forward of an image's four views
    (~0.57 s at 320 px), so the inputs are worth overlapping; on 2 cores the workers' start-up
    and contention outweigh it."""
    if workers is not None:
        return max(0, int(workers))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.type == "cuda":
        return max(0, min(8, cores - 1))
    return min(8, cores // 2) if cores >= 4 else 0


def teacher_pass(store: Any, teacher: torch.nn.Module, settings: TeacherPass,
                 items: Sequence[tuple[Path, str]], files: TargetFiles, device: torch.device,
                 callbacks: TrainCallbacks, batch_size: int = 8,
                 workers: int | None = None) -> bool:
    """Run the teacher on every view and flip of `items` ((path, digest) pairs) and write one
    record per image to `files`; False when cancelled. Batches hold whole images, about
    `batch_size` views each."""
    per_image = settings.views * len(settings.flips)
    dataset = TeacherViews([p for p, _ in items], [d for _, d in items], settings.views,
                           settings.flips, settings.scale, settings.source,
                           settings.max_proposals, settings.uses_scores,
                           store.paths.proposals_cache)
    workers = pass_workers(workers, device)
    loader = DataLoader(dataset, batch_size=max(1, batch_size // per_image),
                        collate_fn=collate_views, num_workers=workers,
                        multiprocessing_context="spawn" if workers > 0 else None)
    teacher.eval()
    done = 0
    for batch in loader:
        if callbacks.stopped():
            return False
        for item in batch:
            if "error" in item:
                log.warning("No teacher targets for %s: %s", dataset.paths[item["item"]],
                            item["error"])
        _write_records(teacher, settings, [item for item in batch if "samples" in item],
                       dataset.digests, files, device)
        done += len(batch)
        callbacks.step("teacher targets", done * per_image, len(items) * per_image)
    return True


def _write_records(teacher: torch.nn.Module, settings: TeacherPass, images: list[dict[str, Any]],
                   digests: list[str], files: TargetFiles, device: torch.device) -> None:
    """One teacher forward over every view of `images`, one record per image."""
    samples = [sample for image in images for sample in image["samples"]]
    if not samples:
        return
    outputs = _run_teacher_batch(teacher, collate_regions(samples), device, settings.uses_scores)
    per_flip = len(settings.flips)
    b = 0
    for image in images:
        record = files.layout.empty()
        for view in range(settings.views):
            for flip in range(per_flip):
                entry = _view_targets(outputs, b, samples[b]["image"].shape, settings.keep)
                r = int(entry["boxes"].shape[0])
                record["soft"][0, view, flip] = entry["soft"].cpu().numpy()
                record["boxes"][0, view, flip, :r] = entry["boxes"].cpu().numpy()
                record["features"][0, view, flip, :r] = entry["features"].cpu().numpy()
                record["valid"][0, view, flip, :r] = True
                b += 1
        files.write(digests[image["item"]], record)


def _view_targets(outputs: Any, b: int, shape: Sequence[int], keep: int) -> dict[str, Any]:
    """One view's targets, on the teacher's device: soft target, the `keep` best boxes (as
    fractions of the input of `shape` (3, H, W)) and their region features (float16)."""
    height, width = int(shape[1]), int(shape[2])
    soft = teacher_soft_targets(outputs.class_logits[b].float(), outputs.det_logits[b].float(),
                                TEACHER_TEMPERATURE)
    ranking = outputs.detection_scores(b).float().max(dim=1).values
    top = torch.argsort(ranking, descending=True)[:keep]
    boxes = outputs.boxes[b].float()[top]
    boxes = boxes / boxes.new_tensor([width, height, width, height])
    return {"soft": soft, "boxes": boxes.clamp(0.0, 1.0),
            "features": outputs.features[b].float()[top].half()}


@dataclass
class OnlineTeacher:
    """The frozen teacher inside the student's step: a collated batch of teacher inputs (the
    "teacher" of `collate_student`) -> the batch's targets, as `collate_targets` stacks them from
    disk: soft (B, K), boxes (B, R, 4), features (B, R, D) float16, valid (B, R)."""

    model: torch.nn.Module
    settings: TeacherPass
    device: torch.device

    def views_of(self, paths: Sequence[Path], digests: Sequence[str],
                 proposal_cache: Path) -> TeacherViews:
        """The teacher's inputs of these training images, for the student's data loader."""
        s = self.settings
        return TeacherViews(paths, digests, s.views, s.flips, s.scale, s.source, s.max_proposals,
                            s.uses_scores, proposal_cache)

    def __call__(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        self.model.eval()
        outputs = _run_teacher_batch(self.model, batch, self.device, self.settings.uses_scores)
        n, keep, dim = len(batch["shapes"]), self.settings.keep, int(self.model.feature_dim)
        first = outputs.class_logits[0]
        stacked = {"soft": first.new_zeros(n, int(self.model.num_classes), dtype=torch.float32),
                   "boxes": first.new_zeros(n, keep, 4, dtype=torch.float32),
                   "features": first.new_zeros(n, keep, dim, dtype=torch.float16),
                   "valid": torch.zeros(n, keep, dtype=torch.bool, device=first.device)}
        for b, shape in enumerate(batch["shapes"]):
            entry = _view_targets(outputs, b, shape, keep)
            r = int(entry["boxes"].shape[0])
            stacked["soft"][b] = entry["soft"]
            stacked["boxes"][b, :r] = entry["boxes"]
            stacked["features"][b, :r] = entry["features"]
            stacked["valid"][b, :r] = True
        return stacked


def _run_teacher_batch(teacher: torch.nn.Module, batch: dict[str, Any], device: torch.device,
                       uses_scores: bool) -> Any:
    """The frozen teacher's region outputs for one collated batch (eval mode, no gradients:
    plain tensors, which the student's losses may use as constants)."""
    with torch.no_grad():
        return teacher.region_outputs(
            batch["images"].to(device), [b.to(device) for b in batch["boxes"]],
            None if batch["box_scores"] is None or not uses_scores
            else [s.to(device) for s in batch["box_scores"]])


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
