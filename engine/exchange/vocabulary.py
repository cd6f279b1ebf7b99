"""The vocabulary step between a photo library's keywords and the project's classes.

Counts per keyword (images that carry it), a minimum count, hierarchies left out by prefix
(`People`, `Places|Europe`; `/` separates levels too), and merges of synonyms (`kitty` -> `cat`).
Hierarchies (`Animals|Birds|Heron`) become the class hierarchy; a flat keyword that is a level of a
known path is that level, never a second class.

Keywords are partial labels: an image without a keyword is unknown for that class, not negative,
so a keyword only ever gives positives. Our own `mlic:positive` / `mlic:negative` bags are exact
decisions and keep their negatives.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from engine.exchange.keywords import ImageKeywords


@dataclass
class VocabularyOptions:
    """What the person chose in the vocabulary step."""

    min_count: int = 1
    exclude_prefixes: list[str] = field(default_factory=list)
    merges: dict[str, str] = field(default_factory=dict)    # synonym -> the name it becomes


@dataclass
class KeywordEntry:
    """One keyword of the library: its path, how many images carry it, what becomes of it."""

    name: str
    path: tuple[str, ...]
    count: int
    status: str = "class"      # class | excluded | below minimum | merged into <name>


@dataclass
class Vocabulary:
    """The outcome: the keywords with counts, class parents and each image's decisions."""

    entries: list[KeywordEntry] = field(default_factory=list)
    parents: dict[str, str | None] = field(default_factory=dict)
    per_image: dict[int, tuple[list[str], list[str]]] = field(default_factory=dict)
    partial_classes: set[str] = field(default_factory=set)
    conflicts: int = 0

    @property
    def classes(self) -> list[str]:
        return [entry.name for entry in self.entries if entry.status == "class"]


def split_prefix(text: str) -> tuple[str, ...]:
    separator = "|" if "|" in text else "/"
    return tuple(part.strip() for part in text.split(separator) if part.strip())


def _known_paths(found: dict[int, ImageKeywords]) -> dict[str, tuple[str, ...]]:
    """Every level of every hierarchy: name -> its path (the first one seen)."""
    known: dict[str, tuple[str, ...]] = {}
    for record in found.values():
        for path in record.keywords.paths:
            for depth in range(1, len(path) + 1):
                known.setdefault(path[depth - 1], path[:depth])
    return known


def _image_names(record: ImageKeywords) -> tuple[list[str], list[str], bool]:
    """(positives, negatives, partial) of one image, before the vocabulary options."""
    keywords = record.keywords
    if keywords.positive is not None or keywords.negative is not None:
        return list(keywords.positive or []), list(keywords.negative or []), False
    names = keywords.flat + [path[-1] for path in keywords.paths]
    return list(dict.fromkeys(names)), [], True


def _clean(names: list[str], merges: dict[str, str]) -> list[str]:
    merged = [merges.get(name, name) for name in names]
    return list(dict.fromkeys(n for n in merged if n and "," not in n))


def build_vocabulary(found: dict[int, ImageKeywords],
                     options: VocabularyOptions | None = None) -> Vocabulary:
    """Apply the vocabulary options to the keywords found per image id (module doc)."""
    options = options or VocabularyOptions()
    known = _known_paths(found)
    prefixes = [split_prefix(p) for p in options.exclude_prefixes if split_prefix(p)]

    def path_of(name: str) -> tuple[str, ...]:
        return known.get(name, (name,))

    def excluded(name: str) -> bool:
        path = path_of(name)
        return any(path[:len(prefix)] == prefix for prefix in prefixes)

    vocabulary = Vocabulary(conflicts=sum(1 for r in found.values() if r.conflict))
    raw_counts: Counter[str] = Counter()
    decisions: dict[int, tuple[list[str], list[str], bool]] = {}
    for image_id, record in found.items():
        positives, negatives, partial = _image_names(record)
        raw_counts.update(dict.fromkeys(positives, 1))
        decisions[image_id] = (_clean(positives, options.merges),
                               _clean(negatives, options.merges), partial)
    counts: Counter[str] = Counter()
    for positives, _negatives, _partial in decisions.values():
        counts.update(positives)
    keep = {name for name in counts if not excluded(name) and counts[name] >= options.min_count}
    keep |= {n for _p, negatives, _q in decisions.values() for n in negatives if not excluded(n)}
    for name in sorted(set(raw_counts) | set(counts), key=lambda n: (-raw_counts[n], n)):
        status = ("excluded" if excluded(name) else
                  f"merged into {options.merges[name]}" if name in options.merges else
                  "class" if name in keep else "below minimum")
        count = counts[name] if name in keep else raw_counts[name]
        vocabulary.entries.append(KeywordEntry(name, path_of(name), count, status))
    for image_id, (positives, negatives, partial) in decisions.items():
        positives = [n for n in positives if n in keep]
        negatives = [n for n in negatives if n in keep]
        if positives or negatives:
            vocabulary.per_image[image_id] = (positives, negatives)
        if partial:
            vocabulary.partial_classes.update(positives)
    for name in keep:
        path = path_of(name)
        for parent, child in zip(path, path[1:]):
            vocabulary.parents.setdefault(child, parent)
    return vocabulary
