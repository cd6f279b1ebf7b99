"""Automatic train / validation (/ test) split assignment, stratified over classes and stable.

Every training round is evaluated, and every threshold calibrated, on the validation split. When
the user has not set splits, `assign_splits` chooses one:

- Only images whose split is 'unassigned' are assigned; a split the user (or an import) set is never
  changed. Adding images later therefore never moves an image that was already assigned: the new
  ones are balanced against the counts the existing splits already have.
- Stratified over classes with iterative stratification (Sechidis, Tsoumakas & Vlahavas, ECML 2011):
  the rarest class is placed first, each of its images into the split that still lacks most of that
  class, so that every split gets its share of every class, rare ones included.
- Deterministic: images are visited in the order of a hash of their content hash (and a seed),
  never of their insertion order or id, so the same images always get the same splits. Copies of
  the same file (same content hash) are one unit and always land in the same split, so a duplicate
  cannot leak from training into validation.
- Only tagged images are assigned by default: an untagged image carries nothing to stratify on and
  nothing to train or evaluate with; it is assigned once it has tags (`include_untagged` changes it).

`plan_splits` is the pure algorithm (NumPy only); `assign_splits` applies it to a project.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import UserError

if TYPE_CHECKING:
    from engine.store import Store

log = logging.getLogger(__name__)

ASSIGNABLE_SPLITS = ("train", "val", "test")


def split_key(content_hash: str | None, fallback: object, seed: int = 0) -> int:
    """A stable pseudo-random 64-bit key for an image: a hash of its content hash (or `fallback`,
    e.g. its id, for an image without one) and the seed."""
    text = f"{seed}:{content_hash if content_hash else f'id:{fallback}'}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def split_fractions(val_fraction: float, test_fraction: float = 0.0) -> dict[str, float]:
    """{'train': .., 'val': .., 'test': ..}, checked: each in [0, 1), summing to 1."""
    if not 0.0 <= val_fraction < 1.0 or not 0.0 <= test_fraction < 1.0:
        raise UserError("Split fractions must be between 0 and 1.")
    if val_fraction + test_fraction >= 1.0:
        raise UserError("The validation and test fractions leave nothing to train on.")
    return {"train": 1.0 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}


def plan_splits(keys: Sequence[int], labels: np.ndarray, fractions: Mapping[str, float],
                assigned_sizes: Mapping[str, int] | None = None,
                assigned_positives: Mapping[str, np.ndarray] | None = None) -> list[str]:
    """Iterative stratification of new examples into splits (pure).

    keys: (N,) stable sort keys of the new examples (see `split_key`); labels: (N, K) positives;
    fractions: the wanted share of each split; assigned_sizes / assigned_positives: how many
    examples (and positives per class) each split already holds, so that new examples top the
    splits up to their shares of the grown total. Returns the split of each new example.
    """
    names = [name for name, share in fractions.items() if share > 0]
    labels = np.asarray(labels, dtype=bool)
    if len(keys) == 0:
        return []
    labels = labels.reshape(len(keys), -1)
    n, k = labels.shape
    shares = np.array([fractions[name] for name in names], dtype=np.float64)
    have_size = np.array([(assigned_sizes or {}).get(name, 0) for name in names], dtype=np.float64)
    have_pos = np.zeros((len(names), k))
    for j, name in enumerate(names):
        if assigned_positives is not None and name in assigned_positives:
            have_pos[j] = np.asarray(assigned_positives[name], dtype=np.float64)
    # Desired = share of the grown total minus what each split already has.
    desired_size = shares * (have_size.sum() + n) - have_size
    desired_pos = shares[:, None] * (have_pos.sum(axis=0) + labels.sum(axis=0))[None, :] - have_pos
    order = np.argsort(np.asarray(keys, dtype=np.uint64), kind="stable")
    result: list[str | None] = [None] * n
    remaining = np.ones(n, dtype=bool)
    rank = np.arange(len(names))[::-1]       # last tie-break: the first split listed (train)

    def place(i: int, column: int | None) -> None:
        if column is None:
            j = int(np.lexsort((rank, desired_size))[-1])
        else:
            j = int(np.lexsort((rank, desired_size, desired_pos[:, column]))[-1])
        result[i] = names[j]
        remaining[i] = False
        desired_size[j] -= 1
        desired_pos[j] -= labels[i]

    while True:
        counts = labels[remaining].sum(axis=0)
        if not counts.any():
            break
        column = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
        for i in order:
            if remaining[i] and labels[i, column]:
                place(int(i), column)
    for i in order:
        if remaining[i]:
            place(int(i), None)
    return [str(name) for name in result]


@dataclass(frozen=True)
class SplitAssignment:
    """What `assign_splits` did: the image ids newly put in each split, and the sizes afterwards."""

    assigned: dict[str, list[int]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(ids) for ids in self.assigned.values())

    def summary(self) -> str:
        if not self.count:
            return "No unassigned tagged images: splits unchanged."
        parts = ", ".join(f"{len(ids)} to {name}" for name, ids in self.assigned.items() if ids)
        return f"Assigned {self.count} images: {parts}."


def assign_splits(store: Store, val_fraction: float = 0.2, test_fraction: float = 0.0,
                  seed: int = 0, include_untagged: bool = False) -> SplitAssignment:
    """Assign the project's 'unassigned' (tagged) images to train / val / test, stratified over
    classes and stable (see the module docstring). Splits already set are left as they are."""
    fractions = split_fractions(val_fraction, test_fraction)
    images = store.images.list(status="readable")
    matrix = store.tags.label_matrix()
    row_of = {image_id: i for i, image_id in enumerate(matrix.image_ids)}
    n_classes = len(matrix.class_names)

    def labels_of(image_id: int) -> np.ndarray:
        i = row_of.get(image_id)
        return matrix.labels[i] > 0.5 if i is not None else np.zeros(n_classes, dtype=bool)

    # Units: copies of one file (same content hash) move together.
    units: dict[str, list] = {}
    for image in images:
        units.setdefault(image.content_hash or f"id:{image.id}", []).append(image)
    sizes = {name: 0 for name in ASSIGNABLE_SPLITS}
    positives = {name: np.zeros(n_classes) for name in ASSIGNABLE_SPLITS}
    follow: dict[str, list[int]] = {name: [] for name in ASSIGNABLE_SPLITS}
    new_units: list[tuple[str, list[int]]] = []
    for unit_key, members in units.items():
        fixed = [image.split for image in members if image.split in ASSIGNABLE_SPLITS]
        waiting = [image.id for image in members if image.split == "unassigned"
                   and (include_untagged or image.id in row_of)]
        if fixed:
            sizes[fixed[0]] += 1
            positives[fixed[0]] += np.any([labels_of(image.id) for image in members], axis=0)
            follow[fixed[0]].extend(waiting)       # a copy of an assigned file joins its split
        elif waiting:
            new_units.append((unit_key, waiting))
    keys = [split_key(None if unit_key.startswith("id:") else unit_key, unit_key, seed)
            for unit_key, _ in new_units]
    unit_labels = (np.array([np.any([labels_of(i) for i in ids], axis=0) for _, ids in new_units])
                   if new_units else np.zeros((0, n_classes), dtype=bool))
    planned = plan_splits(keys, unit_labels, fractions, sizes, positives)
    assigned = {name: list(ids) for name, ids in follow.items()}
    for (_, ids), split in zip(new_units, planned):
        assigned[split].extend(ids)
        sizes[split] += 1
    for split, ids in assigned.items():
        if ids:
            store.images.set_split(ids, split)
    result = SplitAssignment({name: sorted(ids) for name, ids in assigned.items()},
                             store.images.counts_by_split())
    log.info(result.summary())
    return result
