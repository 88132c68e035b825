"""The benchmark scripts run end to end on a tiny corpus (their figures come from real runs)."""

import json

from ner_core import bench as train_bench
from ner_core.synthetic import make_corpus
from study import bench as study_bench

from .conftest import needs_bfloat16


def bench_args(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", (200, 20, 5), max_len=20)
    out = tmp_path / "train.json"
    return out, [
        "--data-dir",
        str(corpus),
        "--preset",
        "128x1",
        "--max-batches",
        "3",
        "--threads",
        "1",
        "--out",
        str(out),
    ]


@needs_bfloat16
def test_training_bench_compares_both_ways(tmp_path, capsys):
    out, args = bench_args(tmp_path)
    assert train_bench.main([*args, "--precisions", "float32", "bfloat16"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["way"] for r in rows] == ["notebook", "float32", "bfloat16"]
    notebook, *ours = rows
    for row in ours:
        assert row["padding"] < notebook["padding"]
        assert row["speedup"] == row["train_tokens_per_s"] / notebook["train_tokens_per_s"]
    assert "speed-up" in capsys.readouterr().out


def test_training_bench_skips_bfloat16_without_the_hardware(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NER_HPO_BFLOAT16", "0")
    out, args = bench_args(tmp_path)
    assert train_bench.main([*args, "--precisions", "float32", "bfloat16"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["way"] for r in rows] == ["notebook", "float32"]
    assert rows[1]["padding"] < rows[0]["padding"]
    captured = capsys.readouterr()
    assert "bfloat16 rows skipped: bfloat16 needs a CPU with AVX512-BF16 or AMX; this one has neither" in captured.err
    assert "speed-up" in captured.out


def test_time_to_target_bench_runs_both_arms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus = make_corpus(tmp_path / "corpus", (80, 20, 5))
    out = tmp_path / "bench"
    tiny = [
        "--max-epochs",
        "2",
        "--hidden-sizes",
        "8",
        "--layers-range",
        "1",
        "1",
        "--batch-sizes",
        "16",
        "--embed-dim",
        "8",
    ]
    args = [
        "--data-dir",
        str(corpus),
        "--budget",
        "4",
        "--seeds",
        "1",
        "--target",
        "0.05",
        "1.01",
        "--threads",
        "1",
        "--jobs",
        "2",
        "--out",
        str(out),
        "--",
        *tiny,
    ]
    assert study_bench.main(args) == 0
    report = json.loads((out / "time_to_target.json").read_text())
    assert set(report["results"]) == {"A", "B"}
    for runs in report["results"].values():
        assert runs[0]["time_to_target"]["0.05"] is not None and runs[0]["best"] >= 0.05
        assert runs[0]["time_to_target"]["1.01"] is None  # unreachable: reported as never, not as a time
    assert (out / "time_to_target.html").is_file()
