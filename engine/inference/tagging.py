"""Batch tagging: the student alone on many images, fast on every machine.

`tag_images(store, image_ids, ...)` runs the project's student (the active version, or the one
named) on project images and returns a `TaggingResult` (probabilities N x K in the model's class
order); `tag_paths(store, paths, ...)` does the same for files, registering them first (through
`engine.intake`, so each has a row). The probabilities are stored as *suggestions* of that model
version: a model never writes tags, so a
person's tags stay exactly as they were. `write_predictions_csv` writes the `mlic tag` CSV.

Why it is fast (`benchmarks/tagging.py` measures it against a naive loop):
- decoding happens at reduced size: `engine.images.load_rgb(..., max_side)` uses JPEG draft mode
  (a DCT-domain downscale by 2, 4 or 8), with `max_side` chosen from the image size the project
  stored at intake (`decode_size`); the resize to the fixed input size happens in parallel
  DataLoader worker processes, which hand over stacked uint8 batches: the main loop does no
  per-image Python work;
- uint8 batches travel to the device (4x less than float), pinned on CUDA and copied
  asynchronously; the [0, 1] scaling happens on the device (the model normalises itself);
- the network runs with batch norms folded into the convolutions, channels_last, under
  `torch.inference_mode`, in large batches, with autocast: float16 on CUDA, bfloat16 on CPUs that
  run it natively (AVX512-BF16 / AMX; about twice the float32 speed, probabilities within ~0.01);
  `precision="fp32"` turns that off (evaluation uses float32).

Input geometry: the student sees the whole image stretched to its square input size
(`student.image_size`), exactly as `student_input` prepares it; the student's training prepares its
inputs with the same two functions (`decode_size`, `student_input`).

Loader processes are forked from the main thread of a command-line process, and started from a
forkserver on any other thread (the GUI's workers), where forking could inherit locks held by
other threads.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from engine import distributed
from engine.datasets.student import prepare_file
from engine.device import autocast_dtype
from engine.errors import UserError
from engine.exchange.csv_tags import spreadsheet_safe
from engine.files import atomic_output
from engine.images import UnreadableImageError, is_image_path
from engine.intake import ScanReport, canonical_path, register_files, scan_folder
from engine.models.registry import load_model, resolve_run
from engine.progress import Progress, ShouldStop

if TYPE_CHECKING:
    from engine.store import Store

log = logging.getLogger(__name__)

@dataclass
class TaggingResult:
    """What a batch-tagging run produced.

    `paths[i]` (absolute) has probabilities `probabilities[i]` (float32 in [0, 1], columns in the
    order of `class_names`, the model's classes) and project image id `image_ids[i]` (None when it
    could not be registered). `unreadable` lists `(path, reason)` of files skipped. `cancelled` is
    True when `should_stop` ended the run early (the result then covers the images done).
    """

    paths: list[Path]
    probabilities: np.ndarray
    class_names: list[str]
    model_version: str
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    image_ids: list[int | None] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        done = len(self.paths) + len(self.unreadable)
        return done / self.seconds if self.seconds > 0 else 0.0


def list_images(folder: Path | str) -> list[Path]:
    """Every image file under `folder` (recursive, suffixes of `engine.images`), sorted."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder.")
    found: list[Path] = []
    for directory, subdirs, files in os.walk(root, followlinks=False):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found.extend(Path(directory) / name for name in files
                     if is_image_path(name) and not name.startswith("."))
    return sorted(found)


# ----------------------------------------------------------------------------- image preparation


class _ImageFiles(Dataset):
    """Decodes one file at reduced size; never raises for a bad file (reports its reason)."""

    def __init__(self, paths: Sequence[Path], size: int,
                 sizes: Sequence[tuple[int, int] | None] | None = None) -> None:
        self.paths = [str(p) for p in paths]
        self.size = size
        self.sizes = list(sizes) if sizes is not None else [None] * len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, str]:
        try:
            return index, prepare_file(self.paths[index], self.size, self.sizes[index]), ""
        except UnreadableImageError as exc:
            reason = exc.reason
        except Exception as exc:  # noqa: BLE001 - one bad file must never end a batch run
            reason = f"cannot decode ({type(exc).__name__}: {exc})"
        return index, torch.zeros((3, self.size, self.size), dtype=torch.uint8), reason or "unreadable"


def _collate(items: list[tuple[int, torch.Tensor, str]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    indices = torch.tensor([item[0] for item in items], dtype=torch.long)
    return indices, torch.stack([item[1] for item in items]), [item[2] for item in items]


def default_num_workers(device: torch.device, n_images: int, batch_size: int) -> int:
    """Loader processes: on the CPU the model needs the cores too, so leave it at least one; on
    CUDA decoding is the bottleneck, so use every core. No workers for a single small batch."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if n_images <= min(batch_size, 16):
        return 0
    if device.type == "cuda":
        return max(1, cores)
    return max(1, min(4, cores - 1))


def default_batch_size(device: torch.device) -> int:
    """Images per batch: large on a GPU (it runs a batch of 256 small images in one go), 64 on
    the CPU (larger batches gain nothing there and delay the first progress)."""
    return 256 if device.type == "cuda" else 64


def _worker_context() -> str | None:
    """How loader processes start: forked (fast) from the main thread of a command-line process;
    from a forkserver when called on a background thread (the GUI's workers), since forking a
    process with other threads running (Qt's) can inherit their held locks."""
    import multiprocessing
    import threading

    if threading.current_thread() is threading.main_thread():
        return None
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


# ----------------------------------------------------------------------------- inference


class _FusedClassifier(torch.nn.Module):
    """A student's inference path with batch norms folded into the convolutions; with
    `embed=True` it stops before the classifier and returns the pooled features (N, C)."""

    def __init__(self, model: torch.nn.Module, backbone: torch.nn.Module,
                 embed: bool = False) -> None:
        super().__init__()
        self.model = model
        self.fused_backbone = backbone
        self.embed = embed

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feature_map = self.fused_backbone(images)
        if self.embed:
            return self.model.pool(feature_map).flatten(1)
        return self.model.classify(feature_map)


def inference_model(model: torch.nn.Module, device: torch.device,
                    embed: bool = False) -> torch.nn.Module:
    """`model` (eval mode) prepared for fast inference on `device`: conv + batch-norm folded (for a
    model with `backbone` and `classify`, as the student; numerically the same up to ~1e-6),
    channels_last memory format. `embed=True`: the pooled features the classifier reads, not its
    logits. The original model is not modified."""
    model = model.eval()
    backbone = model.backbone
    try:
        from torch.fx.experimental.optimization import fuse

        backbone = fuse(model.backbone, inplace=False).eval()
    except Exception as exc:  # noqa: BLE001 - an untraceable backbone runs unfused
        log.debug("conv/batch-norm folding skipped: %s", exc)
    fast = _FusedClassifier(model, backbone, embed=embed)
    return fast.to(device=device, memory_format=torch.channels_last)


def predict_files(model: torch.nn.Module, paths: Sequence[Path], image_size: int,
                  device: torch.device, batch_size: int | None = None,
                  num_workers: int | None = None,
                  sizes: Sequence[tuple[int, int] | None] | None = None,
                  progress: Progress = None, should_stop: ShouldStop = None,
                  precision: str = "auto", embed: bool = False,
                  ) -> tuple[np.ndarray, list[str], bool]:
    """Sigmoid outputs of `model` for every file: (probabilities (N, K) float32, reasons, cancelled);
    with `embed=True` the pooled features (N, C) the classifier reads instead.

    `reasons[i]` is '' for a decoded file, else why it was skipped (its row is then NaN). Rows of
    files not reached before a cancel are NaN with the reason 'cancelled'. `sizes[i]`: the original
    (width, height) of file i when known (lets the decoder pick the smallest sufficient size).
    `batch_size` None: `default_batch_size(device)`. The device runs one batch ahead: a batch's
    results are read back only once the next batch is queued, so the device never waits for them.
    """
    n = len(paths)
    batch_size = default_batch_size(device) if batch_size is None else batch_size
    if batch_size < 1:
        raise UserError(f"Batch size must be at least 1, not {batch_size}.")
    loader = image_loader(paths, image_size, device, batch_size, num_workers, sizes)
    fast = inference_model(model, device, embed=embed)
    width = fast.model.classifier.in_features if embed else getattr(model, "num_classes", 0)
    outputs = _Outputs(np.full((n, width), np.nan, dtype=np.float32), ["cancelled"] * n,
                       progress)
    dtype = autocast_dtype(device, precision)
    pending = None
    with torch.inference_mode():
        for indices, batch, batch_reasons in loader:
            if should_stop is not None and should_stop():
                outputs.collect(pending)
                return outputs.values, outputs.reasons, True
            batch = batch.to(device, non_blocking=device.type == "cuda")
            with torch.autocast(device_type=device.type, dtype=dtype or torch.float32,
                                enabled=dtype is not None):
                raw = fast(batch.contiguous(memory_format=torch.channels_last).float().div_(255.0))
            result = (raw.float() if embed else torch.sigmoid(raw.float())).to(
                "cpu", non_blocking=device.type == "cuda")
            outputs.collect(pending)
            pending = _Pending(indices.numpy(), batch_reasons, result, _event(device))
            if pending.event is None:                  # off CUDA the results are there now
                outputs.collect(pending)
                pending = None
    outputs.collect(pending)
    return outputs.values, outputs.reasons, False


def image_loader(paths: Sequence[Path], image_size: int, device: torch.device, batch_size: int,
                 num_workers: int | None = None,
                 sizes: Sequence[tuple[int, int] | None] | None = None) -> DataLoader:
    """Batches `(indices, uint8 images (B, 3, S, S), reasons)` of the files, decoded at reduced
    size in `num_workers` processes (None: `default_num_workers`), pinned for CUDA: what
    `predict_files` runs the model on (and `benchmarks/hardware.py` times alone)."""
    workers = (default_num_workers(device, len(paths), batch_size) if num_workers is None
               else num_workers)
    return DataLoader(
        _ImageFiles(paths, image_size, sizes), batch_size=batch_size, shuffle=False,
        num_workers=workers, collate_fn=_collate, pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers > 0 else None,
        multiprocessing_context=_worker_context() if workers > 0 else None)


def _event(device: torch.device) -> torch.cuda.Event | None:
    """A CUDA event recorded after the work queued so far (None off CUDA: results are ready)."""
    if device.type != "cuda":
        return None
    event = torch.cuda.Event()
    event.record()
    return event


@dataclass
class _Pending:
    """A batch whose results are on their way back to the host (ready once `event` is)."""

    indices: np.ndarray
    reasons: list[str]
    result: torch.Tensor
    event: torch.cuda.Event | None


@dataclass
class _Outputs:
    """`predict_files`' results: a row and a reason per file, filled batch by batch."""

    values: np.ndarray
    reasons: list[str]
    progress: Progress
    done: int = 0

    def collect(self, pending: _Pending | None) -> None:
        """Wait for a pending batch (only for it, not for the batch queued after it) and keep it."""
        if pending is None:
            return
        if pending.event is not None:
            pending.event.synchronize()
        self.values[pending.indices] = pending.result.numpy()
        for i, reason in zip(pending.indices.tolist(), pending.reasons):
            self.reasons[i] = reason
            if reason:
                self.values[i] = np.nan
        self.done += len(pending.indices)
        if self.progress is not None:
            self.progress(self.done, len(self.reasons))


def tag_images(store: Store, image_ids: Sequence[int], model_version: str | None = None,
               batch_size: int | None = None, device: str | torch.device = "auto",
               progress: Progress = None, should_stop: ShouldStop = None,
               num_workers: int | None = None, precision: str = "auto") -> TaggingResult:
    """Run the student (`model_version`, default the active one) on project images and store the
    probabilities as suggestions of that version (never tags). The core of batch tagging: the
    command line and the GUI register files first (intake) and tag their ids.

    Unreadable files are skipped and listed in the result. Raises UserError when the project has no
    trained student. `progress(done, total)` is called after each batch; `should_stop()` is checked
    before each batch (the images done so far are kept and stored). `precision`: see
    `engine.device.autocast_dtype`.

    In a job of several processes (`mlic tag --nproc N`) each rank tags its contiguous share of
    the images; the shares are gathered in order, so every rank returns the same result as one
    process would, and rank 0 alone stores the suggestions, once."""
    paths = store.images.paths(image_ids)
    rows = store.images.by_ids(image_ids)
    ids = distributed.shard([i for i in image_ids if i in paths])
    sizes = [(rows[i].width, rows[i].height) if rows[i].width and rows[i].height else None
             for i in ids]
    result = merge_results(distributed.gather(_tag_files(
        store, [paths[i] for i in ids], list(ids), sizes, model_version, batch_size, device,
        progress, should_stop, num_workers, precision)))
    if distributed.is_main():
        save_suggestions(store, result.model_version, result.class_names, result.image_ids,
                         result.probabilities)
    return result


def merge_results(parts: Sequence[TaggingResult]) -> TaggingResult:
    """The results of consecutive shares of the images as one (the slowest share's time)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return TaggingResult(
        paths=[p for part in parts for p in part.paths],
        probabilities=np.concatenate([part.probabilities for part in parts]),
        class_names=first.class_names, model_version=first.model_version,
        unreadable=[u for part in parts for u in part.unreadable],
        image_ids=[i for part in parts for i in part.image_ids],
        cancelled=any(part.cancelled for part in parts),
        seconds=max(part.seconds for part in parts))


def tag_folder(store: Store, folder: Path | str, model_version: str | None = None,
               progress: Progress = None, should_stop: ShouldStop = None,
               **options: object) -> tuple[ScanReport, TaggingResult]:
    """Batch tagging of a folder, as the command line and the GUI both do it: check there is a
    student, register (or re-scan) every image under `folder`, then `tag_images` on their ids in
    path order. `options` are `tag_images`'s (batch_size, device, num_workers, precision).
    In a job of several processes rank 0 registers the folder and the ranks share the tagging."""
    resolve_run(store, "student", model_version)          # a clear error before any work
    report = scan_folder(store, folder) if distributed.is_main() else None
    report = distributed.broadcast(report)
    ids = [report.image_ids[path] for path in sorted(report.image_ids)]
    return report, tag_images(store, ids, model_version=model_version, progress=progress,
                              should_stop=should_stop, **options)


def tag_paths(store: Store, paths: Sequence[Path | str], model_version: str | None = None,
              batch_size: int | None = None, device: str | torch.device = "auto",
              progress: Progress = None, should_stop: ShouldStop = None,
              num_workers: int | None = None, precision: str = "auto",
              store_suggestions: bool = True) -> TaggingResult:
    """`tag_images` for files: each is registered in the project first (through intake) and its
    probabilities stored as suggestions. `store_suggestions=False` writes nothing to the project
    (no registration, no suggestions): evaluation and benchmarks."""
    files = [canonical_path(p) for p in paths]
    image_ids, sizes = _register(store, files, register=store_suggestions)
    result = _tag_files(store, files, image_ids, sizes, model_version, batch_size, device,
                        progress, should_stop, num_workers, precision)
    if store_suggestions:
        save_suggestions(store, result.model_version, result.class_names, result.image_ids,
                         result.probabilities)
    return result


def _tag_files(store: Store, files: list[Path], image_ids: list[int | None],
               sizes: list[tuple[int, int] | None], model_version: str | None,
               batch_size: int | None,
               device: str | torch.device, progress: Progress, should_stop: ShouldStop,
               num_workers: int | None, precision: str) -> TaggingResult:
    """The student on `files`: a `TaggingResult` of the readable ones, nothing stored."""
    started = time.perf_counter()
    model, run = load_model(store, "student", model_version=model_version, device=device)
    class_names = list(run.class_names or [])
    image_size = int(getattr(model, "image_size", 0) or run.config.get("student_image_size", 224))
    probabilities, reasons, cancelled = predict_files(
        model, files, image_size, next(model.parameters()).device, batch_size=batch_size,
        num_workers=num_workers, sizes=sizes, progress=progress, should_stop=should_stop,
        precision=precision)
    if probabilities.shape[1] and len(class_names) != probabilities.shape[1]:
        raise UserError(f"The student {run.model_version} has {probabilities.shape[1]} outputs "
                        f"but lists {len(class_names)} classes; its checkpoint is damaged. "
                        f"Train it again.")
    keep = [i for i, reason in enumerate(reasons) if not reason]
    return TaggingResult(
        paths=[files[i] for i in keep],
        probabilities=probabilities[keep].astype(np.float32) if keep else
        np.zeros((0, probabilities.shape[1]), dtype=np.float32),
        class_names=class_names, model_version=run.model_version,
        unreadable=[(files[i], reasons[i]) for i, reason in enumerate(reasons)
                    if reason and reason != "cancelled"],
        image_ids=[image_ids[i] for i in keep], cancelled=cancelled,
        seconds=time.perf_counter() - started)


def _register(store, files: list[Path], register: bool = True,
              ) -> tuple[list[int | None], list[tuple[int, int] | None]]:
    """Project image ids and original sizes of `files`. With `register`, unknown files are
    registered through intake first (under the project folder that holds them, else their own
    folder); known, unchanged files cost one `stat` each. Without, unknown files get None."""
    roots = sorted(((Path(root.path), root.id) for root in store.roots.list()),
                   key=lambda item: len(item[0].parts), reverse=True)
    groups: dict[Path, list[Path]] = {}
    for path in files:
        owner = next((root for root, _ in roots if path.is_relative_to(root)), None)
        if owner is None and not register:
            continue
        groups.setdefault(owner or path.parent, []).append(path)
    if register:
        for owner, members in groups.items():
            if owner.is_dir():
                register_files(store, owner, members)
    ids_by_path: dict[Path, int] = {}
    sizes_by_id: dict[int, tuple[int, int]] = {}
    for root in store.roots.list():
        root_path = Path(root.path)
        if root_path not in groups:
            continue
        for rel_path, image in store.images.in_root(root.id).items():
            if not image.present:
                continue
            ids_by_path[root_path / rel_path] = image.id
            if image.width and image.height:
                sizes_by_id[image.id] = (image.width, image.height)
    ids = [ids_by_path.get(path) for path in files]
    return ids, [sizes_by_id.get(i) if i is not None else None for i in ids]


def save_suggestions(store, model_version: str, class_names: Sequence[str],
                      image_ids: Sequence[int | None], probabilities: Sequence[Sequence[float]],
                      ) -> None:
    """Replace `model_version`'s suggestions for these images with their per-class
    probabilities (columns in `class_names` order); never touches tags. Images without an id are
    skipped; a class the model knows but the project no longer has (deleted since training) gets
    no suggestion and is not re-created."""
    class_ids = {c.name: c.id for c in store.classes.list()}
    columns = [(k, class_ids[name]) for k, name in enumerate(class_names) if name in class_ids]
    rows = [i for i, image_id in enumerate(image_ids) if image_id is not None]
    if not rows:
        return
    matrix = np.asarray(probabilities, dtype=np.float32).reshape(len(image_ids), -1)
    store.suggestions.replace_matrix(model_version, [image_ids[i] for i in rows],
                                     [class_id for _, class_id in columns],
                                     matrix[np.ix_(rows, [k for k, _ in columns])])


# ----------------------------------------------------------------------------- CSV output


def write_predictions_csv(result: TaggingResult, out: Path | str, relative_to: Path | str,
                          raw: bool = False) -> Path:
    """Write `path,<class 1>,<class 2>,...`, one row per image, path relative to `relative_to`
    (POSIX separators), probabilities with 6 decimals. Names a spreadsheet would run as a formula
    get a leading "'" unless `raw` (`engine.exchange.csv_tags.spreadsheet_safe`). Written to a temporary file first and moved
    into place, so a failure never leaves a half-written CSV."""
    out = Path(out)
    base = Path(relative_to).absolute()
    if not out.absolute().parent.is_dir():
        raise UserError(f"The folder of {out} does not exist.")
    try:
        with atomic_output(out, "w") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            cell = (lambda text: text) if raw else spreadsheet_safe
            writer.writerow(["path", *(cell(name) for name in result.class_names)])
            for path, probs in zip(result.paths, result.probabilities):
                try:
                    name = path.relative_to(base).as_posix()
                except ValueError:
                    name = path.as_posix()
                writer.writerow([cell(name), *(f"{p:.6f}" for p in np.clip(probs, 0.0, 1.0))])
    except OSError as exc:
        raise UserError(f"Cannot write {out}: {exc.strerror or exc}.") from exc
    return out
