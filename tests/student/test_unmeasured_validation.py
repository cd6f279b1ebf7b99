"""Training on keywords imported from a photo tool: the validation images have "yes" tags and no
decided "no", so no class can be measured there. The run must finish on both databases (the
NaN figure is stored as null; PostgreSQL's json type refuses NaN), say "n/a" and why instead of
"nan", keep the JSON progress strict, and list the round as not measured."""

from __future__ import annotations

import json
import math

import pytest

from engine.cli.main import main
from engine.store import TagEdit

pytestmark = pytest.mark.slow

TINY_STUDENT = {"stage": "student", "kd": "none", "student_image_size": 64, "epochs": 1,
                "batch_size": 6, "seed": 0, "device": "cpu", "student": {"views": 1}}


def _keywords_only_on_val(backend, tmp_path) -> None:
    """A 20-image demo project whose val images keep their "yes" tags and lose every "no"."""
    from engine.demo import generate_demo, import_demo

    demo = generate_demo(tmp_path / "demo", n_images=20, seed=0)
    with backend.open() as store:
        import_demo(store, demo.root)
        val = [image.id for image in store.images.list(split="val")]
        tags = store.tags.for_images(val)
        edits = [TagEdit(tag.image_id, tag.class_id, None)
                 for image_id in val for tag in tags.get(image_id, []) if not tag.positive]
        assert val and edits
        store.tags.apply(edits, source="import")


def _no_nan(text: str) -> None:
    raise AssertionError(f"not strict JSON: {text}")


def test_a_run_without_a_decided_no_on_val_says_not_measured(backend, tmp_path, capsys):
    _keywords_only_on_val(backend, tmp_path)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_STUDENT))

    assert main([*backend.cli_args(), "train", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "val_mAP=n/a" in out and "nan" not in out
    assert ('val_mAP n/a: no class could be measured on split val; each needs a "yes" and a '
            'decided "no"') in out

    assert main([*backend.cli_args(), "train", "--config", str(config),
                 "--progress", "jsonl"]) == 0
    events = [json.loads(line, parse_constant=_no_nan)
              for line in capsys.readouterr().out.splitlines()]
    (epoch,) = [event["epoch"] for event in events if "epoch" in event]
    assert "val_mAP" in epoch["metrics"] and epoch["metrics"]["val_mAP"] is None
    assert epoch["metrics"]["val_CF1"] is None and epoch["metrics"]["val_OF1"] is None
    assert "temperature" not in epoch["metrics"]        # prediction KD's alone; none here

    from engine.review.rounds import round_history

    with backend.open() as store:
        runs = [run for run in store.runs.list() if run.stage == "student"]
        assert [run.status for run in runs] == ["completed", "completed"]
        assert all(run.metrics["last"]["val_mAP"] is None for run in runs)
        assert all(math.isnan(info.mAP) for info in round_history(store, "student"))
