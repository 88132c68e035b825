import json
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest
import torch
from optuna.trial import TrialState

from ner_core.errors import NonFiniteLossError
from ner_core.saving import load_model
from ner_core.synthetic import make_corpus
from study import best as study_best
from study import run as study_run


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_corpus(tmp_path / "corpus", (120, 30, 30))
    return tmp_path


def study_args(workdir, *extra, db="study.db"):
    return [
        "--data-dir",
        str(workdir / "corpus"),
        "--storage",
        f"sqlite:///{workdir / db}",
        "--max-epochs",
        "3",
        "--hidden-sizes",
        "8",
        "16",
        "--layers-range",
        "1",
        "1",
        "--batch-sizes",
        "16",
        "32",
        "--embed-dim",
        "8",
        "--quiet",
        "--threads",
        "1",
        "--startup-trials",
        "2",
        "--warmup-epochs",
        "1",
        *extra,
    ]


def load(workdir, db="study.db", name="bilstm-crf"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workdir / db}")


def states(study):
    return [t.state for t in study.get_trials(deepcopy=False)]


def test_study_prunes_resumes_without_overshoot_and_reports(workdir, capsys):
    assert study_run.main(study_args(workdir, "--trials", "6")) == 0
    study = load(workdir)
    assert len(study.trials) == 6 and TrialState.PRUNED in states(study)
    assert all(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states(study))
    out = capsys.readouterr().out
    assert "6 finished trials" in out and "next: python -m study.best --test --storage" in out
    for name in ("trials.csv", "optimization_history.html", "intermediate_values.html", "slice.html"):
        assert (workdir / "results" / "bilstm-crf" / name).is_file()
    assert (workdir / "results" / "bilstm-crf" / "trials.csv").read_text().count("\n") == 7

    assert study_run.main(study_args(workdir, "--trials", "9")) == 0  # resume up to 9
    assert len(load(workdir).trials) == 9
    assert study_run.main(study_args(workdir, "--trials", "9")) == 0  # already there: nothing runs
    assert len(load(workdir).trials) == 9
    trial = load(workdir).trials[0]
    assert {"epochs_run", "best_epoch", "seconds", "tokens_per_s", "parameters", "dev_entity_f1"} <= set(
        trial.user_attrs
    )


def test_same_seed_same_parameters_and_values(workdir):
    for db in ("a.db", "b.db"):
        assert study_run.main(study_args(workdir, "--trials", "4", db=db)) == 0
    a, b = load(workdir, "a.db").trials, load(workdir, "b.db").trials
    assert [t.params for t in a] == [t.params for t in b]
    assert [t.value for t in a] == [t.value for t in b]


def test_baseline_is_the_notebook_configuration(workdir):
    args = study_args(workdir, "--trials", "1", "--max-epochs", "1", "--baseline")
    i = args.index("--hidden-sizes")
    args[i + 1 : i + 3] = ["8", "512"]  # the space must contain the notebook's choices
    args[args.index("--layers-range") + 2] = "3"
    args[args.index("--batch-sizes") + 2] = "128"
    assert study_run.main(args) == 0
    trial = load(workdir).trials[0]
    assert trial.params == {"lr": 5e-4, "hidden_size": 512, "num_layers": 3, "dropout": 0.5, "batch_size": 128}
    assert trial.user_attrs["baseline"] == "notebook"


def test_a_failing_trial_is_recorded_and_the_study_goes_on(workdir, monkeypatch):
    real_fit = study_run.Objective.__call__.__globals__["fit"]
    calls = []

    def flaky_fit(config, *args, **kwargs):
        calls.append(config)
        if len(calls) == 2:
            raise NonFiniteLossError("training loss became nan at epoch 1, batch 3")
        return real_fit(config, *args, **kwargs)

    monkeypatch.setitem(study_run.Objective.__call__.__globals__, "fit", flaky_fit)
    assert study_run.main(study_args(workdir, "--trials", "3")) == 0
    study = load(workdir)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "nan" in failed[0].user_attrs["fail_reason"]
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 3


def test_best_retrains_tests_and_saves_a_loadable_model(workdir, capsys):
    assert study_run.main(study_args(workdir, "--trials", "3", "--no-report")) == 0
    storage = f"sqlite:///{workdir / 'study.db'}"
    torch.set_num_threads(2)  # the retraining must take the trials' thread count (1), not this one
    try:
        assert study_best.main(["--storage", storage, "--seeds", "2", "--test", "--quiet"]) == 0
    finally:
        torch.set_num_threads(1)
    out = workdir / "results" / "bilstm-crf"
    report = json.loads((out / "best.json").read_text())
    assert report["split"] == "test" and report["seeds"] == [42, 43] and len(report["runs"]) == 2
    assert report["threads"] == 1
    assert 0 < report["summary"]["entity_f1"]["mean"] <= 1 and report["summary"]["entity_f1"]["std"] >= 0
    assert set(report["summary"]["per_type"]) == {"LOC", "PER"}
    study = load(workdir)
    # seed 42 retrains exactly what the search trained: the same dev score
    assert report["runs"][0]["dev"]["token_macro_f1"] == pytest.approx(study.best_value)
    assert "| entity f1 |" in (out / "report.md").read_text()
    saved = load_model(out / "model")
    assert saved.config.hidden_size == study.best_params["hidden_size"]
    assert "test scores over 2 seeds" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lr-range", "0.1", "0.01"], "--lr-range must satisfy 0 < LOW <= HIGH <= 1"),
        (["--dropout-range", "0", "1.5"], "--dropout-range must satisfy"),
        (["--hidden-sizes", "0"], "--hidden-sizes must be between 1 and 4096"),
        (["--storage", "mongodb://x/y"], "unknown storage scheme 'mongodb'"),
        (["--trials", "0"], "--trials must be at least 1"),
        (["--baseline"], "--baseline: the notebook's configuration (512 units, 3 layers, batch 128) is outside"),
    ],
)
def test_bad_options_give_one_line_and_exit_2(workdir, capsys, extra, message):
    assert study_run.main(study_args(workdir, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_best_names_the_studies_that_exist_and_needs_a_complete_trial(workdir, capsys):
    storage = f"sqlite:///{workdir / 'study.db'}"
    optuna.create_study(study_name="empty", storage=storage)
    assert study_best.main(["--storage", storage, "--study-name", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no study named 'nope'" in err and "(studies there: empty)" in err
    assert study_best.main(["--storage", storage, "--study-name", "empty"]) == 2
    assert "has no complete trial yet" in capsys.readouterr().err


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_lists_the_study_and_its_trials(workdir):
    assert study_run.main(study_args(workdir, "--trials", "2", "--no-report", "--study-name", "watched")) == 0
    port = free_port()
    dashboard = [sys.executable, "-c", "from optuna_dashboard._cli import main; main()"]
    server = subprocess.Popen(
        [*dashboard, f"sqlite:///{workdir / 'study.db'}", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        studies = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as response:
                    studies = json.load(response)["study_summaries"]
                break
            except OSError:
                time.sleep(0.2)
        assert studies is not None, "optuna-dashboard did not answer"
        (summary,) = [s for s in studies if s["study_name"] == "watched"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}", timeout=5) as r:
            detail = json.load(r)
        assert len(detail["trials"]) == 2
    finally:
        server.terminate()
        server.wait(timeout=10)
