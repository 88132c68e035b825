"""Tag schemes (BIO, BIOES): validation, entity spans, and the label set taken from the data."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_TAG = re.compile(r"^(?:O|([BIES])-(\S+))$")
_PREFIX_ORDER = {"BIO": "BI", "BIOES": "BIES"}


def parse_tag(tag: str) -> tuple[str, str | None]:
    """Split a tag into (prefix, type): "B-PER" -> ("B", "PER"), "O" -> ("O", None).

    Raises ValueError for anything not of the form O, B-X, I-X, E-X or S-X.
    """
    match = _TAG.match(tag)
    if match is None:
        raise ValueError(f"tag {tag!r} is not O, B-X, I-X, E-X or S-X")
    prefix, kind = match.groups()
    return (prefix or "O", kind)


def detect_scheme(tags: Iterable[str]) -> str:
    """BIOES if any E- or S- tag occurs, else BIO."""
    return "BIOES" if any(t[:2] in ("E-", "S-") for t in tags) else "BIO"


@dataclass(frozen=True)
class Span:
    """An entity: its type and character offsets [start, end)."""

    type: str
    start: int
    end: int


def spans(tags: Sequence[str], scheme: str) -> list[Span]:
    """Entities by strict rules (as conlleval/seqeval strict mode): malformed chunks are not entities.

    BIO: B-X I-X*. BIOES: S-X, or B-X I-X* E-X. Types must agree inside a chunk.
    """
    found: list[Span] = []
    start: int | None = None
    kind: str | None = None
    for i, tag in enumerate(tags):
        prefix, t = parse_tag(tag)
        if scheme == "BIO":
            if prefix == "I" and start is not None and t == kind:
                continue
            if start is not None:
                found.append(Span(kind, start, i))  # type: ignore[arg-type]
            start, kind = (i, t) if prefix == "B" else (None, None)
        else:
            if prefix == "S":
                found.append(Span(t, i, i + 1))  # type: ignore[arg-type]
                start = kind = None
            elif prefix == "B":
                start, kind = i, t
            elif prefix in "IE" and start is not None and t == kind:
                if prefix == "E":
                    found.append(Span(t, start, i + 1))  # type: ignore[arg-type]
                    start = kind = None
            else:
                start = kind = None
    if scheme == "BIO" and start is not None:
        found.append(Span(kind, start, len(tags)))  # type: ignore[arg-type]
    return found


def invalid_transitions(tags: Sequence[str], scheme: str) -> int:
    """Count positions that break the scheme: I-X after O, E-X without B-X, a B-X never closed..."""
    bad = 0
    prev_prefix, prev_type = "O", None
    for tag in [*tags, "O"]:
        prefix, kind = parse_tag(tag)
        inside = prev_prefix in ("B", "I")
        continues = prefix in ("I", "E") and inside and kind == prev_type
        if prefix in ("I", "E") and not continues:
            bad += 1
        elif scheme == "BIOES" and inside and not continues:
            bad += 1  # BIOES closes every chunk with E-X
        prev_prefix, prev_type = prefix, kind
    return bad


@dataclass(frozen=True)
class TagSet:
    """The ordered label set of a corpus: "O" first, then each type's prefixes in scheme order."""

    scheme: str
    tags: tuple[str, ...]

    @classmethod
    def from_tags(cls, tags: Iterable[str], scheme: str | None = None) -> TagSet:
        seen = set(tags)
        scheme = scheme or detect_scheme(seen)
        types = sorted({parse_tag(t)[1] for t in seen} - {None})  # type: ignore[type-var]
        ordered = ["O"] + [f"{p}-{t}" for t in types for p in _PREFIX_ORDER[scheme] if f"{p}-{t}" in seen]
        return cls(scheme, tuple(ordered))

    @property
    def types(self) -> list[str]:
        return sorted({parse_tag(t)[1] for t in self.tags} - {None})  # type: ignore[type-var]

    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tags)}

    def __len__(self) -> int:
        return len(self.tags)
