"""Training on several processes (`mlic train --nproc N`): what a stage changes when it runs as
one rank of a `torch.distributed` job, kept here so the stages stay as they are.

- `shard_batches`: the distributed batch sampler. The stage's own sampler draws the same global
  batches on every rank (seeded per epoch); each rank takes its contiguous share of every batch,
  so `batch_size` is the global batch, a run draws the same batches whatever the number of
  processes, and a checkpoint resumes with any other number (the step count per epoch, and so
  the learning-rate schedule, does not change).
- `DistributedStep`: the stage's `step(model, batch)` as the forward of one module, wrapped in
  `DistributedDataParallel`, so the gradients of whatever the step touches (the student calls
  several of its model's methods, not `forward`) are averaged across ranks in backward.
- `sharded`: proposals and the teacher's distillation targets (cached one file per image)
  computed by each rank for its share of the images, then read from the cache by every rank.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler

from engine import distributed
from engine.progress import Progress, ShouldStop
from engine.proposals import Proposals, ProposalSource
from engine.proposals.project import proposals_for_images

T = TypeVar("T")


class ShardedBatchSampler(Sampler[list[Any]]):
    """This rank's share of each batch of `inner` (a batch sampler with `set_epoch`). A batch
    smaller than the world is repeated cyclically first, so every rank gets a non-empty share
    and all ranks take the same number of steps."""

    def __init__(self, inner: Any, part: int, parts: int) -> None:
        self.inner, self.part, self.parts = inner, part, parts

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[list[Any]]:
        for batch in self.inner:
            batch = list(batch)
            while len(batch) < self.parts:
                batch = batch + batch[:self.parts - len(batch)]
            yield distributed.shard(batch, self.part, self.parts)


def shard_batches(sampler: Any) -> Any:
    """`sampler` itself in a single process, else this rank's `ShardedBatchSampler` of it."""
    if not distributed.active():
        return sampler
    return ShardedBatchSampler(sampler, distributed.rank(), distributed.world_size())


class DistributedStep(nn.Module):
    """`step(model, batch)` as a module's forward, so DistributedDataParallel can wrap it."""

    def __init__(self, model: nn.Module, step: Callable[[nn.Module, Any], dict[str, torch.Tensor]]
                 ) -> None:
        super().__init__()
        self.model = model
        self.step = step

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        return self.step(self.model, batch)


def distributed_step(model: nn.Module, step: Callable[[nn.Module, Any], dict[str, torch.Tensor]],
                     device: torch.device) -> Callable[[nn.Module, Any], dict[str, torch.Tensor]]:
    """`step` itself in a single process; else a step whose backward averages the gradients over
    the ranks (DDP; a step with `leaves_parameters_unused` set, such as a schedule that trains
    part of the model in a phase, has DDP look for the parameters left out)."""
    if not distributed.active():
        return step
    wrapped = DistributedDataParallel(
        DistributedStep(model, step), device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=bool(getattr(step, "leaves_parameters_unused", False)))
    return lambda _model, batch: wrapped(batch)


def sharded(compute: Callable[[list[int], list[Path]], T], image_ids: Sequence[int],
            paths: Sequence[Path]) -> T:
    """`compute(image_ids, paths)` of all the images, for a computation that caches one file per
    image in the project (proposals, the teacher's targets): in a job each rank first computes
    its share, so the work is split and no two ranks write the same file; then every rank reads
    the whole list, from the cache."""
    if distributed.active():
        compute(distributed.shard(image_ids), distributed.shard(paths))
        distributed.barrier()
    return compute(list(image_ids), list(paths))


def sharded_proposals(store: Any, image_ids: Sequence[int], paths: Sequence[Path],
                      source: ProposalSource, progress: Progress = None,
                      should_stop: ShouldStop = None
                      ) -> tuple[list[Proposals | None], dict[int, str]]:
    """`proposals_for_images` of all the images, computed `sharded`."""
    return sharded(lambda ids, files: proposals_for_images(store, ids, files, source, progress,
                                                           should_stop), image_ids, paths)
