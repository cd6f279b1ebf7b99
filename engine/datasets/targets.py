"""The frozen teacher's distillation targets on disk: one memory-mapped record per image.

A record holds everything distillation needs of one image, for every view (0: the whole image,
v > 0: the crop `view_crop(digest, v)`) and flip (0: as is, 1: mirrored): the soft target q
(float32, K), the teacher's best `R` boxes as fractions of its input (float16, R x 4), their region
features f_r (float16, R x D) and which of the R slots hold a box. Records are `.npy` files of one
structured row, `<root>/<digest[:2]>/<digest>.npy`, written atomically once all the image's views
are done, so a cancelled or crashed pass resumes where it stopped and every image has one writer.
`TeacherTargets` reads them lazily (memory-mapped), one (view, flip) at a time: a 100,000-image
project never holds its targets in memory.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from engine.files import atomic_output

log = logging.getLogger(__name__)

RMS_SAMPLE = 256                 # images read to estimate the teacher features' RMS norm


@dataclass(frozen=True)
class TargetLayout:
    """The shape of one image's record: views, flips, classes K, boxes R and feature width D."""

    views: int
    flips: int
    classes: int
    boxes: int
    dim: int

    def dtype(self) -> np.dtype:
        shape = (self.views, self.flips)
        return np.dtype([("soft", "<f4", (*shape, self.classes)),
                         ("boxes", "<f2", (*shape, self.boxes, 4)),
                         ("features", "<f2", (*shape, self.boxes, self.dim)),
                         ("valid", "?", (*shape, self.boxes))])

    def empty(self) -> np.ndarray:
        """A zeroed record (one structured row) to fill view by view."""
        return np.zeros(1, dtype=self.dtype())


class TargetFiles:
    """The records of one teacher and setting (`root`), all of layout `layout`."""

    def __init__(self, root: str | Path, layout: TargetLayout) -> None:
        self.root = Path(root)
        self.layout = layout

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.npy"

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def write(self, digest: str, record: np.ndarray) -> None:
        """Store one image's complete record (atomically: a reader sees all of it or nothing)."""
        with atomic_output(self.path(digest), "wb") as file:
            np.save(file, record.astype(self.layout.dtype(), copy=False))

    @cached_property
    def header(self) -> bytes:
        """The `.npy` header every record of this layout starts with."""
        buffer = io.BytesIO()
        np.save(buffer, self.layout.empty())
        return buffer.getvalue()[:-self.layout.dtype().itemsize]

    def read(self, digest: str) -> np.ndarray | None:
        """The image's record, memory-mapped; None when missing, damaged or of another layout.
        The header is compared byte for byte, not parsed (parsing took 3/4 of a read)."""
        path = self.path(digest)
        try:
            with open(path, "rb") as file:
                if file.read(len(self.header)) != self.header:
                    log.warning("Ignoring teacher-target file %s of another layout", path)
                    return None
            return np.memmap(path, dtype=self.layout.dtype(), mode="r",
                             offset=len(self.header), shape=(1,))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("Ignoring damaged teacher-target file %s: %s", path, exc)
            return None


@dataclass
class TeacherTargets:
    """The targets of a list of images (`digests`, in training order), read lazily from `files`.
    `flips` says which flips were computed: (False,) or (False, True)."""

    files: TargetFiles
    digests: list[str]
    flips: tuple[bool, ...] = (False, True)

    @property
    def feature_dim(self) -> int:
        return self.files.layout.dim

    def available(self) -> list[int]:
        """Positions of the images whose record exists (the teacher could read them)."""
        return [i for i, digest in enumerate(self.digests) if self.files.has(digest)]

    def subset(self, rows: Sequence[int]) -> TeacherTargets:
        """The targets of these images only."""
        return TeacherTargets(self.files, [self.digests[i] for i in rows], self.flips)

    def sample(self, index: int, view: int, flip: bool) -> dict[str, torch.Tensor]:
        """One view's targets: "soft" float32 (K,), "boxes" float32 (R, 4) fractions of the
        input, "features" float16 (R, D), "valid" bool (R,). KeyError when the record is gone."""
        record = self.files.read(self.digests[index])
        if record is None:
            raise KeyError(f"no teacher targets for image {self.digests[index]}")
        at = (0, view, self.flips.index(bool(flip)))
        return {"soft": torch.from_numpy(np.array(record["soft"][at])),
                "boxes": torch.from_numpy(record["boxes"][at].astype(np.float32)),
                "features": torch.from_numpy(np.array(record["features"][at])),
                "valid": torch.from_numpy(np.array(record["valid"][at]))}

    def feature_rms(self, limit: int = RMS_SAMPLE) -> float:
        """Root mean square norm of the valid teacher region features, over up to `limit` images
        spread evenly over the list (for `feature_norm=scale`)."""
        step = max(1, len(self.digests) // max(1, limit))
        total, count = 0.0, 0
        for digest in self.digests[::step][:limit]:
            record = self.files.read(digest)
            if record is None:
                continue
            valid = np.asarray(record["valid"][0])
            features = np.asarray(record["features"][0])[valid].astype(np.float32)
            total += float(np.square(features).sum())
            count += int(valid.sum())
        return max(1e-6, float(np.sqrt(total / count))) if count else 1.0


def collate_targets(samples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack per-sample targets into batch tensors: soft (B, K), boxes (B, R, 4), features
    (B, R, D), valid (B, R)."""
    return {name: torch.stack([s[name] for s in samples])
            for name in ("soft", "boxes", "features", "valid")}
