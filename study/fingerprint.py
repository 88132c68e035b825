"""What a study knows of the files it trains on: its corpus and its pretrained vectors.

A study stores a fingerprint of its corpus (SHA-256 of train.txt and dev.txt, the tag scheme and
the tag set) and of its vectors (path and SHA-256) when it is created. Every later run, worker and
``study.best`` compares the files it is given with them: another corpus under the same study name
would mix dev scores of two corpora in one search, so it stops with one line. The same files in
another folder (a copy, another machine) match: contents decide, not paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ner_core.data import Corpus
from ner_core.datasets import sha256_file
from ner_core.errors import UserError

# What a user reads when a study meets other files than its own.
NEW_STUDY = "give --study-name NAME for a new study on them"


@dataclass(frozen=True)
class CorpusPrint:
    """A corpus as a study remembers it: where it was first read, and what it holds."""

    folder: str
    train_sha256: str
    dev_sha256: str
    scheme: str
    tags: tuple[str, ...]

    @classmethod
    def of(cls, corpus: Corpus) -> CorpusPrint:
        """The fingerprint of a loaded corpus (its files hashed as they are on disk)."""
        return cls(
            folder=str(corpus.directory),
            train_sha256=sha256_file(corpus.directory / "train.txt"),
            dev_sha256=sha256_file(corpus.directory / "dev.txt"),
            scheme=corpus.scheme,
            tags=tuple(corpus.tagset.tags),
        )

    def differences(self, other: CorpusPrint) -> list[str]:
        """What differs between two corpora, the folder aside (empty: the same corpus)."""
        out = [name for name in ("train", "dev") if getattr(self, f"{name}_sha256") != getattr(other, f"{name}_sha256")]
        out = [f"{name}.txt" for name in out]
        if self.scheme != other.scheme:
            out.append(f"scheme {other.scheme}, not {self.scheme}")
        elif self.tags != other.tags:
            out.append("tag set")
        return out

    def to_attr(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "train_sha256": self.train_sha256,
            "dev_sha256": self.dev_sha256,
            "scheme": self.scheme,
            "tags": list(self.tags),
        }

    @classmethod
    def from_attr(cls, value: dict[str, Any] | None) -> CorpusPrint | None:
        return None if not value else cls(**{**value, "tags": tuple(value["tags"])})


def check_corpus(study_name: str, kept: CorpusPrint, found: CorpusPrint) -> None:
    """UserError, in one line, when ``found`` is not the corpus the study was made on."""
    if differ := kept.differences(found):
        raise UserError(
            f"study '{study_name}' was made on the corpus in {kept.folder}; {found.folder} holds another "
            f"({', '.join(differ)} differ): {NEW_STUDY}"
        )


@dataclass(frozen=True)
class VectorsPrint:
    """Pretrained character vectors as a study remembers them."""

    path: str
    sha256: str

    @classmethod
    def of(cls, path: str | Path) -> VectorsPrint:
        """The fingerprint of a vectors file, or UserError when it cannot be read."""
        try:
            return cls(str(path), sha256_file(Path(path)))
        except OSError as err:
            raise UserError(f"{path}: cannot read the pretrained vectors ({err.strerror})") from None

    def to_attr(self) -> dict[str, str]:
        return {"path": self.path, "sha256": self.sha256}

    @classmethod
    def from_attr(cls, value: dict[str, str] | None) -> VectorsPrint | None:
        return None if not value else cls(value["path"], value["sha256"])


def study_vectors(study_name: str, kept: VectorsPrint | None, given: str | None) -> str | None:
    """The vectors file a study's trainings read: the one it was made with, at the path given
    (``--embeddings``, the same file elsewhere) or at its stored path. UserError, in one line, when
    the file is missing or changed, or when vectors are given to a study made without them."""
    if kept is None:
        if given:
            raise UserError(f"study '{study_name}' was made without pretrained vectors; {NEW_STUDY}")
        return None
    path = given or kept.path
    if not Path(path).is_file():
        raise UserError(
            f"study '{study_name}' trains with the pretrained vectors of {kept.path}, and {path} is missing: "
            "give --embeddings PATH to the same file"
        )
    if VectorsPrint.of(path).sha256 != kept.sha256:
        raise UserError(
            f"study '{study_name}' trains with the pretrained vectors of {kept.path} (sha256 {kept.sha256[:12]}...); "
            f"{path} differs: {NEW_STUDY}"
        )
    return path
