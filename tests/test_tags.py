import itertools

import pytest

from ner_core.tags import (
    Span,
    TagSet,
    allowed_move,
    allowed_transitions,
    detect_scheme,
    invalid_transitions,
    parse_tag,
    spans,
)


def test_parse_tag_accepts_the_five_forms_and_rejects_others():
    assert parse_tag("O") == ("O", None)
    assert parse_tag("B-PER") == ("B", "PER")
    assert parse_tag("S-BOOK") == ("S", "BOOK")
    for bad in ("X-PER", "B-", "B_PER", "o", "PER", "B-PER X"):
        with pytest.raises(ValueError):
            parse_tag(bad)


def test_scheme_detection():
    assert detect_scheme(["O", "B-PER", "I-PER"]) == "BIO"
    assert detect_scheme(["O", "B-PER", "E-PER"]) == "BIOES"
    assert detect_scheme(["O", "S-LOC"]) == "BIOES"


def test_bioes_spans_are_strict():
    tags = ["S-PER", "B-LOC", "I-LOC", "E-LOC", "O", "B-PER", "O", "I-PER", "E-PER", "B-PER", "E-LOC"]
    assert spans(tags, "BIOES") == [Span("PER", 0, 1), Span("LOC", 1, 4)]


def test_bio_spans_are_strict():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "B-LOC", "I-PER", "B-PER"]
    assert spans(tags, "BIO") == [Span("PER", 0, 2), Span("LOC", 4, 5), Span("LOC", 5, 6), Span("PER", 7, 8)]


def test_invalid_transitions_are_counted():
    assert invalid_transitions(["B-PER", "E-PER", "S-LOC", "O"], "BIOES") == 0
    assert invalid_transitions(["O", "I-PER", "E-PER"], "BIOES") == 1  # the I-PER after O
    assert invalid_transitions(["B-PER", "O"], "BIOES") == 1  # never closed
    assert invalid_transitions(["E-LOC"], "BIOES") == 1
    assert invalid_transitions(["B-PER", "I-LOC"], "BIO") == 1
    assert invalid_transitions(["B-PER", "I-PER", "O", "B-LOC"], "BIO") == 0


def test_tagset_order_and_types():
    tagset = TagSet.from_tags(["S-PER", "O", "E-LOC", "B-LOC", "B-PER", "E-PER", "I-LOC"])
    assert tagset.scheme == "BIOES"
    assert tagset.tags == ("O", "B-LOC", "I-LOC", "E-LOC", "B-PER", "E-PER", "S-PER")
    assert tagset.types == ["LOC", "PER"]


def test_allowed_moves_by_scheme():
    assert allowed_move("B-PER", "I-PER", "BIO") and allowed_move("I-PER", "E-PER", "BIOES")
    assert not allowed_move("O", "I-PER", "BIO") and not allowed_move("B-PER", "I-LOC", "BIO")
    assert allowed_move("B-PER", "O", "BIO") and not allowed_move("B-PER", "O", "BIOES")
    assert not allowed_move("I-PER", "S-PER", "BIOES") and allowed_move("E-PER", "B-LOC", "BIOES")


@pytest.mark.parametrize(
    "tagset",
    [
        TagSet("BIO", ("O", "B-A", "I-A", "B-B", "I-B")),
        TagSet("BIOES", ("O", "B-A", "I-A", "E-A", "S-A", "B-B", "E-B")),
    ],
    ids=["BIO", "BIOES"],
)
def test_allowed_transitions_accept_exactly_the_valid_sequences(tagset):
    allowed = allowed_transitions(tagset)
    for length in range(1, 5):
        for path in itertools.product(range(len(tagset)), repeat=length):
            moves = [allowed.start[path[0]], allowed.end[path[-1]]]
            moves += [allowed.transitions[a][b] for a, b in zip(path, path[1:])]
            assert all(moves) == (invalid_transitions([tagset.tags[i] for i in path], tagset.scheme) == 0)


def test_allowed_start_and_end_tags():
    bioes = allowed_transitions(TagSet("BIOES", ("O", "B-A", "I-A", "E-A", "S-A")))
    assert bioes.start == (True, True, False, False, True)
    assert bioes.end == (True, False, False, True, True)
    bio = allowed_transitions(TagSet("BIO", ("O", "B-A", "I-A")))
    assert bio.start == (True, True, False) and bio.end == (True, True, True)
