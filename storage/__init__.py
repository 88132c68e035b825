"""storage: from a URL to an Optuna storage; the only package that knows database URLs."""

from .backends import Heartbeat, StorageError, open_storage
from .urls import (
    DEFAULT_URL,
    ENV_STORAGE,
    HOW_TO_PASS,
    StorageURL,
    choose_storage,
    describe,
    has_password,
    without_password,
)

__all__ = [
    "DEFAULT_URL",
    "ENV_STORAGE",
    "HOW_TO_PASS",
    "Heartbeat",
    "StorageError",
    "StorageURL",
    "choose_storage",
    "describe",
    "has_password",
    "open_storage",
    "without_password",
]
