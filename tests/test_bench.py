"""The benchmark scripts run end to end on a tiny corpus (their figures come from real runs)."""

import json

import optuna

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
    skipped = (
        "bfloat16 rows skipped: bfloat16 needs a CPU with AVX512-BF16 or AMX;"
        " NER_HPO_BFLOAT16=0 says this one has neither"
    )
    assert skipped in captured.err
    assert "speed-up" in captured.out


def test_time_to_target_bench_compares_arms_on_their_own_seeds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus = make_corpus(tmp_path / "corpus", (80, 20, 5))
    out = tmp_path / "bench"
    tiny = "--max-epochs 2 --hidden-sizes 8 --layers-range 1 1 --batch-sizes 16 --embed-dim 8".split()
    args = ["--data-dir", str(corpus), "--budget", "6", "--seeds", "1", "--arms", "A", "B", "--threads", "1"]
    assert study_bench.main([*args, "--jobs", "2", "--out", str(out), "--", *tiny]) == 0
    report = json.loads((out / "time_to_target.json").read_text())
    assert set(report["results"]) == {"A", "B"}
    (target,) = report["targets"]  # by default: the median best that random search reached
    assert target == report["results"]["B"][0]["best"] > 0
    assert report["summary"]["B"]["reached"][str(target)] == 1
    for arm in ("A", "B"):
        run = report["results"][arm][0]
        assert run["trials"] >= 1 and run["curve"] and run["curve"][-1][1] == run["best"]
    # the arms drew different trials: no shared start-up draws
    studies = {
        arm: optuna.load_study(study_name="bench", storage=f"sqlite:///{out}/arm-{arm}-seed-1.db") for arm in "AB"
    }
    assert studies["A"].trials[0].params != studies["B"].trials[0].params
    assert (out / "time_to_target.html").is_file()


def test_time_to_target_bench_reports_a_target_never_reached(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    corpus = make_corpus(tmp_path / "corpus", (80, 20, 5))
    tiny = "--max-epochs 1 --hidden-sizes 8 --layers-range 1 1 --batch-sizes 16 --embed-dim 8".split()
    args = ["--data-dir", str(corpus), "--budget", "3", "--seeds", "1", "--arms", "C", "--target", "1.01"]
    assert study_bench.main([*args, "--threads", "1", "--out", str(tmp_path / "b"), "--", *tiny]) == 0
    report = json.loads((tmp_path / "b" / "time_to_target.json").read_text())
    assert report["summary"]["C"]["reached"]["1.01"] == 0
    assert report["summary"]["C"]["time_median"]["1.01"] == 3  # a miss counts as the whole budget
    assert "never" in capsys.readouterr().out
