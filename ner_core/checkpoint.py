"""A training run's state at an epoch end: saved atomically, restored exactly.

``fit(checkpoint=..., resume=...)`` hands out and takes such a state: the model, optimizer,
scheduler and weight average (``capture``), the best epoch's weights and the epoch history (``fit``
adds them), and every random number generator training draws from: Python's, NumPy's, torch's
(CUDA's too, where it is in use) and the batch order's. A run resumed from it goes on with the
numbers the uninterrupted run would have drawn, so on the same machine, runtime and seed it
reaches the same per-epoch scores.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

State = dict[str, Any]
# fit's checkpoint hook: given the state at each epoch end after which training goes on; it holds
# the live tensors, so it is to be saved at once (save_state), not kept.
StateHook = Callable[[State], None]


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def rng_states(order: torch.Generator) -> State:
    """Every generator a training run draws from; ``order`` is the one that shuffles its batches."""
    numpy = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        # as a list: torch.load(weights_only=True) reads no NumPy arrays
        "numpy": {**numpy, "state": {"key": numpy["state"]["key"].tolist(), "pos": numpy["state"]["pos"]}},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "order": order.get_state(),
    }


def restore_rngs(states: State, order: torch.Generator) -> None:
    """Set every generator ``rng_states`` read back to where it was."""
    random.setstate(states["python"])
    numpy = states["numpy"]
    key = np.asarray(numpy["state"]["key"], dtype=np.uint32)
    np.random.set_state({**numpy, "state": {"key": key, "pos": numpy["state"]["pos"]}})
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():  # a run saved on a GPU may go on without one
        torch.cuda.set_rng_state_all(states["cuda"])
    order.set_state(states["order"])


def capture(parts: Mapping[str, Stateful | None], order: torch.Generator) -> State:
    """The state of ``parts`` (model, optimizer, ...; None: not in this run) and of the generators."""
    return {
        "parts": {name: None if part is None else part.state_dict() for name, part in parts.items()},
        "rng": rng_states(order),
    }


def restore(state: State, parts: Mapping[str, Stateful | None], order: torch.Generator) -> None:
    """Load a ``capture``d state into freshly made ``parts`` of the same shapes, generators included."""
    for name, part in parts.items():
        if part is not None:
            part.load_state_dict(state["parts"][name])
    restore_rngs(state["rng"], order)


def save_state(path: str | Path, state: State) -> None:
    """Write ``state`` to ``path`` atomically: a reader, or a run killed at any moment, finds the
    previous file whole or the new one whole, never a part of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    # the rename itself reaches the disk only with its folder
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def load_state(path: str | Path) -> State | None:
    """A state ``save_state`` wrote (tensors on the CPU), or None where there is no file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
