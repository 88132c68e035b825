"""Where and how a process computes: device, torch threads and LSTM precision, decided once.

Every command builds one ``Runtime`` from its ``--device``, ``--threads`` and ``--precision``
options and hands it to whatever trains or predicts. The hyperparameters (TrainConfig) say *what*
is trained; the runtime says *where*: it changes speed, and the last digits of float sums, never
the model. It is recorded beside every result (metrics.json, a trial's user attributes) so that a
run can be reproduced on the same kind of machine.

Hardware checks can be overridden for testing the other branch on a machine that has the feature:
``NER_HPO_BFLOAT16=0`` reports the CPU as having no bfloat16 hardware, and the usual
``CUDA_VISIBLE_DEVICES=`` hides every GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import Any

import torch

from .errors import UserError

PRECISIONS = ("auto", "float32", "bfloat16")
ENV_BFLOAT16 = "NER_HPO_BFLOAT16"


def cpu_bfloat16() -> bool:
    """True when this CPU does bfloat16 arithmetic in hardware (AVX512-BF16 or AMX).

    ``NER_HPO_BFLOAT16=0`` makes it False, so the float32-only path can be tested anywhere.
    """
    return not _turned_off() and _bfloat16_instructions()


def _turned_off() -> bool:
    return os.environ.get(ENV_BFLOAT16, "").strip() == "0"


@functools.cache
def _bfloat16_instructions() -> bool:
    # Not oneDNN's own check (torch.ops.mkldnn._is_mkldnn_bf16_supported): it also says yes on
    # AVX512 CPUs without AVX512-BF16 (Skylake to Ice Lake Xeons), where oneDNN emulates bfloat16,
    # and there a bfloat16 LSTM trained 2.3x slower than float32 (docs/design.md, Where bfloat16 is only emulated).
    try:
        return bool(
            torch.backends.mkldnn.is_available()
            and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        )
    except (AttributeError, RuntimeError):  # a torch build without the checks
        return False


def bfloat16_available(device: str) -> bool:
    """Whether ``device`` ("cpu", "cuda", "cuda:N") computes bfloat16 natively."""
    if device == "cpu":
        return cpu_bfloat16()
    with torch.cuda.device(torch.device(device)):
        return bool(torch.cuda.is_bf16_supported())


def bfloat16_missing(device: str) -> str | None:
    """Why bfloat16 cannot run on ``device`` ("needs ...; this one has neither"), or None when it can."""
    if bfloat16_available(device):
        return None
    if device == "cpu":
        # Under the override the CPU may well have it: say who decided, not what the CPU lacks.
        who = f"{ENV_BFLOAT16}=0 says " if _turned_off() else ""
        return f"needs a CPU with AVX512-BF16 or AMX; {who}this one has neither"
    return f"needs a GPU with bfloat16 (Ampere or newer); {device} has none"


@dataclass(frozen=True)
class Runtime:
    """One process's computing choices, all resolved (no "auto" left)."""

    device: str = "cpu"
    threads: int = 1
    precision: str = "float32"

    @property
    def bfloat16(self) -> bool:
        return self.precision == "bfloat16"

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def device_name(self) -> str:
        """The GPU's name on CUDA; "cpu" otherwise."""
        return torch.cuda.get_device_name(torch.device(self.device)) if self.cuda else "cpu"

    def apply(self) -> None:
        """Set torch's thread count (float sums depend on it: same count, same numbers)."""
        torch.set_num_threads(self.threads)

    def record(self) -> dict[str, Any]:
        """What is kept beside a result."""
        return {
            "device": self.device,
            "device_name": self.device_name,
            "threads": self.threads,
            "precision": self.precision,
        }

    def __str__(self) -> str:
        where = self.device if not self.cuda else f"{self.device} ({self.device_name})"
        return f"{where}, {self.threads} torch thread(s), {self.precision} LSTM"


def decide_runtime(device: str = "auto", threads: int | None = None, precision: str = "auto") -> Runtime:
    """Resolve the options into a Runtime; UserError (one line) for what this machine cannot do.

    device: auto (CUDA when a GPU is visible, else cpu), cpu, cuda or cuda:N.
    precision: auto (bfloat16 where the device has it in hardware, else float32), float32, bfloat16.
    """
    device = _resolve_device(device)
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        precision = "bfloat16" if bfloat16_available(device) else "float32"
    elif precision == "bfloat16" and (missing := bfloat16_missing(device)):
        raise UserError(f"--precision bfloat16 {missing} (use float32 or auto)")
    return Runtime(device, threads or torch.get_num_threads(), precision)


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise UserError(
                f"--device {device} needs an NVIDIA GPU with CUDA, and torch sees none here "
                f"(torch {torch.__version__}; use --device cpu or auto)"
            )
        index = int(device[5:] or 0) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) visible (cuda:0 ...)")
        return device
    raise UserError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")


def fallback(recorded: str | None, runtime: Runtime, what: str) -> tuple[Runtime, str | None]:
    """The runtime in the ``recorded`` precision where its device can do it, else in float32 with
    a one-line note saying so (``what`` names the record, e.g. "this model was trained").

    For precisions chosen on another machine (a saved model, a study's trials): what ran there in
    bfloat16 runs here in float32 rather than failing.
    """
    if recorded not in ("float32", "bfloat16") or recorded == runtime.precision:
        return runtime, None
    if recorded == "bfloat16" and not bfloat16_available(runtime.device):
        where = "this CPU has no bfloat16 hardware" if runtime.device == "cpu" else f"{runtime.device} has no bfloat16"
        return runtime, f"note: {what} with a bfloat16 LSTM, but {where}: running in float32"
    return dataclasses.replace(runtime, precision=recorded), None


def add_runtime_arguments(
    parser: argparse.ArgumentParser, threads_help: str | None = None, precision: bool = True
) -> None:
    """--device, --threads and (unless ``precision`` is False) --precision, with help a newcomer understands."""
    group = parser.add_argument_group("where to compute (speed only: the model is the same)")
    group.add_argument(
        "--device",
        default="auto",
        help="auto (default: the GPU when torch sees one, else cpu), cpu, cuda or cuda:N",
    )
    group.add_argument(
        "--threads", type=int, help=threads_help or "torch CPU threads (default: torch's choice, usually all cores)"
    )
    if not precision:
        return
    group.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="LSTM arithmetic: auto (default) = bfloat16 where the hardware has it (CPUs with AVX512-BF16 or "
        "AMX, GPUs from Ampere on; 1.5x faster on such CPUs, same scores), else float32",
    )


def runtime_from_args(args: argparse.Namespace) -> Runtime:
    """The Runtime the command line asks for (UserError if this machine cannot do it)."""
    return decide_runtime(args.device, args.threads, args.precision)
