"""A tiny student training run end to end on the demo project: teacher, distillation, checkpoint,
registry, the teacher-target cache, and suggestions that never overwrite a person's tags."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from engine.errors import UserError
from engine.training import TrainCallbacks, TrainConfig, train
from engine.training.api import StudentSettings

pytestmark = pytest.mark.slow

TINY = dict(image_size=64, max_proposals=16, hidden=32, epochs=1, batch_size=16, student_image_size=64,
            seed=0, student=StudentSettings(kd_boxes=8, region_dim=16))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the suite runs in parallel workers on a small machine, where two
    threads per worker oversubscribe the cores and slow the tiny models down many times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_data, one_thread):
    """A project with a tiny teacher and a tiny distilled student (both from random init)."""
    from engine.demo import import_demo
    from engine.store import Store

    store = Store.open(tmp_path_factory.mktemp("student") / "project")
    import_demo(store, demo_data.root)
    reports = []
    runs = train(store, TrainConfig(stage="all", kd="both", schedule="staged",
                                    **{**TINY, "epochs": 2}),
                 TrainCallbacks(on_epoch=reports.append))
    yield store, runs, reports
    store.close()


def test_all_trains_teacher_then_student(trained):
    store, runs, reports = trained
    assert [run.stage for run in runs] == ["teacher", "student"]
    assert all(run.status == "completed" for run in runs)
    student = runs[1]
    assert student.model_version == f"student-{student.id}"
    assert student.parent_run_id == runs[0].id
    assert student.config["kd"] == "both" and student.config["teacher_version"] == runs[0].model_version
    student_reports = [r for r in reports if r.stage == "student"]
    assert [r.epoch for r in student_reports] == [1, 2]
    # staged: epoch 1 is feature distillation only, epoch 2 tags + prediction distillation
    assert set(student_reports[0].losses) == {"feature", "loss"}
    assert set(student_reports[1].losses) == {"tags", "prediction", "loss"}
    for report in student_reports:
        assert 0.0 <= report.metrics["val_mAP"] <= 1.0
        assert {"val_CF1", "val_OF1", "temperature"} <= set(report.metrics)
    stored = store.runs.get(student.id)
    assert len(stored.metrics["epochs"]) == 2 and "val_mAP" in stored.metrics["last"]


def test_student_loads_alone_from_the_registry(trained, monkeypatch):
    from engine.models import registry
    from engine.models.student import Student

    store, runs, _ = trained
    # the teacher must not be needed: make loading it fail
    from engine.models import wsddn

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher was loaded")

    monkeypatch.setattr(wsddn, "load_teacher", no_teacher)
    model, run = registry.load_model(store, "student", device="cpu")
    assert isinstance(model, Student) and not model.training
    assert run.model_version == runs[1].model_version
    assert model.image_size == 64 and model.meta["teacher_version"] == runs[0].model_version
    with torch.inference_mode():
        probabilities = torch.sigmoid(model(torch.rand(2, 3, 64, 64)))
    assert probabilities.shape == (2, len(run.class_names))


def test_teacher_targets_are_cached_per_teacher_version(trained, monkeypatch):
    import engine.training.distill as student_stage

    store, runs, _ = trained
    cache = store.paths.cache_dir / "distill" / f"{runs[0].model_version}-r8-v2-f2"
    assert len(list(cache.glob("*/*.npy"))) == len(store.tags.label_matrix("train").image_ids)

    def no_teacher_forward(*args, **kwargs):
        raise AssertionError("the teacher ran although its targets are cached")

    monkeypatch.setattr(student_stage, "_run_teacher_batch", no_teacher_forward)
    again = train(store, TrainConfig(stage="student", kd="prediction", schedule="joint",
                                     loss="asl", **TINY))
    assert again[0].status == "completed"
    assert again[0].config["loss"] == "asl"


def test_targets_computed_in_the_step_need_no_pass(trained, monkeypatch):
    """What CUDA does by default, run on the CPU with the flag: the teacher computes each batch's
    targets inside the student's step, nothing is written to the distillation cache."""
    import shutil

    import engine.training.distill as distill

    store, runs, _ = trained
    shutil.rmtree(store.paths.cache_dir / "distill", ignore_errors=True)

    def no_pass(*args, **kwargs):
        raise AssertionError("the teacher pass ran although targets come from the step")

    monkeypatch.setattr(distill, "teacher_pass", no_pass)
    reports = []
    online = StudentSettings(kd_boxes=8, region_dim=16, online_targets=True)
    again = train(store, TrainConfig(stage="student", kd="both", schedule="joint",
                                     teacher_version=runs[0].model_version,
                                     **{**TINY, "student": online}),
                  TrainCallbacks(on_epoch=reports.append))
    assert again[0].status == "completed"
    assert {"tags", "feature", "prediction"} <= set(reports[-1].losses)
    assert not (store.paths.cache_dir / "distill").exists()


def test_no_kd_needs_no_teacher(trained, monkeypatch):

    store, _, _ = trained
    from engine.models import wsddn

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher was loaded")

    monkeypatch.setattr(wsddn, "load_teacher", no_teacher)
    runs = train(store, TrainConfig(stage="student", kd="none", **TINY))
    assert runs[0].status == "completed" and runs[0].parent_run_id is None


def test_images_loaded_in_a_worker_process_train_the_same(trained):
    """`--workers 1`: the student's images are loaded in a worker process, batch for batch the
    same as in the main process (the same losses)."""
    store, _, _ = trained
    losses = []
    for workers in (0, 1):
        reports = []
        train(store, TrainConfig(stage="student", kd="none", num_workers=workers, **TINY),
              TrainCallbacks(on_epoch=reports.append))
        losses.append(reports[-1].losses["loss"])
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)


def test_bad_student_options_are_user_errors(trained):
    store, _, _ = trained
    for change in ({"kd": "logits"}, {"schedule": "alternating"}, {"loss": "focal"}):
        with pytest.raises(UserError):
            train(store, dataclasses.replace(TrainConfig(stage="student", **TINY), **change))


def test_suggestions_never_overwrite_a_persons_tags(trained):
    from engine.inference.tagging import tag_paths
    from engine.store import TagEdit

    store, runs, _ = trained
    images = store.images.list(split="test")[:6]
    classes = store.classes.list()
    # a person's decisions, including a negative and a removal, next to the imported tags
    store.tags.apply([TagEdit(images[0].id, classes[0].id, "negative"),
                      TagEdit(images[1].id, classes[1].id, "positive")], source="person")
    ids = [image.id for image in images]
    before = {i: sorted((t.class_id, t.positive, t.source, t.reviewed) for t in tags)
              for i, tags in store.tags.for_images(ids).items()}
    history_before = store.tags.last_change_id()

    matrix = store.tags.label_matrix(image_ids=ids)
    result = tag_paths(store, matrix.paths, model_version=runs[1].model_version, device="cpu")
    assert result.model_version == runs[1].model_version
    assert result.probabilities.shape == (len(ids), len(classes))

    after = {i: sorted((t.class_id, t.positive, t.source, t.reviewed) for t in tags)
             for i, tags in store.tags.for_images(ids).items()}
    assert after == before
    assert store.tags.last_change_id() == history_before
    suggestions = store.suggestions.for_images(ids, runs[1].model_version)
    for image_id in ids:
        rows = suggestions[image_id]
        assert len(rows) == len(classes)
        assert all(0.0 <= row.confidence <= 1.0 for row in rows)
    assert np.isfinite(result.probabilities).all()


def test_cancel_while_the_teacher_computes_targets_is_a_cancelled_run(trained):
    """A cancel during distillation's teacher pass ends like any other cancel: a 'cancelled' run,
    never an error; resuming it trains the student from the start and completes."""
    store, runs, _ = trained
    import shutil

    shutil.rmtree(store.paths.cache_dir / "distill", ignore_errors=True)
    asked = []

    def stop_in_targets(stage, done, total):
        asked.append(stage)

    config = TrainConfig(stage="student", kd="feature", teacher_version=runs[0].model_version,
                         **TINY)
    cancelled = train(store, config, TrainCallbacks(
        on_step=stop_in_targets, should_stop=lambda: "teacher targets" in asked))
    assert [run.status for run in cancelled] == ["cancelled"]
    assert not cancelled[0].checkpoint
    resumed = train(store, dataclasses.replace(config, resume=True))
    assert [run.id for run in resumed] == [cancelled[0].id]
    assert resumed[0].status == "completed" and resumed[0].checkpoint


def test_resuming_all_continues_the_teacher_then_trains_the_student(trained):
    store, _, _ = trained
    steps = []
    config = TrainConfig(stage="all", kd="prediction", **TINY)
    first = train(store, config, TrainCallbacks(
        on_step=lambda stage, done, total: steps.append(stage),
        should_stop=lambda: "teacher" in steps))
    assert [(run.stage, run.status) for run in first] == [("teacher", "cancelled")]
    again = train(store, dataclasses.replace(config, resume=True))
    assert [(run.stage, run.status) for run in again] == [("teacher", "completed"),
                                                          ("student", "completed")]
    assert again[0].id == first[0].id
    assert again[1].config["teacher_version"] == again[0].model_version


def test_settings_of_earlier_versions_load_into_typed_fields():
    from engine.training.api import StudentSettings

    stored = TrainConfig(stage="student").to_dict()
    stored.pop("student"), stored.pop("proposal_params")
    stored["extra"] = {"student_epochs": 3, "kd_boxes": 8, "student_stride": 16, "views": 1,
                       "proposal_params": {"max_side": 96}}
    config = TrainConfig.from_dict(stored)
    assert config.student == StudentSettings(epochs=3, kd_boxes=8, stride=16, views=1,
                                             feature_weight=1.0)
    assert config.proposal_params == {"max_side": 96}
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_a_config_stored_before_the_dilated_default_resumes_with_the_fc_head():
    """A run stored before the dilated region head existed resumes with the head (and the
    feature weight) it began with; a config of this version keeps its own."""
    fresh = TrainConfig(stage="teacher")
    assert fresh.region_head == "dilated" and fresh.student.feature_weight == pytest.approx(0.1)
    assert TrainConfig.from_dict(fresh.to_dict()).region_head == "dilated"
    stored = fresh.to_dict()
    stored.pop("region_head")
    assert TrainConfig.from_dict(stored).region_head == "fc"


def test_a_class_and_a_tag_added_mid_run_wait_for_the_next_round(trained):
    """A person adds a class and a tag while the teacher trains: the round finishes on the
    classes and tags it started with (before, the student refused the 'other classes')."""
    from engine.store import TagEdit

    store, _, _ = trained
    before = store.classes.names()
    image = store.images.ids(split="train")[0]

    def person_edits(report):
        if report.stage == "teacher" and "late" not in store.classes.names():
            store.classes.ensure(["late"])
            late = [c.id for c in store.classes.list() if c.name == "late"][0]
            store.tags.apply([TagEdit(image, late, "positive")], source="person")

    runs = train(store, TrainConfig(stage="all", kd="both", **TINY),
                 TrainCallbacks(on_epoch=person_edits))
    assert [run.status for run in runs] == ["completed", "completed"]
    assert runs[0].class_names == before and runs[1].class_names == before
    assert "late" in store.classes.names()
    store.classes.delete([c.id for c in store.classes.list() if c.name == "late"][0])


def test_weight_average_warms_up_then_holds_its_decay():
    from engine.training.ema import WeightAverage

    model = torch.nn.Linear(1, 1, bias=False)
    average = WeightAverage(model, decay=0.9)
    values, expected, kept = [], [], 0.0
    for n, weight in enumerate([1.0, 2.0, 3.0, 4.0, 5.0] + [0.0] * 40):
        model.weight.data.fill_(weight)
        average.update(model)
        decay = min(0.9, (1.0 + n) / (10.0 + n))   # n updates so far (the first one copies)
        kept = weight if n == 0 else decay * kept + (1 - decay) * weight
        values.append(float(average.module.weight.detach()))
        expected.append(kept)
    assert values == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError):
        WeightAverage(model, decay=1.0)


def test_a_student_with_a_weight_average_resumes_it_and_ends_with_it(trained):
    """Cancel after the first epoch, resume: the average continues from the checkpoint, the
    validation figures are the average's, and the completed run's weights are the average."""
    from engine.models.checkpoint import load_checkpoint

    store, _, _ = trained
    config = TrainConfig(stage="student", kd="none", **{**TINY, "epochs": 2})
    config = dataclasses.replace(config, student=dataclasses.replace(config.student,
                                                                      ema_decay=0.99))
    epochs = []
    first = train(store, config, TrainCallbacks(on_epoch=epochs.append,
                                                should_stop=lambda: bool(epochs)))
    assert first[0].status == "cancelled"
    path = store.paths.root / first[0].checkpoint
    saved = load_checkpoint(path)
    assert saved["epoch"] == 1 and saved["ema"] is not None
    averaged = {k: v for k, v in saved["ema"].items() if k.startswith("module.")}
    assert any(not torch.equal(averaged[f"module.{k}"], v)
               for k, v in saved["model"].items() if v.is_floating_point())
    done = train(store, dataclasses.replace(config, resume=True))
    assert done[0].id == first[0].id and done[0].status == "completed"
    final = load_checkpoint(path)
    assert int(final["ema"]["n_averaged"]) > int(saved["ema"]["n_averaged"])
    for key, value in final["model"].items():
        assert torch.equal(value, final["ema"][f"module.{key}"])
    with pytest.raises(UserError, match="EMA"):
        train(store, dataclasses.replace(config, student=StudentSettings(ema_decay=1.0)))


def test_every_trainable_parameter_of_a_feature_distilled_student_learns(trained):
    """With feature distillation alone (the default) the temperature of prediction KD does not
    train, and every parameter that does gets a gradient from one step: DDP need not search the
    graph for unused ones."""
    from engine.training.loop import start_stage
    from engine.training.student import DistillationStep, _build_student
    from engine.training.student_options import student_options

    store, _, _ = trained
    start = start_stage(store, "student", TrainConfig(stage="student", kd="feature", **TINY),
                        TrainCallbacks())
    options = student_options(start.config)
    model = _build_student(store, start, options, teacher_dim=16)
    k, regions = len(start.class_names), 4
    corners = torch.rand(2, regions, 2) * 0.5
    batch = {"images": torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8),
             "labels": torch.zeros(2, k),
             "targets": {"soft": torch.rand(2, k),
                         "boxes": torch.cat([corners, corners + 0.4], dim=-1),
                         "features": torch.rand(2, regions, 16).half(),
                         "valid": torch.ones(2, regions, dtype=torch.bool)}}
    step = DistillationStep(options, 64, torch.device("cpu"), False, targets=object())
    assert not model.temperature.inv_temperature.requires_grad
    assert not step.leaves_parameters_unused
    step(model, batch)["loss"].backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
