import subprocess
import sys

import pytest
import torch

from ner_core.config import TrainConfig
from ner_core.runtime import cpu_bfloat16
from ner_core.synthetic import make_corpus

# The suite runs on 2 shared cores: one torch thread per test process keeps timings sane.
torch.set_num_threads(1)


@pytest.fixture
def corpus_dir(tmp_path):
    return make_corpus(tmp_path / "corpus")


@pytest.fixture
def tiny_config():
    """A configuration small enough to train in about a second."""
    return TrainConfig(embed_dim=16, hidden_size=16, num_layers=1, batch_size=16, lr=1e-2, max_epochs=3, patience=3)


# Tests that compute in bfloat16 need the hardware; everything else runs everywhere.
needs_bfloat16 = pytest.mark.skipif(
    not cpu_bfloat16(), reason="needs a CPU with bfloat16 hardware (AVX512-BF16 or AMX); this one has neither"
)


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """``python -m ARGS...`` as a user would run it, its output captured as text."""
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, **kwargs)
