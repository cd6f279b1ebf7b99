"""Evaluation of the project's models on one split: the teacher and the student side by side.

`evaluate(store, split="test")` runs the active teacher (through `engine.inference.detect`) and the
active student (through `engine.inference.tagging`) on the split's tagged, readable images and
computes, with `engine.metrics`:

- for each model, the image-level multi-label report (mAP, CP/CR/CF1, OP/OR/OF1 at the threshold,
  their top-3 variants, per-class AP) against the images' tags (a class without a positive tag on
  an image is a negative there);
- for the teacher, when the split has ground-truth boxes (`store.boxes`, e.g. from a COCO import or
  the demo data): CorLoc of its top box per positive image-class pair, box AP / AP50 / AP75 through
  pycocotools over all its boxes after NMS, and the CorLoc of two trivial baselines on the same
  pairs (the whole image as the box; a centred box of half the width and height).

Either model may be missing (it is then reported as not trained); with neither, `evaluate` raises
`UserError`. `evaluate_predictions` is the pure part (arrays in, report out), used by `evaluate`,
the benchmarks and the tests.

Each model is scored on its own classes that still exist in the project (a class deleted after
training is dropped, a class added after training is not scored).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine import metrics
from engine.errors import UserError
from engine.progress import Progress, ShouldStop

log = logging.getLogger(__name__)

EVAL_TOP_K = 20      # teacher boxes kept per class and image (after NMS) for box AP
BoxList = Sequence[Sequence[float]]

__all__ = ["EvaluationReport", "ModelEvaluation", "evaluate", "evaluate_predictions",
           "format_report"]


@dataclass(frozen=True)
class ModelEvaluation:
    """The figures of one model on the evaluated images."""

    stage: str                                  # teacher | student
    model_version: str
    report: metrics.MultilabelReport
    corloc: metrics.CorLocResult | None = None  # teacher, with ground-truth boxes
    box_ap: metrics.BoxAPResult | None = None   # teacher, with ground-truth boxes

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"model_version": self.model_version, **self.report.to_dict()}
        if self.corloc is not None:
            data["CorLoc"] = _json(self.corloc.corloc)
            data["mean_CorLoc"] = _json(self.corloc.mean_corloc)
            data["corloc"] = self.corloc.to_dict()
        if self.box_ap is not None:
            data["box_AP"] = _json(self.box_ap.ap)
            data["box_AP50"] = _json(self.box_ap.ap50)
            data["box_ap"] = self.box_ap.to_dict()
        return data


@dataclass(frozen=True)
class EvaluationReport:
    """Teacher and student figures on one split (either may be None: not trained)."""

    split: str
    n_images: int
    class_names: tuple[str, ...]
    teacher: ModelEvaluation | None = None
    student: ModelEvaluation | None = None
    n_box_images: int = 0                       # evaluated images with ground-truth boxes
    baselines: dict[str, float] = field(default_factory=dict)   # CorLoc of trivial boxes

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "n_images": self.n_images,
            "n_box_images": self.n_box_images,
            "class_names": list(self.class_names),
            "teacher": self.teacher.to_dict() if self.teacher else None,
            "student": self.student.to_dict() if self.student else None,
            "baselines": {name: _json(value) for name, value in self.baselines.items()},
        }

    def format(self) -> str:
        return format_report(self)


# ----------------------------------------------------------------------------- pure part


def evaluate_predictions(
    class_names: Sequence[str],
    targets: np.ndarray,
    *,
    split: str = "test",
    teacher_version: str | None = None,
    teacher_scores: np.ndarray | None = None,
    teacher_classes: Sequence[str] | None = None,
    teacher_boxes: Sequence[Sequence[tuple[str, Sequence[float], float]]] | None = None,
    student_version: str | None = None,
    student_scores: np.ndarray | None = None,
    student_classes: Sequence[str] | None = None,
    ground_truth: Sequence[Mapping[str, BoxList]] | None = None,
    image_sizes: Sequence[tuple[int, int] | None] | None = None,
    threshold: float = 0.5,
) -> EvaluationReport:
    """The evaluation report from predictions (arrays in, figures out; no model, no store).

    - `targets` (N, K): image-level labels (1, 0, UNKNOWN -1: undecided, left out), columns in the
      order of `class_names`.
    - `*_scores` (N, K_model): a model's image-level probabilities, columns in the order of
      `*_classes` (default `class_names`); they are scored in the order of `class_names`, columns
      of classes not in `class_names` are dropped.
    - `teacher_boxes[i]`: the teacher's boxes on image i after NMS, `(class, [x, y, w, h], score)`
      in original pixels.
    - `ground_truth[i]`: class -> ground-truth boxes on image i (empty for an image without boxes).
    - `image_sizes[i]`: (width, height) of image i in original pixels, for the baselines.
    """
    names = list(class_names)
    labels = np.asarray(targets, dtype=np.float64).reshape(len(targets), len(names))
    n = labels.shape[0]
    teacher = student = None
    baselines: dict[str, float] = {}
    n_box_images = sum(1 for per_class in (ground_truth or []) if _has_boxes(per_class))
    has_boxes = n_box_images > 0
    if teacher_scores is not None:
        corloc = box_ap = None
        if has_boxes and teacher_boxes is not None:
            corloc, box_ap = _teacher_localisation(teacher_boxes, ground_truth or [], n)
        teacher = ModelEvaluation("teacher", teacher_version or "?", _model_report(
            teacher_scores, teacher_classes, names, labels, threshold), corloc, box_ap)
    if has_boxes and image_sizes is not None:
        baselines = trivial_corloc(ground_truth or [], image_sizes)
    if student_scores is not None:
        student = ModelEvaluation("student", student_version or "?", _model_report(
            student_scores, student_classes, names, labels, threshold))
    return EvaluationReport(split=split, n_images=n, class_names=tuple(names), teacher=teacher,
                            student=student, n_box_images=n_box_images, baselines=baselines)


def _has_boxes(per_class: Mapping[str, BoxList]) -> bool:
    return any(len(boxes) for boxes in per_class.values())


def _model_report(scores: np.ndarray, classes: Sequence[str] | None, names: list[str],
                  labels: np.ndarray, threshold: float) -> metrics.MultilabelReport:
    """One model's multi-label report on the classes of `names` it knows (columns matched by
    class name; `classes` None means the model's columns are `names`)."""
    n = labels.shape[0]
    scores = np.asarray(scores, dtype=np.float64)
    classes = list(classes) if classes is not None else names
    if scores.shape != (n, len(classes)):
        raise ValueError(f"scores of shape {scores.shape} for {n} images and {len(classes)} classes")
    column = {name: j for j, name in enumerate(classes)}
    kept = [(column[name], k) for k, name in enumerate(names) if name in column]
    model_cols = [j for j, _ in kept]
    label_cols = [k for _, k in kept]
    return metrics.multilabel_report(scores[:, model_cols], labels[:, label_cols],
                                     threshold=threshold,
                                     class_names=[names[k] for k in label_cols])


def _teacher_localisation(teacher_boxes: Sequence[Sequence[tuple[str, Sequence[float], float]]],
                          ground_truth: Sequence[Mapping[str, BoxList]], n: int
                          ) -> tuple[metrics.CorLocResult, metrics.BoxAPResult]:
    """CorLoc of the teacher's top box per class and image, and box AP over all its boxes."""
    gt = {i: dict(per_class) for i, per_class in enumerate(ground_truth) if per_class}
    top: dict[int, dict[str, Sequence[float]]] = {}
    detections = []
    for i, boxes in enumerate(teacher_boxes):
        best: dict[str, tuple[float, Sequence[float]]] = {}
        for cls, box, score in boxes:
            detections.append(metrics.Detection(i, cls, tuple(box), float(score)))
            if cls not in best or score > best[cls][0]:
                best[cls] = (float(score), box)
        top[i] = {cls: box for cls, (_, box) in best.items()}
    return metrics.corloc(top, gt), metrics.box_ap(detections, gt, images=range(n))


def trivial_corloc(ground_truth: Sequence[Mapping[str, BoxList]],
                   image_sizes: Sequence[tuple[int, int] | None]) -> dict[str, float]:
    """CorLoc of two box-free baselines on the same pairs: the whole image, and the centred box
    of half the image's width and height."""
    whole: dict[int, dict[str, list[float]]] = {}
    centre: dict[int, dict[str, list[float]]] = {}
    gt: dict[int, dict[str, BoxList]] = {}
    for i, (per_class, size) in enumerate(zip(ground_truth, image_sizes)):
        if not per_class or not size:
            continue
        width, height = size
        gt[i] = dict(per_class)
        whole[i] = {cls: [0.0, 0.0, float(width), float(height)] for cls in per_class}
        centre[i] = {cls: [width / 4, height / 4, width / 2, height / 2] for cls in per_class}
    return {"whole_image": metrics.corloc(whole, gt).corloc,
            "centre_box": metrics.corloc(centre, gt).corloc}


# ----------------------------------------------------------------------------- on a project


def evaluate(store, split: str = "test", teacher_version: str | None = None,
             student_version: str | None = None, device: str = "auto", batch_size: int = 32,
             threshold: float = 0.5, progress: Progress = None, should_stop: ShouldStop = None,
             models: Sequence[str] = ("teacher", "student")) -> EvaluationReport:
    """Evaluate the active (or named) teacher and student on `split` (see the module docstring).

    Raises UserError when neither model is trained, or when the split has no tagged, readable
    image. `progress(done, total)` counts images over both models.
    """
    runs = _runs(store, models, teacher_version, student_version)
    matrix = store.tags.label_matrix(split=split)
    if not matrix.image_ids:
        raise UserError(f"The {split} split has no tagged, readable images to evaluate on.")
    images = {image.id: image for image in store.images.list(split=split)}
    sizes = [(images[i].width, images[i].height) if i in images and images[i].width else None
             for i in matrix.image_ids]
    ground_truth = _ground_truth(store, matrix.image_ids)
    predictions = _predictions(store, runs, matrix.paths, sizes, device, batch_size, progress,
                               should_stop)
    return evaluate_predictions(matrix.class_names, matrix.targets(), split=split,
                                ground_truth=ground_truth, image_sizes=sizes, threshold=threshold,
                                **predictions)


def _runs(store, models: Sequence[str], teacher_version: str | None,
          student_version: str | None) -> dict[str, Any]:
    """stage -> the run to evaluate (the named version, else the active one); UserError when
    there is none."""
    from engine.models.registry import resolve_run
    from engine.store.versions import active_run

    runs: dict[str, Any] = {}
    for stage, version in (("teacher", teacher_version), ("student", student_version)):
        if stage not in models:
            continue
        if version is not None:
            runs[stage] = resolve_run(store, stage, version)
        else:
            run = active_run(store, stage)
            if run is not None:
                runs[stage] = run
    if not runs:
        raise UserError("This project has no trained model yet; train one first with "
                        "`mlic train --stage all`.")
    return runs


def _ground_truth(store, image_ids: Sequence[int]) -> list[dict[str, list[list[float]]]]:
    """Per image: class name -> its ground-truth boxes [x, y, w, h] (`store.boxes`)."""
    class_by_id = {c.id: c.name for c in store.classes.list()}
    gt_rows = store.boxes.for_images(image_ids)
    ground_truth: list[dict[str, list[list[float]]]] = []
    for image_id in image_ids:
        per_class: dict[str, list[list[float]]] = {}
        for box in gt_rows.get(image_id, []):
            per_class.setdefault(class_by_id.get(box.class_id, str(box.class_id)), []).append(
                [box.x, box.y, box.w, box.h])
        ground_truth.append(per_class)
    return ground_truth


def _predictions(store, runs: dict[str, Any], paths: Sequence[Path],
                 sizes: Sequence[tuple[int, int] | None], device: str, batch_size: int,
                 progress: Progress, should_stop: ShouldStop) -> dict[str, Any]:
    """The models' predictions as keyword arguments of `evaluate_predictions`; `progress`
    counts images over both models."""
    n = len(paths)
    total = n * len(runs)
    offset = 0

    def step(done: int, _total: int) -> None:
        if progress is not None:
            progress(offset + done, total)

    kwargs: dict[str, Any] = {}
    if "teacher" in runs:
        scores, names, boxes = _teacher_predictions(store, paths, runs["teacher"], device,
                                                    step, should_stop)
        kwargs.update(teacher_version=runs["teacher"].model_version, teacher_scores=scores,
                      teacher_classes=names, teacher_boxes=boxes)
        offset += n
    if "student" in runs:
        scores = _student_predictions(store, paths, sizes, runs["student"], device,
                                      batch_size, step, should_stop)
        kwargs.update(student_version=runs["student"].model_version, student_scores=scores,
                      student_classes=list(runs["student"].class_names))
    return kwargs


def _student_predictions(store, paths: Sequence[Path], sizes: Sequence[tuple[int, int] | None],
                         run, device: str, batch_size: int, progress: Progress,
                         should_stop) -> np.ndarray:
    from engine.inference.tagging import predict_files
    from engine.models.registry import load_model

    model, run = load_model(store, "student", model_version=run.model_version, device=device)
    torch_device = next(model.parameters()).device
    image_size = int(getattr(model, "image_size", 0) or run.config.get("student_image_size", 224))
    probabilities, reasons, cancelled = predict_files(
        model, list(paths), image_size, torch_device, batch_size=batch_size, sizes=sizes,
        progress=progress, should_stop=should_stop, precision="fp32")
    if cancelled:
        raise UserError("Evaluation was cancelled.")
    _check_unreadable(paths, reasons)
    return probabilities


def _teacher_predictions(store, paths: Sequence[Path], run, device: str, progress: Progress,
                         should_stop) -> tuple[np.ndarray, list[str],
                                               list[list[tuple[str, list[float], float]]]]:
    """Image-level scores (N, K_teacher), their class names, and per-image boxes after NMS of
    the teacher (up to `EVAL_TOP_K` per class and image; regions are not stored)."""
    from engine.inference.detect import detect_paths

    detections = detect_paths(store, list(paths), model_version=run.model_version, device=device,
                              top_k=EVAL_TOP_K, progress=progress, should_stop=should_stop,
                              store_regions=False)
    if getattr(detections, "cancelled", False) or (should_stop is not None and should_stop()):
        raise UserError("Evaluation was cancelled.")
    by_path = {Path(d.path): d for d in detections}
    class_names = list(getattr(detections, "class_names", None) or run.class_names)
    scores = np.zeros((len(paths), len(class_names)), dtype=np.float64)
    boxes: list[list[tuple[str, list[float], float]]] = []
    missing = []
    for i, path in enumerate(paths):
        found = by_path.get(Path(path))
        if found is None:
            missing.append(path)
            boxes.append([])
            continue
        scores[i] = np.asarray(found.image_scores, dtype=np.float64)
        boxes.append([(region.class_name, list(region.bbox), float(region.score))
                      for region in found.regions])
    if missing:
        raise UserError(f"The teacher could not read {len(missing)} evaluation image(s), e.g. "
                        f"{missing[0]}; re-scan the folder (`mlic add-folder`) and try again.")
    return scores, class_names, boxes


def _check_unreadable(paths: Sequence[Path], reasons: Sequence[str]) -> None:
    bad = [(p, r) for p, r in zip(paths, reasons) if r]
    if bad:
        raise UserError(f"{len(bad)} evaluation image(s) could not be read, e.g. {bad[0][0]} "
                        f"({bad[0][1]}); re-scan the folder (`mlic add-folder`) and try again.")


# ----------------------------------------------------------------------------- text output


def _pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100.0 * value:.1f}"


def format_report(report: EvaluationReport, per_class: bool = False) -> str:
    """A plain-text table: one row per figure, one column per model (percentages)."""
    columns = [m for m in (report.teacher, report.student) if m is not None]
    header = f"{'figure':<14}" + "".join(f"{m.stage + ' ' + m.model_version:>22}" for m in columns)
    lines = [f"Evaluation on the {report.split} split: {report.n_images} images, "
             f"{len(report.class_names)} classes (figures in %)", "", header,
             "-" * len(header)]
    for key in metrics.MultilabelReport.SUMMARY_KEYS:
        lines.append(f"{key:<14}" + "".join(f"{_pct(getattr(m.report, key)):>22}" for m in columns))
    if report.teacher is None or report.student is None:
        missing = "teacher" if report.teacher is None else "student"
        lines.append(f"({missing}: not trained)")
    lines += _unmeasured_note(columns, len(report.class_names))
    teacher = report.teacher
    if teacher is not None and teacher.corloc is not None:
        lines += ["", f"Teacher localisation ({report.n_box_images} images with ground-truth "
                      f"boxes, {teacher.corloc.n_pairs} positive image-class pairs)"]
        rows = [("CorLoc", teacher.corloc.corloc), ("mean CorLoc", teacher.corloc.mean_corloc)]
        if teacher.box_ap is not None:
            rows += [("box AP", teacher.box_ap.ap), ("box AP50", teacher.box_ap.ap50),
                     ("box AP75", teacher.box_ap.ap75)]
        rows += [(f"CorLoc {name.replace('_', ' ')} (baseline)", value)
                 for name, value in report.baselines.items()]
        width = max(len(name) for name, _ in rows) + 2
        lines += [f"{name:<{width}}{_pct(value):>8}" for name, value in rows]
    elif report.teacher is not None:
        lines += ["", "No ground-truth boxes in this split: CorLoc and box AP not computed."]
    if per_class and columns:
        lines += ["", f"{'class AP':<20}" + "".join(f"{m.stage:>12}" for m in columns)]
        aps = [m.report.ap_by_class() for m in columns]
        for name in report.class_names:
            lines.append(f"{name[:19]:<20}" + "".join(f"{_pct(ap.get(name)):>12}" for ap in aps))
    return "\n".join(lines)


def _unmeasured_note(columns: Sequence[Any], n_classes: int) -> list[str]:
    """A line saying how many classes have no AP on this split (no "yes", or no decided "no"),
    and how the person can measure them; none when every class is measured."""
    if not columns:
        return []
    unmeasured = sum(1 for ap in columns[0].report.ap_by_class().values()
                     if ap is None or math.isnan(ap))
    if not unmeasured:
        return []
    return ["", f"{unmeasured} of {n_classes} classes not measured: {metrics.UNMEASURED_WHY}."]


def _json(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
