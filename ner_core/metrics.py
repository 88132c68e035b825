"""Scores: the notebook's token-level macro-F1 and accuracy, and entity-level strict P/R/F1.

Token level: sklearn's classification_report over every tag that occurs in gold or predicted
tags, O included, on real (unpadded) positions: the number the notebook printed; each tag's F1
is kept, and ``token_spread_by_tag`` says which tags make several runs' macro-F1 differ.
Entity level: seqeval in strict mode with the corpus's scheme (as conlleval counts chunks).
Validity: how many predicted sentences break the scheme (0 with the constrained CRF).
"""

from __future__ import annotations

import statistics
import warnings
from collections.abc import Sequence
from typing import Any

from seqeval.metrics import classification_report as entity_report
from seqeval.scheme import IOB2, IOBES
from sklearn.metrics import classification_report as token_report

from .tags import invalid_transitions

_SCHEMES = {"BIO": IOB2, "BIOES": IOBES}
OBJECTIVE_KEYS = {"token-macro-f1": "token_macro_f1", "entity-f1": "entity_f1"}


def token_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Token accuracy and macro-F1 over all tags (O included), as the notebook computed them, and
    each tag's F1 and support (``per_tag``: the tags that macro-F1 averages)."""
    flat_gold = [t for sentence in gold for t in sentence]
    flat_pred = [t for sentence in pred for t in sentence]
    if len(flat_gold) != len(flat_pred):
        raise ValueError("gold and predicted tags differ in length")
    report = token_report(flat_gold, flat_pred, zero_division=0, output_dict=True)
    per_tag = {
        tag: {"f1": float(row["f1-score"]), "support": int(row["support"])}
        for tag, row in report.items()
        if tag != "accuracy" and not tag.endswith(" avg")
    }
    return {
        "token_accuracy": float(report["accuracy"]),
        "token_macro_f1": float(report["macro avg"]["f1-score"]),
        "per_tag": per_tag,
    }


def token_spread_by_tag(per_tag_runs: Sequence[dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Which tags make the token macro-F1 of several runs (seeds) differ: each tag with its support,
    its F1 in each run and its ``share`` of the variance of the runs' macro-F1, largest first.

    A run's macro-F1 is the sum over its T tags of F1 / T; a tag's share is the covariance of its
    term with the macro-F1 over the variance of the macro-F1, so the shares sum to 1 (a tag that
    moved against the others has a negative one). Empty for fewer than 2 runs or runs that agree.
    """
    tags = sorted({t for run in per_tag_runs for t in run})
    terms = {t: [run[t]["f1"] / len(run) if t in run else 0.0 for run in per_tag_runs] for t in tags}
    macros = [sum(terms[t][i] for t in tags) for i in range(len(per_tag_runs))]
    variance = statistics.pvariance(macros) if len(macros) > 1 else 0.0
    if variance < 1e-12:
        return []
    mean = statistics.fmean(macros)
    rows = []
    for t in tags:
        term_mean = statistics.fmean(terms[t])
        covariance = statistics.fmean((x - term_mean) * (m - mean) for x, m in zip(terms[t], macros))
        support = next(run[t]["support"] for run in per_tag_runs if t in run)
        rows.append(
            {
                "tag": t,
                "support": support,
                "f1": [run[t]["f1"] if t in run else 0.0 for run in per_tag_runs],
                "share": covariance / variance,
            }
        )
    return sorted(rows, key=lambda row: -row["share"])


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str) -> dict[str, object]:
    """Strict entity precision/recall/F1: micro, macro over types, and per type (with support)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns on undefined metrics; zero_division covers it
        report = entity_report(
            [list(s) for s in gold],
            [list(s) for s in pred],
            mode="strict",
            scheme=_SCHEMES[scheme],
            output_dict=True,
            zero_division=0,
        )
    per_type = {
        name: {
            "precision": float(row["precision"]),
            "recall": float(row["recall"]),
            "f1": float(row["f1-score"]),
            "support": int(row["support"]),
        }
        for name, row in report.items()
        if not name.endswith(" avg")
    }
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    macro = report.get("macro avg", {"f1-score": 0.0})
    return {
        "entity_precision": float(micro["precision"]),
        "entity_recall": float(micro["recall"]),
        "entity_f1": float(micro["f1-score"]),
        "entity_macro_f1": float(macro["f1-score"]),
        "per_type": per_type,
    }


def invalid_sentences(pred: Sequence[Sequence[str]], scheme: str) -> int:
    """Predicted sentences with at least one move the scheme forbids (each costs strict entities)."""
    return sum(invalid_transitions(tags, scheme) > 0 for tags in pred)


def score(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str) -> dict[str, object]:
    """Token and entity scores and the invalid predicted sentences, in one flat dict (per_type nested)."""
    return {
        **token_scores(gold, pred),
        **entity_scores(gold, pred, scheme),
        "invalid_sentences": invalid_sentences(pred, scheme),
    }


def format_per_type(per_type: dict[str, dict[str, float]]) -> str:
    """A small aligned table of per-type entity scores."""
    lines = [f"{'type':<8} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}"]
    for name in sorted(per_type):
        row = per_type[name]
        lines.append(f"{name:<8} {row['precision']:>9.4f} {row['recall']:>7.4f} {row['f1']:>7.4f} {row['support']:>8d}")
    return "\n".join(lines)
