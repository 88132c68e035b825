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


def allowed_move(before: str, after: str, scheme: str) -> bool:
    """Whether tag ``after`` may follow tag ``before``; a sentence's edges count as "O".

    I-X and E-X only continue a chunk of type X opened by B-X (and kept open by I-X); in BIOES
    an open chunk must be continued, since only E-X closes it.
    """
    before_prefix, before_type = parse_tag(before)
    prefix, kind = parse_tag(after)
    inside = before_prefix in ("B", "I")
    if prefix in ("I", "E"):
        return inside and kind == before_type
    return not (scheme == "BIOES" and inside)


def invalid_transitions(tags: Sequence[str], scheme: str) -> int:
    """Count positions that break the scheme: I-X after O, E-X without B-X, a B-X never closed..."""
    edged = ["O", *tags, "O"]
    return sum(not allowed_move(a, b, scheme) for a, b in zip(edged, edged[1:]))


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


@dataclass(frozen=True)
class AllowedTransitions:
    """The moves a tag scheme allows, indexed like its TagSet: the CRF's constraint.

    ``start[j]``: a sentence may begin with tag j; ``transitions[i][j]``: tag j may follow tag i;
    ``end[i]``: a sentence may end with tag i. A path is valid exactly when every move it makes
    is allowed (``invalid_transitions`` counts the others).
    """

    start: tuple[bool, ...]
    transitions: tuple[tuple[bool, ...], ...]
    end: tuple[bool, ...]


def allowed_transitions(tagset: TagSet) -> AllowedTransitions:
    """The start, transition and end moves that ``tagset.scheme`` allows between its tags."""
    tags, scheme = tagset.tags, tagset.scheme
    return AllowedTransitions(
        start=tuple(allowed_move("O", t, scheme) for t in tags),
        transitions=tuple(tuple(allowed_move(a, b, scheme) for b in tags) for a in tags),
        end=tuple(allowed_move(t, "O", scheme) for t in tags),
    )
