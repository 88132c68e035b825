"""Train one configuration start to finish: AdamW, cosine schedule, clipping, early stopping.

``fit`` is the library entry point (the study calls it with a per-epoch hook that prunes);
``python -m ner_core.train`` is the command line.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from . import ledger
from .checkpoint import State, StateHook, capture, restore
from .config import TrainConfig, add_config_arguments, config_from_args
from .data import Corpus, EncodedSplit, Sentence, Vocab, load_corpus
from .embeddings import embedding_matrix, read_word2vec
from .errors import NonFiniteLossError, UserError
from .metrics import OBJECTIVE_KEYS, format_per_type, score
from .model import BiLSTMCRF, Tagger, count_parameters
from .runtime import Runtime, add_runtime_arguments, decide_runtime, runtime_from_args
from .tags import TagSet, allowed_transitions

EVAL_BATCH_SIZE = 256
# Padded characters per evaluation batch at most (EncodedSplit.bucketed's cap): 256 x 256, over every
# batch of sentences up to 256 characters (all of CHisIEC's), so only long-sentence corpora are cut.
# Tagging keeps no activations for a backward pass: a position costs about a fifth of its training
# memory (python -m ner_core.memory), so a batch at this cap takes less than a training batch at
# TrainConfig's default batch_chars.
EVAL_BATCH_CHARS = 65536


@dataclass
class EpochResult:
    """What one epoch produced; handed to the per-epoch hook."""

    epoch: int
    loss: float
    dev: dict[str, Any]
    objective: float
    seconds: float
    train_seconds: float
    tokens: int  # real training characters
    positions: int  # real + padded
    is_best: bool

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.train_seconds

    def to_dict(self) -> dict[str, Any]:
        dev = {k: v for k, v in self.dev.items() if not isinstance(v, dict)}  # per type, per tag: in metrics.json
        return {
            "epoch": self.epoch,
            "loss": self.loss,
            "objective": self.objective if self.dev else None,  # None: no dev split judged (JSON has no NaN)
            **{f"dev_{k}": v for k, v in dev.items()},
            "seconds": self.seconds,
            "tokens_per_s": self.tokens_per_s,
        }


EpochHook = Callable[[EpochResult], "bool | None"]


@dataclass
class TrainResult:
    """A trained model (best dev state loaded) and how it got there."""

    config: TrainConfig
    runtime: Runtime
    model: BiLSTMCRF
    vocab: Vocab
    tagset: TagSet
    history: list[EpochResult]
    stop_reason: str
    seconds: float
    embeddings_found: int | None = None
    kept_last: bool = False  # fit(keep_last=True): the last epoch's weights, judged by no dev split

    @property
    def best(self) -> EpochResult:
        """The epoch whose state the model holds."""
        return self.history[-1] if self.kept_last else best_epoch(self.history)

    @property
    def best_epoch(self) -> int:
        return self.best.epoch

    @property
    def best_dev(self) -> dict[str, Any]:
        return self.best.dev

    @property
    def best_value(self) -> float:
        return self.best.objective

    @property
    def tokens_per_s(self) -> float:
        return throughput(self.history)

    @property
    def padding_fraction(self) -> float:
        return 1.0 - sum(e.tokens for e in self.history) / sum(e.positions for e in self.history)

    @property
    def n_params(self) -> int:
        return count_parameters(self.model)


def best_epoch(history: list[EpochResult]) -> EpochResult:
    """The epoch with the best dev objective; the earliest of equals (a later tie is no improvement)."""
    return max(history, key=lambda e: (e.objective, -e.epoch))


def throughput(history: list[EpochResult]) -> float:
    """Training tokens per second of training time, over the epochs given."""
    return sum(e.tokens for e in history) / sum(e.train_seconds for e in history)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(
    config: TrainConfig, vocab: Vocab, tagset: TagSet, vectors: dict[str, torch.Tensor] | None = None
) -> tuple[BiLSTMCRF, int | None]:
    """A fresh model; with pretrained vectors, its embedding starts from them (and is fine-tuned)."""
    model = BiLSTMCRF(config, len(vocab), len(tagset), allowed_transitions(tagset), vocab.n_bigrams)
    found = None
    if vectors is not None:
        generator = torch.Generator().manual_seed(config.seed)
        matrix, found = embedding_matrix(vocab.itos, vectors, config.embed_dim, generator)
        with torch.no_grad():
            model.embedding.weight.copy_(matrix)
    return model, found


@torch.inference_mode()
def predict_ids(
    model: Tagger, encoded: EncodedSplit, batch_size: int = EVAL_BATCH_SIZE, batch_chars: int = EVAL_BATCH_CHARS
) -> list[list[int]]:
    """Viterbi tag ids for every sentence of a split, in the split's order.

    Length-sorted batches keep padding small, and at most ``batch_chars`` padded characters
    each keep memory bounded; in-length reversal and masking make the result the same as
    tagging each sentence alone.
    """
    model.eval()
    device = next(model.parameters()).device
    out: list[list[int]] = [[] for _ in range(len(encoded))]
    for group in encoded.bucketed(batch_size, batch_chars=batch_chars):
        batch = encoded.batch(group).to(device)
        for i, ids in zip(batch.index, model.decode(batch.tokens, batch.mask, batch.lengths)):
            out[i] = ids
    return out


def evaluate(model: Tagger, encoded: EncodedSplit, sentences: list[Sentence], tagset: TagSet) -> dict[str, Any]:
    """Token and entity scores of the model on a split."""
    predicted = [[tagset.tags[i] for i in ids] for ids in predict_ids(model, encoded)]
    return score([s.tags for s in sentences], predicted, tagset.scheme)


def train_epoch(
    model: BiLSTMCRF,
    optimizer: torch.optim.Optimizer,
    split: EncodedSplit,
    groups: list[list[int]],
    config: TrainConfig,
    device: str,
    epoch: int,
    progress: bool,
    averaged: AveragedModel | None = None,
) -> tuple[float, int, int]:
    """Step the optimizer once per batch (and the weights' average, if any): (mean loss, real
    tokens, real + padded positions).

    Losses stay on the device until the end of the pass: a ``.item()`` per batch would make a
    GPU wait for every step. A NaN or infinite loss raises NonFiniteLossError naming its batch.
    """
    model.train()
    losses, tokens, positions = [], 0, 0
    desc = f"epoch {epoch}/{config.max_epochs}"
    # disable=None: no bar where stderr is not a terminal, so that a log file gets plain lines only
    for group in tqdm(groups, desc=desc, leave=False, unit="batch", disable=None if progress else True):
        batch = split.batch(group)
        tokens += batch.real_tokens
        positions += batch.mask.numel()
        batch = batch.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(batch.tokens, batch.tags, batch.mask, batch.lengths)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
        optimizer.step()
        if averaged is not None:
            averaged.update_parameters(model)
        losses.append(loss.detach())
    stacked = torch.stack(losses).float().cpu()  # shape: [batches]
    finite = torch.isfinite(stacked)
    if not finite.all():
        first = int((~finite).nonzero()[0])
        raise NonFiniteLossError(
            f"training loss became {stacked[first].item()} at epoch {epoch}, batch {first + 1} "
            f"(lr {config.lr:g}; a lower --lr usually helps)"
        )
    return float(stacked.mean()), tokens, positions


def prepare(
    config: TrainConfig, corpus: Corpus, runtime: Runtime, embeddings: str | Path | None, log: Callable | None
) -> tuple[BiLSTMCRF, Vocab, int | None]:
    """A seeded fresh model on the runtime's device and the vocabulary it reads."""
    runtime.apply()
    seed_everything(config.seed)
    vectors = read_word2vec(embeddings, config.embed_dim) if embeddings else None
    vocab = Vocab.build(corpus.train, extra=vectors or (), bigrams=config.bigram_dim > 0)
    model, found = build_model(config, vocab, corpus.tagset, vectors)
    if log and vectors is not None:
        log(f"pretrained vectors: {found:,} of {len(vocab) - 2:,} vocabulary characters found in {embeddings}")
    return model.place(runtime), vocab, found


def fit(
    config: TrainConfig,
    corpus: Corpus,
    *,
    runtime: Runtime | None = None,
    on_epoch: EpochHook | None = None,
    embeddings: str | Path | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    keep_last: bool = False,
    checkpoint: StateHook | None = None,
    resume: State | None = None,
) -> TrainResult:
    """Train ``config`` on corpus.train, pick the epoch with the best dev objective.

    ``keep_last`` trains every epoch of the schedule and keeps the last weights, with no early
    stopping: for a final fit on ``corpus.with_dev_in_train()``, which has no dev split to judge
    (dev is scored each epoch for the log where there is one, and decides nothing).

    ``runtime`` says where (default: ``decide_runtime()``, the GPU if there is one).
    ``on_epoch`` is called after every epoch; returning True stops the run (an exception it
    raises, such as optuna.TrialPruned, propagates). Raises NonFiniteLossError on a NaN or
    infinite loss. The same seed and runtime on the same machine give the same numbers.

    ``checkpoint`` is given the run's state (ner_core.checkpoint) at every epoch end after which
    training goes on, after ``on_epoch``; ``resume``, such a state of a run with the same
    configuration, corpus and runtime, goes on from its last epoch as that run would have (its
    epochs are in the history; ``on_epoch`` is not called for them again).
    """
    runtime = runtime or decide_runtime()
    if not corpus.dev and not keep_last:
        raise UserError(f"{corpus.directory}: no dev split to choose the best epoch on")
    model, vocab, found = prepare(config, corpus, runtime, embeddings, log)
    train_set = EncodedSplit(corpus.train, vocab, corpus.tagset)
    dev_set = EncodedSplit(corpus.dev, vocab, corpus.tagset)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.max_epochs)
    order = torch.Generator().manual_seed(config.seed)
    # With --ema, the average of the weights is what dev judges and what is kept.
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema)) if config.ema else None
    judged = averaged.module if averaged is not None else model

    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "averaged": averaged}

    history: list[EpochResult] = []
    best_state: dict[str, torch.Tensor] = {}
    if resume is not None:
        restore(resume, parts, order)
        history = [EpochResult(**epoch) for epoch in resume["history"]]
        # None: the last epoch was the best, whose weights are those just loaded
        best_state = resume["best"] or copy.deepcopy(judged.state_dict())
    stop_reason = "max_epochs"
    started = time.perf_counter()
    for epoch in range(len(history) + 1, config.max_epochs + 1):
        start = time.perf_counter()
        groups = train_set.bucketed(config.batch_size, order, config.batch_chars)
        loss, tokens, positions = train_epoch(
            model, optimizer, train_set, groups, config, runtime.device, epoch, progress, averaged
        )
        scheduler.step()
        train_seconds = time.perf_counter() - start
        dev = evaluate(judged, dev_set, corpus.dev, corpus.tagset) if corpus.dev else {}
        value = float(dev[OBJECTIVE_KEYS[config.objective]]) if dev else float("nan")
        is_best = not keep_last and (not history or value > best_epoch(history).objective)
        history.append(
            EpochResult(
                epoch=epoch,
                loss=loss,
                dev=dev,
                objective=value,
                seconds=time.perf_counter() - start,
                train_seconds=train_seconds,
                tokens=tokens,
                positions=positions,
                is_best=is_best,
            )
        )
        if is_best:
            best_state = copy.deepcopy(judged.state_dict())
        if log:
            log(format_epoch(history[-1], config))
        if on_epoch is not None and on_epoch(history[-1]):
            stop_reason = "stopped by hook"
            break
        if not keep_last and epoch - best_epoch(history).epoch >= config.patience:
            stop_reason = f"early stop (no better dev score in {config.patience} epochs)"
            break
        if checkpoint is not None and epoch < config.max_epochs:
            state = capture(parts, order)
            state["history"] = [dataclasses.asdict(e) for e in history]
            state["best"] = None if history[-1].is_best else best_state
            checkpoint(state)
    model.load_state_dict(judged.state_dict() if keep_last else best_state)
    model.eval()
    return TrainResult(
        config=config,
        runtime=runtime,
        model=model,
        vocab=vocab,
        tagset=corpus.tagset,
        history=history,
        stop_reason=stop_reason,
        seconds=time.perf_counter() - started,
        embeddings_found=found,
        kept_last=keep_last,
    )


def format_epoch(result: EpochResult, config: TrainConfig) -> str:
    dev = result.dev
    judged = f"dev token-F1 {dev['token_macro_f1']:.4f}  entity-F1 {dev['entity_f1']:.4f}  " if dev else ""
    return (
        f"epoch {result.epoch:>3}/{config.max_epochs}  loss {result.loss:8.3f}  {judged}"
        f"{result.seconds:6.1f} s  {result.tokens_per_s:7,.0f} tok/s" + ("  *" if result.is_best else "")
    )


def result_metrics(result: TrainResult, corpus: Corpus, test: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything worth keeping about a run, JSON-ready."""
    return {
        "config": result.config.to_dict(),
        "runtime": result.runtime.record(),
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
    parser.add_argument(
        "--test",
        action="store_true",
        help="score the best state on the test split once, at the end (recorded in results/test-readings.jsonl)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_runtime_arguments(parser)
    add_config_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .saving import save_model

    args = build_parser().parse_args(argv)
    try:
        base = TrainConfig.load(args.config) if args.config else None
        config = config_from_args(args, base)
        runtime = runtime_from_args(args)
        corpus = load_corpus(args.data_dir, with_test=args.test)
        print(corpus.summary())
        print("config: " + json.dumps(config.to_dict(), sort_keys=True))
        print(f"runtime: {runtime}")
        result = fit(config, corpus, runtime=runtime, embeddings=args.embeddings, progress=not args.quiet, log=_log)
        test = None
        if args.test:
            assert corpus.test is not None
            test = evaluate(
                result.model, EncodedSplit(corpus.test, result.vocab, result.tagset), corpus.test, result.tagset
            )
        out = save_model(args.out, result, result_metrics(result, corpus, test))
        if test is not None:
            read = ledger.readings(ledger.record("ner_core.train", corpus, [str(out)], [test]).test_sha256)
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
        f"entity P/R/F1 {dev['entity_precision']:.4f}/{dev['entity_recall']:.4f}/{dev['entity_f1']:.4f}  "
        f"invalid sentences {dev['invalid_sentences']}"
    )
    if test is not None:
        print(
            f"test  token macro-F1 {test['token_macro_f1']:.4f}  accuracy {test['token_accuracy']:.4f}  "
            f"entity P/R/F1 {test['entity_precision']:.4f}/{test['entity_recall']:.4f}/{test['entity_f1']:.4f}  "
            f"invalid sentences {test['invalid_sentences']}"
        )
        print(format_per_type(test["per_type"]))
        print(f"{ledger.count_line(read)} ({ledger.ledger_path()})")
    print(f"\nmodel saved in {out}\nnext: echo '臣聞' | python -m ner_core.predict {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
