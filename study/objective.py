"""suggest -> config -> ner_core.train.fit with a per-epoch report/should_prune hook -> value.

The same shape as Optuna's own PyTorch examples; ner_core itself knows nothing of Optuna.
"""

from __future__ import annotations

import os
import socket
import statistics
import time

import optuna
import torch
from optuna.trial import FrozenTrial

from ner_core.checkpoint import State
from ner_core.config import TrainConfig
from ner_core.data import Corpus, Vocab
from ner_core.errors import TrainingError
from ner_core.model import BiLSTMCRF, count_parameters
from ner_core.runtime import Runtime
from ner_core.train import EpochResult, best_epoch, fit, throughput

from .checkpoints import Progress, TrialCheckpoints, retry_history
from .space import SearchSpace

# Failures of one configuration that should not stop the study.
CAUGHT = (TrainingError, torch.OutOfMemoryError, MemoryError)
# The stop_reason of a trial still running when --timeout ran out (it is kept as pruned).
TIMED_OUT = "stopped at --timeout"


class Objective:
    """Trains one suggested configuration on train, scores it on dev (never test).

    With ``seeds`` > 1 the configuration trains under seeds seed, seed+1, ... and its value is the
    mean of their best dev scores: a choice less at the mercy of one run's luck, at that many
    times the cost. The pruner judges the first seed's learning curve; the others, trained only
    for a configuration that got past it, run to the end.

    ``deadline`` (a ``time.monotonic()`` value): a trial still running then stops at its next epoch
    end and is kept as pruned, its stop_reason ``TIMED_OUT``, so that a search ends when it was told
    to, whatever a trial takes on this machine.

    ``checkpoints``: each trial keeps its state at each epoch end there, and a retried trial goes on
    from that of the trial it retries (study.checkpoints); None: neither.
    """

    def __init__(
        self,
        corpus: Corpus,
        base: TrainConfig,
        space: SearchSpace,
        runtime: Runtime,
        embeddings: str | None = None,
        seeds: int = 1,
        deadline: float | None = None,
        checkpoints: TrialCheckpoints | None = None,
    ):
        self.corpus = corpus
        self.base = base
        self.space = space
        self.runtime = runtime
        self.embeddings = embeddings
        self.seeds = seeds
        self.deadline = deadline
        self.checkpoints = checkpoints
        self.vocab = Vocab.build(corpus.train, bigrams=True)  # sizes for counting parameters

    def __call__(self, trial: optuna.Trial) -> float:
        config = self.space.suggest(trial, self.base)
        # which process runs it (host:pid): after a crash, whose trial it was
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        model = BiLSTMCRF(config, len(self.vocab), len(self.corpus.tagset), bigram_vocab_size=self.vocab.n_bigrams)
        trial.set_user_attr("parameters", count_parameters(model))
        retries = retry_history(trial) if self.checkpoints else []
        progress = self.resume(trial, config, retries)
        config = progress.config  # a resumed retry: the seed of the worker that began it
        runs: list[list[EpochResult]] = [*progress.finished]

        def report(epoch: EpochResult) -> None:
            runs[-1].append(epoch)
            judged = len(runs) == 1  # the pruner sees the first seed only
            if judged:
                trial.report(epoch.objective, epoch.epoch)
                progress.reported[epoch.epoch] = epoch.objective
            if self.deadline is not None and time.monotonic() >= self.deadline:
                trial.set_user_attr("stop_reason", TIMED_OUT)
                record(trial, runs, self.runtime)
                raise optuna.TrialPruned(f"{TIMED_OUT} after epoch {epoch.epoch} of seed {len(runs)}")
            if judged and trial.should_prune():
                record(trial, runs, self.runtime)
                raise optuna.TrialPruned(f"pruned after epoch {epoch.epoch} (dev {epoch.objective:.4f})")

        def save(training: State | None) -> None:
            assert self.checkpoints is not None
            progress.finished, progress.training = runs[: len(progress.stop_reasons)], training
            self.checkpoints.save(trial.number, progress)

        try:
            for i in range(len(progress.finished), self.seeds):
                resume = progress.training
                runs.append([EpochResult(**e) for e in resume["history"]] if resume else [])
                result = fit(
                    config.replace(seed=config.seed + i),
                    self.corpus,
                    runtime=self.runtime,
                    on_epoch=report,
                    embeddings=self.embeddings,
                    checkpoint=save if self.checkpoints else None,
                    resume=resume,
                )
                progress.training = None
                progress.stop_reasons.append(result.stop_reason)
                if self.checkpoints:
                    # a seed done: kept for a worker killed before the next seed's first epoch ends, or
                    # before the trial's result is stored (then its retry trains nothing again)
                    save(None)
        except CAUGHT as err:
            # Recorded as FAIL with its reason (Optuna stores fail_reason too); the study goes on.
            trial.set_user_attr("fail_reason", f"{type(err).__name__}: {err}")
            record(trial, runs, self.runtime)
            raise
        except (optuna.TrialPruned, optuna.exceptions.UpdateFinishedTrialError):
            # pruned: ``ended`` removes the checkpoint once Optuna has stored it; failed by another worker
            # (no heartbeat in time): the checkpoint is its retry's now
            raise
        except BaseException:
            # Ctrl-C or an error of ours: Optuna fails the trial, retries it never, and calls no callback
            if self.checkpoints:
                self.checkpoints.remove(trial.number, retries)
            raise
        record(trial, runs, self.runtime, progress.stop_reasons[0])
        return statistics.fmean(best_epoch(run).objective for run in runs)

    def ended(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """An Optuna callback, run once a trial's end is stored: its checkpoint is of no more use, nor
        that of any trial ended between storing its end and this callback (a worker killed then)."""
        if self.checkpoints:
            self.checkpoints.remove(trial.number, retry_history(trial))
            self.checkpoints.sweep(study)

    def resume(self, trial: optuna.Trial, config: TrainConfig, retries: list[int]) -> Progress:
        """Where a trial starts: for a retry, the checkpoint of the trial it retries, whose reported
        values are reported again (the pruner judges the whole curve) and which its ``resumed_from``
        user attribute names (None: trained from the start); else from nothing."""
        found = self.checkpoints.take_over(trial.number, retries, config) if self.checkpoints else None
        if found is None:
            if retries:  # a retry inherits the attributes of the trial it retries, this one's too
                trial.set_user_attr("resumed_from", None)
            return Progress(config, finished=[], stop_reasons=[], reported={})
        origin, progress = found
        seed_run, epoch = progress.resumes_after(self.seeds)
        trial.set_user_attr("resumed_from", {"trial": origin, "seed_run": seed_run, "epoch": epoch})
        for step, value in sorted(progress.reported.items()):
            trial.report(value, step)
        return progress


def record(
    trial: optuna.Trial, runs: list[list[EpochResult]], runtime: Runtime, stop_reason: str | None = None
) -> None:
    """User attributes every trial carries, finished or not (the dashboard shows them as columns).

    ``runs``: the epochs of each seed's run so far. Epoch counts and the stop reason are the first
    seed's (``stop_reason``: that of its finished run; what the pruner saw); dev scores are means
    over the seeds' best epochs, as the trial's value is.
    """
    runs = [run for run in runs if run]
    if not runs:
        return
    bests = [best_epoch(run) for run in runs]
    epochs = [e for run in runs for e in run]
    attrs = {
        "epochs_run": len(runs[0]),
        "best_epoch": bests[0].epoch,
        "seconds": round(sum(e.seconds for e in epochs), 2),
        "tokens_per_s": round(throughput(epochs), 1),
        "dev_entity_f1": round(statistics.fmean(float(b.dev["entity_f1"]) for b in bests), 6),
        "dev_token_macro_f1": round(statistics.fmean(float(b.dev["token_macro_f1"]) for b in bests), 6),
        # float sums depend on device, thread count and precision: study.best retrains on the same to reproduce
        **runtime.record(),
    }
    if len(runs) > 1:
        attrs["dev_per_seed"] = [round(b.objective, 6) for b in bests]
    if stop_reason is not None:
        attrs["stop_reason"] = stop_reason
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
