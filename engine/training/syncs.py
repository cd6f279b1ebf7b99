"""Counting the host synchronisations of training code, so the hot loop stays free of them.

A host synchronisation makes Python wait until the device has finished everything queued so far
(`.item()`, `float(t)`, `bool(t)`, `nonzero`, a boolean mask as an index, `unique`): on a GPU,
one per step leaves the device idle while Python prepares the next batch. `count_host_syncs(fn)`
runs `fn` under `torch.profiler` (on any device, the CPU included) and counts the operators
that read a value back or size a result by its data. Operators under the optimizer's step are left
out: its scalar reads are of step counters that live on the host (or, fused on CUDA, never
leave the device). Reads the profiler cannot see (`.tolist()`, `.numpy()`) are not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from torch.profiler import ProfilerActivity, profile

__all__ = ["SYNC_OPERATORS", "count_host_syncs"]

SYNC_OPERATORS = frozenset({
    "aten::_local_scalar_dense",     # .item(), float(), int(), bool() of a tensor
    "aten::nonzero",                 # nonzero, a boolean mask as an index
    "aten::masked_select",
    "aten::unique_consecutive", "aten::_unique2", "aten::unique_dim",
})


def _under_optimizer(event: Any) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("Optimizer.step#"):
            return True
        parent = parent.cpu_parent
    return False


def count_host_syncs(fn: Callable[[], Any]) -> Counter[str]:
    """Run `fn()` once under the profiler; the synchronising operators it called, by name."""
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        fn()
    return Counter(event.name for event in profiler.events()
                   if event.name in SYNC_OPERATORS and not _under_optimizer(event))
