"""Whether a search's ``--timeout`` leaves time for its startup trials, measured on its own corpus.

A budget sized for one corpus can be hopeless on another: an epoch's time grows with the training
characters (CCLUE has 5.3 times CHisIEC's). So before a new study searches under a time limit, a
short timed training at the fastest shape of its space gives the least an epoch can take here, and
a budget in which not even the startup trials (TPE's random draws) could finish is refused in one
line, before anything is trained for nothing.
"""

from __future__ import annotations

import dataclasses
import math

from ner_core.config import TrainConfig
from ner_core.data import Corpus
from ner_core.errors import UserError
from ner_core.runtime import Runtime
from ner_core.train import fit

from .stored import StudySettings

# The settings whose smallest value trains fastest; batch_size the other way (fewer steps).
FASTEST_LARGEST = ("batch_size",)
# Training characters the calibration trains on, per epoch, at least: a few batches, for a steady speed.
SAMPLE_CHARS = 20_000
SAMPLE_BATCHES = 3


def fastest_config(settings: StudySettings) -> TrainConfig:
    """The study's configuration at the fastest shape its space holds."""
    values = {}
    for name, values_range in settings.space.ranges.items():
        if name in ("hidden_size", "num_layers", "embed_dim", "bigram_dim"):
            values[name] = min(values_range)
        elif name in FASTEST_LARGEST:
            values[name] = max(values_range)
    return settings.base.replace(**values)


def sample(corpus: Corpus, batch_size: int) -> Corpus:
    """Every k-th training sentence, k chosen for about ``SAMPLE_BATCHES`` batches and at least
    ``SAMPLE_CHARS`` characters (as long as the corpus's sentences are, on the whole, so that each
    character costs what it costs in a whole epoch), with a dev split of one sentence."""
    train = corpus.train
    mean = sum(map(len, train)) / len(train)
    wanted = max(SAMPLE_CHARS / mean, SAMPLE_BATCHES * batch_size)
    step = max(1, int(len(train) / wanted))
    return dataclasses.replace(corpus, train=train[::step], dev=corpus.dev[:1])


def fastest_speed(settings: StudySettings, corpus: Corpus, runtime: Runtime) -> float:
    """Training characters per second at the space's fastest shape on this machine: the second of two
    short epochs (the first pays for warming up)."""
    config = fastest_config(settings).replace(max_epochs=2, patience=2)
    history = fit(config, sample(corpus, config.batch_size), runtime=runtime).history
    return history[-1].tokens / history[-1].train_seconds


def startup_epochs(settings: StudySettings, left: int, finished: int) -> int:
    """The fewest epochs the ``left`` startup trials still to run train in all. A trial the pruner may
    stop trains its warm-up epochs (at least 1, the first seed only); one it may not (those median
    pruning waits for, or every trial without a pruner) trains each seed to early stopping's earliest,
    patience + 1 epochs."""
    whole = min(settings.base.max_epochs, settings.base.patience + 1) * settings.seeds_per_trial
    if settings.pruner == "hyperband":
        unpruned = 0
    elif settings.pruner == "median":
        unpruned = min(left, max(0, settings.pruner_startup_trials - finished))
    else:
        unpruned = left
    return unpruned * whole + (left - unpruned) * max(1, settings.warmup_epochs)


def check_timeout(
    timeout: float, settings: StudySettings, corpus: Corpus, runtime: Runtime, workers: int, finished: int
) -> None:
    """UserError, in one line, when ``timeout`` seconds cannot hold the startup trials still to run
    (``finished`` trials are done) on ``workers`` workers, at the least time an epoch takes here."""
    left = settings.startup_trials - finished
    if left <= 0:
        return
    train_chars = sum(map(len, corpus.train))
    epoch = train_chars / fastest_speed(settings, corpus, runtime)
    epochs = startup_epochs(settings, left, finished)
    least = math.ceil(epochs / workers) * epoch
    if timeout < least:
        raise UserError(
            f"--timeout {timeout:g}: not even the {left} startup trial(s) can finish in it: an epoch of this "
            f"corpus ({train_chars:,} training characters) takes at least {epoch:.1f} s here (the space's fastest "
            f"shape, measured), and they train {epochs} epoch(s) at least, {workers} at a time; give --timeout "
            f"{math.ceil(least):d} or more"
        )
