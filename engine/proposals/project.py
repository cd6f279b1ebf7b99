"""Proposals for the project's images: cached per content hash, computed in worker processes on a
miss, and the proposal source a trained teacher was trained with (`source_from_meta`), so detection,
distillation and training all propose exactly as the teacher expects."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.images import UnreadableImageError, file_digest
from engine.progress import Progress, ShouldStop
from engine.proposals import (
    ProposalCache,
    ProposalJob,
    Proposals,
    ProposalSource,
    compute_proposals,
    get_source,
)

if TYPE_CHECKING:
    from engine.store import Store

log = logging.getLogger(__name__)


def source_from_meta(meta: dict[str, Any]) -> ProposalSource:
    """The proposal source a trained teacher was trained with (from its checkpoint meta)."""
    params = {k: tuple(v) if isinstance(v, list) else v
              for k, v in dict(meta.get("proposal_params", {})).items()}
    return get_source(meta.get("proposals", "sliding"), **params)


def proposals_for_images(store: Store, image_ids: Sequence[int], paths: Sequence[Path],
                         source: ProposalSource, progress: Progress = None,
                         should_stop: ShouldStop = None,
                         ) -> tuple[list[Proposals | None], dict[int, str]]:
    """Proposals of project images (cached per content hash), in order; None for images that
    could not be read (their reasons in the returned dict, by image id)."""
    jobs = [ProposalJob(Path(path), digest)
            for path, digest in zip(paths, _digests(store, image_ids, paths))]
    log.info("Computing %s proposals for %d images", source.name, len(jobs))
    batch = compute_proposals(jobs, source, ProposalCache(store.paths.proposals_cache),
                              progress=progress, should_stop=should_stop)
    result: list[Proposals | None] = []
    failed: dict[int, str] = {}
    for image_id, job in zip(image_ids, jobs):
        found = batch.proposals.get(job.digest)
        result.append(found)
        if found is None:
            failed[image_id] = batch.failed.get(job.digest, "not computed")
    return result, failed


def _digests(store: Store, image_ids: Sequence[int], paths: Sequence[Path]) -> list[str]:
    """The content hash intake stored for each image, hashed now where it is missing."""
    rows = store.images.by_ids(image_ids) if image_ids else {}
    digests: list[str] = []
    for image_id, path in zip(image_ids, paths):
        row = rows.get(image_id)
        digest = row.content_hash if row is not None and row.content_hash else None
        if digest is None:
            try:
                digest = file_digest(path)
            except UnreadableImageError as exc:
                digest = f"unreadable-{image_id}-{exc}"
        digests.append(digest)
    return digests
