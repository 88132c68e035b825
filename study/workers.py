"""``study.run --workers K``: K worker processes on this machine sharing one study through its storage."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import optuna
from tqdm import tqdm

from ner_core.errors import UserError

from .loop import finished


def run_workers(
    study: optuna.Study,
    argv: list[str],
    workers: int,
    threads: int,
    seed: int,
    target: int,
    logs: Path,
    bar: bool,
    env: Mapping[str, str],
) -> None:
    """Start ``workers`` copies of this ``study.run`` command (each its own seed, ``threads`` torch
    threads and log file ``logs/worker-K.log``), show their common progress, and wait for them.

    ``env`` is added to their environment: what must not show in their command lines (the storage URL).
    A progress bar in a terminal (``bar``), a line per newly finished trial elsewhere (a log file).
    """
    logs.mkdir(parents=True, exist_ok=True)
    children = []
    for k in range(workers):
        log = (logs / f"worker-{k}.log").open("w")
        command = [sys.executable, "-m", "study.run", *argv, "--workers", "1", "--threads", str(threads)]
        command += ["--no-report", "--child", "--seed", str(seed + 1000 * k)]
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
        children.append((child, log))
    print(f"{workers} workers, {threads} torch thread(s) each; their logs: {logs}/worker-*.log")
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
