"""The student stage: a plain classifier trained from the tags and distilled from the teacher.

`train_student(store, config, callbacks)` (registered in `engine.training.api.STAGE_TRAINERS`):

1. training set = tagged, readable images of split 'train'; validation = split 'val' (val mAP, CF1
   and OF1 through `engine.metrics` after every epoch);
2. unless `config.kd == "none"`, the teacher (`config.teacher_version`, else the active one) is
   loaded frozen, in eval mode, and run once under `torch.inference_mode` on every training image
   and view (the whole image, and `views - 1` random-resized crops fixed by the image's content
   hash), unflipped and flipped, at its own test scale with its own proposals. Kept per view:
   the soft target q = sum_r softmax_k(M^c / 0.5) * softmax_r(M^d / 0.5) (prediction distillation),
   and the `kd_boxes` highest-scoring boxes with their region features f_r (feature distillation).
   These targets are cached on disk per teacher version (`<project>/cache/distill/`), so later
   student runs from the same teacher skip the teacher entirely;
3. the student (engine.models.student.Student, `config.student_backbone`) sees, each epoch, one
   view per image drawn at random, stretched to `student_image_size` squared
   (`engine.inference.tagging.student_input`, the same preparation as batch tagging), flipped
   exactly when the teacher's target was: the teacher and the student see the same augmented
   image. The teacher's boxes are rescaled to the student's input; the student RoI-aligns its own
   last conv map with them and its region head + projection give g_r;
4. losses per schedule (`config.schedule`):
   - `staged` (the paper): stage 1 (the first `feature_epochs`, default 40 % of the epochs when
     feature distillation is on) minimises L_f alone, as the authors' stage-1 prototxt; stage 2
     minimises L_tags + L_pred (the tag loss is BCE or ASL, `config.loss`);
   - `joint`: L_tags + feature_weight * L_f + L_pred from the first epoch;
   with `kd="none"` only L_tags; `feature` drops L_pred, `prediction` drops L_f;
5. AdamW with warm-up and cosine decay (restarted at the start of stage 2), the shared loop
   (engine.training.loop: AMP and channels_last on CUDA, checkpoints every epoch, cancel, resume),
   and the run in `store.runs` (model_version 'student-<id>'), active once completed.

Stage-specific knobs live in `config.extra` (stored with the run): `student_epochs`,
`student_lr`, `student_batch_size` (default: the shared `epochs`, `lr` and `batch_size`),
`feature_epochs`, `feature_weight` (1.0), `prediction_weight` (1.0), `kd_boxes` (48, 0 = all the
teacher's proposals), `student_pretrained` (default: `pretrained`), `feature_norm` ("l2": each
region feature of both sides L2-normalised, default; "scale": both divided by the teacher
features' RMS norm; "none"), `region_layers` (0: the RoI's mean feature and the projection,
default; 2: two fc layers of width `region_dim`, 256), `roi_size` (2), `views` (2: the whole
image and one random-resized crop per image, drawn per epoch; 1: the whole image only),
`student_stride` (32: the backbone's whole trunk; 16: cut at its stride-16 stage, a finer map
for the region head).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from engine.device import resolve_device
from engine.errors import UserError
from engine.losses import (
    TEACHER_TEMPERATURE,
    classification_loss,
    feature_distillation_loss,
    prediction_distillation_loss,
    teacher_soft_targets,
)
from engine.models.student import Student
from engine.training.api import TrainCallbacks, TrainConfig
from engine.training.checkpoint import save_checkpoint
from engine.training.loop import LoopSetup, run_stage, start_stage

log = logging.getLogger(__name__)

STAGE = "student"
KD_MODES = ("none", "feature", "prediction", "both")
SCHEDULES = ("staged", "joint")
LOSSES = ("bce", "asl")
FEATURE_NORMS = ("none", "l2", "scale")
# Measured on the demo data (benchmarks/kd_ablation.py, docs/distillation.md): l2-normalised
# features, the mean-feature region head and one crop view per image distil best.
DEFAULTS: dict[str, Any] = {
    "feature_weight": 1.0, "prediction_weight": 1.0, "kd_boxes": 48, "feature_norm": "l2",
    "views": 2, "temperature_lr_mult": 10.0, "feature_share": 0.4, "region_dim": 256,
    "roi_size": 2, "student_stride": 32, "region_layers": 0,
}
TARGETS_FORMAT = 1


# ------------------------------------------------------------------------------ options


@dataclass(frozen=True)
class StudentOptions:
    """The student's resolved settings (from TrainConfig and its `extra`)."""

    epochs: int
    lr: float
    batch_size: int
    kd: str
    schedule: str
    loss: str
    feature_epochs: int          # staged: epochs of stage 1 (feature distillation only)
    feature_weight: float
    prediction_weight: float
    kd_boxes: int
    views: int                   # augmented views per image: the whole image + views - 1 crops
    temperature_lr_mult: float   # learning-rate multiplier of the learnable 1/t
    feature_norm: str
    region_dim: int
    roi_size: int
    stride: int                  # 32: the whole trunk; 16: cut at the stride-16 stage
    region_layers: int           # 2: fc6/fc7-style region head; 0: mean RoI feature + projection

    @property
    def uses_feature(self) -> bool:
        return self.kd in ("feature", "both")

    @property
    def uses_prediction(self) -> bool:
        return self.kd in ("prediction", "both")

    @property
    def needs_teacher(self) -> bool:
        return self.kd != "none"


def student_options(config: TrainConfig) -> StudentOptions:
    """Check and resolve the student's settings; raises UserError for a bad choice."""
    extra = {**DEFAULTS, **dict(config.extra or {})}
    if config.kd not in KD_MODES:
        raise UserError(f"Unknown distillation mode {config.kd!r}; use one of {', '.join(KD_MODES)}.")
    if config.schedule not in SCHEDULES:
        raise UserError(f"Unknown schedule {config.schedule!r}; use staged or joint.")
    if config.loss not in LOSSES:
        raise UserError(f"Unknown loss {config.loss!r}; use bce or asl.")
    if extra["feature_norm"] not in FEATURE_NORMS:
        raise UserError(f"Unknown feature normalisation {extra['feature_norm']!r}; use one of "
                        f"{', '.join(FEATURE_NORMS)}.")
    epochs = int(extra.get("student_epochs") or config.epochs)
    uses_feature = config.kd in ("feature", "both")
    if config.schedule == "staged" and uses_feature:
        feature_epochs = extra.get("feature_epochs")
        if feature_epochs is None:
            feature_epochs = round(epochs * float(extra["feature_share"]))
        feature_epochs = int(feature_epochs)
        if epochs > 1:
            feature_epochs = min(max(1, feature_epochs), epochs - 1)
        else:
            feature_epochs = 0      # one epoch: no room for two stages; distil jointly
    else:
        feature_epochs = 0
    options = StudentOptions(
        epochs=epochs, lr=float(extra.get("student_lr") or config.lr),
        batch_size=int(extra.get("student_batch_size") or config.batch_size),
        kd=config.kd, schedule=config.schedule, loss=config.loss, feature_epochs=feature_epochs,
        feature_weight=float(extra["feature_weight"]),
        prediction_weight=float(extra["prediction_weight"]), kd_boxes=int(extra["kd_boxes"]),
        views=int(extra["views"]), temperature_lr_mult=float(extra["temperature_lr_mult"]),
        feature_norm=str(extra["feature_norm"]), region_dim=int(extra["region_dim"]),
        roi_size=int(extra["roi_size"]), stride=int(extra["student_stride"]),
        region_layers=int(extra["region_layers"]))
    if options.epochs < 1 or options.batch_size < 1 or options.lr <= 0:
        raise UserError("Student epochs, batch size and learning rate must be positive.")
    if options.views < 1:
        raise UserError("views must be at least 1 (the whole image).")
    if options.kd_boxes < 0:
        raise UserError("kd_boxes must be 0 (all proposals) or a positive number of boxes.")
    return options


# ------------------------------------------------------------------------------ teacher targets


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


CROP_AREA = (0.35, 1.0)          # crop views: share of the image area
CROP_RATIO = (3 / 4, 4 / 3)      # and aspect-ratio range (as torchvision's RandomResizedCrop)


def view_crop(digest: str, view: int) -> tuple[float, float, float, float]:
    """The crop of augmented view `view` of an image, as fractions (x0, y0, x1, y1) of its width
    and height. View 0 is the whole image; the others are random-resized crops drawn from a
    generator seeded by the image's content hash and the view number, so the teacher's cached
    targets and the student's inputs always agree."""
    if view == 0:
        return (0.0, 0.0, 1.0, 1.0)
    rng = np.random.default_rng(int(hashlib.sha1(f"{digest}:{view}".encode()).hexdigest()[:12], 16))
    area = rng.uniform(*CROP_AREA)
    ratio = math.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
    width, height = min(1.0, math.sqrt(area * ratio)), min(1.0, math.sqrt(area / ratio))
    x0, y0 = rng.uniform(0.0, 1.0 - width), rng.uniform(0.0, 1.0 - height)
    return (float(x0), float(y0), float(x0 + width), float(y0 + height))


def _crop_pixels(size: tuple[int, int], crop: tuple[float, float, float, float]) -> tuple[int, ...]:
    width, height = size
    x0, y0 = int(round(crop[0] * width)), int(round(crop[1] * height))
    x1 = max(x0 + 1, int(round(crop[2] * width)))
    y1 = max(y0 + 1, int(round(crop[3] * height)))
    return (x0, y0, min(width, x1), min(height, y1))


def _target_key(digest: str, view: int, flip: bool) -> str:
    return f"{digest}:{int(flip)}" if view == 0 else f"{digest}:v{view}:{int(flip)}"


def compute_teacher_targets(store: Any, teacher: torch.nn.Module, teacher_version: str,
                            image_ids: Sequence[int], paths: Sequence[Path], kd_boxes: int,
                            flips: Sequence[bool], device: torch.device,
                            callbacks: TrainCallbacks, batch_size: int = 8,
                            views: int = 1) -> TeacherTargets:
    """Run the frozen teacher (eval mode, inference mode) on every image, view and flip, or read
    its outputs from the project's distillation cache. See `TeacherTargets` and `view_crop`.

    View 0 is the whole image with the project's cached proposals; a crop view is a new image to
    the teacher: the crop, resized to the teacher's scale, with proposals computed on it by the
    teacher's proposal source."""
    from engine.training.data import RegionDataset, collate_regions
    from engine.training.teacher import proposals_for_images, source_from_meta

    meta = dict(getattr(teacher, "meta", {}) or {})
    scale = int(meta.get("image_size") or 320)
    max_proposals = int(meta.get("max_proposals") or 300)
    uses_scores = bool(meta.get("box_scores", False))
    keep = kd_boxes if kd_boxes > 0 else max_proposals
    digests = _content_digests(store, image_ids, paths)
    cache_path = _targets_cache_path(store, teacher_version, kd_boxes)
    cache = _load_cached_targets(cache_path)
    keys = [[[_target_key(digest, v, flip) for flip in flips] for v in range(views)]
            for digest in digests]
    jobs = [(i, v, flip) for i in range(len(digests)) for v in range(views) for flip in flips
            if _target_key(digests[i], v, flip) not in cache]
    if not jobs:
        return _stack_targets(cache, keys, keep, teacher)

    source = source_from_meta(meta)
    whole = sorted({i for i, v, _ in jobs if v == 0})
    whole_set: RegionDataset | None = None
    position: dict[int, int] = {}
    if whole:
        proposals, failed = proposals_for_images(
            store, [image_ids[i] for i in whole], [paths[i] for i in whole], source, callbacks,
            label="teacher proposals")
        if callbacks.stopped():
            raise UserError("Training was cancelled while computing proposals.")
        for image_id, reason in failed.items():
            log.warning("No teacher targets for image %s: %s", image_id, reason)
        usable = [j for j, p in enumerate(proposals) if p is not None and len(p) > 0]
        position = {whole[j]: k for k, j in enumerate(usable)}
        whole_set = RegionDataset([paths[whole[j]] for j in usable], [proposals[j] for j in usable],
                                  np.zeros((len(usable), 1), np.float32), max_proposals,
                                  box_scores=uses_scores, train=False)
        jobs = [job for job in jobs if job[1] != 0 or job[0] in position]

    callbacks.message(f"Running the teacher {teacher_version} on {len(digests)} images "
                      f"({len(jobs)} views)")
    teacher.eval()
    decoded: dict[int, Any] = {}
    done = 0
    for start in range(0, len(jobs), batch_size):
        if callbacks.stopped():
            raise UserError("Training was cancelled while running the teacher.")
        chunk, samples = [], []
        for i, v, flip in jobs[start:start + batch_size]:
            try:
                if v == 0:
                    sample = whole_set[(position[i], scale, flip, 0)]  # type: ignore[index]
                else:
                    sample = _crop_view_sample(paths[i], view_crop(digests[i], v), scale, source,
                                               max_proposals, uses_scores, flip, decoded, i)
            except Exception as exc:  # noqa: BLE001 - one unreadable image must not end training
                log.warning("No teacher targets for %s: %s", paths[i], exc)
                continue
            chunk.append((i, v, flip))
            samples.append(sample)
        if len(decoded) > 64:
            decoded.clear()
        if samples:
            sizes = [(s["image"].shape[2], s["image"].shape[1]) for s in samples]
            outputs = _run_teacher_batch(teacher, collate_regions(samples), device, uses_scores)
            for b, ((i, v, flip), (width, height)) in enumerate(zip(chunk, sizes)):
                m_c = outputs.class_logits[b].float().cpu()
                m_d = outputs.det_logits[b].float().cpu()
                soft = teacher_soft_targets(m_c, m_d, TEACHER_TEMPERATURE)
                ranking = outputs.detection_scores(b).float().max(dim=1).values.cpu()
                top = torch.argsort(ranking, descending=True)[:keep]
                boxes = outputs.boxes[b].float().cpu()[top]
                boxes = boxes / torch.tensor([width, height, width, height], dtype=torch.float32)
                cache[_target_key(digests[i], v, flip)] = {
                    "soft": soft, "boxes": boxes.clamp(0.0, 1.0),
                    "features": outputs.features[b].float().cpu()[top].half()}
        done = min(start + batch_size, len(jobs))
        callbacks.step("teacher targets", done, len(jobs))
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(cache_path, {"model": {}, "format": TARGETS_FORMAT, "entries": cache})
    return _stack_targets(cache, keys, keep, teacher)


def _crop_view_sample(path: Path, crop: tuple[float, float, float, float], scale: int,
                      source: Any, max_proposals: int, uses_scores: bool, flip: bool,
                      decoded: dict[int, Any], index: int) -> dict[str, Any]:
    """A `RegionDataset`-style sample of one crop view: the crop at the teacher's scale with
    proposals computed on the crop (at most the source's `max_side`, as for whole images),
    mirrored when `flip`. The image is decoded only as large as the smallest crop needs."""
    from engine.images import load_rgb
    from engine.training.data import image_to_tensor, resize_longest, select_proposals

    image = decoded.get(index)
    if image is None:
        needed = max(scale, source.max_side) / math.sqrt(CROP_AREA[0])
        image = decoded[index] = load_rgb(path, max_side=int(math.ceil(needed)))
    region = image.crop(_crop_pixels(image.size, crop))
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


def _content_digests(store: Any, image_ids: Sequence[int], paths: Sequence[Path]) -> list[str]:
    wanted = set(image_ids)
    rows = {image.id: image for image in store.images.list(include_missing=True)
            if image.id in wanted}
    digests = []
    for image_id, path in zip(image_ids, paths):
        row = rows.get(image_id)
        digest = row.content_hash if row is not None and row.content_hash else None
        digests.append(digest or hashlib.sha1(str(path).encode()).hexdigest())
    return digests


# ------------------------------------------------------------------------------ data


class StudentImages(Dataset):
    """Training images for the student, keyed `(index, view, flip)` (see `ViewBatchSampler`).

    A sample: "image" uint8 (3, S, S): view 0 is the whole image stretched to the square exactly
    as batch tagging prepares it (`engine.inference.tagging.student_input`); view v > 0 is the crop
    `view_crop(digest, v)` stretched to the square; mirrored when flip. Also "labels" (K,),
    "index", "view", "flip". Decoded images are kept in memory up to `cache_bytes`.
    """

    def __init__(self, paths: Sequence[Path], labels: np.ndarray, size: int,
                 original_sizes: Sequence[tuple[int, int] | None] | None = None,
                 digests: Sequence[str] | None = None, views: int = 1,
                 cache_bytes: int = 1 << 30) -> None:
        self.paths = [Path(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.float32)
        self.size = size
        self.sizes = list(original_sizes) if original_sizes is not None else [None] * len(self.paths)
        self.digests = list(digests) if digests is not None else [str(p) for p in self.paths]
        self.views = max(1, int(views))
        self._cache: dict[int, Any] = {}
        # crops need the decoded image (about 2.5 S on its short side); whole views the tensor
        per_image = 3 * size * size * (8 if self.views > 1 else 1)
        self._cache_limit = max(0, cache_bytes // per_image)

    def __len__(self) -> int:
        return len(self.paths)

    def _decoded(self, index: int) -> Any:
        from engine.images import load_rgb
        from engine.inference.tagging import decode_size

        cached = self._cache.get(index)
        if cached is not None:
            return cached
        needed = self.size if self.views == 1 else int(math.ceil(self.size / math.sqrt(CROP_AREA[0])))
        image = load_rgb(self.paths[index], max_side=decode_size(needed, self.sizes[index]))
        if len(self._cache) < self._cache_limit:
            self._cache[index] = image
        return image

    def image(self, index: int, view: int = 0) -> torch.Tensor:
        """uint8 (3, S, S) of one view (unflipped)."""
        from engine.inference.tagging import student_input

        image = self._decoded(index)
        if view:
            image = image.crop(_crop_pixels(image.size, view_crop(self.digests[index], view)))
        return student_input(image, self.size)

    def __getitem__(self, key: tuple[int, int, bool] | int) -> dict[str, Any]:
        index, view, flip = key if isinstance(key, tuple) else (key, 0, False)
        image = self.image(index, view)
        return {"image": image.flip(-1) if flip else image,
                "labels": torch.from_numpy(self.labels[index]), "index": index, "view": view,
                "flip": bool(flip)}


class ViewBatchSampler(Sampler[list[tuple[int, int, bool]]]):
    """Shuffled batches of `(index, view, flip)`: a random view in [0, views) and a random flip
    (p = 0.5, when `flip`) per image; deterministic per (seed, epoch). Call `set_epoch`."""

    def __init__(self, size: int, batch_size: int, views: int = 1, flip: bool = True,
                 seed: int = 0) -> None:
        self.size, self.batch_size, self.views, self.flip, self.seed = size, batch_size, views, flip, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int, bool]]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(self.size)
        views = rng.integers(0, self.views, size=self.size)
        flips = rng.random(self.size) < 0.5 if self.flip else np.zeros(self.size, bool)
        for start in range(0, self.size, self.batch_size):
            yield [(int(i), int(views[i]), bool(flips[i]))
                   for i in order[start:start + self.batch_size]]


def collate_student(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"images": torch.stack([s["image"] for s in samples]),
            "labels": torch.stack([s["labels"] for s in samples]),
            "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
            "view": torch.tensor([s["view"] for s in samples], dtype=torch.long),
            "flip": torch.tensor([s["flip"] for s in samples], dtype=torch.long)}


def _original_sizes(store: Any, image_ids: Sequence[int]) -> list[tuple[int, int] | None]:
    wanted = set(image_ids)
    rows = {image.id: image for image in store.images.list(include_missing=True)
            if image.id in wanted}
    sizes: list[tuple[int, int] | None] = []
    for image_id in image_ids:
        row = rows.get(image_id)
        sizes.append((row.width, row.height) if row is not None and row.width and row.height
                     else None)
    return sizes


# ------------------------------------------------------------------------------ schedule


def staged_lr(total_epochs: int, steps_per_epoch: int, restart_epoch: int,
              warmup_steps: int = 20, floor: float = 0.02):  # noqa: ANN201
    """LR multiplier per optimizer step: warm-up then cosine decay within each phase; with a
    staged schedule a second warm-up + cosine starts at `restart_epoch` (stage 2)."""
    bounds = [0, restart_epoch * steps_per_epoch] if restart_epoch > 0 else [0]
    total = total_epochs * steps_per_epoch

    def factor(step: int) -> float:
        start = max(b for b in bounds if b <= step)
        end = next((b for b in bounds if b > start), total)
        length = max(1, end - start)
        local = step - start
        warm = min(warmup_steps, max(1, length // 5))
        if local < warm:
            return 0.1 + 0.9 * local / warm
        progress = min(1.0, (local - warm) / max(1, length - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


# ------------------------------------------------------------------------------ the stage


def train_student(store: Any, config: TrainConfig, callbacks: TrainCallbacks | None = None) -> Any:
    """Train (or resume) a student; returns its TrainingRun (see the module docstring)."""
    from engine.models.registry import load_model

    callbacks = callbacks or TrainCallbacks()
    start = start_stage(store, STAGE, config, callbacks)
    config, run, checkpoint, matrix = start.config, start.run, start.checkpoint, start.matrix
    class_names = start.class_names
    options = student_options(config)
    device = resolve_device(config.device)

    teacher_run = None
    targets: TeacherTargets | None = None
    if options.needs_teacher:
        teacher_version = (checkpoint or {}).get("meta", {}).get("teacher_version") or \
            config.teacher_version
        teacher, teacher_run = load_model(store, "teacher", teacher_version, device=device)
        teacher_classes = list(teacher.meta.get("class_names") or teacher_run.class_names)
        if teacher_classes != class_names:
            raise UserError(f"The teacher {teacher_run.model_version} was trained on other classes "
                            f"than the project has now; train a new teacher first (or use "
                            f"--no-kd).")
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        flips = (False, True) if config.flip else (False,)
        targets = compute_teacher_targets(
            store, teacher, teacher_run.model_version, matrix.image_ids, matrix.paths,
            options.kd_boxes, flips, device, callbacks, batch_size=max(1, config.batch_size),
            views=options.views)
        del teacher
        if device.type == "cuda":
            torch.cuda.empty_cache()
    keep = list(range(len(matrix.image_ids)))
    if targets is not None:
        keep = [i for i in keep if not torch.isnan(targets.soft[i]).any()]
        if not keep:
            raise UserError("The teacher could not read any training image.")
        targets = TeacherTargets(targets.soft[keep], targets.boxes[keep], targets.features[keep],
                                 targets.valid[keep])
    paths = [matrix.paths[i] for i in keep]
    labels = matrix.labels[keep]
    size = int(config.student_image_size)
    kept_ids = [matrix.image_ids[i] for i in keep]
    train_set = StudentImages(paths, labels, size, _original_sizes(store, kept_ids),
                              digests=_content_digests(store, kept_ids, paths), views=options.views)

    feature_scale = 1.0
    if targets is not None and options.uses_feature and options.feature_norm == "scale":
        feature_scale = targets.feature_rms()
    fresh = checkpoint is None and not config.init_from
    pretrained = bool(config.extra.get("student_pretrained", config.pretrained))
    # a --weights file is the teacher backbone's; it only fits a student of the same backbone
    weights = config.weights if config.student_backbone == config.backbone else None
    model = Student(
        config.student_backbone, len(class_names),
        pretrained=pretrained and fresh and weights is None, weights=weights if fresh else None,
        teacher_feature_dim=targets.feature_dim if targets is not None else None,
        region_dim=options.region_dim, roi_size=options.roi_size, image_size=size,
        stride=options.stride, region_layers=options.region_layers)
    meta = {"class_names": class_names, "image_size": size,
            "teacher_version": teacher_run.model_version if teacher_run else None,
            "feature_scale": feature_scale, "options": dataclasses.asdict(options)}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    elif config.init_from:
        _warm_start(store, model, config.init_from, class_names)
    model.to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)

    sampler = ViewBatchSampler(len(train_set), options.batch_size, views=options.views,
                               flip=config.flip, seed=config.seed)
    workers = config.num_workers if config.num_workers is not None else 0
    loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collate_student,
                        num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0,
                        multiprocessing_context="spawn" if workers > 0 else None)

    decay, no_decay = [], []
    temperature = {id(p) for p in model.temperature.parameters()}
    for name, parameter in model.named_parameters():
        if id(parameter) not in temperature:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    # the temperature learns 10x faster and without weight decay, as in the authors' prototxt
    # (lr_mult 10, decay_mult 0 on the scale layer that holds 1/t)
    optimizer = torch.optim.AdamW([
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
        {"params": list(model.temperature.parameters()), "weight_decay": 0.0,
         "lr": options.lr * options.temperature_lr_mult}], lr=options.lr)
    steps_per_epoch = math.ceil(len(sampler) / max(1, config.grad_accum))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, staged_lr(options.epochs, steps_per_epoch, options.feature_epochs))
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("scheduler"):
            scheduler.load_state_dict(checkpoint["scheduler"])

    if run is None:
        run = store.runs.create(STAGE, config.to_dict(), class_names,
                                parent_run_id=teacher_run.id if teacher_run else None)
    else:
        store.runs.update(run.id, status="running")
    checkpoint_path = store.paths.models_dir / f"{run.model_version}.pt"

    phase = {"epoch": 0}

    def set_epoch(epoch: int) -> None:
        phase["epoch"] = epoch
        sampler.set_epoch(epoch)

    if targets is not None:
        soft_all = targets.soft.to(device)
        boxes_all = targets.boxes.to(device)
        features_all = targets.features.to(device)
        valid_all = targets.valid.to(device)

    def step(net: Student, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        images = batch["images"].to(device, non_blocking=True).float().div_(255.0)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels_b = batch["labels"].to(device, non_blocking=True)
        index, view, flip = (batch[k].to(device) for k in ("index", "view", "flip"))
        stage_one = phase["epoch"] < options.feature_epochs
        use_feature = options.uses_feature and (stage_one or options.schedule == "joint"
                                                or options.feature_epochs == 0)
        use_tags = not stage_one
        use_prediction = options.uses_prediction and not stage_one
        feature_map = net.feature_map(images)
        losses: dict[str, torch.Tensor] = {}
        total = feature_map.new_zeros(())
        if use_tags:
            logits = net.classify(feature_map).float()
            losses["tags"] = classification_loss(options.loss, logits, labels_b)
            total = total + losses["tags"]
            if use_prediction:
                soft = soft_all[index, view, flip]
                losses["prediction"] = prediction_distillation_loss(logits, soft, net.temperature())
                total = total + options.prediction_weight * losses["prediction"]
        if use_feature:
            valid = valid_all[index, view, flip]                             # (B, R)
            boxes = boxes_all[index, view, flip] * size                      # (B, R, 4)
            box_list = [boxes[b][valid[b]] for b in range(boxes.shape[0])]
            g = net.region_features(feature_map, box_list).float()
            f = features_all[index, view, flip][valid].float()
            if options.feature_norm == "scale":
                g, f = g / feature_scale, f / feature_scale
            losses["feature"] = feature_distillation_loss(
                g, f, normalize=options.feature_norm == "l2")
            weight = 1.0 if stage_one else options.feature_weight
            total = total + weight * losses["feature"]
        losses["loss"] = total
        return losses

    val_matrix = store.tags.label_matrix("val")
    validate = None
    if val_matrix.image_ids and list(val_matrix.class_names) == class_names:
        validate = _validator(store, val_matrix, size, device, options.batch_size)

    setup = LoopSetup(
        stage=STAGE, model=model, optimizer=optimizer, loader=loader, step=step,
        epochs=options.epochs, device=device, checkpoint_path=checkpoint_path,
        checkpoint_extra={"model_config": dict(model.config), "meta": meta,
                          "class_names": class_names, "config": config.to_dict()},
        scheduler=scheduler, validate=validate, set_epoch=set_epoch,
        grad_accum=config.grad_accum, amp=config.amp,
        start_epoch=int(checkpoint["epoch"]) if checkpoint else 0,
        history=list(checkpoint.get("history", [])) if checkpoint else [],
        scaler_state=checkpoint.get("scaler") if checkpoint else None)
    callbacks.message(
        f"Training {run.model_version} on {len(train_set)} images ({config.student_backbone} at "
        f"{size} px, kd={options.kd}, {options.schedule}, loss={options.loss}, {device.type})")
    return run_stage(store, run, setup, callbacks)


def _validator(store: Any, matrix: Any, size: int, device: torch.device, batch_size: int):  # noqa: ANN202
    """Per-epoch validation: mAP, CF1 and OF1 (engine.metrics) of the student on split 'val'."""
    from engine.metrics import multilabel_report

    images = StudentImages(matrix.paths, matrix.labels, size,
                           _original_sizes(store, matrix.image_ids))
    readable: list[torch.Tensor] = []
    rows: list[int] = []
    for i in range(len(images)):
        try:
            readable.append(images.image(i))
            rows.append(i)
        except Exception as exc:  # noqa: BLE001 - an unreadable val image is left out
            log.warning("Leaving %s out of validation: %s", images.paths[i], exc)
    if not readable:
        return None
    stacked = torch.stack(readable)
    labels = matrix.labels[rows]

    def validate(model: Student) -> dict[str, float]:
        scores = []
        for start in range(0, len(stacked), max(batch_size, 32)):
            batch = stacked[start:start + max(batch_size, 32)].to(device).float().div_(255.0)
            scores.append(torch.sigmoid(model(batch).float()).cpu())
        report = multilabel_report(torch.cat(scores).numpy(), labels)
        return {"val_mAP": float(report.mAP), "val_CF1": float(report.CF1),
                "val_OF1": float(report.OF1),
                "temperature": float(model.temperature.temperature.mean())}

    return validate


def _warm_start(store: Any, model: Student, version: str, class_names: list[str]) -> None:
    """Initialise from another student's weights (its classifier too when the classes match)."""
    from engine.models.registry import load_checkpoint_of, resolve_run

    run = resolve_run(store, STAGE, version)
    state = load_checkpoint_of(store, run)["model"]
    own = model.state_dict()
    same_classes = list(run.class_names) == class_names
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape
              and (same_classes or not k.startswith(("classifier", "temperature")))}
    model.load_state_dict(usable, strict=False)
    log.info("Warm start from %s: %d of %d tensors", version, len(usable), len(own))


def describe_options(config: TrainConfig) -> str:
    """One line for logs and the CLI: the student's resolved settings."""
    return json.dumps(dataclasses.asdict(student_options(config)), sort_keys=True)
