"""The per-image proposal cache and parallel computation.

Files live under `ProjectPaths.proposals_cache / <source cache key> / <digest[:2]> / <digest>.npz`,
keyed by the image's content hash, the method and its parameters (the cache key), so a moved or
renamed file hits the cache and a changed file or parameter misses it. A key that is not a plain
file name (a path, say) is stored under its SHA-1, so no key can write outside the cache folder.
Each file is written
atomically (temporary file + `os.replace`), so concurrent workers and crashes leave no torn files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from engine.files import atomic_output
from engine.proposals.base import Proposals, ProposalSource

log = logging.getLogger(__name__)

PLAIN_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ProposalCache:
    """Proposals on disk for one project (`root` = `ProjectPaths.proposals_cache`)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, source: ProposalSource, digest: str) -> Path:
        """Where the proposals of `digest` (a content hash, or any key) live, under `root`."""
        if not PLAIN_KEY.fullmatch(digest):
            digest = hashlib.sha1(digest.encode()).hexdigest()
        return self.root / source.cache_key() / digest[:2] / f"{digest}.npz"

    def get(self, source: ProposalSource, digest: str) -> Proposals | None:
        """The cached proposals, or None on a miss (or an unreadable cache file)."""
        path = self.path(source, digest)
        try:
            with np.load(path) as data:
                scores = data["scores"] if "scores" in data.files else None
                return Proposals(data["boxes"].astype(np.float32),
                                 None if scores is None else scores.astype(np.float32),
                                 (int(data["size"][0]), int(data["size"][1])))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as exc:
            log.warning("Ignoring damaged proposal cache file %s: %s", path, exc)
            return None

    def put(self, source: ProposalSource, digest: str, proposals: Proposals) -> None:
        path = self.path(source, digest)
        arrays = {"boxes": proposals.boxes.astype(np.float32),
                  "size": np.asarray(proposals.size, dtype=np.int64)}
        if proposals.scores is not None:
            arrays["scores"] = proposals.scores.astype(np.float32)
        with atomic_output(path, "wb") as file:
            np.savez(file, **arrays)


@dataclass(frozen=True)
class ProposalJob:
    """One image to propose for: its path and content hash (the cache key)."""

    path: Path
    digest: str


@dataclass
class ProposalBatch:
    """Result of `compute_proposals`: proposals per digest, the failures (digest -> reason), and
    how many came from the cache."""

    proposals: dict[str, Proposals]
    failed: dict[str, str]
    cache_hits: int
    computed: int


def _work(source: ProposalSource, cache_root: str, job: ProposalJob) -> tuple[str, Proposals | None, str | None]:
    """Worker body: compute one image's proposals and write them to the cache."""
    from engine.images import UnreadableImageError

    try:
        proposals = source.propose(job.path)
    except UnreadableImageError as exc:
        return job.digest, None, getattr(exc, "reason", str(exc))
    ProposalCache(cache_root).put(source, job.digest, proposals)
    return job.digest, proposals, None


def _init_worker() -> None:
    try:
        import cv2
        cv2.setNumThreads(1)
    except ImportError:
        pass


def default_workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 16))


def compute_proposals(jobs: Sequence[ProposalJob], source: ProposalSource, cache: ProposalCache,
                      workers: int | None = None,
                      progress: Callable[[int, int], None] | None = None,
                      should_stop: Callable[[], bool] | None = None) -> ProposalBatch:
    """Proposals for every job, from the cache where present, else computed (in `workers` worker
    processes when more than one image misses) and cached.

    `progress(done, total)` is called as images finish; `should_stop()` ends early (what finished
    is cached and returned). Unreadable images land in `failed` with their reason.
    """
    unique: dict[str, ProposalJob] = {}
    for job in jobs:
        unique.setdefault(job.digest, job)
    result = ProposalBatch({}, {}, 0, 0)
    missing = _read_cached(unique, source, cache, result)
    collector = _Collector(result, len(unique), progress, done=result.cache_hits)
    if progress is not None:
        progress(collector.done, collector.total)
    workers = default_workers() if workers is None else max(1, workers)
    if workers == 1 or len(missing) <= 2:
        for job in missing:
            if should_stop is not None and should_stop():
                break
            collector.add(_work(source, str(cache.root), job))
    else:
        _compute_in_processes(missing, source, str(cache.root), workers, collector, should_stop)
    return result


def _read_cached(unique: dict[str, ProposalJob], source: ProposalSource, cache: ProposalCache,
                 result: ProposalBatch) -> list[ProposalJob]:
    """Put the cached proposals into `result` (counting the hits); the jobs that missed."""
    missing: list[ProposalJob] = []
    for digest, job in unique.items():
        cached = cache.get(source, digest)
        if cached is None:
            missing.append(job)
        else:
            result.proposals[digest] = cached
    result.cache_hits = len(result.proposals)
    return missing


@dataclass
class _Collector:
    """Adds each finished job to the batch and reports progress."""

    result: ProposalBatch
    total: int
    progress: Callable[[int, int], None] | None
    done: int = 0

    def add(self, item: tuple[str, Proposals | None, str | None]) -> None:
        digest, proposals, reason = item
        if proposals is None:
            self.result.failed[digest] = reason or "unreadable"
        else:
            self.result.proposals[digest] = proposals
            self.result.computed += 1
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


def _compute_in_processes(missing: list[ProposalJob], source: ProposalSource, cache_root: str,
                          workers: int, collector: _Collector,
                          should_stop: Callable[[], bool] | None) -> None:
    """Run the jobs in worker processes, ~2 per worker in flight; on `should_stop()` the jobs
    not started are cancelled."""
    # 'spawn': safe from a multi-threaded parent (the GUI, torch's thread pools)
    with ProcessPoolExecutor(max_workers=min(workers, len(missing)), mp_context=get_context("spawn"),
                             initializer=_init_worker) as pool:
        queue = iter(missing)

        def top_up(pending: set) -> set:
            for job in queue:
                pending.add(pool.submit(_work, source, cache_root, job))
                if len(pending) >= 2 * workers:
                    break
            return pending

        pending = top_up(set())
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                collector.add(future.result())
            if should_stop is not None and should_stop():
                for future in pending:
                    future.cancel()
                break
            pending = top_up(pending)
