"""``study.run --workers K``: K worker processes on this machine sharing one study through its storage."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import optuna
import torch
from tqdm import tqdm

from ner_core.errors import UserError
from ner_core.runtime import Runtime

from .loop import finished

# Small trials leave a GPU mostly idle: 4 at once on one H100 gave 1.8x the trials per hour of one,
# 8 at once 2.0x (the GPU issue's measurement), so 4 per GPU. On CPUs one single-threaded worker
# per core (2 on the 2-core development machine), at most 8: more parallel trials make TPE's
# draws less informed in a 50-trial study.
WORKERS_PER_GPU = 4
MAX_CPU_WORKERS = 8


def auto_workers(device: str) -> int:
    """--workers auto: 4 per visible GPU where trials train on GPUs, else one per CPU core (at most 8)."""
    if device != "cpu" and torch.cuda.is_available():
        return WORKERS_PER_GPU * (1 if device.startswith("cuda:") else torch.cuda.device_count())
    return max(1, min(os.cpu_count() or 1, MAX_CPU_WORKERS))


def auto_jobs(device: str, threads: int) -> int:
    """study.best's --jobs auto: one training per visible GPU where they train on GPUs (one for
    ``cuda:N``), else one per ``threads`` CPU cores (at most 8)."""
    if device != "cpu" and torch.cuda.is_available():
        return 1 if device.startswith("cuda:") else torch.cuda.device_count()
    return max(1, min((os.cpu_count() or 1) // max(1, threads), MAX_CPU_WORKERS))


def gpu_slots(runtime: Runtime, workers: int) -> list[str | None]:
    """Worker k's GPU as CUDA_VISIBLE_DEVICES names it, round robin over the GPUs the runtime may use
    (all visible ones for ``cuda``, one for ``cuda:N``); several workers may share a GPU. None for
    each worker on a CPU."""
    if not runtime.cuda:
        return [None] * workers
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = [g.strip() for g in listed.split(",")] if listed else [str(i) for i in range(torch.cuda.device_count())]
    if ":" in runtime.device:
        visible = [visible[int(runtime.device.split(":")[1])]]
    return [visible[k % len(visible)] for k in range(workers)]


def placement(slots: list[str | None], threads: int) -> str:
    """Where the workers run, in one line."""
    if slots[0] is None:
        return f"{len(slots)} workers on the CPU, {threads} torch thread(s) each"
    per_gpu = {gpu: [k for k, g in enumerate(slots) if g == gpu] for gpu in dict.fromkeys(slots)}
    where = "; ".join(f"GPU {gpu}: worker(s) {', '.join(map(str, ks))}" for gpu, ks in per_gpu.items())
    return f"{len(slots)} workers on {len(per_gpu)} GPU(s), {threads} torch thread(s) each ({where})"


def run_workers(
    study: optuna.Study,
    argv: list[str],
    threads: int,
    seed: int,
    target: int,
    logs: Path,
    bar: bool,
    env: Mapping[str, str],
    slots: list[str | None],
) -> None:
    """Start one copy of this ``study.run`` command per slot (each its own seed, ``threads`` torch
    threads, log file ``logs/worker-K.log`` and, on GPUs, the one GPU of its slot), show their
    common progress, and wait for them.

    ``env`` is added to their environment: what must not show in their command lines (the storage URL).
    A progress bar in a terminal (``bar``), a line per newly finished trial elsewhere (a log file).
    """
    logs.mkdir(parents=True, exist_ok=True)
    children = []
    for k, gpu in enumerate(slots):
        log = (logs / f"worker-{k}.log").open("w")
        command = [sys.executable, "-m", "study.run", *argv, "--workers", "1", "--threads", str(threads)]
        command += ["--no-report", "--child", "--seed", str(seed + 1000 * k)]
        placed = dict(env)
        if gpu is not None:  # the worker sees its GPU alone, as cuda:0
            command += ["--device", "cuda"]
            placed["CUDA_VISIBLE_DEVICES"] = gpu
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **placed})
        children.append((child, log))
    print(f"{placement(slots, threads)}; their logs: {logs}/worker-*.log")
    progress = tqdm(
        total=target,
        initial=finished(study),
        desc=f"study {study.study_name}",
        unit="trial",
        disable=None if bar else True,  # None: no bar where stderr is not a terminal
    )
    lines = bar and progress.disable
    try:
        while any(p.poll() is None for p, _ in children):
            time.sleep(1.0)
            done = min(finished(study), target)
            if lines and done != progress.n:
                print(f"study {study.study_name}: {done}/{target} trials finished", flush=True)
            progress.n = done
            progress.refresh()
    finally:
        for process, log in children:
            process.wait()
            log.close()
        progress.close()
    failed = [k for k, (p, _) in enumerate(children) if p.returncode not in (0, None)]
    if failed:
        raise UserError(f"worker(s) {', '.join(map(str, failed))} failed; see {logs}/worker-N.log")
