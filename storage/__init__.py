"""storage: from a URL to an Optuna storage; the only package that knows database URLs."""

from .backends import DEFAULT_URL, Heartbeat, StorageError, describe, open_storage

__all__ = ["DEFAULT_URL", "Heartbeat", "StorageError", "describe", "open_storage"]
