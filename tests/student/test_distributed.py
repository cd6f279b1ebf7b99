"""Training and tagging as a job of two gloo processes on the CPU (`--nproc 2`): the run completes
and is stored once, its checkpoint resumes in a single process, and tagging with two processes
writes exactly what one process writes. Plus the sharding and the launch command themselves."""

from __future__ import annotations

import json

import pytest
import torch

from engine.cli.launch import process_argv, torchrun_arguments
from engine.cli.main import build_parser, main
from engine.distributed import shard
from engine.models.checkpoint import load_checkpoint, save_checkpoint
from engine.training.ddp import ShardedBatchSampler

TINY = {"stage": "all", "image_size": 64, "max_proposals": 16, "hidden": 32, "epochs": 1,
        "batch_size": 6, "student_image_size": 64, "seed": 0, "device": "cpu",
        "proposals": "sliding", "student": {"kd_boxes": 8, "region_dim": 16, "views": 1}}


def test_shards_are_contiguous_cover_everything_and_concatenate_in_rank_order():
    items = list(range(11))
    parts = [shard(items, part, 3) for part in range(3)]
    assert [len(p) for p in parts] == [3, 4, 4]
    assert sum(parts, []) == items
    assert shard(items) == items                                  # a single process: all


def test_every_rank_takes_its_share_of_the_same_global_batches():
    class Batches:
        def __init__(self):
            self.epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return 2

        def __iter__(self):
            yield [(self.epoch, i) for i in range(5)]
            yield [(self.epoch, 9)]                               # smaller than the world

    inner = Batches()
    ranks = [ShardedBatchSampler(inner, part, 2) for part in range(2)]
    ranks[0].set_epoch(3)
    first, second = (list(sampler) for sampler in ranks)
    assert first[0] + second[0] == [(3, i) for i in range(5)]
    assert first[1] == second[1] == [(3, 9)]                      # padded: no rank idles
    assert len(ranks[1]) == len(inner)


def test_the_processes_run_the_command_without_the_launch_options():
    argv = ["--project", "p", "train", "--nproc", "2", "--epochs", "3", "--nnodes=1"]
    assert process_argv(argv) == ["--project", "p", "train", "--epochs", "3"]
    one = torchrun_arguments(build_parser().parse_args(argv), argv)
    assert one[one.index("--nproc-per-node") + 1] == "2" and "--standalone" in one
    two_machines = ["train", "--nproc", "4", "--nnodes", "2", "--node-rank", "1",
                    "--rdzv-endpoint", "10.0.0.1:29500"]
    command = torchrun_arguments(build_parser().parse_args(two_machines), two_machines)
    assert command[command.index("--rdzv-endpoint") + 1] == "10.0.0.1:29500"
    assert command[command.index("--node-rank") + 1] == "1"
    assert command[-3:] == ["-m", "engine", "train"]


def test_two_machines_need_machine_zeros_address(capsys):
    assert main(["train", "--nproc", "2", "--nnodes", "2"]) == 2
    assert capsys.readouterr().err.startswith("mlic: error: Several machines need")


def _tiny_project(root):
    """A tiny demo project (20 images) and its tiny training config."""
    from engine.demo import generate_demo, import_demo
    from engine.store import Store

    demo = generate_demo(root / "demo", n_images=20, seed=0)
    with Store.open(root / "project") as store:
        import_demo(store, demo.root)
    config = root / "tiny.json"
    config.write_text(json.dumps(TINY))
    return root / "project", demo, config


@pytest.mark.slow
def test_two_processes_train_once_resume_in_one_and_tag_like_one(tmp_path, capsys):
    """One sequence, so the suite pays for one job's training (xdist would build a shared
    fixture once per worker)."""
    project, demo, config = _tiny_project(tmp_path)
    assert main(["--project", str(project), "train", "--config", str(config), "--nproc", "2"]) == 0
    _stored_once(project)
    _resumes_in_one_process(project)
    _tags_like_one_process(project, demo.root / "images", tmp_path)
    capsys.readouterr()
    assert main(["--project", str(project), "train", "--stage", "teacher", "--resume",
                 "--device", "cpu", "--nproc", "2"]) == 2
    assert capsys.readouterr().err == "mlic: error: There is no unfinished teacher run to resume.\n"


def _stored_once(project):
    """The run completed, each stage stored once, one report per epoch (not one per process),
    checkpoints of the plain model (no DDP prefixes)."""
    from engine.store import Store

    with Store.open(project) as store:
        runs = store.runs.list()
        assert [(run.stage, run.status) for run in runs] == [("teacher", "completed"),
                                                             ("student", "completed")]
        for run in runs:
            assert len(run.metrics["epochs"]) == 1
            assert run.metrics["last"]["images_per_s"] > 0
            state = load_checkpoint(project / run.checkpoint)
            assert not any(key.startswith("module.") for key in state["model"])


def _resumes_in_one_process(project):
    """The job's teacher checkpoint, as if the job had stopped before its epoch ended, is
    resumed by a single process into the same run."""
    from engine.store import Store
    from engine.training import TrainConfig, train

    with Store.open(project) as store:
        teacher = store.runs.list("teacher")[0]
        path = project / teacher.checkpoint
        state = load_checkpoint(path)
        state.pop("format")
        save_checkpoint(path, {**state, "epoch": 0, "history": []})
        store.runs.update(teacher.id, status="cancelled")
        torch.set_num_threads(1)
        runs = train(store, TrainConfig(stage="teacher", resume=True, device="cpu"))
        assert [(run.id, run.status) for run in runs] == [(teacher.id, "completed")]
        assert len(store.runs.get(teacher.id).metrics["epochs"]) == 1


def _tags_like_one_process(project, images, folder):
    for name, extra in (("one.csv", []), ("two.csv", ["--nproc", "2"])):
        assert main(["--project", str(project), "tag", str(images), "--out", str(folder / name),
                     "--device", "cpu", *extra]) == 0
    one, two = ((folder / name).read_text() for name in ("one.csv", "two.csv"))
    assert one == two and len(one.splitlines()) == 21
