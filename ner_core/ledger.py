"""The test-split ledger: every reading of a corpus's test split, one JSON line each.

A test score is only an honest estimate the first time it is read: every later look at it, after
which anything is changed, turns test into a second dev split. So each command that scores a test
split (``ner_core.train --test``, ``ner_core.ensemble --test``, ``study.best --test``) appends one
line to the ledger, ``results/test-readings.jsonl`` (``$NER_HPO_LEDGER`` to put it elsewhere):
when, which command, which models, their mean scores, and the SHA-256 of the test file, which
names the split wherever its folder is. How often a test split was read is then a count, not a
memory.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .data import Corpus
from .datasets import sha256_file
from .errors import UserError

LEDGER_ENV = "NER_HPO_LEDGER"
DEFAULT_LEDGER = Path("results") / "test-readings.jsonl"


def ledger_path() -> Path:
    """Where readings are recorded: $NER_HPO_LEDGER, else results/test-readings.jsonl."""
    return Path(os.environ.get(LEDGER_ENV) or DEFAULT_LEDGER)


def test_sha256(corpus: Corpus) -> str:
    """The SHA-256 of the corpus's test file, as it is on disk."""
    return sha256_file(corpus.directory / "test.txt")


@dataclass(frozen=True)
class Reading:
    """One reading of a test split."""

    id: str
    time: str  # UTC, ISO 8601 to the second
    command: str
    corpus: str  # the folder it was read in
    test_sha256: str
    models: list[str]
    token_macro_f1: float  # the mean over the models
    entity_f1: float
    study: str | None = None  # the study whose trial it tested, where one did
    program: str = ""  # the command's module: ner_core.train, ner_core.ensemble, study.best

    def line(self) -> str:
        """The reading in one line, as summaries print it (the whole command is in the ledger)."""
        who = f"study '{self.study}'" if self.study else self.program or self.command
        return (
            f"{self.time[:16].replace('T', ' ')} UTC by {who}: token macro-F1 {self.token_macro_f1:.4f}, "
            f"entity F1 {self.entity_f1:.4f} ({len(self.models)} model(s))"
        )

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Reading:
        return cls(**{k: value[k] for k in cls.__dataclass_fields__ if k in value})


def record(
    program: str,
    corpus: Corpus,
    models: Sequence[str],
    scores: Sequence[dict[str, Any]],
    study: str | None = None,
) -> Reading:
    """Append a reading of ``corpus``'s test split by ``models`` (with their ``scores``), made by
    ``python -m program`` with this process's arguments, to the ledger."""
    reading = Reading(
        id=uuid.uuid4().hex,
        time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        command=shlex.join(["python", "-m", program, *sys.argv[1:]]),
        corpus=str(corpus.directory),
        test_sha256=test_sha256(corpus),
        models=[str(m) for m in models],
        token_macro_f1=sum(s["token_macro_f1"] for s in scores) / len(scores),
        entity_f1=sum(s["entity_f1"] for s in scores) / len(scores),
        study=study,
        program=program,
    )
    path = ledger_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One write of one line in append mode: concurrent writers do not interleave within it.
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(asdict(reading), ensure_ascii=False) + "\n")
    except OSError as err:
        raise UserError(f"{path}: cannot record the test reading ({err.strerror})") from None
    return reading


def readings(sha256: str) -> list[Reading]:
    """The ledger's readings of the test split with this SHA-256, oldest first ([] without a ledger)."""
    path = ledger_path()
    if not path.is_file():
        return []
    found = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise UserError(f"{path}:{number}: not a JSON line (the ledger of test readings)") from None
        if value.get("test_sha256") == sha256:
            found.append(Reading.from_dict(value))
    return found


def count_line(found: Sequence[Reading]) -> str:
    """How often the test split was read, and the first reading's scores."""
    if not found:
        return "test split not read yet"
    return f"test split read {len(found)} time(s); the first: {found[0].line()}"
