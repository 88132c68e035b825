"""The runtime: device, threads and precision decided once, with both hardware branches tested here.

NER_HPO_BFLOAT16=0 reports the CPU as having no bfloat16 hardware; a monkeypatched detector reports
it present. The float32-only path therefore runs in CI whatever CPU CI has.
"""

import json

import pytest
import torch

from ner_core import runtime
from ner_core.errors import UserError
from ner_core.runtime import Runtime, decide_runtime, fallback

from .conftest import run

NO_BF16 = (
    "--precision bfloat16 needs a CPU with AVX512-BF16 or AMX; NER_HPO_BFLOAT16=0 says this one has neither"
    " (use float32 or auto)"
)


@pytest.fixture
def without_bfloat16(monkeypatch):
    monkeypatch.setenv("NER_HPO_BFLOAT16", "0")


@pytest.fixture
def with_bfloat16(monkeypatch):
    monkeypatch.delenv("NER_HPO_BFLOAT16", raising=False)
    monkeypatch.setattr(runtime, "_bfloat16_instructions", lambda: True)


def test_auto_picks_float32_without_bfloat16_hardware(without_bfloat16):
    assert decide_runtime("cpu", 1, "auto") == Runtime("cpu", 1, "float32")
    with pytest.raises(UserError) as caught:
        decide_runtime("cpu", 1, "bfloat16")
    assert str(caught.value) == NO_BF16


def test_auto_picks_bfloat16_where_the_cpu_has_it(with_bfloat16):
    assert decide_runtime("cpu", 2, "auto") == Runtime("cpu", 2, "bfloat16")
    assert decide_runtime("cpu", 2, "float32").precision == "float32"


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"), [(False, False, False), (True, False, True), (False, True, True)]
)
def test_bfloat16_hardware_means_its_instructions_not_onednns_emulation(monkeypatch, avx512_bf16, amx, expected):
    # oneDNN answers yes on any AVX512 CPU, emulating bfloat16 where the instructions are missing,
    # and an emulated bfloat16 LSTM trains slower than float32: auto must choose by the instructions.
    monkeypatch.delenv("NER_HPO_BFLOAT16", raising=False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    runtime._bfloat16_instructions.cache_clear()
    try:
        assert runtime.cpu_bfloat16() is expected
        assert decide_runtime("cpu", 1, "auto").precision == ("bfloat16" if expected else "float32")
    finally:
        runtime._bfloat16_instructions.cache_clear()


def test_threads_default_to_torchs_and_are_checked():
    assert decide_runtime("cpu", None, "float32").threads == torch.get_num_threads()
    with pytest.raises(UserError, match="--threads must be at least 1, got 0"):
        decide_runtime("cpu", 0, "float32")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the no-CUDA branch cannot be tested")
def test_cuda_without_a_gpu_is_one_line_and_auto_means_cpu():
    assert decide_runtime("auto", 1, "float32").device == "cpu"
    for device in ("cuda", "cuda:1"):
        with pytest.raises(UserError, match=rf"--device {device} needs an NVIDIA GPU with CUDA, and torch sees none"):
            decide_runtime(device, 1, "float32")
    with pytest.raises(UserError, match="--device must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        decide_runtime("gpu", 1, "float32")


def test_a_bfloat16_record_runs_in_float32_where_the_hardware_lacks_it(without_bfloat16):
    here = Runtime("cpu", 1, "float32")
    assert fallback("float32", here, "it ran") == (here, None)
    assert fallback(None, here, "it ran") == (here, None)
    used, note = fallback("bfloat16", here, "this model was trained")
    assert used == here
    assert (
        note == "note: this model was trained with a bfloat16 LSTM, but this CPU has no bfloat16 hardware: "
        "running in float32"
    )


def test_a_bfloat16_record_keeps_bfloat16_where_the_hardware_has_it(with_bfloat16):
    assert fallback("bfloat16", Runtime("cpu", 1, "float32"), "it ran") == (Runtime("cpu", 1, "bfloat16"), None)


def test_cli_asked_for_bfloat16_without_the_hardware_stops_with_one_line(corpus_dir, monkeypatch):
    monkeypatch.setenv("NER_HPO_BFLOAT16", "0")
    proc = run("ner_core.train", "--data-dir", str(corpus_dir), "--precision", "bfloat16", "--max-epochs", "1")
    assert proc.returncode == 2
    assert proc.stderr == f"error: {NO_BF16}\n"


def test_a_model_trained_in_bfloat16_predicts_in_float32_without_the_hardware(corpus_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("NER_HPO_BFLOAT16", "0")
    out = tmp_path / "model"
    small = "--quiet --threads 1 --embed-dim 8 --hidden-size 8 --num-layers 1 --max-epochs 1".split()
    proc = run("ner_core.train", "--data-dir", str(corpus_dir), "--out", str(out), *small)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["runtime"] == {"device": "cpu", "device_name": "cpu", "threads": 1, "precision": "float32"}
    metrics["runtime"]["precision"] = "bfloat16"  # as if trained on a machine with bfloat16 hardware
    (out / "metrics.json").write_text(json.dumps(metrics))
    proc = run("ner_core.predict", str(out), input="之張王曰\n之洛陽\n")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2
    assert (
        proc.stderr == "note: this model was trained with a bfloat16 LSTM, but this CPU has no bfloat16 "
        "hardware: running in float32\n"
    )
