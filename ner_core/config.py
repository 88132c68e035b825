"""One dataclass holding every hyperparameter of a training run, with JSON round-trip.

The defaults are the notebook's configuration (../shared/seed): every other module reads its
defaults from here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError

OBJECTIVES = ("token-macro-f1", "entity-f1")
# Settings that older versions stored in a config and that now belong elsewhere: read and dropped.
# precision is a runtime choice (ner_core.runtime), decided per machine.
MOVED = ("precision",)


@dataclass
class TrainConfig:
    """Every knob of one training run. Defaults = the notebook's configuration."""

    embed_dim: int = field(default=50, metadata={"help": "character embedding size"})
    bigram_dim: int = field(
        default=0,
        metadata={
            "help": "embedding size of each character's bigram with the next one, beside the character's own "
            "(0: none, as in the notebook)"
        },
    )
    hidden_size: int = field(default=512, metadata={"help": "LSTM hidden size per direction"})
    num_layers: int = field(default=3, metadata={"help": "stacked BiLSTM layers"})
    dropout: float = field(default=0.5, metadata={"help": "dropout between LSTM layers and before the output"})
    embed_dropout: float = field(
        default=0.0,
        metadata={"help": "dropout on the character embeddings, before the LSTM (0: none, as in the notebook)"},
    )
    layer_norm: bool = field(default=True, metadata={"help": "LayerNorm on the LSTM output"})
    attention: bool = field(default=True, metadata={"help": "scaled dot-product self-attention after the LSTM"})
    constrained: bool = field(
        default=True,
        metadata={
            "help": "Viterbi makes only the tag moves the corpus's scheme allows (no O -> I-X, no B-X left "
            "open in BIOES...), so every output is valid; training is unchanged. --no-constrained decodes "
            "every move freely, as pytorch-crf does"
        },
    )
    entity_bias: float = field(
        default=0.0,
        metadata={
            "help": "decoding only: added to the score of every tag but O at each character before Viterbi; "
            "above 0 the tagger finds more entities (recall up, precision down); training is unchanged "
            "(0: none, as in the notebook; study.best --entity-bias tunes it on dev)"
        },
    )
    batch_size: int = field(default=128, metadata={"help": "sentences per training batch"})
    batch_chars: int = field(
        default=16384,
        metadata={
            "help": "padded characters (longest sentence x sentences) per training batch at most: a batch of "
            "long sentences is cut into smaller ones, so that memory stays bounded on corpora of long "
            "sentences (0: no cap). The default, 128 x 128, leaves every batch of up to 128 sentences of up to "
            "128 characters as it is (all of CHisIEC's)"
        },
    )
    lr: float = field(default=5e-4, metadata={"help": "AdamW peak learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    max_epochs: int = field(default=30, metadata={"help": "epochs at most; also the cosine schedule's length"})
    patience: int = field(default=10, metadata={"help": "stop after this many epochs without a better dev score"})
    clip_norm: float = field(default=5.0, metadata={"help": "gradient norm clipping threshold"})
    ema: float = field(
        default=0.0,
        metadata={
            "help": "judge and keep an exponential moving average of the weights, with this decay per step "
            "(0: off, the weights as trained; 0.99 averages about the last 100 steps)"
        },
    )
    objective: str = field(
        default="token-macro-f1",
        metadata={"help": "dev score that picks the best epoch: token-macro-f1 or entity-f1"},
    )
    seed: int = field(default=42, metadata={"help": "random seed (same seed, same numbers)"})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise UserError naming the first option out of range."""
        positive = ("embed_dim", "hidden_size", "num_layers", "batch_size", "max_epochs")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"--{_flag(name)} must be at least 1, got {getattr(self, name)}")
        for name in ("dropout", "embed_dropout", "ema"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"--{_flag(name)} must be in [0, 1), got {getattr(self, name)}")
        if self.batch_chars < 0:
            raise UserError(f"--batch-chars must be >= 0 (0: no cap), got {self.batch_chars}")
        if self.bigram_dim < 0:
            raise UserError(f"--bigram-dim must be >= 0 (0: no bigrams), got {self.bigram_dim}")
        if not math.isfinite(self.entity_bias):
            raise UserError(f"--entity-bias must be a finite number, got {self.entity_bias}")
        if not self.lr > 0:
            raise UserError(f"--lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise UserError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.patience < 1:
            raise UserError(f"--patience must be at least 1, got {self.patience}")
        if not self.clip_norm > 0:
            raise UserError(f"--clip-norm must be positive, got {self.clip_norm}")
        if self.objective not in OBJECTIVES:
            raise UserError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build a config from a dict; unknown keys and wrong types are user errors."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k not in MOVED}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
        checked = {}
        for key, value in values.items():
            kind = type(known[key].default)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise UserError(f"{source}: {key} must be {kind.__name__}, got {value!r}")
            checked[key] = value
        return cls(**checked)

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> TrainConfig:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"{source}:{err.lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(values, dict):
            raise UserError(f"{source}:1: expected a JSON object of settings")
        return cls.from_dict(values, source)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise UserError(f"{path}: cannot read ({err.strerror})") from None
        return cls.from_json(text, str(path))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def add_config_arguments(
    parser: argparse.ArgumentParser,
    exclude: tuple[str, ...] = (),
    title: str = "training configuration (defaults: the notebook's)",
    defaults: TrainConfig | None = None,
) -> None:
    """Add one ``--option`` per TrainConfig field not excluded (default None = keep the config's value)."""
    group = parser.add_argument_group(title)
    defaults = defaults or TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name in exclude:
            continue
        flag = "--" + _flag(f.name)
        help_text = f"{f.metadata.get('help', '')} (default {getattr(defaults, f.name)})"
        if isinstance(f.default, bool):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(
                flag, dest=f.name, type=type(f.default), default=None, help=help_text, metavar=f.name.upper()
            )


def config_from_args(args: Any, base: TrainConfig | None = None) -> TrainConfig:
    """The base config (or the defaults) with every option given on the command line applied."""
    base = base or TrainConfig()
    changes = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None
    }
    return base.replace(**changes)
