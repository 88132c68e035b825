"""From a URL (or nothing) to an Optuna storage.

- nothing: ``sqlite:///results/study.db`` (embedded; folder created; WAL and a busy timeout so
  a few local workers and an open optuna-dashboard do not fail with 'database is locked')
- ``postgresql://user@host:port/db``: many workers on many machines (psycopg 3, pool_pre_ping)
- ``journal:///path/to/study.log``: Optuna's journal file, for a shared folder without a server

RDB storages get heartbeats: a trial whose worker died is marked FAIL after the grace period and
queued again with the same parameters (RetryHeartbeatStaleTrialCallback), at most a few times;
a trial that never beat counts too (``stale.StaleTrialStorage``). The timings come from the
environment (see ``Heartbeat``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import sqlite3
import sys
import time
import warnings
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import optuna
import sqlalchemy.exc
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend

from ner_core.errors import UserError, caused_by_interrupt

from .stale import StaleTrialStorage
from .urls import DEFAULT_URL, describe

SQLITE_BUSY_TIMEOUT_S = 60
SCHEMA_ATTEMPTS = 5  # opening a new database: tries while other workers create the same tables
SCHEMES = ("sqlite", "postgresql", "journal")


class StorageError(UserError):
    """A storage URL that cannot be opened; the message says why in one line."""


ENV_INTERVAL = "NER_HPO_HEARTBEAT_INTERVAL"
ENV_GRACE = "NER_HPO_GRACE_PERIOD"
ENV_RETRY = "NER_HPO_MAX_RETRY"


@dataclass(frozen=True)
class Heartbeat:
    """How a dead worker is noticed. A live worker beats every ``interval`` seconds; a running
    trial with no beat for ``grace_period`` seconds is failed and retried (``max_retry`` times).

    60 s / 180 s: a beat is one small UPDATE, so a minute costs nothing, and three missed beats
    rule out a slow epoch or a busy database being taken for a dead worker.

    Tests and operators change them without code changes through environment variables, read by
    ``Heartbeat.from_env()`` (what ``open_storage`` uses by default), in whole seconds:
    ``NER_HPO_HEARTBEAT_INTERVAL`` (default 60), ``NER_HPO_GRACE_PERIOD`` (default 180, must be
    more than the interval) and ``NER_HPO_MAX_RETRY`` (default 3; 0 fails a dead worker's trial
    without retrying it). Every worker of a study should see the same values.
    """

    interval: int = 60
    grace_period: int = 180
    max_retry: int = 3

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Heartbeat:
        """The defaults, overridden by NER_HPO_HEARTBEAT_INTERVAL / _GRACE_PERIOD / _MAX_RETRY."""
        default = cls()
        interval = _env_seconds(environ, ENV_INTERVAL, default.interval, minimum=1)
        grace = _env_seconds(environ, ENV_GRACE, default.grace_period, minimum=1)
        if grace <= interval:
            raise StorageError(
                f"{ENV_GRACE}={grace} must be more than the heartbeat interval ({interval} s), "
                "or live workers' trials are failed"
            )
        return cls(interval, grace, _env_seconds(environ, ENV_RETRY, default.max_retry, minimum=0))


def _env_seconds(environ: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise StorageError(f"{name} must be a whole number >= {minimum}, got {text!r}")
    return value


def open_storage(
    url: str | None = None, heartbeat: Heartbeat | bool = True, create: bool = True
) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url`` (default: the embedded SQLite file results/study.db).

    ``heartbeat`` (SQLite and PostgreSQL only): True for ``Heartbeat.from_env()``, False for none.
    ``create=False`` (for readers such as the dashboard): a SQLite or journal file that does not
    exist is an error, not a new empty file.
    """
    url = url or DEFAULT_URL
    if heartbeat is True:
        heartbeat = Heartbeat.from_env()
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme == "sqlite":
        prepared = _prepare_sqlite(url, create)
        return _rdb(prepared, {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}, heartbeat, url)
    if scheme in ("postgresql", "postgres"):
        return _rdb(_prepare_postgres(url), {"pool_pre_ping": True}, heartbeat, url)
    if scheme == "journal":
        return _journal(url, create)
    raise StorageError(
        f"{describe(url)}: unknown storage scheme {scheme!r}; use one of "
        "sqlite:///PATH, postgresql://USER@HOST:PORT/DB, journal:///PATH"
    )


def _prepare_sqlite(url: str, create: bool = True) -> str:
    if not url.startswith("sqlite:///"):
        raise StorageError(f"{url}: a SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db")
    path = Path(url[len("sqlite:///") :])
    if str(path) in ("", ":memory:"):
        return url
    if not create and not path.is_file():
        raise StorageError(f"{url}: no such database file ({path}); python -m study.run creates it")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"{url}: cannot create folder {folder} ({err.strerror})") from None
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise StorageError(f"{url}: {folder} is not writable")
    try:
        _set_wal(path)
    except sqlite3.DatabaseError as err:
        raise StorageError(f"{url}: not a usable SQLite database ({err})") from None
    return url


def _set_wal(path: Path) -> None:
    """WAL lets readers (the dashboard) and one writer work at once; the mode is kept in the file.

    Switching needs the file to itself, which the busy timeout does not wait for: when workers
    start together on a new file, all but one are told 'database is locked' and try again.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            with closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)) as connection:
                if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.05, 0.2))


def engine_url(url: str) -> str:
    """The SQLAlchemy URL of a SQLite or PostgreSQL storage URL (psycopg 3 named as the driver)."""
    scheme, rest = url.split("://", 1)
    return "postgresql+psycopg://" + rest if scheme in ("postgresql", "postgres") else url


def _prepare_postgres(url: str) -> str:
    if importlib.util.find_spec("psycopg") is None:
        raise StorageError(
            f"{describe(url)}: the PostgreSQL driver is missing; install it with "
            "pip install -e '.[postgres]' (psycopg 3)"
        )
    return engine_url(url)


class InterruptedCursorClose(logging.Filter):
    """Drops SQLAlchemy's "Error closing cursor" report (a traceback) where Ctrl-C interrupted the query:
    the command then says in one line that it was interrupted and how to resume."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not caused_by_interrupt(record.exc_info[1] if record.exc_info else None)


class _Stderr(logging.StreamHandler):
    """Warnings and errors to sys.stderr as it is when each comes, as logging's last resort writes."""

    def __init__(self) -> None:
        logging.Handler.__init__(self, logging.WARNING)

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr


def _quiet_interrupted_queries() -> None:
    """Once per process: SQLAlchemy's warnings and errors go to stderr as logging's last resort would
    print them, less those of an interrupted query."""
    logger = logging.getLogger("sqlalchemy")
    if any(isinstance(f, InterruptedCursorClose) for h in logger.handlers for f in h.filters):
        return
    handler = _Stderr()
    handler.addFilter(InterruptedCursorClose())
    logger.addHandler(handler)


def _rdb(url: str, engine_kwargs: dict[str, Any], heartbeat: Heartbeat | bool, given: str) -> RDBStorage:
    _quiet_interrupted_queries()
    beats: dict[str, Any] = {}
    if isinstance(heartbeat, Heartbeat):
        beats = {
            "heartbeat_interval": heartbeat.interval,
            "grace_period": heartbeat.grace_period,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            beats["heartbeat_stale_trial_callback"] = RetryHeartbeatStaleTrialCallback(max_retry=heartbeat.max_retry)
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # with heartbeats, a trial that never beat counts as a dead worker's too (see stale.py)
                kind = StaleTrialStorage if beats else RDBStorage
                return kind(url, engine_kwargs=engine_kwargs, **beats)
        except Exception as err:  # sqlalchemy raises many kinds; all mean "cannot open"
            if attempt + 1 < SCHEMA_ATTEMPTS and _lost_schema_race(err):
                time.sleep(random.uniform(0.1, 0.5) * (attempt + 1))
                continue
            raise StorageError(_connection_message(given, err)) from None
    raise AssertionError("unreachable")


def _lost_schema_race(err: Exception) -> bool:
    """Workers started together on a new database all create its tables: all but one fail."""
    text = str(err)
    return isinstance(err, sqlalchemy.exc.IntegrityError) or "already exists" in text or "database is locked" in text


def _connection_message(url: str, err: Exception) -> str:
    parts = urlsplit(url)
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if parts.scheme.startswith("postgres"):
        where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
        if "does not exist" in first:
            return f"{describe(url)}: {first}"
        return f"{describe(url)}: cannot connect to PostgreSQL at {where} (is PostgreSQL running?): {first}"
    return f"{describe(url)}: cannot open storage: {first}"


def _journal(url: str, create: bool = True) -> JournalStorage:
    path = Path(url[len("journal:///") :]) if url.startswith("journal:///") else None
    if path is None or not str(path):
        raise StorageError(f"{url}: a journal URL is journal:///relative/path.log or journal:////absolute/path.log")
    if not create and not path.is_file():
        raise StorageError(f"{url}: no such journal file ({path}); python -m study.run creates it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as err:
        raise StorageError(f"{url}: cannot open journal file ({err.strerror})") from None
