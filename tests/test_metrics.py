import random

import pytest
from sklearn.metrics import classification_report

from ner_core.metrics import entity_scores, invalid_sentences, score, token_scores, token_spread_by_tag
from ner_core.tags import spans

GOLD = [["O", "B-PER", "E-PER", "O"], ["S-LOC"]]
PRED = [["O", "B-PER", "O", "O"], ["S-LOC"]]


def test_token_scores_by_hand():
    # O: P 2/3 R 1 F1 .8; B-PER 1; E-PER 0 (never predicted); S-LOC 1 -> macro .7; accuracy 4/5
    scores = token_scores(GOLD, PRED)
    assert scores["token_macro_f1"] == pytest.approx(0.7)
    assert scores["token_accuracy"] == pytest.approx(0.8)


def test_per_tag_f1_and_support_are_what_macro_f1_averages():
    scores = token_scores(GOLD, PRED)
    assert scores["per_tag"] == {
        "O": {"f1": pytest.approx(0.8), "support": 2},
        "B-PER": {"f1": 1.0, "support": 1},
        "E-PER": {"f1": 0.0, "support": 1},
        "S-LOC": {"f1": 1.0, "support": 1},
    }


def test_the_token_spread_is_shared_out_to_the_tags_that_made_it():
    # one run finds E-PER: its F1 goes 0 -> 1, and O's 0.8 -> 1 (no longer predicted there), so the
    # spread is theirs in the ratio 1 : 0.2, and B-PER and S-LOC have no part in it
    other = [["O", "B-PER", "E-PER", "O"], ["S-LOC"]]
    runs = [token_scores(GOLD, pred)["per_tag"] for pred in (PRED, other, PRED)]
    rows = token_spread_by_tag(runs)
    assert [r["tag"] for r in rows[:2]] == ["E-PER", "O"]
    assert [r["share"] for r in rows] == pytest.approx([5 / 6, 1 / 6, 0.0, 0.0])
    assert rows[0]["f1"] == [0.0, 1.0, 0.0] and rows[0]["support"] == 1
    assert token_spread_by_tag(runs[:1]) == [] and token_spread_by_tag([runs[0], runs[0]]) == []


def test_tag_shares_decompose_the_variance_of_the_reported_macro_f1():
    rng = random.Random(3)
    gold = random_tags(rng, "BIOES", 40)
    preds = [
        [[t if rng.random() < 0.75 else rng.choice(["O", "S-A", "B-B"]) for t in s] for s in gold] for _ in range(4)
    ]
    scores = [token_scores(gold, pred) for pred in preds]
    rows = token_spread_by_tag([s["per_tag"] for s in scores])
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert [r["share"] for r in rows] == sorted((r["share"] for r in rows), reverse=True)
    # brute force: each tag's term is its F1 over the run's tag count, and the terms sum to the macro-F1 reported
    macros = [s["token_macro_f1"] for s in scores]
    for row in rows:
        terms = [f / len(s["per_tag"]) if row["tag"] in s["per_tag"] else 0.0 for f, s in zip(row["f1"], scores)]
        mean_t, mean_m = sum(terms) / 4, sum(macros) / 4
        covariance = sum((t - mean_t) * (m - mean_m) for t, m in zip(terms, macros)) / 4
        variance = sum((m - mean_m) ** 2 for m in macros) / 4
        assert row["share"] == pytest.approx(covariance / variance)


def test_entity_scores_by_hand_are_strict():
    # gold PER[1,3) and LOC; predicted B-PER without E-PER is no entity in strict mode
    scores = entity_scores(GOLD, PRED, "BIOES")
    assert scores["entity_precision"] == pytest.approx(1.0)
    assert scores["entity_recall"] == pytest.approx(0.5)
    assert scores["entity_f1"] == pytest.approx(2 / 3)
    assert scores["entity_macro_f1"] == pytest.approx(0.5)
    assert scores["per_type"]["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert scores["per_type"]["LOC"]["f1"] == 1.0


def test_invalid_sentences_are_counted_once_each():
    pred = [["B-LOC", "E-LOC", "O", "B-LOC"], ["O", "I-PER", "O", "E-PER"], ["S-LOC", "O"]]
    assert invalid_sentences(pred, "BIOES") == 2
    assert score([["O"] * 4, ["O"] * 4, ["O"] * 2], pred, "BIOES")["invalid_sentences"] == 2
    assert invalid_sentences([["B-LOC", "O", "I-LOC"]], "BIO") == 1


def random_tags(rng, scheme, n):
    prefixes = "BI" if scheme == "BIO" else "BIES"
    return [
        ["O" if rng.random() < 0.4 else f"{rng.choice(prefixes)}-{rng.choice('AB')}" for _ in range(rng.randint(1, 12))]
        for _ in range(n)
    ]


def test_token_macro_f1_is_the_notebooks_number():
    """The notebook ran sklearn over integer ids of flattened real positions."""
    rng = random.Random(1)
    gold = random_tags(rng, "BIOES", 50)
    pred = [[t if rng.random() < 0.7 else rng.choice(["O", "B-A", "E-B"]) for t in s] for s in gold]
    ids = {t: i for i, t in enumerate(sorted({t for s in gold + pred for t in s}))}
    notebook = classification_report(
        [ids[t] for s in gold for t in s], [ids[t] for s in pred for t in s], zero_division=0, output_dict=True
    )
    assert token_scores(gold, pred)["token_macro_f1"] == pytest.approx(notebook["macro avg"]["f1-score"])


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_seqeval_strict_agrees_with_our_span_rules(scheme):
    rng = random.Random(2)
    for _ in range(20):
        gold, pred = random_tags(rng, scheme, 30), random_tags(rng, scheme, 30)
        pred = [p[: len(g)] + ["O"] * (len(g) - len(p)) for g, p in zip(gold, pred)]
        gold_spans = {(i, s) for i, tags in enumerate(gold) for s in spans(tags, scheme)}
        pred_spans = {(i, s) for i, tags in enumerate(pred) for s in spans(tags, scheme)}
        hits = len(gold_spans & pred_spans)
        p = hits / len(pred_spans) if pred_spans else 0.0
        r = hits / len(gold_spans) if gold_spans else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        assert score(gold, pred, scheme)["entity_f1"] == pytest.approx(f1)
