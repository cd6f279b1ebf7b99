"""The training steps never wait for the device: no host synchronisation per batch.

Counted with `engine.training.syncs.count_host_syncs` (torch.profiler) over whole epochs of the
shared loop with the teacher's and the student's real step functions, on the CPU; the only read
an epoch makes is the loop's check of the loss (every `check_every` batches and at the end).
Also here: the same epoch under bfloat16 autocast with channels_last inputs, the CUDA path run
on the CPU.
"""

from __future__ import annotations

import math

import pytest
import torch

from engine.models.student import Student
from engine.models.wsddn import WSDDN
from engine.training.api import TrainCallbacks, TrainConfig
from engine.training.common import adamw, param_groups
from engine.training.loop import LoopSetup, _train_epoch
from engine.training.student import DistillationStep
from engine.training.student_options import student_options
from engine.training.syncs import count_host_syncs
from engine.training.teacher import RegionStep

BATCHES = 3
CPU = torch.device("cpu")


def _teacher_setup(tmp_path, channels_last: bool = False) -> LoopSetup:
    torch.manual_seed(0)
    model = WSDDN(3, "resnet18", hidden=16, refine_branches=2)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    boxes = [torch.tensor([[0, 0, 64, 48], [8, 8, 40, 40], [20, 10, 60, 44.0]]),
             torch.tensor([[0, 0, 30, 30], [16, 12, 64, 48.0]])]
    batches = [{"images": torch.rand(2, 3, 48, 64), "boxes": boxes, "box_scores": None,
                "labels": torch.tensor([[1.0, 0, 1], [0, 1, 0]])} for _ in range(BATCHES)]
    return _setup(tmp_path, "teacher", model, batches, RegionStep(CPU, channels_last, False))


def _student_setup(tmp_path, ema_decay: float = 0.0) -> LoopSetup:
    """The student with the teacher's targets read from disk (they come with the batch)."""
    torch.manual_seed(0)
    options = student_options(TrainConfig(stage="student", epochs=1, kd="both",
                                          schedule="joint"))
    regions, dim = 5, 16
    valid = torch.ones(2, regions, dtype=torch.bool)
    valid[1, 3:] = False                                         # a view with fewer boxes
    corners = torch.rand(2, regions, 2) * 0.5
    model = Student("resnet18", 3, teacher_feature_dim=dim, region_dim=options.region_dim,
                    roi_size=options.roi_size, image_size=64, stride=options.stride,
                    region_layers=options.region_layers)
    targets = {"soft": torch.rand(2, 3), "boxes": torch.cat([corners, corners + 0.4], dim=-1),
               "features": torch.rand(2, regions, dim).half(), "valid": valid}
    batches = [{"images": torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8),
                "labels": torch.tensor([[1.0, 0, 1], [0, 1, 0]]), "targets": targets}
               for _ in range(BATCHES)]
    return _setup(tmp_path, "student", model, batches,
                  DistillationStep(options, 64, CPU, False, None), ema_decay)


def _student_with_average(tmp_path) -> LoopSetup:
    """The same, keeping a moving average of the weights after every optimizer step."""
    return _student_setup(tmp_path, ema_decay=0.99)


def _setup(tmp_path, stage, model, batches, step, ema_decay: float = 0.0) -> LoopSetup:
    return LoopSetup(stage=stage, model=model, optimizer=adamw(param_groups(model, 1e-4), 1e-3),
                     loader=batches, step=step, epochs=1, device=CPU,
                     checkpoint_path=tmp_path / "unused.pt", checkpoint_extra={},
                     ema_decay=ema_decay)


def _epoch(setup: LoopSetup, dtype: torch.dtype | None = None):
    return _train_epoch(setup, 0, dtype, torch.amp.GradScaler("cuda", enabled=False),
                        TrainCallbacks())


@pytest.mark.parametrize("make", [_teacher_setup, _student_setup], ids=["teacher", "student"])
def test_an_epoch_reads_from_the_device_only_to_check_the_loss(tmp_path, make):
    setup = make(tmp_path)
    syncs = count_host_syncs(lambda: _epoch(setup))
    assert dict(syncs) == {"aten::_local_scalar_dense": 1}      # the check at the epoch's end
    setup.check_every = 1
    assert sum(count_host_syncs(lambda: _epoch(setup)).values()) == BATCHES + 1   # + the end


def test_the_weight_average_reads_only_its_counter_on_the_host(tmp_path):
    """torch's AveragedModel checks its update counter twice a step; the counter stays on the CPU
    (it is never moved with the model), so on a GPU those reads wait for nothing. The decay's
    warm-up counts updates in Python instead of reading the counter it is handed on the device."""
    setup = _student_with_average(tmp_path)
    assert setup.ema.average.n_averaged.device.type == "cpu"
    syncs = count_host_syncs(lambda: _epoch(setup))
    assert dict(syncs) == {"aten::_local_scalar_dense": 1 + 2 * BATCHES}


def test_the_counter_sees_the_usual_syncs():
    def syncing():
        x = torch.randn(8)
        float(x.sum())
        return x[x > 0]
    assert dict(count_host_syncs(syncing)) == {"aten::_local_scalar_dense": 1, "aten::nonzero": 1}


def test_mixed_precision_and_channels_last_train_on_the_cpu(tmp_path):
    """The CUDA path (autocast, channels_last inputs and weights) as code: bfloat16 on the CPU."""
    setup = _teacher_setup(tmp_path, channels_last=True)
    before = [p.detach().clone() for p in setup.model.parameters()]
    tally = _epoch(setup, torch.bfloat16)
    assert tally.batches == BATCHES and math.isfinite(tally.means()["loss"])
    assert any(not torch.equal(b, p) for b, p in zip(before, setup.model.parameters()))
