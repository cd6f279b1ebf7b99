"""Automatic validation split: stratified over classes, stable when images are added."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import UserError
from engine.review.splits import assign_splits, plan_splits, split_fractions, split_key

from .helpers import add_images, tag


def _labels(n: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.random((n, k)) < np.linspace(0.05, 0.5, k)[None, :]
    labels[~labels.any(axis=1), k - 1] = True      # every image has at least one tag
    return labels


def test_plan_splits_gives_every_split_its_share_of_each_class():
    labels = _labels(400, 6)
    keys = [split_key(f"h{i}", i) for i in range(400)]
    splits = np.array(plan_splits(keys, labels, split_fractions(0.2, 0.1)))
    assert (splits == "val").sum() == pytest.approx(80, abs=3)
    assert (splits == "test").sum() == pytest.approx(40, abs=3)
    for k in range(labels.shape[1]):
        positives = labels[:, k].sum()
        # Iterative stratification: within one example of the exact share for every class.
        assert abs(labels[splits == "val", k].sum() - 0.2 * positives) <= 1.5
        assert abs(labels[splits == "test", k].sum() - 0.1 * positives) <= 1.5


def test_plan_splits_rare_class_is_spread_not_lumped():
    labels = np.zeros((50, 2), dtype=bool)
    labels[:5, 0] = True               # 5 positives of a rare class
    labels[:, 1] = True
    splits = np.array(plan_splits([split_key(None, i) for i in range(50)], labels,
                                  {"train": 0.8, "val": 0.2}))
    assert labels[splits == "val", 0].sum() == 1
    assert (splits == "val").sum() == 10


def test_plan_splits_depends_on_keys_not_on_row_order():
    labels = _labels(60, 3, seed=1)
    keys = [split_key(f"h{i}", i) for i in range(60)]
    first = plan_splits(keys, labels, split_fractions(0.25))
    perm = np.random.default_rng(3).permutation(60)
    second = plan_splits([keys[i] for i in perm], labels[perm], split_fractions(0.25))
    assert [first[i] for i in perm] == second


def test_assign_splits_is_stable_when_images_are_added(store):
    classes = [c.id for c in store.classes.ensure(["cat", "dog", "owl"])]
    first = add_images(store, 100)
    tag(store, first, classes, _labels(100, 3, seed=2))
    result = assign_splits(store, val_fraction=0.2)
    assert result.count == 100
    before = {image.id: image.split for image in store.images.list()}
    assert sum(split == "val" for split in before.values()) == pytest.approx(20, abs=2)

    more = add_images(store, 50, start=100)
    tag(store, more, classes, _labels(50, 3, seed=3))
    second = assign_splits(store, val_fraction=0.2)
    after = {image.id: image.split for image in store.images.list()}
    assert second.count == 50
    assert all(after[i] == before[i] for i in first)          # nothing already assigned moved
    assert sum(split == "val" for split in after.values()) == pytest.approx(30, abs=2)
    assert assign_splits(store, val_fraction=0.2).count == 0  # idempotent


def test_assign_splits_same_images_same_splits_whatever_the_insertion_order(tmp_path):
    from engine.store import Store

    outcomes = []
    for name, order in (("a", range(80)), ("b", reversed(range(80)))):
        project = Store.open(tmp_path / name)
        classes = [c.id for c in project.classes.ensure(["x", "y"])]
        labels = _labels(80, 2, seed=4)
        ids = {}
        for n in order:
            ids[n] = add_images(project, 1, start=n)[0]
        tag(project, [ids[n] for n in range(80)], classes, labels)
        assign_splits(project, val_fraction=0.25)
        split_of = {image.content_hash: image.split for image in project.images.list()}
        outcomes.append(split_of)
        project.close()
    assert outcomes[0] == outcomes[1]


def test_assign_splits_respects_user_splits_and_leaves_untagged_alone(store):
    classes = [c.id for c in store.classes.ensure(["a"])]
    fixed = add_images(store, 10, split="test", prefix="fixed")
    tagged = add_images(store, 20, prefix="t")
    untagged = add_images(store, 5, prefix="u")
    tag(store, fixed + tagged, classes, [[1]] * 30)
    assign_splits(store, val_fraction=0.5)
    splits = {image.id: image.split for image in store.images.list()}
    assert all(splits[i] == "test" for i in fixed)
    assert all(splits[i] in ("train", "val") for i in tagged)
    assert all(splits[i] == "unassigned" for i in untagged)
    assign_splits(store, val_fraction=0.5, include_untagged=True)
    assert all(image.split != "unassigned" for image in store.images.list())


def test_copies_of_one_file_land_in_the_same_split(store):
    classes = [c.id for c in store.classes.ensure(["a", "b"])]
    root = store.roots.get_or_create(store.paths.root / "photos")
    ids = store.images.add_many([
        {"root_id": root.id, "rel_path": f"{folder}/{n}.jpg", "content_hash": f"hash{n}",
         "split": "unassigned"} for folder in ("one", "two") for n in range(30)])
    tag(store, ids, classes, [[n % 2, 1] for n in range(60)])
    assign_splits(store, val_fraction=0.3)
    by_hash: dict[str, set[str]] = {}
    for image in store.images.list():
        by_hash.setdefault(image.content_hash, set()).add(image.split)
    assert all(len(splits) == 1 for splits in by_hash.values())


def test_bad_fractions_are_a_user_error():
    with pytest.raises(UserError):
        split_fractions(0.6, 0.5)
    with pytest.raises(UserError):
        split_fractions(-0.1)
