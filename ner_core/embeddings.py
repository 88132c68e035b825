"""Pretrained character vectors in word2vec text format (replaces the notebook's torchtext use)."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import UserError


def read_word2vec(path: str | Path, dim: int) -> dict[str, torch.Tensor]:
    """Read ``token v1 ... vD`` lines; a first line of two integers (count, size) is optional.

    Raises UserError("FILE:LINE: ...") on a dimension other than ``dim`` or a non-number.
    """
    path = Path(path)
    vectors: dict[str, torch.Tensor] = {}
    try:
        handle = path.open(encoding="utf-8", errors="strict")
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                fields = line.rstrip("\r\n").split(" ")
                fields = [f for f in fields if f]
                if not fields:
                    continue
                if number == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
                    if int(fields[1]) != dim:
                        raise UserError(f"{path}:1: vectors have {fields[1]} dimensions but --embed-dim is {dim}")
                    continue
                if len(fields) - 1 != dim:
                    raise UserError(f"{path}:{number}: vector has {len(fields) - 1} values but --embed-dim is {dim}")
                try:
                    values = [float(v) for v in fields[1:]]
                except ValueError:
                    raise UserError(f"{path}:{number}: a vector value is not a number") from None
                vectors.setdefault(fields[0], torch.tensor(values))
        except UnicodeDecodeError:
            raise UserError(f"{path}:{number + 1}: not UTF-8 text") from None
    if not vectors:
        raise UserError(f"{path}:1: no vectors found")
    return vectors


def embedding_matrix(
    itos: list[str], vectors: dict[str, torch.Tensor], dim: int, generator: torch.Generator
) -> tuple[torch.Tensor, int]:
    """Rows for each vocabulary entry: the pretrained vector where known, else N(0, 1); <PAD> zero.

    Returns the matrix and how many vocabulary characters had a pretrained vector.
    """
    matrix = torch.randn(len(itos), dim, generator=generator)
    found = 0
    for i, char in enumerate(itos):
        if char in vectors:
            matrix[i] = vectors[char]
            found += 1
    matrix[0] = 0.0
    return matrix, found
