"""A saved model is a folder: weights, config, vocabulary, tags and metrics, written atomically.

The weights are one BiLSTMCRF's, or an Ensemble's (several trainings of one configuration, read
back as one model by ``load_model``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig
from .data import Vocab
from .errors import UserError
from .model import BiLSTMCRF, Ensemble, Tagger
from .runtime import Runtime
from .tags import TagSet, allowed_transitions

FILES = ("model.pt", "config.json", "vocab.json", "tags.json", "metrics.json")
BIGRAMS = "bigrams.json"  # only in a model with --bigram-dim


def write_report(path: Path, report: dict[str, Any]) -> Path:
    """Write a JSON report whole, then rename it into place: a reader never sees half a file."""
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    staging.replace(path)
    return path


def save_model(directory: str | Path, result: Any, metrics: dict[str, Any]) -> Path:
    """Write a TrainResult's best model into ``directory`` (replacing it whole, never half-written)."""
    return _write_model(Path(directory), result.model, result.config, result.vocab, result.tagset, metrics)


def save_ensemble(directory: str | Path, members: Sequence[SavedModel], sources: Sequence[str | Path]) -> Path:
    """Write the saved models ``members`` (loaded from the folders ``sources``) as one Ensemble into
    ``directory``. UserError unless they are trainings of one configuration on one vocabulary and tag
    set, differing at most in their seed; two or more are needed."""
    if len(members) < 2:
        raise UserError(f"an ensemble needs at least two models, got {len(members)}")
    for member, where in zip(members, sources):
        if isinstance(member.model, Ensemble):
            raise UserError(f"{where}: already an ensemble; combine the models it was made of instead")
    first, source = members[0], sources[0]
    for member, other in zip(members[1:], sources[1:]):
        if (member.vocab.itos, member.vocab.bigrams) != (first.vocab.itos, first.vocab.bigrams):
            raise UserError(f"{other}: its vocabulary differs from {source}'s (trained on other data?)")
        if member.tagset != first.tagset:
            raise UserError(f"{other}: its tag set differs from {source}'s")
        differ = [k for k, v in member.config.to_dict().items() if k != "seed" and v != getattr(first.config, k)]
        if differ:
            raise UserError(f"{other}: its configuration differs from {source}'s in {', '.join(differ)}")
    metrics = {
        "config": first.config.to_dict(),
        "runtime": first.metrics.get("runtime", {}),
        "ensemble": [
            {"seed": m.config.seed, "source": str(where), "metrics": m.metrics} for m, where in zip(members, sources)
        ],
    }
    model = Ensemble([m.model for m in members])
    return _write_model(Path(directory), model, first.config, first.vocab, first.tagset, metrics)


def save_with_entity_bias(directory: str | Path, saved: SavedModel, bias: float) -> Path:
    """Write a loaded model into ``directory`` decoding with ``bias`` as its ``entity_bias``: the same
    weights, vocabulary, tags and metrics (``entity_bias`` only changes how it decodes)."""
    config = saved.config.replace(entity_bias=bias)
    return _write_model(Path(directory), saved.model, config, saved.vocab, saved.tagset, saved.metrics)


def _write_model(
    directory: Path, model: Tagger, config: TrainConfig, vocab: Vocab, tagset: TagSet, metrics: dict[str, Any]
) -> Path:
    def write(staging: Path) -> None:
        torch.save(model.state_dict(), staging / "model.pt")
        (staging / "config.json").write_text(config.to_json() + "\n", encoding="utf-8")
        for name, table in (("vocab.json", vocab.itos), (BIGRAMS, vocab.bigrams)):
            if table is not None:
                (staging / name).write_text(json.dumps(table, ensure_ascii=False) + "\n", encoding="utf-8")
        tags = {"scheme": tagset.scheme, "tags": list(tagset.tags)}
        (staging / "tags.json").write_text(json.dumps(tags) + "\n", encoding="utf-8")
        (staging / "metrics.json").write_text(
            json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )

    return _write_folder(directory, write)


def copy_model(source: str | Path, directory: str | Path) -> Path:
    """Copy a saved model folder to ``directory`` (replacing it whole, never half-written)."""
    return _write_folder(Path(directory), lambda staging: shutil.copytree(source, staging, dirs_exist_ok=True))


def _write_folder(directory: Path, write: Callable[[Path], object]) -> Path:
    """Fill a staging folder beside ``directory``, then swap it in: readers see the old or the new one."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        write(staging)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            directory.rename(old)
            staging.rename(directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


@dataclass
class SavedModel:
    """A loaded model with what it needs to tag text."""

    model: Tagger  # a BiLSTMCRF, or an Ensemble of them
    vocab: Vocab
    tagset: TagSet
    config: TrainConfig
    metrics: dict[str, Any]

    @property
    def trained_precision(self) -> str | None:
        """The LSTM precision it was trained in (older models kept it in their config)."""
        return self.metrics.get("runtime", {}).get("precision") or self.metrics.get("config", {}).get("precision")


def load_model(directory: str | Path, runtime: Runtime | None = None) -> SavedModel:
    """Load a folder written by save_model onto ``runtime`` (default: the CPU in float32), whatever
    device it was trained on; UserError if it is not one."""
    directory = Path(directory)
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise UserError(f"{directory}: not a saved model (missing {', '.join(missing)})")
    try:
        config = TrainConfig.load(directory / "config.json")
        if config.bigram_dim and not (directory / BIGRAMS).is_file():
            raise UserError(f"{directory}: not a saved model (missing {BIGRAMS}, which --bigram-dim needs)")
        bigrams = json.loads((directory / BIGRAMS).read_text(encoding="utf-8")) if config.bigram_dim else None
        vocab = Vocab(json.loads((directory / "vocab.json").read_text(encoding="utf-8")), bigrams)
        tags = json.loads((directory / "tags.json").read_text(encoding="utf-8"))
        tagset = TagSet(tags["scheme"], tuple(tags["tags"]))
        metrics = json.loads((directory / "metrics.json").read_text(encoding="utf-8"))
        state = torch.load(directory / "model.pt", map_location="cpu", weights_only=True)
        # an Ensemble's weights are its members', under members.0., members.1., ...
        size = len({key.split(".")[1] for key in state if key.startswith("members.")})
        members = [
            BiLSTMCRF(config, len(vocab), len(tagset), allowed_transitions(tagset), vocab.n_bigrams)
            for _ in range(max(size, 1))
        ]
        model = Ensemble(members) if size else members[0]
        model.load_state_dict(state)
    except (ValueError, KeyError, RuntimeError) as err:
        raise UserError(f"{directory}: damaged saved model ({str(err).splitlines()[0]})") from None
    model.place(runtime or Runtime()).eval()
    return SavedModel(model, vocab, tagset, config, metrics)
