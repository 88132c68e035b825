"""``python -m ner_core.memory``: peak resident memory of training on a corpus's longest sentences.

Trains a few batches of the LONGEST sentences of the train split (the batches that bucketing
forms first) at one shape, with the study's fixed settings, on the CPU; then tags dev once, since
evaluation batches long sentences too. Prints the process's peak resident memory (ru_maxrss) after
each stage, the most padded characters in one batch, and the seconds per training batch and per
dev pass. Peak resident memory is per process: measure each shape in a process of its own.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch

from .config import TrainConfig, add_config_arguments, config_from_args
from .data import EncodedSplit, load_corpus
from .errors import UserError
from .runtime import decide_runtime
from .train import EVAL_BATCH_CHARS, EVAL_BATCH_SIZE, predict_ids, prepare, train_epoch

# The study's fixed settings (study.stored.STUDY_BASE; ner_core cannot import the study, and
# tests/test_train.py holds the two equal). Memory depends on the shape and on bigram_dim.
STUDY_FIXED = TrainConfig(max_epochs=20, patience=5, embed_dropout=0.4, bigram_dim=50)
# The largest shape of the study's CPU space (study.space): the most memory a trial can take.
LARGEST = {"hidden_size": 256, "num_layers": 2, "batch_size": 128}


def peak_mib() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def padded(split: EncodedSplit, group: list[int]) -> int:
    """Positions of a batch once padded: its longest sentence times its sentences."""
    return int(split.lengths[group].max()) * len(group)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ner_core.memory",
        description="Peak resident memory (and time) of training a few batches of a corpus's longest "
        "sentences, then tagging its dev split once, at one shape with the study's fixed settings, on the CPU. "
        "Run each shape as a process of its own: the peak is the process's.",
        epilog="Example: python -m ner_core.memory --data-dir ../shared/cclue "
        "--hidden-size 256 --num-layers 2 --batch-size 128",
    )
    parser.add_argument(
        "--data-dir", help="corpus folder with train.txt and dev.txt (default: $NER_DATA_DIR, else data/chisiec)"
    )
    parser.add_argument(
        "--batches", type=int, default=3, help="training batches of the longest sentences to run (default 3)"
    )
    parser.add_argument(
        "--eval-batch-chars",
        type=int,
        default=EVAL_BATCH_CHARS,
        help=f"padded characters per dev batch at most (default {EVAL_BATCH_CHARS}, as training's evaluation; "
        "0: no cap, as before the cap)",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice, usually all cores)")
    add_config_arguments(
        parser,
        title="training configuration (defaults: the study's fixed settings at its largest CPU shape)",
        defaults=STUDY_FIXED.replace(**LARGEST),
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.batches < 1:
            raise UserError(f"--batches must be at least 1, got {args.batches}")
        if args.eval_batch_chars < 0:
            raise UserError(f"--eval-batch-chars must be >= 0 (0: no cap), got {args.eval_batch_chars}")
        config = config_from_args(args, STUDY_FIXED.replace(**LARGEST))
        runtime = decide_runtime("cpu", args.threads)
        corpus = load_corpus(args.data_dir)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    model, vocab, _ = prepare(config, corpus, runtime, None, None)
    train = EncodedSplit(corpus.train, vocab, corpus.tagset)
    dev = EncodedSplit(corpus.dev, vocab, corpus.tagset)
    # No generator: the groups come longest first, so the first ones are the largest.
    groups = train.bucketed(config.batch_size, batch_chars=config.batch_chars)[: args.batches]
    print(corpus.summary())
    print(
        f"shape: hidden {config.hidden_size} x {config.num_layers} layer(s), batch {config.batch_size} sentences, "
        f"at most {config.batch_chars or 'any number of'} padded characters per batch; {runtime}"
    )
    print(f"loaded: peak RSS {peak_mib():,.0f} MiB")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start = time.perf_counter()
    train_epoch(model, optimizer, train, groups, config, runtime.device, 1, progress=False)
    train_seconds = time.perf_counter() - start
    sizes = ", ".join(f"{len(g)}x{int(train.lengths[g].max())}" for g in groups)
    print(
        f"trained {len(groups)} batch(es) ({sizes} sentences x characters): "
        f"{train_seconds / len(groups):.2f} s/batch, peak {max(padded(train, g) for g in groups):,} padded "
        f"characters per batch, peak RSS {peak_mib():,.0f} MiB"
    )
    start = time.perf_counter()
    predict_ids(model, dev, batch_chars=args.eval_batch_chars)
    dev_groups = dev.bucketed(EVAL_BATCH_SIZE, batch_chars=args.eval_batch_chars)
    print(
        f"tagged dev once ({len(dev):,} sentences in {len(dev_groups)} batch(es)): "
        f"{time.perf_counter() - start:.2f} s, peak {max(padded(dev, g) for g in dev_groups):,} padded "
        f"characters per batch, peak RSS {peak_mib():,.0f} MiB"
    )
    print(f"peak RSS {peak_mib():,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
