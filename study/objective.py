"""suggest -> config -> ner_core.train.fit with a per-epoch report/should_prune hook -> value.

The same shape as Optuna's own PyTorch examples; ner_core itself knows nothing of Optuna.
"""

from __future__ import annotations

import os
import socket

import optuna
import torch

from ner_core.config import TrainConfig
from ner_core.data import Corpus, Vocab
from ner_core.errors import TrainingError
from ner_core.model import BiLSTMCRF, count_parameters
from ner_core.runtime import Runtime
from ner_core.train import EpochResult, TrainResult, best_epoch, fit, throughput

from .space import SearchSpace

# Failures of one configuration that should not stop the study.
CAUGHT = (TrainingError, torch.OutOfMemoryError, MemoryError)


class Objective:
    """Trains one suggested configuration on train, scores it on dev (never test)."""

    def __init__(
        self, corpus: Corpus, base: TrainConfig, space: SearchSpace, runtime: Runtime, embeddings: str | None = None
    ):
        self.corpus = corpus
        self.base = base
        self.space = space
        self.runtime = runtime
        self.embeddings = embeddings
        self.vocab = Vocab.build(corpus.train, bigrams=True)  # sizes for counting parameters

    def __call__(self, trial: optuna.Trial) -> float:
        config = self.space.suggest(trial, self.base)
        # which process runs it (host:pid): after a crash, whose trial it was
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        model = BiLSTMCRF(config, len(self.vocab), len(self.corpus.tagset), bigram_vocab_size=self.vocab.n_bigrams)
        trial.set_user_attr("parameters", count_parameters(model))
        history: list[EpochResult] = []

        def report(epoch: EpochResult) -> None:
            history.append(epoch)
            trial.report(epoch.objective, epoch.epoch)
            if trial.should_prune():
                record(trial, history, self.runtime)
                raise optuna.TrialPruned(f"pruned after epoch {epoch.epoch} (dev {epoch.objective:.4f})")

        try:
            result = fit(config, self.corpus, runtime=self.runtime, on_epoch=report, embeddings=self.embeddings)
        except CAUGHT as err:
            # Recorded as FAIL with its reason (Optuna stores fail_reason too); the study goes on.
            trial.set_user_attr("fail_reason", f"{type(err).__name__}: {err}")
            record(trial, history, self.runtime)
            raise
        record(trial, history, self.runtime, result)
        return result.best_value


def record(
    trial: optuna.Trial, history: list[EpochResult], runtime: Runtime, result: TrainResult | None = None
) -> None:
    """User attributes every trial carries, finished or not (the dashboard shows them as columns)."""
    if not history:
        return
    best = best_epoch(history)
    attrs = {
        "epochs_run": len(history),
        "best_epoch": best.epoch,
        "seconds": round(sum(e.seconds for e in history), 2),
        "tokens_per_s": round(throughput(history), 1),
        "dev_entity_f1": round(float(best.dev["entity_f1"]), 6),
        "dev_token_macro_f1": round(float(best.dev["token_macro_f1"]), 6),
        # float sums depend on device, thread count and precision: study.best retrains on the same to reproduce
        **runtime.record(),
    }
    if result is not None:
        attrs["stop_reason"] = result.stop_reason
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
