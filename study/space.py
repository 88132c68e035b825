"""The search space: one table row per searchable setting, and everything generated from it.

A row names a TrainConfig field, how Optuna draws it, its default range and its command-line
flag. ``suggest``, ``contains``, validation and the flags of ``study.run`` all come from the
table, so a new searchable setting is one new row. ``--search`` picks which rows a study tunes
(default: the five of the mission); the others stay fixed at their TrainConfig value.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

import optuna

from ner_core.config import TrainConfig
from ner_core.errors import UserError


@dataclass(frozen=True)
class Param:
    """A searchable TrainConfig field.

    kind: "float" and "int" draw from [LOW, HIGH] (``log`` for a log scale), "choice" from a list.
    limits: the widest values a user may give (TrainConfig's own checks apply on top).
    gpu: the default range where trials train on a GPU, if it differs (the CPU's is sized for 2 cores).
    shapes: whether the value changes how long a training step takes (sizes do; rates do not).
    """

    name: str
    kind: str
    default: tuple[float, ...]
    flag: str
    help: str
    limits: tuple[float, float]
    log: bool = False
    gpu: tuple[float, ...] | None = None
    shapes: bool = True

    def default_for(self, cuda: bool) -> tuple[float, ...]:
        return self.gpu if cuda and self.gpu else self.default

    def suggest(self, trial: optuna.Trial, values: tuple[Any, ...]) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.name, *values, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, *values, log=self.log)
        return trial.suggest_categorical(self.name, list(values))

    def contains(self, values: tuple[Any, ...], value: Any) -> bool:
        return value in values if self.kind == "choice" else values[0] <= value <= values[1]

    def check(self, values: tuple[Any, ...]) -> None:
        """UserError (naming the flag) unless ``values`` is a usable range or list of choices."""
        low, high = self.limits
        shown = " ".join(f"{v:g}" for v in values)
        if self.kind == "choice":
            if not values or not all(low <= v <= high for v in values):
                raise UserError(f"{self.flag} needs values within [{low:g}, {high:g}], got {shown or 'none'}")
        elif len(values) != 2 or not low <= values[0] <= values[1] <= high:
            raise UserError(f"{self.flag} needs LOW <= HIGH within [{low:g}, {high:g}], got {shown}")
        for value in values:
            try:
                TrainConfig(**{self.name: value})
            except UserError as err:
                raise UserError(f"{self.flag}: {err}") from None


# Order matters: it is the order of the draws, so a seed gives the same trials as before.
PARAMS = {
    p.name: p
    for p in (
        Param(
            "lr",
            "float",
            (1e-4, 1e-2),
            "--lr-range",
            "AdamW peak learning rate, log scale",
            (0, 1),
            log=True,
            shapes=False,
        ),
        Param(
            "hidden_size",
            "choice",
            (32, 64, 128, 256),
            "--hidden-sizes",
            "LSTM hidden sizes",
            (1, 4096),
            gpu=(64, 128, 256, 512),
        ),
        Param("num_layers", "int", (1, 2), "--layers-range", "stacked BiLSTM layers", (1, 8), gpu=(1, 3)),
        Param("dropout", "float", (0.0, 0.6), "--dropout-range", "dropout", (0, 1), shapes=False),
        Param("batch_size", "choice", (16, 32, 64, 128), "--batch-sizes", "sentences per batch", (1, 4096)),
        Param("embed_dim", "choice", (50, 100, 200), "--embed-dims", "character embedding sizes", (1, 4096)),
        Param(
            "weight_decay",
            "float",
            (1e-4, 0.1),
            "--weight-decay-range",
            "AdamW weight decay",
            (0, 10),
            log=True,
            shapes=False,
        ),
        Param(
            "embed_dropout",
            "float",
            (0.0, 0.5),
            "--embed-dropout-range",
            "dropout on the embeddings",
            (0, 1),
            shapes=False,
        ),
        Param("bigram_dim", "choice", (0, 50, 100), "--bigram-dims", "bigram embedding sizes (0: none)", (0, 4096)),
    )
}
DEFAULT_SEARCH = ("lr", "hidden_size", "num_layers", "dropout", "batch_size")
# Older studies stored the space under these names.
_LEGACY_NAMES = {"hidden_sizes": "hidden_size", "batch_sizes": "batch_size"}


@dataclass(frozen=True)
class SearchSpace:
    """The searched settings and their ranges (or choices), in table order."""

    ranges: dict[str, tuple[Any, ...]] = field(default_factory=lambda: {n: PARAMS[n].default for n in DEFAULT_SEARCH})

    @classmethod
    def default(cls, cuda: bool = False) -> SearchSpace:
        """The default space: the CPU's, or where trials train on a GPU, one that covers the notebook's."""
        return cls({n: PARAMS[n].default_for(cuda) for n in DEFAULT_SEARCH})

    def __post_init__(self) -> None:
        unknown = sorted(set(self.ranges) - set(PARAMS))
        if unknown:
            raise UserError(f"--search: cannot search {', '.join(unknown)}; searchable: {', '.join(PARAMS)}")
        for name, values in self.ranges.items():
            PARAMS[name].check(values)

    @property
    def names(self) -> list[str]:
        return list(self.ranges)

    def suggest(self, trial: optuna.Trial, base: TrainConfig) -> TrainConfig:
        """The base configuration with every searched setting drawn by the trial."""
        return base.replace(**{name: PARAMS[name].suggest(trial, values) for name, values in self.ranges.items()})

    def outside(self, config: TrainConfig) -> list[str]:
        """The searched settings whose value in ``config`` the space does not contain."""
        return [n for n, values in self.ranges.items() if not PARAMS[n].contains(values, getattr(config, n))]

    def to_dict(self) -> dict[str, list]:
        return {name: list(values) for name, values in self.ranges.items()}

    @classmethod
    def from_dict(cls, values: dict[str, list]) -> SearchSpace:
        """From ``to_dict`` (or the older per-field form)."""
        ranges = {_LEGACY_NAMES.get(k, k): tuple(v) for k, v in values.items()}
        return cls({name: ranges[name] for name in PARAMS if name in ranges})


def shape_of(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A trial's values of the settings that change how long a training step takes: trials that
    share them train at one speed (on one runtime)."""
    return tuple((name, params[name]) for name in PARAMS if name in params and PARAMS[name].shapes)


def params_of(config: TrainConfig, space: SearchSpace) -> dict[str, Any]:
    """A configuration's values of the searched settings (e.g. the notebook's, for the baseline trial)."""
    return {name: getattr(config, name) for name in space.names}


def config_for(params: dict[str, Any], base: TrainConfig) -> TrainConfig:
    """The configuration a trial trained: its parameters over the study's fixed settings."""
    return base.replace(**{k: v for k, v in params.items() if k in PARAMS})


def add_space_arguments(parser: argparse.ArgumentParser) -> None:
    """--search and one range option per table row (default None: "not given", see space_from_args)."""
    group = parser.add_argument_group("search space (defaults fit 2 CPU cores; see docs/guide.md, The search space)")
    group.add_argument(
        "--search",
        nargs="+",
        metavar="NAME",
        choices=list(PARAMS),
        help=f"settings to search (default {' '.join(DEFAULT_SEARCH)}; also: "
        f"{' '.join(n for n in PARAMS if n not in DEFAULT_SEARCH)}); the others stay fixed",
    )
    for p in PARAMS.values():
        shown = " ".join(f"{v:g}" for v in p.default)
        if p.gpu:
            shown += "; on a GPU " + " ".join(f"{v:g}" for v in p.gpu)
        group.add_argument(
            p.flag,
            dest=f"space_{p.name}",
            type=float if p.kind == "float" else int,
            nargs="+" if p.kind == "choice" else 2,
            metavar="N" if p.kind == "choice" else ("LOW", "HIGH"),
            help=f"{p.help}: {'choices' if p.kind == 'choice' else 'range'} (default {shown})",
        )


def space_from_args(args: argparse.Namespace, cuda: bool = False) -> SearchSpace:
    """The space the command line asks for (defaults: the GPU's where ``cuda``); a range given for a
    setting that is not searched is an error."""
    names = args.search or list(DEFAULT_SEARCH)
    for p in PARAMS.values():
        if getattr(args, f"space_{p.name}") is not None and p.name not in names:
            raise UserError(f"{p.flag} is given but {p.name} is not searched; add it to --search")
    chosen = [n for n in PARAMS if n in names]  # table order: a seed's draws do not depend on how --search lists them
    return SearchSpace({n: tuple(getattr(args, f"space_{n}") or PARAMS[n].default_for(cuda)) for n in chosen})
