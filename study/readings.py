"""A study's readings of its test split: the ledger's (``ner_core.ledger``) readings of the test file
of the study's corpus, kept in the study as well (user attribute ``test_readings``, which the
dashboard shows, and which travels with a shared storage), and the rule that ``study.best --test``
reads a study's test split once."""

from __future__ import annotations

from dataclasses import asdict

import optuna

from ner_core import ledger
from ner_core.data import Corpus
from ner_core.errors import UserError
from ner_core.ledger import Reading

ATTR = "test_readings"


def test_file_sha256(corpus: Corpus) -> str | None:
    """The SHA-256 of the corpus's test file; None where the folder has none."""
    return ledger.test_sha256(corpus) if (corpus.directory / "test.txt").is_file() else None


def study_readings(study: optuna.Study, sha256: str) -> list[Reading]:
    """Every known reading of this test split, oldest first: those the study keeps (made on any machine
    that shares its storage) and those in this machine's ledger (by any command, with or without a
    study)."""
    kept = [Reading.from_dict(value) for value in study.user_attrs.get(ATTR, [])]
    merged = {r.id: r for r in [*kept, *ledger.readings(sha256)] if r.test_sha256 == sha256}
    return sorted(merged.values(), key=lambda r: (r.time, r.id))


def check_unread(study_name: str, found: list[Reading], retest: bool) -> None:
    """UserError, in one line, when study.best has read this study's test split before (unless ``retest``):
    a second reading, after whatever the first one prompted, is no longer a score on unseen data."""
    mine = [r for r in found if r.study == study_name]
    if mine and not retest:
        raise UserError(
            f"study '{study_name}': its test split was read before ({mine[0].line()}); a second reading is not a "
            "score on unseen data: give --retest to read it again anyway (it is recorded too)"
        )


def keep_readings(study: optuna.Study, found: list[Reading], new: Reading) -> list[Reading]:
    """Add ``new`` to the study's readings (the dashboard shows them); returns them all."""
    found = [*found, new]
    study.set_user_attr(ATTR, [asdict(r) for r in found])
    return found
