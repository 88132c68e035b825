"""Small synthetic corpora for tests and benchmarks: learnable, written in seconds, never downloaded."""

from __future__ import annotations

import random
from pathlib import Path

PEOPLE = "張王李趙劉"
PLACES = "洛陽長安蜀吳"
FILLER = "之乎者也而曰於以其為"


def sentence(rng: random.Random, scheme: str = "BIOES", max_len: int = 8) -> list[tuple[str, str]]:
    """A learnable sentence: names from PEOPLE, places from PLACES, always separated by filler."""
    pairs: list[tuple[str, str]] = [(rng.choice(FILLER), "O")]
    for _ in range(rng.randint(1, max_len)):
        roll = rng.random()
        if roll < 0.5:
            pairs.append((rng.choice(FILLER), "O"))
            continue
        kind, alphabet = ("PER", PEOPLE) if roll < 0.75 else ("LOC", PLACES)
        n = rng.choice([1, 2, 3])
        chars = [rng.choice(alphabet) for _ in range(n)]
        if scheme == "BIO":
            tags = [f"B-{kind}"] + [f"I-{kind}"] * (n - 1)
        elif n == 1:
            tags = [f"S-{kind}"]
        else:
            tags = [f"B-{kind}"] + [f"I-{kind}"] * (n - 2) + [f"E-{kind}"]
        pairs += list(zip(chars, tags))
        pairs.append((rng.choice(FILLER), "O"))
    return pairs


def write_split(path: Path, sentences: list[list[tuple[str, str]]]) -> None:
    path.write_text("".join("".join(f"{c}\t{t}\n" for c, t in s) + "\n" for s in sentences), encoding="utf-8")


def make_corpus(
    folder: Path, sizes: tuple[int, int, int] = (300, 60, 60), seed: int = 0, scheme: str = "BIOES", max_len: int = 8
) -> Path:
    """train/dev/test.txt of synthetic sentences in ``folder``."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in zip(("train", "dev", "test"), sizes):
        write_split(folder / f"{name}.txt", [sentence(rng, scheme, max_len) for _ in range(n)])
    return folder
