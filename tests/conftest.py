import json
import os
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
import torch

from ner_core.config import TrainConfig
from ner_core.runtime import bfloat16_missing, cpu_bfloat16
from ner_core.synthetic import make_corpus

# The suite runs on 2 shared cores: one torch thread per test process keeps timings sane.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
PG_WHERE = "127.0.0.1:5432"
PG_ADMIN_URL = f"postgresql://postgres@{PG_WHERE}/test"


@pytest.fixture(autouse=True)
def hermetic_environment(monkeypatch, tmp_path):
    """No storage from the shell that runs the tests, a ledger of test readings of each test's own, and
    this checkout's code in every process the tests start (a worker started in tmp_path would
    otherwise import the installed copy, which in a second git worktree is another checkout's)."""
    monkeypatch.delenv("NER_HPO_STORAGE", raising=False)
    monkeypatch.setenv("NER_HPO_LEDGER", str(tmp_path / "test-readings.jsonl"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


@pytest.fixture
def corpus_dir(tmp_path):
    return make_corpus(tmp_path / "corpus")


@pytest.fixture
def tiny_config():
    """A configuration small enough to train in about a second."""
    return TrainConfig(embed_dim=16, hidden_size=16, num_layers=1, batch_size=16, lr=1e-2, max_epochs=3, patience=3)


# Tests that compute in bfloat16 need the hardware; everything else runs everywhere.
needs_bfloat16 = pytest.mark.skipif(not cpu_bfloat16(), reason=f"bfloat16 {bfloat16_missing('cpu')}")


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """``python -m ARGS...`` as a user would run it, its output captured as text."""
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, **kwargs)


def _pg_admin():
    """An autocommit connection to the server's 'test' database, or skip with the reason."""
    try:
        import psycopg
    except ImportError:
        pytest.skip(f"PostgreSQL not reachable at {PG_WHERE}: psycopg is not installed")
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        pytest.skip(f"PostgreSQL not reachable at {PG_WHERE}: {reason}")


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    name = f"ner_hpo_test_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@{PG_WHERE}/{name}"
    finally:
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # also ends stray connections


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    """GET a JSON document; raises on any error status."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())
