import random

import pytest
from sklearn.metrics import classification_report

from ner_core.metrics import entity_scores, invalid_sentences, score, token_scores
from ner_core.tags import spans

GOLD = [["O", "B-PER", "E-PER", "O"], ["S-LOC"]]
PRED = [["O", "B-PER", "O", "O"], ["S-LOC"]]


def test_token_scores_by_hand():
    # O: P 2/3 R 1 F1 .8; B-PER 1; E-PER 0 (never predicted); S-LOC 1 -> macro .7; accuracy 4/5
    scores = token_scores(GOLD, PRED)
    assert scores["token_macro_f1"] == pytest.approx(0.7)
    assert scores["token_accuracy"] == pytest.approx(0.8)


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
