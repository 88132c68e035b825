"""``python -m study.dashboard``: watch the studies of a storage in a browser (optuna-dashboard).

The storage is opened as every command of the suite opens it (``--storage``, else
``$NER_HPO_STORAGE``, else results/study.db), so one command serves SQLite, PostgreSQL and journal
files alike, with a password taken from PGPASSWORD, ~/.pgpass or NER_HPO_STORAGE. The
``optuna-dashboard`` command itself wants other spellings (a driver in a PostgreSQL URL, a journal
file by its bare path).
"""

from __future__ import annotations

import argparse
import sys

import optuna
import optuna_dashboard

from ner_core.errors import UserError
from storage import DEFAULT_URL, ENV_STORAGE, choose_storage, open_storage

DEFAULT_HOST = "127.0.0.1"  # this machine only; --host 0.0.0.0 to be reached from others
DEFAULT_PORT = 8080


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m study.dashboard",
        description="Serve the studies of a storage with optuna-dashboard, live while workers write to it.",
        epilog="Example: python -m study.dashboard   (then open http://127.0.0.1:8080)",
    )
    parser.add_argument("--storage", help=f"storage URL (default: ${ENV_STORAGE}, else {DEFAULT_URL})")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    where = choose_storage(args.storage)
    if note := where.password_note():
        print(note, file=sys.stderr)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        if not 0 < args.port < 65536:
            raise UserError(f"--port must be within 1-65535, got {args.port}")
        # no heartbeats (the dashboard runs no trial), and no new empty database for a mistyped path
        storage = open_storage(where.url, heartbeat=False, create=False)
        names = sorted(optuna.get_all_study_names(storage))
        print(
            f"dashboard of {where} ({len(names)} stud{'y' if len(names) == 1 else 'ies'}"
            f"{': ' + ', '.join(names) if names else ''}) at http://{args.host}:{args.port}/ (Ctrl-C stops it)",
            flush=True,
        )
        optuna_dashboard.run_server(storage, host=args.host, port=args.port)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the port is taken, or the address is not this machine's
        print(
            f"error: cannot listen on {args.host}:{args.port} ({err.strerror or err}); try another --port",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
