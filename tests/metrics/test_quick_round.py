"""The quick round: a head refit on cached embeddings after a person's corrections; suggestions for
every image, the previous quick version's replaced, thresholds calibrated, no image decoded twice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.inference import embeddings as embedding_cache
from engine.review.rounds import train_round
from engine.store import TagEdit
from engine.store.versions import active_run
from engine.training import TrainCallbacks, TrainConfig
from engine.training.quick import fit_head


def test_fit_head_separates_a_separable_problem():
    torch.manual_seed(0)
    features = torch.randn(200, 8)
    labels = torch.stack([(features[:, 0] > 0), (features[:, 1] < 0)], dim=1).float()
    weight, bias = fit_head(features, labels, torch.zeros(2, 8), torch.zeros(2))
    predicted = (features @ weight.T + bias) > 0
    assert (predicted == labels.bool()).float().mean() > 0.97


def test_quick_round_scores_every_image_and_learns_a_correction(student_project, monkeypatch):
    store, deep, _ = student_project
    first = train_round(store, TrainConfig(stage="quick", device="cpu"))
    quick = first.runs[0]
    assert first.completed and quick.stage == "student" and quick.config["quick"]
    assert quick.config["backbone_version"] == deep.model_version
    assert active_run(store, "student").id == quick.id
    ids = store.images.ids()
    assert all(store.suggestions.for_image(i, quick.model_version) for i in ids)  # every image
    assert quick.model_version in first.figures                                  # evaluated on val

    # a person corrects tags; the next quick round reads no image again (embeddings cached)
    image = store.images.list(split="train")[0]
    cls = store.classes.list()[0]
    store.tags.apply([TagEdit(image.id, cls.id, "positive")], source="person")

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded although its embedding is cached")

    monkeypatch.setattr(embedding_cache, "predict_files", no_decoding)
    second = train_round(store, TrainConfig(stage="quick", device="cpu"))
    newer = second.runs[0]
    assert second.completed and newer.id != quick.id
    assert not store.suggestions.for_image(ids[0], quick.model_version)  # replaced
    assert store.suggestions.for_image(ids[0], newer.model_version)


def test_quick_round_cancelled_while_embedding_is_a_cancelled_run(student_project):
    store, _, _ = student_project
    outcome = train_round(store, TrainConfig(stage="quick", device="cpu"),
                          TrainCallbacks(should_stop=lambda: True))
    assert [run.status for run in outcome.runs] == ["cancelled"]


def test_quick_round_takes_a_class_added_since(student_project):
    store, deep, _ = student_project
    store.classes.ensure(["newcomer"])
    cls = store.classes.list()[-1]
    train = store.images.list(split="train")[:3]
    store.tags.apply([TagEdit(i.id, cls.id, "positive") for i in train], source="person")
    outcome = train_round(store, TrainConfig(stage="quick", device="cpu"))
    run = outcome.runs[0]
    assert run.class_names[-1] == "newcomer" and len(run.class_names) == len(deep.class_names) + 1
    scores = store.suggestions.for_image(train[0].id, run.model_version)
    assert any(s.class_id == cls.id for s in scores)
    assert np.isfinite([s.confidence for s in scores]).all()


@pytest.mark.parametrize("stage", ["quick"])
def test_train_command_quick_stage(student_project, stage, capsys):
    from engine.cli.main import main

    store, _, _ = student_project
    code = main(["--project", str(store.paths.root), "train", "--stage", stage, "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and "completed" in out and " on val: mAP=" in out
