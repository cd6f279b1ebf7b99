"""engine.store.queries: filters, sorts, rows, detail and counts (no Qt needed)."""

from __future__ import annotations

import pytest

from engine.errors import UserError
from engine.store import BoxRow, TagEdit
from engine.store import queries as gq
from tests.gui.projects import build_project


@pytest.fixture
def project(tmp_path):
    info = build_project(tmp_path, count=6)
    yield info
    info["store"].close()


def ids_for(project, **kwargs):
    return gq.query_ids(project["store"], gq.GalleryFilter(**kwargs))


def test_versions_and_plain_listing(project):
    versions = gq.active_versions(project["store"])
    assert versions == gq.Versions(project["teacher"], project["student"])
    assert ids_for(project) == project["ids"]
    assert ids_for(project, descending=True) == project["ids"][::-1]


def test_state_filters(project):
    store, ids, classes = project["store"], project["ids"], project["classes"]
    assert ids_for(project, untagged=True) == ids[1:]
    assert ids_for(project, unreviewed=True) == ids          # the import tag is not reviewed
    store.tags.apply([TagEdit(ids[2], classes["dog"], "positive")])
    assert ids[2] not in ids_for(project, unreviewed=True)
    assert ids_for(project, class_id=classes["dog"]) == [ids[2]]
    # dog (>= 0.5) and car (0.7) are pending everywhere except where decided
    assert ids_for(project, has_suggestions=True) == ids
    store.tags.apply([TagEdit(i, classes[c], "negative") for i in ids[3:] for c in ("dog", "car")])
    assert ids_for(project, has_suggestions=True) == ids[:3]
    assert ids_for(project, class_id=classes["dog"], class_mode="suggested") == [ids[0], ids[1]]
    assert ids_for(project, class_id=classes["dog"], class_mode="either") == ids[:3]
    store.images.set_split(ids[:2], "val")
    assert ids_for(project, split="val") == ids[:2]


def test_confidence_uncertainty_and_disagreement(project):
    store, ids, classes = project["store"], project["ids"], project["classes"]
    assert ids_for(project, class_id=classes["dog"], class_mode="either",
                   min_confidence=0.87, max_confidence=0.9) == ids[:4]
    # threshold 0.5: car at 0.7 is 0.2 away; set the car threshold to 0.65 to make it uncertain
    assert ids_for(project, uncertain=True) == []
    store.classes.update(classes["car"], threshold=0.65)
    assert ids_for(project, uncertain=True) == ids
    # teacher region car 0.3 < 0.65 <= student 0.7: disagreement on every image
    assert ids_for(project, disagreement=True) == ids
    store.regions.replace(project["teacher"], [ids[0]],
                          [BoxRow(ids[0], classes["car"], 0, 0, 5, 5, 0.95),
                           BoxRow(ids[0], classes["dog"], 0, 0, 5, 5, 0.95)])
    assert ids_for(project, disagreement=True) == ids[1:]
    assert ids_for(project, sort="disagreement")[-1] == ids[0]
    assert ids_for(project, sort="confidence") == ids          # dog 0.9 - 0.01 n
    no_teacher = gq.Versions(None, project["student"])
    assert gq.query_ids(store, gq.GalleryFilter(disagreement=True), no_teacher) == []
    assert ids_for(project, sort="confidence", descending=True) == ids[::-1]


def test_search_language(project):
    ids = project["ids"]
    assert ids_for(project, search="img_003") == [ids[3]]
    assert ids_for(project, search="cat") == [ids[0]]
    assert ids_for(project, search="tag:CAT") == [ids[0]]
    assert ids_for(project, search="-tag:cat") == ids[1:]
    assert ids_for(project, search="suggested:dog") == ids
    assert ids_for(project, search="split:train path:img_00") == ids
    assert ids_for(project, search='tag:"no such class"') == []
    assert ids_for(project, search="100%_") == []


def test_search_grammar(project):
    """OR, parentheses, negation of every field and of groups, the added folder's own name."""
    from engine.store.search import SearchError

    ids = project["ids"]
    assert ids_for(project, search="img_001 OR img_002") == ids[1:3]
    assert ids_for(project, search="img_001 | tag:cat") == ids[:2]
    assert ids_for(project, search="(img_001 OR img_002) -img_002") == [ids[1]]
    assert ids_for(project, search="NOT (img_001 OR img_000)") == ids[2:]
    assert ids_for(project, search="-path:img_001") == [ids[0]] + ids[2:]
    assert ids_for(project, search="-split:train") == []
    assert ids_for(project, search="-suggested:dog") == []
    assert ids_for(project, search="path:photos") == ids              # the folder's own name
    assert ids_for(project, search="path:photos/img_005") == [ids[5]]
    assert ids_for(project, search="ORANGE") == []                     # a word, not OR
    for text in ('"unclosed', "foo:bar", "a OR", "(a", "a)", "tag:"):
        with pytest.raises(SearchError):
            ids_for(project, search=text)


def test_search_problems_name_the_mistake():
    from engine.store.search import search_problem

    names = ["cat", "red car"]
    assert search_problem('tag:cat OR tag:"red car"', names) is None
    assert "Unknown field 'foo:'" in search_problem("foo:bar", names)
    assert "No class is named 'nosuchclass'" in search_problem("tag:nosuchclass", names)
    assert "not closed" in search_problem('tag:"red car', names)
    assert "Unknown split 'dev'" in search_problem("split:dev", names)
    assert "needs a term on each side" in search_problem("OR cat", names)
    assert search_problem("", names) is None


def test_rows_detail_counts(project):
    store, ids, classes = project["store"], project["ids"], project["classes"]
    rows = gq.gallery_rows(store, ids[:2])
    assert rows[ids[0]].positive == (classes["cat"],) and rows[ids[0]].pending == 2
    assert rows[ids[1]].name == "img_001.jpg" and rows[ids[1]].path.endswith("photos/img_001.jpg")
    detail = gq.image_detail(store, ids[0])
    assert [s.class_id for s in detail.suggestions] == [classes["dog"], classes["car"],
                                                       classes["tree"]]
    assert len(detail.regions) == 2 and detail.tags[0].class_id == classes["cat"]
    counts = gq.project_counts(store)
    assert (counts.images, counts.tagged, counts.reviewed, counts.pending) == (6, 1, 0, 12)
    assert gq.threshold_count(store, classes["dog"], 0.88, project["student"]) == 3
    assert gq.class_tag_counts(store) == {classes["cat"]: 1}
    with pytest.raises(UserError):
        gq.image_detail(store, 999)
    with pytest.raises(UserError):
        gq.GalleryFilter(sort="bogus")
