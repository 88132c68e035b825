"""``python -m storage.bench``: trials per minute with 1, 2, 4 independent workers per storage.

Each worker is a separate ``python -m study.run`` (as on separate machines) on a fresh storage:
a new SQLite file, or a new PostgreSQL database created next to --postgres and dropped after.
The configuration is tiny on purpose (ner_core.synthetic's corpus of 120 sentences, one epoch of a 1-layer
LSTM of 8 units) so that the storage, not the training, is what the numbers show. Two rates:
"wall" counts the whole run (Python and torch start-up included), "trials" only the span from
the first trial's start to the last one's end, as recorded in the storage.

    python -m storage.bench --workers 1 2 4 --trials 16 --backends sqlite postgresql
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from optuna.trial import TrialState

from ner_core.synthetic import make_corpus

from . import open_storage

STUDY = "bench"
TINY = (
    "--max-epochs 1 --hidden-sizes 8 --layers-range 1 1 --batch-sizes 16 --embed-dim 8 "
    "--no-baseline --no-report --quiet --threads 1"
).split()


class Postgres:
    """Fresh databases on the server of ``admin_url`` (a database to connect to for CREATE DATABASE)."""

    def __init__(self, admin_url: str):
        import psycopg

        self.psycopg = psycopg
        self.admin_url = admin_url
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3):
            pass

    def create(self) -> str:
        name = f"ner_hpo_bench_{uuid.uuid4().hex[:10]}"
        with self.psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return urlunsplit(urlsplit(self.admin_url)._replace(path=f"/{name}"))

    def drop(self, url: str) -> None:
        with self.psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """--backends and --postgres, shared by the storage benchmarks."""
    parser.add_argument("--backends", nargs="+", choices=("sqlite", "postgresql"), default=["sqlite", "postgresql"])
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="an existing database on the server; the benchmark's databases are created beside it and dropped",
    )


def connect_postgres(args: argparse.Namespace) -> Postgres | None:
    """The server behind --postgres when PostgreSQL is among --backends; None (and why) when unreachable."""
    if "postgresql" not in args.backends:
        return None
    try:
        return Postgres(args.postgres)
    except Exception as err:  # missing driver or server: measure the rest
        print(f"postgresql skipped: {args.postgres}: {str(err).strip().splitlines()[0]}", file=sys.stderr)
        return None


def run(url: str, workers: int, trials: int, folder: Path) -> dict[str, float]:
    """Start ``workers`` study.run processes on ``url``; the figures once all have ended."""
    command = [sys.executable, "-m", "study.run", "--study-name", STUDY, "--storage", url, "--trials", str(trials)]
    command += ["--data-dir", str(folder / "corpus"), *TINY]
    started = time.perf_counter()
    logs = [folder / f"worker-{k}.log" for k in range(workers)]
    processes = []
    for k, log in enumerate(logs):
        with log.open("w") as out:
            # A seed per worker, as study.run --workers gives its children: no two draw the same trials.
            command_k = [*command, "--seed", str(42 + 1000 * k)]
            processes.append(subprocess.Popen(command_k, cwd=folder, stdout=out, stderr=subprocess.STDOUT))
    codes = [p.wait() for p in processes]
    wall = time.perf_counter() - started
    for code, log in zip(codes, logs):
        if code != 0:
            print(f"a worker exited {code}:\n{log.read_text()}", file=sys.stderr)
    storage = open_storage(url, heartbeat=False)
    done = storage.get_all_trials(storage.get_study_id_from_name(STUDY), deepcopy=False)
    ended = [t for t in done if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    span = (max(t.datetime_complete for t in ended) - min(t.datetime_start for t in ended)).total_seconds()
    if hasattr(storage, "engine"):
        storage.engine.dispose()  # no connection left open on a database about to be dropped
    return {
        "finished": len(ended),
        "failed": sum(t.state == TrialState.FAIL for t in done) + sum(c != 0 for c in codes),
        "wall": wall,
        "per_min_wall": 60 * len(ended) / wall,
        "per_min_trials": 60 * len(ended) / span if span > 0 else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storage.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts (default 1 2 4)")
    parser.add_argument("--trials", type=int, default=16, help="finished trials per run (default 16)")
    add_backend_arguments(parser)
    args = parser.parse_args(argv)
    if args.trials < 1 or min(args.workers) < 1:
        parser.error("--trials and --workers must be at least 1")
    postgres = connect_postgres(args)
    rows = []
    print(f"{os.cpu_count()} CPU cores; {args.trials} trials per run; 1 epoch, hidden 8, 120 training sentences")
    header = ("backend", "workers", "finished", "failed", "wall s", "/min wall", "/min trials")
    print("{:<11} {:>7} {:>8} {:>6} {:>7} {:>9} {:>11}".format(*header))
    with tempfile.TemporaryDirectory(prefix="ner-hpo-bench-") as tmp:
        folder = Path(tmp)
        make_corpus(folder / "corpus", (120, 30, 30))
        for backend in args.backends:
            if backend == "postgresql" and postgres is None:
                continue
            for workers in args.workers:
                url = postgres.create() if backend == "postgresql" else f"sqlite:///{folder}/{uuid.uuid4().hex}.db"
                try:
                    row = run(url, workers, args.trials, folder)
                finally:
                    if backend == "postgresql":
                        postgres.drop(url)
                rows.append(row)
                print(
                    f"{backend:<11} {workers:>7} {row['finished']:>8} {row['failed']:>6} {row['wall']:>7.1f} "
                    f"{row['per_min_wall']:>9.1f} {row['per_min_trials']:>11.1f}",
                    flush=True,
                )
    return 1 if any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
