"""The search space, in one place: what the study tunes and what it holds fixed.

Tuned: learning rate (log scale), LSTM hidden size, dropout, LSTM layers, batch size.
Fixed from the command line: embedding size, LayerNorm, attention, max epochs, patience, ...
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

import optuna

from ner_core.config import TrainConfig
from ner_core.errors import UserError

SEARCHED = ("lr", "hidden_size", "dropout", "num_layers", "batch_size")

# What the study holds fixed unless told otherwise: the notebook's settings but a shorter
# schedule (20 epochs, patience 5), since the study pays for every epoch fifty times.
STUDY_BASE = TrainConfig(max_epochs=20, patience=5)


@dataclass(frozen=True)
class SearchSpace:
    """Ranges and choices; defaults fit what 2 CPU cores afford (see README, "The search")."""

    lr: tuple[float, float] = (1e-4, 1e-2)
    hidden_sizes: tuple[int, ...] = (32, 64, 128, 256)
    num_layers: tuple[int, int] = (1, 2)
    dropout: tuple[float, float] = (0.0, 0.6)
    batch_sizes: tuple[int, ...] = (16, 32, 64, 128)

    def __post_init__(self) -> None:
        low, high = self.lr
        if not 0 < low <= high <= 1:
            raise UserError(f"--lr-range must satisfy 0 < LOW <= HIGH <= 1, got {low:g} {high:g}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1 or max(self.hidden_sizes) > 4096:
            raise UserError(f"--hidden-sizes must be between 1 and 4096, got {list(self.hidden_sizes)}")
        if not 1 <= self.num_layers[0] <= self.num_layers[1] <= 8:
            raise UserError(
                f"--layers-range must satisfy 1 <= LOW <= HIGH <= 8, got {self.num_layers[0]} {self.num_layers[1]}"
            )
        if not 0.0 <= self.dropout[0] <= self.dropout[1] < 1.0:
            raise UserError(
                f"--dropout-range must satisfy 0 <= LOW <= HIGH < 1, got {self.dropout[0]:g} {self.dropout[1]:g}"
            )
        if not self.batch_sizes or min(self.batch_sizes) < 1 or max(self.batch_sizes) > 4096:
            raise UserError(f"--batch-sizes must be between 1 and 4096, got {list(self.batch_sizes)}")

    def suggest(self, trial: optuna.Trial, base: TrainConfig) -> TrainConfig:
        """The base configuration with the searched settings drawn by the trial."""
        return base.replace(
            lr=trial.suggest_float("lr", *self.lr, log=True),
            hidden_size=trial.suggest_categorical("hidden_size", list(self.hidden_sizes)),
            num_layers=trial.suggest_int("num_layers", *self.num_layers),
            dropout=trial.suggest_float("dropout", *self.dropout),
            batch_size=trial.suggest_categorical("batch_size", list(self.batch_sizes)),
        )

    def contains(self, params: dict[str, Any]) -> bool:
        return (
            self.lr[0] <= params["lr"] <= self.lr[1]
            and params["hidden_size"] in self.hidden_sizes
            and self.num_layers[0] <= params["num_layers"] <= self.num_layers[1]
            and self.dropout[0] <= params["dropout"] <= self.dropout[1]
            and params["batch_size"] in self.batch_sizes
        )

    def to_dict(self) -> dict[str, list]:
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, list]) -> SearchSpace:
        return cls(**{k: tuple(v) for k, v in values.items()})


def searched_params(config: TrainConfig) -> dict[str, Any]:
    """The searched settings of a configuration (the notebook's, for the baseline trial)."""
    return {name: getattr(config, name) for name in SEARCHED}


def config_for(params: dict[str, Any], base: TrainConfig) -> TrainConfig:
    """The configuration a trial trained: its parameters over the study's fixed settings."""
    return base.replace(**{k: v for k, v in params.items() if k in SEARCHED})


# option -> (SearchSpace field, value type, nargs, what it is)
_OPTIONS = {
    "--lr-range": ("lr", float, 2, "learning rate, log scale"),
    "--hidden-sizes": ("hidden_sizes", int, "+", "LSTM hidden sizes to choose from"),
    "--layers-range": ("num_layers", int, 2, "LSTM layers"),
    "--dropout-range": ("dropout", float, 2, "dropout"),
    "--batch-sizes": ("batch_sizes", int, "+", "batch sizes to choose from"),
}


def add_space_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per searched setting, defaults from SearchSpace."""
    group = parser.add_argument_group("search space (defaults fit 2 CPU cores; see README)")
    default = SearchSpace()
    for flag, (name, kind, nargs, what) in _OPTIONS.items():
        value = getattr(default, name)
        group.add_argument(
            flag,
            dest=f"space_{name}",
            type=kind,
            nargs=nargs,
            default=value,
            metavar=("LOW", "HIGH") if nargs == 2 else "N",
            help=f"{what} (default {' '.join(f'{v:g}' for v in value)})",
        )


def space_from_args(args: argparse.Namespace) -> SearchSpace:
    return SearchSpace(**{name: tuple(getattr(args, f"space_{name}")) for name, *_ in _OPTIONS.values()})
