"""Review-queue orderings on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import UserError
from engine.review.label_issues import OutOfFold
from engine.review.queue import (
    QUEUE_ORDER_KEYS,
    QUEUE_ORDERS,
    disagreement_priority,
    label_issue_priority,
    proportional_order,
    review_queue,
    uncertainty_priority,
)
from engine.store import BoxRow, TagEdit

from .helpers import add_images, completed_run, suggest, tag


def test_every_order_has_a_label_and_a_one_line_tooltip():
    assert set(QUEUE_ORDER_KEYS) == {"uncertain", "disagreement", "mistakes", "unknown",
                                     "unreviewed", "random"}
    for order in QUEUE_ORDERS:
        assert order.label and order.tooltip and "\n" not in order.tooltip


@pytest.fixture()
def scored(store):
    a, b = (c.id for c in store.classes.ensure(["a", "b"]))
    store.classes.update(b, threshold=0.3)
    ids = add_images(store, 4)
    student = completed_run(store, "student")
    suggest(store, student, ids[:3], [a, b], [[0.9, 0.9], [0.55, 0.0], [0.1, 0.32]])
    return store, ids, (a, b), student


def test_most_uncertain_first(scored):
    store, ids, _, student = scored
    queue = review_queue(store, "uncertain")
    # total entropy (bits): image 2 0.47 + 1.00, image 1 0.99 + 0.00, image 0 0.47 + 0.27
    assert queue.image_ids == [ids[2], ids[1], ids[0], ids[3]]
    assert queue.model_version == student
    assert queue.entries[0].reason == "b: 0.32 vs threshold 0.30"
    assert queue.entries[-1].reason == ""


def test_uncertainty_priority_pure():
    priority, best = uncertainty_priority(np.array([[0.9, 0.2], [np.nan, np.nan]]), [0.5, 0.25])
    # class a: H(0.9) = 0.468996 bits; class b: odds 0.25 / (1/3) = 0.75, p' = 3/7,
    # H(3/7) = 0.985228 bits; the sum, and b as the most uncertain class
    assert priority[0] == pytest.approx(0.468996 + 0.985228, abs=1e-5) and best[0] == 1
    assert priority[1] == -np.inf
    # In logits 0.01 vs a threshold of 0.03 is a clearer call than 0.45 vs 0.5.
    priority, best = uncertainty_priority(np.array([[0.01, 0.45]]), [0.03, 0.5])
    assert best[0] == 1


def test_seen_and_unseen_images_are_ranked_apart_and_interleaved_by_size():
    # 4 training images (the model is sure of them) and 2 unseen ones (it is unsure of them):
    # one order would put both unseen images first; proportional order takes 2 : 1
    priority = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 0.8, -np.inf])
    learnt = [True, True, True, True, False, False, False]
    order = proportional_order(priority, learnt, tie_keys=range(7))
    assert order.tolist() == [3, 4, 2, 1, 5, 0, 6]


def test_two_borderline_classes_come_before_one():
    # a swapped tag leaves the model unsure about two classes of the same image
    priority, _ = uncertainty_priority(np.array([[0.45, 0.45, 0.01], [0.5, 0.01, 0.01]]),
                                       [0.5, 0.5, 0.5])
    assert priority[0] > priority[1]


def test_teacher_student_disagreement_first(scored):
    store, ids, (a, b), _ = scored
    teacher = completed_run(store, "teacher")
    suggest(store, teacher, ids[:3], [a, b], [[0.1, 0.9], [0.5, 0.1], [0.1, 0.9]])
    queue = review_queue(store, "disagreement")
    # gaps: image 0: 0.8 (a); image 1: 0.1 (b); image 2: 0.58 (b)
    assert queue.image_ids == [ids[0], ids[2], ids[1], ids[3]]
    assert queue.teacher_version == teacher
    assert queue.entries[0].reason == "a: student 0.90, teacher 0.10"


def test_disagreement_falls_back_to_teacher_regions(scored):
    store, ids, (a, b), _ = scored
    teacher = completed_run(store, "teacher")
    store.regions.replace(teacher, ids[:3], [
        BoxRow(ids[0], a, 0, 0, 10, 10, 0.85), BoxRow(ids[0], b, 0, 0, 5, 5, 0.9),
        BoxRow(ids[1], a, 0, 0, 10, 10, 0.6), BoxRow(ids[2], b, 0, 0, 10, 10, 0.3)])
    queue = review_queue(store, "disagreement", teacher_version=teacher)
    # image 1: student b 0.0 vs no region 0 -> a gap .05; image 2: a .1 vs 0 -> .1; image 0: .05
    assert queue.image_ids[0] == ids[2]
    priority, best = disagreement_priority(np.array([[0.2, 0.9]]), np.array([[0.25, 0.1]]))
    assert priority[0] == pytest.approx(0.8) and best[0] == 1


def test_best_region_scores_per_image_and_class(scored):
    store, ids, (a, b), _ = scored
    teacher = completed_run(store, "teacher")
    store.regions.replace(teacher, ids[:2], [
        BoxRow(ids[0], a, 0, 0, 10, 10, 0.4), BoxRow(ids[0], a, 5, 5, 10, 10, 0.7),
        BoxRow(ids[0], b, 0, 0, 5, 5, 0.2), BoxRow(ids[1], b, 0, 0, 10, 10, 0.6)])
    best = store.regions.best_scores(ids, teacher)
    assert best == {ids[0]: {a: pytest.approx(0.7), b: pytest.approx(0.2)},
                    ids[1]: {b: pytest.approx(0.6)}}          # images without regions: absent
    assert store.regions.best_scores(ids, "teacher-99") == {}


def test_disagreement_needs_a_teacher(scored):
    store = scored[0]
    with pytest.raises(UserError, match="no trained teacher"):
        review_queue(store, "disagreement")


def _noisy_case(n: int = 60, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = rng.random((n, k)) < 0.4
    truth[~truth.any(axis=1), 0] = True
    probs = np.clip(np.where(truth, 0.85, 0.1) + rng.normal(0, 0.05, (n, k)), 0.01, 0.99)
    tags = truth.copy()
    wrong = [5, 17, 33]
    for i, j in zip(wrong, (0, 1, 2)):
        tags[i, j] = ~tags[i, j]
    return truth, tags, probs, wrong


def test_label_issue_priority_ranks_flipped_tags_first():
    _, tags, probs, wrong = _noisy_case()
    priority, suspect, flagged = label_issue_priority(tags, probs)
    top = np.argsort(-priority)[:3]
    assert sorted(top.tolist()) == wrong
    assert [suspect[i] for i in wrong] == [0, 1, 2]
    assert flagged[wrong].sum() >= 2 and flagged.sum() <= 2 * len(wrong)


def test_likely_label_mistakes_first(store):
    classes = [c.id for c in store.classes.ensure(["x", "y", "z"])]
    _, tags, probs, wrong = _noisy_case()
    ids = add_images(store, len(tags))
    tag(store, ids, classes, tags)
    untagged = add_images(store, 2, prefix="untagged")
    oof = OutOfFold(ids, classes, probs, folds=5, features="test")
    queue = review_queue(store, "mistakes", out_of_fold=oof)
    assert sorted(queue.image_ids[:3]) == sorted(ids[i] for i in wrong)
    assert set(queue.image_ids[-2:]) == set(untagged)            # nothing to say about them
    assert "out-of-fold model" in queue.entries[0].reason
    assert "flagged" in queue.note


def test_unreviewed_first_and_reviewed_left_out_elsewhere(store):
    (a,) = (c.id for c in store.classes.ensure(["a"]))
    ids = add_images(store, 5)
    tag(store, ids, [a], [[1]] * 5, reviewed=False)
    store.tags.apply([TagEdit(ids[1], a, "negative"), TagEdit(ids[3], a, "positive")],
                     source="person", reviewed=True)
    queue = review_queue(store, "unreviewed")
    assert queue.image_ids == [ids[0], ids[2], ids[4], ids[1], ids[3]]
    assert queue.entries[-1].reason == "reviewed"
    randomly = review_queue(store, "random")
    assert sorted(randomly.image_ids) == [ids[0], ids[2], ids[4]]
    assert len(review_queue(store, "random", include_reviewed=True).image_ids) == 5


def test_random_order_is_fixed_per_seed(store):
    ids = add_images(store, 30)
    first = review_queue(store, "random", seed=1).image_ids
    assert first == review_queue(store, "random", seed=1).image_ids
    assert sorted(first) == ids and first != ids
    assert first != review_queue(store, "random", seed=2).image_ids
    assert review_queue(store, "random", limit=5).image_ids == review_queue(store, "random").image_ids[:5]


def test_unknown_order_and_missing_model(store):
    add_images(store, 2)
    with pytest.raises(UserError, match="Unknown review order"):
        review_queue(store, "alphabetical")
    with pytest.raises(UserError, match="no trained student"):
        review_queue(store, "uncertain")


def test_scores_are_filled_in_for_images_without_them(scored, monkeypatch):
    import engine.inference.detect as detect
    import engine.inference.tagging as tagging

    store, ids, (a, b), student = scored
    teacher = completed_run(store, "teacher")
    suggest(store, teacher, ids[:2], [a, b], [[0.9, 0.9], [0.5, 0.1]])
    tagged_paths, detected_paths = [], []

    def fake_tag(store_, paths, model_version=None, **_kwargs):
        tagged_paths.extend(paths)
        suggest(store_, model_version, [ids[3]], [a, b], [[0.45, 0.3]])

    class Item:
        def __init__(self, image_id):
            self.image_id, self.image_scores = image_id, np.array([0.2, 0.8])

    class Result(list):
        class_names = ["a", "b"]

    def fake_detect(store_, paths, model_version=None, **_kwargs):
        detected_paths.extend(paths)
        return Result([Item(ids[2]), Item(ids[3])])

    monkeypatch.setattr(tagging, "tag_images", fake_tag)
    monkeypatch.setattr(detect, "detect_images", fake_detect)
    queue = review_queue(store, "uncertain", ensure_scores=True)
    assert len(tagged_paths) == 1 and queue.image_ids[0] == ids[3]        # 0.45 vs 0.5
    queue = review_queue(store, "disagreement", ensure_scores=True)
    assert len(detected_paths) == 2                                        # images 2 and 3
    assert store.suggestions.for_image(ids[2], teacher)[0].confidence == pytest.approx(0.8)
    # gaps: image 3: b 0.3 vs 0.8 -> 0.5; image 2: b 0.32 vs 0.8 -> 0.48; image 1: 0.1; image 0: 0
    assert queue.image_ids == [ids[3], ids[2], ids[1], ids[0]]
