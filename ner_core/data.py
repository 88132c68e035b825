"""CoNLL corpus reading and validation, the character vocabulary, and length-bucketed batches.

Data flows one way: files -> Sentence -> (Vocab, TagSet) -> EncodedSplit -> Batch.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import CorpusError, UserError
from .tags import TagSet, detect_scheme, invalid_transitions, parse_tag

SPLITS = ("train", "dev", "test")
DEFAULT_DATA_DIR = Path("data/chisiec")
_SEPARATOR = re.compile(r"[ \t]+")  # ASCII only: U+3000 is a character in classical Chinese text


@dataclass(frozen=True)
class Sentence:
    """One sentence: its characters, their tags, and the line it starts on (for messages)."""

    chars: tuple[str, ...]
    tags: tuple[str, ...]
    line: int = 0

    def __len__(self) -> int:
        return len(self.chars)


def read_conll(path: str | Path) -> list[Sentence]:
    """Read a two-column CoNLL file (character, tag), strictly.

    Tolerates a UTF-8 BOM, CRLF line ends, runs of blank lines and a missing final newline.
    Raises CorpusError("FILE:LINE: reason") for anything else that is wrong.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CorpusError(f"{path}: cannot read ({err.strerror})") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    sentences: list[Sentence] = []
    chars: list[str] = []
    tags: list[str] = []
    start = 0
    for number, line_bytes in enumerate(raw.split(b"\n"), start=1):
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CorpusError(
                f"{path}:{number}: not UTF-8 text (byte 0x{line_bytes[err.start]:02x} at column {err.start + 1})"
            ) from None
        line = line.rstrip("\r")
        if not line.strip(" \t"):
            if chars:
                sentences.append(Sentence(tuple(chars), tuple(tags), start))
                chars, tags = [], []
            continue
        columns = _SEPARATOR.split(line.strip(" \t"))
        if len(columns) != 2:
            raise CorpusError(f"{path}:{number}: expected 2 columns (character and tag), found {len(columns)}")
        char, tag = columns
        try:
            parse_tag(tag)
        except ValueError as err:
            raise CorpusError(f"{path}:{number}: {err}") from None
        if not chars:
            start = number
        chars.append(char)
        tags.append(tag)
    if chars:
        sentences.append(Sentence(tuple(chars), tuple(tags), start))
    if not sentences:
        raise CorpusError(f"{path}:1: no sentences (the split is empty)")
    return sentences


@dataclass
class Corpus:
    """The splits of one corpus, validated against each other."""

    directory: Path
    train: list[Sentence]
    dev: list[Sentence]
    test: list[Sentence] | None
    tagset: TagSet
    invalid: dict[str, int] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        return self.tagset.scheme

    def with_dev_in_train(self) -> Corpus:
        """Train on train + dev, no dev split left: for a final fit once dev has chosen everything."""
        return dataclasses.replace(self, train=[*self.train, *self.dev], dev=[])

    def summary(self) -> str:
        """A short human description: sizes, scheme, types, invalid transitions."""
        parts = [
            f"{name} {len(s):,} sentences / {sum(map(len, s)):,} chars"
            for name, s in (("train", self.train), ("dev", self.dev), ("test", self.test))
            if s
        ]
        text = f"{self.directory}: " + ", ".join(parts)
        text += f"; {self.scheme}, {len(self.tagset)} tags, types {' '.join(self.tagset.types)}"
        bad = {k: v for k, v in self.invalid.items() if v}
        if bad:
            text += "; invalid tag transitions (kept): " + ", ".join(f"{k} {v}" for k, v in bad.items())
        return text


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """--data-dir, else $NER_DATA_DIR, else data/chisiec."""
    if data_dir:
        return Path(data_dir)
    if os.environ.get("NER_DATA_DIR"):
        return Path(os.environ["NER_DATA_DIR"])
    return DEFAULT_DATA_DIR


def load_corpus(data_dir: str | Path | None = None, with_test: bool = False) -> Corpus:
    """Read train.txt and dev.txt (and test.txt only when asked) from a folder and validate them.

    The tag set comes from the training split; a dev/test tag never seen in training is an error.
    """
    directory = resolve_data_dir(data_dir)
    if not directory.is_dir():
        raise UserError(
            f"{directory}: no such corpus folder (give --data-dir or set NER_DATA_DIR, "
            "or run: python -m ner_core.datasets fetch chisiec)"
        )
    splits: dict[str, list[Sentence] | None] = {}
    for name in SPLITS:
        path = directory / f"{name}.txt"
        if name == "test" and not with_test:
            splits[name] = None
            continue
        if not path.is_file():
            raise UserError(f"{path}: missing (a corpus folder holds train.txt, dev.txt and test.txt)")
        splits[name] = read_conll(path)
    train = splits["train"]
    assert train is not None
    tagset = TagSet.from_tags(t for s in train for t in s.tags)
    known = set(tagset.tags)
    for name in ("dev", "test"):
        sentences = splits[name]
        if not sentences:
            continue
        first_seen: dict[str, int] = {}
        for sentence in sentences:
            for offset, tag in enumerate(sentence.tags):
                if tag not in known and tag not in first_seen:
                    first_seen[tag] = sentence.line + offset
        if first_seen:
            where = min(first_seen.values())
            raise CorpusError(
                f"{directory / (name + '.txt')}:{where}: tag(s) never seen in training: "
                + ", ".join(sorted(first_seen))
            )
        if detect_scheme(t for s in sentences for t in s.tags) == "BIOES" and tagset.scheme == "BIO":
            raise CorpusError(f"{directory / (name + '.txt')}:1: uses BIOES tags but train.txt is BIO")
    invalid = {
        name: sum(invalid_transitions(s.tags, tagset.scheme) for s in sentences)
        for name, sentences in splits.items()
        if sentences
    }
    return Corpus(directory, train, splits["dev"] or [], splits["test"], tagset, invalid)


# A bigram seen fewer times in training is <UNK>: a bigram seen once has an embedding fitted to one
# context, which dev measured as no better than none (docs/measurements.md, Character bigrams).
BIGRAM_MIN_COUNT = 2
END = "</s>"  # what follows a sentence's last character in its bigram


def bigrams_of(chars: Sequence[str]) -> list[str]:
    """Each character with the one after it (the last with END): as many bigrams as characters."""
    chars = list(chars)
    return [a + b for a, b in zip(chars, [*chars[1:], END])]


class Vocab:
    """Characters to ids: 0 is <PAD>, 1 is <UNK>, then characters in order of first appearance.

    With ``bigrams`` (a table laid out the same way), each position also gets the id of its
    character's bigram with the next one, and ``encode`` returns [character id, bigram id] pairs.
    """

    PAD = "<PAD>"
    UNK = "<UNK>"

    def __init__(self, itos: Sequence[str], bigrams: Sequence[str] | None = None):
        for table in (itos, bigrams or (self.PAD, self.UNK)):
            if list(table[:2]) != [self.PAD, self.UNK]:
                raise ValueError("a vocabulary starts with <PAD>, <UNK>")
        self.itos = list(itos)
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.bigrams = list(bigrams) if bigrams is not None else None
        self.bigram_ids = {b: i for i, b in enumerate(self.bigrams or ())}

    @classmethod
    def build(cls, sentences: Iterable[Sentence], extra: Iterable[str] = (), bigrams: bool = False) -> Vocab:
        """From the training split only (plus e.g. the pretrained file's characters); with
        ``bigrams``, also the bigrams seen at least BIGRAM_MIN_COUNT times there."""
        sentences = list(sentences)
        counter: Counter[str] = Counter()
        for sentence in sentences:
            counter.update(sentence.chars)
        counter.update(extra)
        table = None
        if bigrams:
            seen = Counter(b for sentence in sentences for b in bigrams_of(sentence.chars))
            table = [cls.PAD, cls.UNK, *(b for b, n in seen.items() if n >= BIGRAM_MIN_COUNT)]
        return cls([cls.PAD, cls.UNK, *counter], table)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    @property
    def n_bigrams(self) -> int:
        """Rows of the bigram table (0 without one)."""
        return len(self.bigrams or ())

    def encode(self, chars: Sequence[str]) -> list[int] | list[list[int]]:
        """Character ids; with a bigram table, [character id, bigram id] per position."""
        ids = [self.stoi.get(c, 1) for c in chars]
        if self.bigrams is None:
            return ids
        return [[i, self.bigram_ids.get(b, 1)] for i, b in zip(ids, bigrams_of(chars))]

    def __len__(self) -> int:
        return len(self.itos)


@dataclass
class Batch:
    """Padded tensors for a group of sentences; ``index`` maps rows back to the split's order."""

    tokens: torch.Tensor  # [batch, time] character ids, or [batch, time, 2] with bigram ids (long)
    tags: torch.Tensor  # [batch, time] long (0 at padding)
    mask: torch.Tensor  # [batch, time] bool
    lengths: torch.Tensor  # [batch] long, always on the CPU (host-side bookkeeping needs no device sync)
    index: list[int]

    @property
    def real_tokens(self) -> int:
        return int(self.lengths.sum())

    def to(self, device: str | torch.device) -> Batch:
        """The same batch with its tensors on ``device`` (lengths stay on the CPU)."""
        if torch.device(device).type == "cpu":
            return self
        move = {"device": device, "non_blocking": True}
        return Batch(self.tokens.to(**move), self.tags.to(**move), self.mask.to(**move), self.lengths, self.index)


class EncodedSplit:
    """A split turned into id tensors once, so that epochs only pad and stack."""

    def __init__(self, sentences: Sequence[Sentence], vocab: Vocab, tagset: TagSet | None):
        tag_ids = tagset.index() if tagset else {}
        self.tokens = [torch.tensor(vocab.encode(s.chars), dtype=torch.long) for s in sentences]
        self.tags = [torch.tensor([tag_ids.get(t, 0) for t in s.tags], dtype=torch.long) for s in sentences]
        self.lengths = torch.tensor([len(s) for s in sentences], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.tokens)

    def batch(self, index: Sequence[int]) -> Batch:
        index = list(index)
        tokens = torch.nn.utils.rnn.pad_sequence([self.tokens[i] for i in index], batch_first=True)
        tags = torch.nn.utils.rnn.pad_sequence([self.tags[i] for i in index], batch_first=True)
        lengths = self.lengths[index]
        mask = torch.arange(tokens.size(1)).unsqueeze(0) < lengths.unsqueeze(1)
        return Batch(tokens, tags, mask, lengths, index)

    def bucketed(
        self, batch_size: int, generator: torch.Generator | None = None, batch_chars: int = 0
    ) -> list[list[int]]:
        """Group sentences of similar length into batches; with a generator, shuffle.

        Shuffling permutes sentences before a stable sort by length (so ties change places
        every epoch) and then the order of the batches: every batch is near-homogeneous in
        length, and the model still sees batches in a new order each epoch.

        ``batch_chars`` (0: no cap) bounds a batch's padded characters, its longest sentence
        times its sentences: a group of ``batch_size`` that would hold more is cut into several
        (a sentence longer than the cap goes alone). Memory grows with padded characters, not
        sentences. Groups under the cap stay as they are, and the cut draws nothing random: the
        same generator gives the same batches as without a cap wherever none is reached.
        """
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        order = order[torch.sort(self.lengths[order], stable=True, descending=True).indices]
        groups = [order[i : i + batch_size].tolist() for i in range(0, n, batch_size)]
        if batch_chars:
            groups = [part for group in groups for part in self._cut(group, batch_chars)]
        if generator is not None:
            groups = [groups[i] for i in torch.randperm(len(groups), generator=generator).tolist()]
        return groups

    def _cut(self, group: list[int], batch_chars: int) -> list[list[int]]:
        """A group sorted longest first, in consecutive runs of at most ``batch_chars`` padded
        characters: each run's first sentence is its longest, so it holds cap // that length."""
        parts = []
        start = 0
        while start < len(group):
            rows = max(1, batch_chars // int(self.lengths[group[start]]))
            parts.append(group[start : start + rows])
            start += rows
        return parts

    def random_batches(self, batch_size: int, generator: torch.Generator) -> list[list[int]]:
        """The notebook's batching (shuffled, any lengths together): kept for comparison."""
        order = torch.randperm(len(self), generator=generator).tolist()
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def padding_fraction(self, groups: Iterable[Sequence[int]]) -> float:
        """Share of padded positions over all positions of the given batches."""
        total = real = 0
        for group in groups:
            lengths = self.lengths[list(group)]
            total += int(lengths.max()) * len(group)
            real += int(lengths.sum())
        return 1.0 - real / total if total else 0.0
