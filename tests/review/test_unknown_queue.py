"""The review order 'Unknown tags that matter first': images with undecided pairs where the model is
unsure and the class is frequent first; an answer (or Mark Image Complete) moves an image back."""

from __future__ import annotations

from engine.review.queue import review_queue
from engine.store import TagEdit

from .helpers import add_images, completed_run, suggest


def test_unknown_order_asks_about_undecided_pairs(store):
    cat, dog = (c.id for c in store.classes.ensure(["cat", "dog"]))
    ids = add_images(store, 4)
    # cat is frequent (three positives), dog rare; image 3 is complete
    store.tags.apply([TagEdit(ids[0], cat, "positive"), TagEdit(ids[1], cat, "positive"),
                      TagEdit(ids[3], cat, "positive"), TagEdit(ids[3], dog, "negative")])
    version = completed_run(store)
    suggest(store, version, ids, [cat, dog], [[0.9, 0.5], [0.9, 0.97], [0.5, 0.99], [0.5, 0.5]])
    queue = review_queue(store, "unknown", include_reviewed=False)
    # image 2's unknown cat sits on the threshold (frequent class): first; image 0's unsure dog
    # (rare) next; image 1's dog is a sure yes; image 3 has nothing left to decide
    assert queue.image_ids == [ids[2], ids[0], ids[1], ids[3]]
    assert queue.entries[0].reason.startswith("2 unknown; cat: 0.50")
    assert queue.entries[-1].reason == "every class decided"

    store.tags.apply(store.tags.completion([ids[2]]))            # Mark Image Complete
    again = review_queue(store, "unknown")
    assert again.image_ids[:2] == [ids[0], ids[1]] and again.entries[-1].reason == \
        "every class decided"
