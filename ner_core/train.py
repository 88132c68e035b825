"""Train one configuration start to finish: AdamW, cosine schedule, clipping, early stopping.

``fit`` is the library entry point (the study calls it with a per-epoch hook that prunes);
``python -m ner_core.train`` is the command line.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .config import TrainConfig, add_config_arguments, config_from_args
from .data import Corpus, EncodedSplit, Sentence, Vocab, load_corpus
from .embeddings import embedding_matrix, read_word2vec
from .errors import NonFiniteLossError, UserError
from .metrics import OBJECTIVE_KEYS, format_per_type, score
from .model import BiLSTMCRF, count_parameters
from .tags import TagSet, allowed_transitions

EVAL_BATCH_SIZE = 256


@dataclass
class EpochResult:
    """What one epoch produced; handed to the per-epoch hook."""

    epoch: int
    loss: float
    dev: dict[str, Any]
    objective: float
    seconds: float
    train_seconds: float
    tokens_per_s: float
    is_best: bool

    def to_dict(self) -> dict[str, Any]:
        dev = {k: v for k, v in self.dev.items() if k != "per_type"}
        return {
            "epoch": self.epoch,
            "loss": self.loss,
            "objective": self.objective,
            **{f"dev_{k}": v for k, v in dev.items()},
            "seconds": self.seconds,
            "tokens_per_s": self.tokens_per_s,
        }


EpochHook = Callable[[EpochResult], "bool | None"]


@dataclass
class TrainResult:
    """A trained model (best dev state loaded) and how it got there."""

    config: TrainConfig
    model: BiLSTMCRF
    vocab: Vocab
    tagset: TagSet
    history: list[EpochResult]
    best_epoch: int
    best_dev: dict[str, Any]
    stop_reason: str
    seconds: float
    tokens_per_s: float
    padding_fraction: float
    embeddings_found: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best_value(self) -> float:
        return float(self.best_dev[OBJECTIVE_KEYS[self.config.objective]])

    @property
    def n_params(self) -> int:
        return count_parameters(self.model)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(
    config: TrainConfig, vocab: Vocab, tagset: TagSet, vectors: dict[str, torch.Tensor] | None = None
) -> tuple[BiLSTMCRF, int | None]:
    """A fresh model; with pretrained vectors, its embedding starts from them (and is fine-tuned)."""
    model = BiLSTMCRF(config, len(vocab), len(tagset), allowed_transitions(tagset))
    found = None
    if vectors is not None:
        generator = torch.Generator().manual_seed(config.seed)
        matrix, found = embedding_matrix(vocab.itos, vectors, config.embed_dim, generator)
        with torch.no_grad():
            model.embedding.weight.copy_(matrix)
    return model, found


@torch.inference_mode()
def predict_ids(model: BiLSTMCRF, encoded: EncodedSplit, batch_size: int = EVAL_BATCH_SIZE) -> list[list[int]]:
    """Viterbi tag ids for every sentence of a split, in the split's order.

    Length-sorted batches keep padding small; packing and masking make the result the same
    as tagging each sentence alone.
    """
    model.eval()
    out: list[list[int]] = [[] for _ in range(len(encoded))]
    for group in encoded.bucketed(batch_size):
        batch = encoded.batch(group)
        for i, ids in zip(batch.index, model.decode(batch.tokens, batch.mask, batch.lengths)):
            out[i] = ids
    return out


def evaluate(model: BiLSTMCRF, encoded: EncodedSplit, sentences: list[Sentence], tagset: TagSet) -> dict[str, Any]:
    """Token and entity scores of the model on a split."""
    predicted = [[tagset.tags[i] for i in ids] for ids in predict_ids(model, encoded)]
    return score([s.tags for s in sentences], predicted, tagset.scheme)


def fit(
    config: TrainConfig,
    corpus: Corpus,
    *,
    on_epoch: EpochHook | None = None,
    embeddings: str | Path | None = None,
    threads: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``config`` on corpus.train, pick the epoch with the best dev objective.

    ``on_epoch`` is called after every epoch; returning True stops the run (an exception it
    raises, such as optuna.TrialPruned, propagates). Raises NonFiniteLossError on a NaN or
    infinite loss. The same seed on the same machine gives the same numbers.
    """
    if threads:
        torch.set_num_threads(threads)
    seed_everything(config.seed)
    vectors = read_word2vec(embeddings, config.embed_dim) if embeddings else None
    vocab = Vocab.build(corpus.train, extra=vectors or ())
    tagset = corpus.tagset
    model, found = build_model(config, vocab, tagset, vectors)
    if log and vectors is not None:
        log(f"pretrained vectors: {found:,} of {len(vocab) - 2:,} vocabulary characters found in {embeddings}")
    train_set = EncodedSplit(corpus.train, vocab, tagset)
    dev_set = EncodedSplit(corpus.dev, vocab, tagset)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.max_epochs)
    order = torch.Generator().manual_seed(config.seed)
    objective_key = OBJECTIVE_KEYS[config.objective]

    history: list[EpochResult] = []
    best_value, best_epoch, best_state, best_dev = -math.inf, 0, None, {}
    stop_reason, since_best = "max_epochs", 0
    padded = real = 0
    started = time.perf_counter()
    for epoch in range(1, config.max_epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        groups = train_set.bucketed(config.batch_size, order)
        total_loss, tokens = 0.0, 0
        bar = tqdm(groups, desc=f"epoch {epoch}/{config.max_epochs}", leave=False, disable=not progress, unit="batch")
        for step, group in enumerate(bar):
            batch = train_set.batch(group)
            optimizer.zero_grad(set_to_none=True)
            loss = model.loss(batch.tokens, batch.tags, batch.mask, batch.lengths)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"training loss became {loss.item()} at epoch {epoch}, batch {step + 1} "
                    f"(lr {config.lr:g}; a lower --lr usually helps)"
                )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            total_loss += loss.item()
            tokens += batch.real_tokens
            padded += batch.tokens.numel()
        real += tokens
        scheduler.step()
        train_seconds = time.perf_counter() - epoch_start
        dev = evaluate(model, dev_set, corpus.dev, tagset)
        value = float(dev[objective_key])
        is_best = value > best_value
        if is_best:
            best_value, best_epoch, best_dev, since_best = value, epoch, dev, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
        result = EpochResult(
            epoch,
            total_loss / len(groups),
            dev,
            value,
            time.perf_counter() - epoch_start,
            train_seconds,
            tokens / train_seconds,
            is_best,
        )
        history.append(result)
        if log:
            log(format_epoch(result, config))
        if on_epoch is not None and on_epoch(result):
            stop_reason = "stopped by hook"
            break
        if since_best >= config.patience:
            stop_reason = f"early stop (no better dev score in {config.patience} epochs)"
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    train_time = sum(h.train_seconds for h in history)
    return TrainResult(
        config,
        model,
        vocab,
        tagset,
        history,
        best_epoch,
        best_dev,
        stop_reason,
        time.perf_counter() - started,
        real / train_time,
        1.0 - real / padded,
        found,
    )


def format_epoch(result: EpochResult, config: TrainConfig) -> str:
    dev = result.dev
    return (
        f"epoch {result.epoch:>3}/{config.max_epochs}  loss {result.loss:8.3f}  "
        f"dev token-F1 {dev['token_macro_f1']:.4f}  entity-F1 {dev['entity_f1']:.4f}  "
        f"{result.seconds:6.1f} s  {result.tokens_per_s:7,.0f} tok/s" + ("  *" if result.is_best else "")
    )


def result_metrics(result: TrainResult, corpus: Corpus, test: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything worth keeping about a run, JSON-ready."""
    return {
        "config": result.config.to_dict(),
        "corpus": str(corpus.directory),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stop_reason": result.stop_reason,
        "seconds": round(result.seconds, 2),
        "train_tokens_per_s": round(result.tokens_per_s, 1),
        "padding_fraction": round(result.padding_fraction, 4),
        "parameters": result.n_params,
        "embeddings_found": result.embeddings_found,
        "dev": result.best_dev,
        "test": test,
        "history": [h.to_dict() for h in result.history],
    }


def _log(line: str) -> None:
    tqdm.write(line)
    sys.stdout.flush()  # epoch lines reach a log file as they happen


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ner_core.train",
        description="Train the BiLSTM-CRF tagger on one configuration (default: the notebook's) and save it.",
        epilog="Example: python -m ner_core.train --data-dir data/chisiec --out results/notebook --test",
    )
    parser.add_argument(
        "--data-dir", help="corpus folder with train.txt, dev.txt, test.txt (default: $NER_DATA_DIR, else data/chisiec)"
    )
    parser.add_argument("--out", default="results/model", help="folder to save the model in (default results/model)")
    parser.add_argument("--config", help="JSON file of settings; options given on the command line override it")
    parser.add_argument(
        "--embeddings", help="pretrained character vectors, word2vec text format (default: random init)"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--test", action="store_true", help="score the best state on the test split once, at the end")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .saving import save_model

    args = build_parser().parse_args(argv)
    try:
        base = TrainConfig.load(args.config) if args.config else None
        config = config_from_args(args, base)
        if args.threads is not None and args.threads < 1:
            raise UserError(f"--threads must be at least 1, got {args.threads}")
        corpus = load_corpus(args.data_dir, with_test=args.test)
        print(corpus.summary())
        print("config: " + json.dumps(config.to_dict(), sort_keys=True))
        result = fit(
            config, corpus, embeddings=args.embeddings, threads=args.threads, progress=not args.quiet, log=_log
        )
        test = None
        if args.test:
            assert corpus.test is not None
            test = evaluate(
                result.model, EncodedSplit(corpus.test, result.vocab, result.tagset), corpus.test, result.tagset
            )
        out = save_model(args.out, result, result_metrics(result, corpus, test))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    dev = result.best_dev
    print(
        f"\n{result.stop_reason}; best epoch {result.best_epoch} of {len(result.history)}, "
        f"{result.seconds:.0f} s, {result.tokens_per_s:,.0f} training tok/s, padding {result.padding_fraction:.1%}"
    )
    print(
        f"dev   token macro-F1 {dev['token_macro_f1']:.4f}  accuracy {dev['token_accuracy']:.4f}  "
        f"entity P/R/F1 {dev['entity_precision']:.4f}/{dev['entity_recall']:.4f}/{dev['entity_f1']:.4f}"
    )
    if test is not None:
        print(
            f"test  token macro-F1 {test['token_macro_f1']:.4f}  accuracy {test['token_accuracy']:.4f}  "
            f"entity P/R/F1 {test['entity_precision']:.4f}/{test['entity_recall']:.4f}/{test['entity_f1']:.4f}"
        )
        print(format_per_type(test["per_type"]))
    print(f"\nmodel saved in {out}\nnext: echo '臣聞' | python -m ner_core.predict {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
