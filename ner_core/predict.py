"""Tag raw text with a saved model: ``python -m ner_core.predict MODEL_DIR [FILE]``.

One sentence per line; whitespace is not tagged (offsets still refer to the line as given).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

from .data import EncodedSplit, Sentence
from .errors import UserError
from .model import with_entity_bias
from .runtime import add_runtime_arguments, fallback, runtime_from_args
from .saving import SavedModel, load_model
from .tags import spans
from .train import predict_ids


def load_placed(directory: str | Path, args: argparse.Namespace) -> SavedModel:
    """Load a saved model onto the runtime the command line asks for; with ``--precision auto``, in the
    precision it was trained in where this machine can (else float32, with a note on stderr)."""
    runtime = runtime_from_args(args)
    saved = load_model(directory)
    if args.precision == "auto":
        runtime, note = fallback(saved.trained_precision, runtime, "this model was trained")
        if note:
            print(note, file=sys.stderr)
    saved.model.place(runtime)
    return saved


def tag_lines(saved: SavedModel, lines: list[str]) -> list[tuple[list[int], list[str]]]:
    """For each line: the offsets of its non-space characters and their predicted tags."""
    positions = [[i for i, c in enumerate(line) if not c.isspace()] for line in lines]
    sentences = [Sentence(tuple(line[i] for i in pos), ()) for line, pos in zip(lines, positions)]
    keep = [i for i, s in enumerate(sentences) if len(s)]
    encoded = EncodedSplit([sentences[i] for i in keep], saved.vocab, None)
    predicted = predict_ids(saved.model, encoded) if keep else []
    tags: list[list[str]] = [[] for _ in lines]
    for i, ids in zip(keep, predicted):
        tags[i] = [saved.tagset.tags[t] for t in ids]
    return list(zip(positions, tags))


def entities(line: str, positions: list[int], tags: list[str], scheme: str) -> list[dict[str, object]]:
    """Entity spans with offsets into ``line`` (end exclusive) and their text."""
    found = []
    for span in spans(tags, scheme):
        start, end = positions[span.start], positions[span.end - 1] + 1
        found.append({"type": span.type, "start": start, "end": end, "text": line[start:end]})
    return found


def write_jsonl(saved: SavedModel, lines: list[str], out) -> None:
    for line, (positions, tags) in zip(lines, tag_lines(saved, lines)):
        record = {"text": line, "entities": entities(line, positions, tags, saved.tagset.scheme)}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_conll(saved: SavedModel, lines: list[str], out) -> None:
    for line, (positions, tags) in zip(lines, tag_lines(saved, lines)):
        for i, tag in zip(positions, tags):
            out.write(f"{line[i]}\t{tag}\n")
        out.write("\n")


def read_lines(source: Iterable[str]) -> list[str]:
    return [line.rstrip("\r\n") for line in source]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ner_core.predict",
        description="Tag raw text (one sentence per line) with a saved model.",
        epilog="Example: echo '太祖遣使至洛陽' | python -m ner_core.predict results/model",
    )
    parser.add_argument("model_dir", help="a folder written by ner_core.train or study.best")
    parser.add_argument("file", nargs="?", help="UTF-8 text, one sentence per line (default: standard input)")
    parser.add_argument(
        "--format",
        choices=("jsonl", "conll"),
        default="jsonl",
        help="jsonl: one JSON object of entity spans per line (default); conll: character<TAB>tag",
    )
    parser.add_argument(
        "--entity-bias",
        type=float,
        metavar="B",
        help="decode with this bias toward entity tags instead of the model's own (its config.json's "
        "entity_bias, which study.best chose on dev): higher finds more entities, less sure ones",
    )
    add_runtime_arguments(parser)
    args = parser.parse_args(argv)
    try:
        saved = load_placed(args.model_dir, args)
        if args.entity_bias is not None:
            with_entity_bias(saved.model, args.entity_bias)
        if args.file:
            try:
                lines = read_lines(Path(args.file).read_text(encoding="utf-8-sig").splitlines())
            except OSError as err:
                raise UserError(f"{args.file}: cannot read ({err.strerror})") from None
            except UnicodeDecodeError as err:
                raise UserError(f"{args.file}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        else:
            lines = read_lines(sys.stdin)
        (write_conll if args.format == "conll" else write_jsonl)(saved, lines, sys.stdout)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
