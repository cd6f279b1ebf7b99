"""Several processes on one job: the process group, which share of a list each rank owns, and
the few collectives the engine uses (barrier, broadcast from rank 0, gather in rank order,
mean over ranks).

A process is part of a distributed job when `torch.distributed.run` started it with a world of
more than one process (the environment variables WORLD_SIZE, RANK, LOCAL_RANK);
`init_distributed` then joins the group: NCCL on CUDA (one GPU per process, `cuda:LOCAL_RANK`),
gloo on the CPU. Every helper here also works in a plain single process, where it is a no-op
(rank 0 of a world of 1), so callers never branch on whether a group exists. Importing this
module loads no torch (the command line starts without it); no group can exist before torch is
loaded.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def _dist() -> Any:
    """torch.distributed, loaded (only called once `active()` said a group exists)."""
    return sys.modules["torch.distributed"]


def _reduce_device() -> str:
    """Where a tensor to all-reduce lives: this process's GPU with NCCL, else the CPU."""
    return "cuda" if _dist().get_backend() == "nccl" else "cpu"


def launched() -> bool:
    """Whether `torch.distributed.run` started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """Whether this process is in an initialised process group of more than one process."""
    dist = sys.modules.get("torch.distributed")
    return (dist is not None and dist.is_available() and dist.is_initialized()
            and dist.get_world_size() > 1)


def rank() -> int:
    return _dist().get_rank() if active() else 0


def world_size() -> int:
    return _dist().get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the one process that writes the store, checkpoints and progress."""
    return rank() == 0


def init_distributed(device: str = "auto") -> str:
    """Join the process group when launched as one of several processes; returns the device this
    process trains on ('cuda:LOCAL_RANK' with NCCL, 'cpu' with gloo; `device` unchanged when not
    launched)."""
    if not launched():
        return device
    import torch
    import torch.distributed as dist

    from engine.device import resolve_device

    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = resolve_device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo",
                                timeout=datetime.timedelta(minutes=60))
    log.info("Rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(),
             "nccl" if cuda else "gloo")
    return f"cuda:{local}" if cuda else "cpu"


def close_distributed() -> None:
    """Leave the process group (the end of a launched command)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard_bounds(count: int, part: int | None = None, parts: int | None = None) -> tuple[int, int]:
    """[start, stop) of the contiguous share `part` of `parts` (default: this rank's) of
    `count` items; the shares differ in size by at most one and concatenate in rank order."""
    part = rank() if part is None else part
    parts = world_size() if parts is None else parts
    return count * part // parts, count * (part + 1) // parts


def shard(items: Sequence[T], part: int | None = None, parts: int | None = None) -> list[T]:
    """This rank's contiguous share of `items` (all of them in a single process)."""
    start, stop = shard_bounds(len(items), part, parts)
    return list(items[start:stop])


def barrier() -> None:
    if active():
        _dist().barrier()


def broadcast(value: T) -> T:
    """Rank 0's `value` on every rank (any picklable object)."""
    if not active():
        return value
    holder = [value]
    _dist().broadcast_object_list(holder, src=0)
    return holder[0]


def gather(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank (any picklable object)."""
    if not active():
        return [value]
    values: list[Any] = [None] * world_size()
    _dist().all_gather_object(values, value)
    return values


def mean(values: dict[str, float]) -> dict[str, float]:
    """Each figure averaged over the ranks (every rank passes the same keys)."""
    if not active() or not values:
        return dict(values)
    import torch

    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                          device=_reduce_device())
    _dist().all_reduce(tensor)
    return {k: float(v) / world_size() for k, v in zip(keys, tensor.tolist())}


def total(value: float) -> float:
    """`value` summed over the ranks."""
    if not active():
        return value
    import torch

    tensor = torch.tensor([float(value)], dtype=torch.float64, device=_reduce_device())
    _dist().all_reduce(tensor)
    return float(tensor.item())
