"""Where a command's storage URL comes from, and what of it may be shown.

A URL is taken from ``--storage``, else from the environment variable ``NER_HPO_STORAGE``, else
the default SQLite file. A password in it is never printed: messages show it as ``***``, and the
commands the suite prints name the storage so that they work as printed in the same shell
without it (no ``--storage`` when the URL came from the environment; the URL without its
password otherwise, for libpq to find it in ``PGPASSWORD`` or ``~/.pgpass``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "sqlite:///results/study.db"
ENV_STORAGE = "NER_HPO_STORAGE"
HIDDEN = "***"
HOW_TO_PASS = (
    f"give it in PGPASSWORD or ~/.pgpass, or put the whole URL in {ENV_STORAGE} and leave --storage out "
    "(docs/distributed.md, Passwords)"
)


def _password_removed(url: str, replacement: str | None) -> str:
    """``url`` with the password (user info or ``password=`` query field) replaced, or dropped when None."""
    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if parts.password is not None:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{replacement}@{host}" if replacement is not None else f"{user}@{host}"
    if _query_password(query):
        # segment by segment, so that the other fields keep their exact encoding
        fields = [
            field if not field.startswith("password=") else f"password={replacement}"
            for field in query.split("&")
            if not (field.startswith("password=") and replacement is None)
        ]
        query = "&".join(fields)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def has_password(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    return parts.password is not None or _query_password(parts.query)


def _query_password(query: str) -> bool:
    return any(field.startswith("password=") for field in query.split("&"))


def describe(url: str | None) -> str:
    """The URL with any password hidden as ***, for messages."""
    url = url or DEFAULT_URL
    return _password_removed(url, HIDDEN) if has_password(url) else url


def without_password(url: str) -> str:
    """The URL with its password left out: libpq then takes it from PGPASSWORD or ~/.pgpass."""
    return _password_removed(url, None) if has_password(url) else url


@dataclass(frozen=True)
class StorageURL:
    """A command's storage URL and where it came from: ``option`` (--storage), ``environment``
    (NER_HPO_STORAGE) or ``default``. ``url`` holds any password: use it to open, never to print."""

    url: str
    source: str

    def __str__(self) -> str:
        return describe(self.url)

    def __repr__(self) -> str:  # a traceback or a debugger shows no password either
        return f"StorageURL({describe(self.url)!r}, source={self.source!r})"

    @property
    def password_hidden(self) -> bool:
        """True when printed commands name this storage without the password it was given with."""
        return self.source == "option" and has_password(self.url)

    def command_args(self) -> list[str]:
        """How a printed command names this storage so that it works as printed in the same shell."""
        return ["--storage", without_password(self.url)] if self.source == "option" else []

    def password_note(self) -> str | None:
        """For a password given on the command line: it is not shown, and how to pass it instead."""
        if not self.password_hidden:
            return None
        return f"note: the password in --storage is visible to other users (ps) and is never printed; {HOW_TO_PASS}"


def choose_storage(option: str | None, environ: Mapping[str, str] = os.environ) -> StorageURL:
    """--storage if given, else $NER_HPO_STORAGE if set, else the default SQLite file."""
    if option:
        return StorageURL(option, "option")
    if environ.get(ENV_STORAGE, "").strip():
        return StorageURL(environ[ENV_STORAGE].strip(), "environment")
    return StorageURL(DEFAULT_URL, "default")
