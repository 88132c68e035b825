import subprocess
import sys

import pytest
import torch

from ner_core.data import EncodedSplit, Vocab, bigrams_of, load_corpus, read_conll
from ner_core.errors import CorpusError, UserError
from ner_core.synthetic import make_corpus


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_reader_tolerates_bom_crlf_blank_runs_spaces_and_no_final_newline(tmp_path):
    text = "\ufeff王\tB-PER\r\n莽\tE-PER\r\n曰  O\r\n \t \r\n\r\n\r\n洛 S-LOC"
    sentences = read_conll(write(tmp_path / "a.txt", text))
    assert [s.chars for s in sentences] == [("王", "莽", "曰"), ("洛",)]
    assert [s.tags for s in sentences] == [("B-PER", "E-PER", "O"), ("S-LOC",)]
    assert [s.line for s in sentences] == [1, 7]


def test_fullwidth_space_is_a_character_not_a_separator(tmp_path):
    sentences = read_conll(write(tmp_path / "a.txt", "\u3000\tO\n王\tS-PER\n"))
    assert sentences[0].chars == ("\u3000", "王")


@pytest.mark.parametrize(
    "text, message",
    [
        ("王\tS-PER\n曰\n", "a.txt:2: expected 2 columns (character and tag), found 1"),
        ("王\tS-PER\tX\n", "a.txt:1: expected 2 columns (character and tag), found 3"),
        ("王\tS-PER\n\n曰\tPER\n", "a.txt:3: tag 'PER' is not O, B-X, I-X, E-X or S-X"),
        ("王\tS-PER\n曰\tX-PER\n", "a.txt:2: tag 'X-PER'"),
        ("\n\n  \n", "a.txt:1: no sentences (the split is empty)"),
        ("", "a.txt:1: no sentences"),
    ],
)
def test_reader_errors_name_file_and_line(tmp_path, text, message):
    with pytest.raises(CorpusError) as err:
        read_conll(write(tmp_path / "a.txt", text))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_reader_rejects_bytes_that_are_not_utf8(tmp_path):
    with pytest.raises(CorpusError, match=r"a\.txt:2: not UTF-8 text"):
        read_conll(write(tmp_path / "a.txt", "王\tO\n".encode() + b"\xff\tO\n"))


def test_dev_tags_unseen_in_training_are_named(tmp_path):
    make_corpus(tmp_path, (20, 5, 5))
    with (tmp_path / "dev.txt").open("a", encoding="utf-8") as f:
        f.write("書\tS-BOOK\n經\tS-WORK\n\n")
    with pytest.raises(CorpusError, match=r"dev\.txt:\d+: tag\(s\) never seen in training: S-BOOK, S-WORK"):
        load_corpus(tmp_path)


def test_test_split_is_read_only_when_asked(tmp_path):
    make_corpus(tmp_path, (20, 5, 5))
    write(tmp_path / "test.txt", "broken line with too many columns\n")
    assert load_corpus(tmp_path).test is None
    with pytest.raises(CorpusError, match="test.txt:1"):
        load_corpus(tmp_path, with_test=True)


def test_invalid_transitions_are_reported_not_rejected(tmp_path):
    make_corpus(tmp_path, (20, 5, 5))
    with (tmp_path / "train.txt").open("a", encoding="utf-8") as f:
        f.write("王\tO\n莽\tE-PER\n\n")
    corpus = load_corpus(tmp_path)
    assert corpus.invalid["train"] == 1
    assert "invalid tag transitions (kept): train 1" in corpus.summary()


def test_missing_folder_says_how_to_get_a_corpus(tmp_path, monkeypatch):
    monkeypatch.delenv("NER_DATA_DIR", raising=False)
    with pytest.raises(UserError, match="ner_core.datasets fetch chisiec"):
        load_corpus(tmp_path / "nowhere")
    make_corpus(tmp_path / "env", (5, 2, 2))
    monkeypatch.setenv("NER_DATA_DIR", str(tmp_path / "env"))
    assert load_corpus(None).directory == tmp_path / "env"


def test_vocabulary_comes_from_training_only(tmp_path):
    write(tmp_path / "train.txt", "王\tS-PER\n曰\tO\n\n")
    write(tmp_path / "dev.txt", "漢\tO\n\n")
    corpus = load_corpus(tmp_path)
    vocab = Vocab.build(corpus.train)
    assert vocab.itos == ["<PAD>", "<UNK>", "王", "曰"]
    assert vocab.encode("漢王") == [1, 2]


def test_bigrams_pair_each_character_with_the_next_and_need_two_sightings(tmp_path):
    assert bigrams_of("王曰") == ["王曰", "曰</s>"]
    write(tmp_path / "train.txt", "王\tS-PER\n曰\tO\n\n王\tS-PER\n曰\tO\n\n漢\tO\n\n")
    write(tmp_path / "dev.txt", "漢\tO\n\n")
    corpus = load_corpus(tmp_path)
    vocab = Vocab.build(corpus.train, bigrams=True)
    assert vocab.bigrams == ["<PAD>", "<UNK>", "王曰", "曰</s>"]  # 漢</s> was seen once: <UNK>
    assert vocab.encode("王曰漢") == [[2, 2], [3, 1], [4, 1]]
    assert Vocab.build(corpus.train).encode("王曰") == [2, 3]  # no table: character ids only
    split = EncodedSplit(corpus.train, vocab, corpus.tagset)
    assert split.batch([0, 2]).tokens.tolist() == [[[2, 2], [3, 3]], [[4, 1], [0, 0]]]


def test_bucketed_batches_cover_every_sentence_once_with_little_padding(tmp_path):
    corpus = load_corpus(make_corpus(tmp_path, (400, 5, 5), max_len=20))
    vocab = Vocab.build(corpus.train)
    split = EncodedSplit(corpus.train, vocab, corpus.tagset)
    generator = torch.Generator().manual_seed(0)
    first = split.bucketed(32, generator)
    second = split.bucketed(32, generator)
    assert sorted(i for g in first for i in g) == list(range(400))
    assert first != second  # reshuffled every epoch
    random_padding = split.padding_fraction(split.random_batches(32, torch.Generator().manual_seed(0)))
    assert split.padding_fraction(first) < 0.1 < 0.3 < random_padding
    batch = split.batch(first[0])
    assert batch.mask.sum() == batch.lengths.sum() == batch.real_tokens


def test_cli_error_is_one_line_without_traceback(tmp_path):
    make_corpus(tmp_path, (5, 2, 2))
    write(tmp_path / "train.txt", "王\tS-PER\n曰\tBAD\n")
    proc = subprocess.run(
        [sys.executable, "-m", "ner_core.train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path / 'train.txt'}:2: tag 'BAD' is not O, B-X, I-X, E-X or S-X"
    assert not (tmp_path / "m").exists()


def padded(split, group):
    return int(split.lengths[group].max()) * len(group)


def test_a_char_cap_cuts_over_long_groups_and_keeps_every_sentence_once(tmp_path):
    corpus = load_corpus(make_corpus(tmp_path, (200, 5, 5), max_len=20))
    split = EncodedSplit(corpus.train, Vocab.build(corpus.train), corpus.tagset)
    whole = split.bucketed(32)
    cap = max(padded(split, g) for g in whole) // 3
    cut = split.bucketed(32, batch_chars=cap)
    assert len(cut) > len(whole)
    assert all(padded(split, g) <= cap for g in cut)  # the longest sentence is far shorter than the cap
    # each group cut into consecutive runs, longest first: the runs joined are the group again
    runs = iter(cut)
    for group in whole:
        joined = []
        while len(joined) < len(group):
            joined += next(runs)
        assert joined == group
    shuffled = split.bucketed(32, torch.Generator().manual_seed(0), cap)
    assert sorted(i for g in shuffled for i in g) == list(range(200))
    assert all(padded(split, g) <= cap for g in shuffled)
    assert split.bucketed(32, batch_chars=1) == [[i] for g in whole for i in g]  # too long for any cap: alone


def test_a_char_cap_not_reached_leaves_the_batches_and_the_draws_as_they_were(tmp_path):
    corpus = load_corpus(make_corpus(tmp_path, (200, 5, 5), max_len=20))
    split = EncodedSplit(corpus.train, Vocab.build(corpus.train), corpus.tagset)
    uncapped, capped = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    epochs = [split.bucketed(32, uncapped) for _ in range(3)]
    reached = max(padded(split, g) for epoch in epochs for g in epoch)
    assert [split.bucketed(32, capped, reached) for _ in range(3)] == epochs  # reached, never exceeded
    assert torch.equal(uncapped.get_state(), capped.get_state())  # no extra random draws
    assert split.bucketed(32, torch.Generator().manual_seed(3), reached - 1) != epochs[0]
