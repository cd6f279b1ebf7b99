"""Region proposals: pluggable sources behind one interface, and a per-image cache.

    source = get_source("edgeboxes")            # or "sliding", "selective_search"
    batch = compute_proposals([ProposalJob(path, digest), ...], source,
                              ProposalCache(store.paths.proposals_cache), progress=...)
    batch.proposals[digest].boxes               # (R, 4) xyxy, original pixels, best first

Sources:
- `sliding`: dense multi-scale windows; no dependency; the fallback and the test default.
- `edgeboxes`: OpenCV contrib's EdgeBoxes on a gradient edge map (needs no downloaded model);
  scored boxes (the teacher can multiply its pooled features by these scores).
- `selective_search`: OpenCV contrib's selective search (fast mode); slower, no scores.

Recall and speed of each are measured by `benchmarks/proposals.py`.
"""

from __future__ import annotations

from typing import Any

from engine.errors import UserError
from engine.proposals.base import Proposals, ProposalSource, clean_boxes
from engine.proposals.cache import (
    ProposalBatch,
    ProposalCache,
    ProposalJob,
    compute_proposals,
    default_workers,
)
from engine.proposals.opencv import (
    EdgeBoxesSource,
    SelectiveSearchSource,
    gradient_edges,
)
from engine.proposals.sliding import SlidingWindows

SOURCES: dict[str, type[ProposalSource]] = {
    "sliding": SlidingWindows,
    "edgeboxes": EdgeBoxesSource,
    "selective_search": SelectiveSearchSource,
}


def get_source(name: str, **params: Any) -> ProposalSource:
    """The proposal source called `name`, with parameters overriding its defaults."""
    try:
        cls = SOURCES[name]
    except KeyError:
        raise UserError(f"Unknown proposal source {name!r}; use one of {', '.join(SOURCES)}.") from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise UserError(f"Bad parameters for proposal source {name!r}: {exc}.") from exc


__all__ = ["SOURCES", "EdgeBoxesSource", "ProposalBatch", "ProposalCache", "ProposalJob",
           "ProposalSource", "Proposals", "SelectiveSearchSource", "SlidingWindows", "clean_boxes",
           "compute_proposals", "default_workers", "get_source", "gradient_edges"]
