"""Out-of-fold predictions: cross-fitted linear probe on frozen features, cached features."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.errors import UserError
from engine.review.label_issues import (
    cross_fit_probe,
    fold_assignment,
    image_features,
    out_of_fold_predictions,
)
from engine.review.queue import label_issue_priority
from engine.review.splits import split_key


def test_fold_assignment_is_balanced_and_stable():
    keys = [split_key(f"h{i}", i) for i in range(23)]
    folds = fold_assignment(keys, 5)
    assert sorted(np.bincount(folds).tolist()) == [4, 4, 5, 5, 5]
    assert (fold_assignment(keys, 5) == folds).all()


def test_out_of_fold_probe_contradicts_flipped_tags():
    rng = np.random.default_rng(0)
    n, d, k = 200, 16, 3
    truth = rng.random((n, k)) < 0.4
    centres = rng.normal(0, 1, (k, d)) * 3
    features = truth.astype(float) @ centres + rng.normal(0, 1, (n, d))
    tags = truth.copy()
    wrong = [3, 50, 120, 170]
    for i in wrong:
        tags[i, i % k] = ~tags[i, i % k]
    fold_of = fold_assignment([split_key(None, i) for i in range(n)], 5)
    probs = cross_fit_probe(features, tags, fold_of)
    assert probs.shape == (n, k) and ((probs >= 0) & (probs <= 1)).all()
    # The probe for an image never saw its (wrong) tag: it sides with the truth.
    for i in wrong:
        assert (probs[i, i % k] > 0.5) == truth[i, i % k]
    priority, _, _ = label_issue_priority(tags, probs)
    assert set(np.argsort(-priority)[:len(wrong)].tolist()) == set(wrong)


def _write_images(folder, count):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for n in range(count):
        pixels = np.zeros((48, 48, 3), dtype=np.uint8)
        pixels[..., n % 3] = 200
        pixels += rng.integers(0, 40, pixels.shape, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{n}.png")


def test_features_and_out_of_fold_on_a_project(store, tmp_path):
    from engine.store import TagEdit

    folder = tmp_path / "photos"
    _write_images(folder, 12)
    (folder / "broken.png").write_bytes(b"not an image")
    root = store.roots.get_or_create(folder)
    names = sorted(p.name for p in folder.iterdir())
    ids = store.images.add_many([{"root_id": root.id, "rel_path": name, "content_hash": name}
                                 for name in names])
    red, green, blue = (c.id for c in store.classes.ensure(["red", "green", "blue"]))
    store.tags.apply([TagEdit(i, (red, green, blue)[int(name.split(".")[0]) % 3]
                              if name[0].isdigit() else red, "positive")
                      for i, name in zip(ids, names)], source="import")
    calls = []
    got, feats = image_features(store, ids, image_size=64, device="cpu",
                                progress=lambda done, total: calls.append((done, total)))
    assert len(got) == 12 and feats.shape == (12, 1280)            # the broken file is left out
    assert calls[-1] == (13, 13)
    assert list((store.paths.cache_dir / "features").glob("*.npz"))
    calls.clear()
    again_ids, again = image_features(store, ids, image_size=64, device="cpu",
                                      progress=lambda done, total: calls.append((done, total)))
    assert again_ids == got and np.allclose(again, feats)
    assert calls == [(1, 1)]                                       # only the broken one retried
    oof = out_of_fold_predictions(store, folds=3, image_size=64, device="cpu")
    assert oof.probs.shape == (12, 3) and oof.class_ids == [red, green, blue]
    colour = [int(name.split(".")[0]) % 3 for name in names if name[0].isdigit()]
    by_id = dict(zip([i for i, name in zip(ids, names) if name[0].isdigit()], colour))
    hits = sum(int(np.argmax(row)) == by_id[i] for i, row in zip(oof.image_ids, oof.probs))
    assert hits >= 10                                              # pure colours are easy
    with pytest.raises(UserError):
        out_of_fold_predictions(store, folds=1)
