"""Auto-accept rule: suggestions above a per-class precision target become 'model rule' tags in
one batch, undoable in one step."""

from __future__ import annotations

import numpy as np
import pytest

from engine.review.auto_accept import (
    AUTO_ACCEPT_KEY,
    auto_accept,
    select_auto_accept,
    undo_auto_accept,
)
from engine.store import TagEdit

from .helpers import add_images, completed_run, suggest, tag


def test_select_auto_accept_pure():
    scores = np.array([[0.9, 0.9], [0.7, np.nan], [0.95, 0.2]])
    has_tag = np.array([[False, False], [False, False], [True, False]])
    assert select_auto_accept(scores, [0.8, None], has_tag) == [(0, 0)]


@pytest.fixture()
def project(store):
    a, b = (c.id for c in store.classes.ensure(["a", "b"]))
    version = completed_run(store, "student")
    val = add_images(store, 5, split="val", prefix="val")
    # class a: precision 1 needs score >= 0.75; class b can never reach precision 0.9.
    tag(store, val, [a, b], [[1, 0], [1, 0], [0, 1], [1, 0], [0, 0]])
    suggest(store, version, val, [a, b], [[0.9, 0.9], [0.8, 0.9], [0.7, 0.1], [0.3, 0.9], [0.2, 0.9]])
    train = add_images(store, 4, split="train", prefix="train")
    test = add_images(store, 1, split="test", prefix="test")
    suggest(store, version, train + test, [a, b],
            [[0.95, 0.99], [0.76, 0.5], [0.74, 0.2], [0.99, 0.1], [0.99, 0.99]])
    store.tags.apply([TagEdit(train[3], a, "negative")], source="person")   # a person said no
    return store, version, (a, b), train, test


def test_auto_accept_applies_one_batch_and_reverts_in_one_step(project):
    store, version, (a, b), train, test = project
    history_before = store.tags.last_change_id()
    result = auto_accept(store, precision_target=0.9)
    assert result.thresholds["a"] == pytest.approx(0.75) and result.thresholds["b"] is None
    assert result.count == 2 and result.per_class == {"a": 2}
    assert result.model_version == version and "cannot reach" in result.summary()
    tags = store.tags.for_images(train + test)
    accepted = {(t.image_id, t.class_id) for rows in tags.values() for t in rows
                if t.source == "model rule"}
    assert accepted == {(train[0], a), (train[1], a)}
    assert all(not t.reviewed for rows in tags.values() for t in rows if t.source == "model rule")
    assert [t.positive for t in tags[train[3]]] == [False]        # the person's tag wins
    assert tags[test[0]] == []                                     # never on val / test
    changes = store.tags.history(since_id=history_before)
    assert {change.batch for change in changes} == {result.batch}
    assert store.settings.get(AUTO_ACCEPT_KEY)["batch"] == result.batch

    undo_auto_accept(store, result.batch)
    after = store.tags.for_images(train)
    assert all(t.source != "model rule" for rows in after.values() for t in rows)
    assert [t.positive for t in after[train[3]]] == [False]


def test_per_class_targets_and_nothing_to_accept(project):
    store, _, _, _, _ = project
    result = auto_accept(store, precision_target={"a": 1.0, "b": 0.2})
    assert result.thresholds["b"] == pytest.approx(0.1)             # b's only positive: 0.1
    assert result.per_class == {"a": 2, "b": 4}
    none = auto_accept(store, precision_target=0.9, image_ids=[])
    assert none.batch is None and none.count == 0


def test_undo_leaves_tags_a_person_changed_since_and_redo_reapplies(project):
    from engine.review.auto_accept import revert_rule

    store, _, (a, _), train, _ = project
    result = auto_accept(store, precision_target=0.9)
    store.tags.apply([TagEdit(train[1], a, "negative")], source="person")   # the person disagrees
    undo = undo_auto_accept(store, result.batch, since_id=result.since_id)
    tags = store.tags.for_images(train)
    assert tags[train[0]] == []                                     # the rule's tag is gone
    assert [(t.positive, t.source) for t in tags[train[1]]] == [(False, "person")]
    redo = revert_rule(store, undo, source="model rule", since_id=result.since_id)
    assert redo is not None
    assert [(t.positive, t.source) for t in store.tags.for_images([train[0]])[train[0]]] == [
        (True, "model rule")]
    assert undo_auto_accept(store, "no-such-batch") is None
