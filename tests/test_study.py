import dataclasses
import json
import math
import os
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
from optuna.trial import TrialState

from ner_core.config import TrainConfig
from ner_core.data import EncodedSplit, load_corpus
from ner_core.entity_bias import GRID, best_bias
from ner_core.errors import NonFiniteLossError
from ner_core.model import Ensemble, with_entity_bias
from ner_core.runtime import decide_runtime
from ner_core.saving import load_model
from ner_core.synthetic import make_corpus
from ner_core.train import evaluate
from storage import choose_storage
from study import best as study_best
from study import objective as study_objective
from study import run as study_run
from study import search, space
from study.stored import StudySettings
from study.summary import summary, trial_line
from study.timing import RunTimes


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_corpus(tmp_path / "corpus", (120, 30, 30))
    return tmp_path


def study_args(workdir, *extra, db="study.db"):
    # TPE's start-up draws; random search has none to set
    startup = [] if ("--sampler", "random") in zip(extra, extra[1:]) else ["--startup-trials", "2"]
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
        *startup,
        "--warmup-epochs",
        "1",
        # the default, given by name: the tests of study arguments compare flags given with those stored
        "--pruner",
        "median",
        *extra,
    ]


def without(args, *flags):
    """``args`` less each flag and the values after it."""
    args = list(args)
    for flag in flags:
        i = args.index(flag)
        end = next((j for j in range(i + 1, len(args)) if args[j].startswith("--")), len(args))
        del args[i:end]
    return args


def load(workdir, db="study.db", name="bilstm-crf"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workdir / db}")


def states(study):
    return [t.state for t in study.get_trials(deepcopy=False)]


def test_study_prunes_resumes_without_overshoot_and_reports(workdir, capsys):
    # random draws: TPE would soon draw only good trials, and nothing would be pruned
    assert study_run.main(study_args(workdir, "--trials", "6", "--sampler", "random")) == 0
    study = load(workdir)
    assert len(study.trials) == 6 and TrialState.PRUNED in states(study)
    assert all(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states(study))
    out = capsys.readouterr().out
    assert "6 finished trials" in out and "next: python -m study.best --test --storage" in out
    assert "ran on: cpu (6 trials)" in out
    for name in ("trials.csv", "optimization_history.html", "intermediate_values.html", "slice.html"):
        assert (workdir / "results" / "bilstm-crf" / name).is_file()
    assert (workdir / "results" / "bilstm-crf" / "trials.csv").read_text().count("\n") == 7

    assert study_run.main(study_args(workdir, "--trials", "9", "--sampler", "random")) == 0  # resume up to 9
    assert len(load(workdir).trials) == 9
    assert study_run.main(study_args(workdir, "--trials", "9", "--sampler", "random")) == 0  # nothing runs
    assert len(load(workdir).trials) == 9
    capsys.readouterr()
    assert study_run.main(study_args(workdir, "--trials", "12", "--sampler", "random", "--timeout", "1e-6")) == 0
    assert len(load(workdir).trials) == 9  # the time was up before a trial could start
    assert "stopped by --timeout at 9 of 12 trials; the same command resumes" in capsys.readouterr().out
    trial = load(workdir).trials[0]
    assert {"epochs_run", "best_epoch", "seconds", "tokens_per_s", "parameters", "dev_entity_f1"} <= set(
        trial.user_attrs
    )


class Killed(BaseException):
    """The process dies here (SIGKILL): nothing after it runs, no except clause sees it."""


def test_a_study_whose_creator_died_writing_its_settings_is_completed_by_the_next_worker(workdir, monkeypatch):
    set_user_attr = optuna.Study.set_user_attr

    def first_then_die(self, key, value):
        set_user_attr(self, key, value)
        raise Killed

    monkeypatch.setattr(optuna.Study, "set_user_attr", first_then_die)
    with pytest.raises(Killed):
        study_run.main(study_args(workdir, "--trials", "2", "--no-report"))
    monkeypatch.setattr(optuna.Study, "set_user_attr", set_user_attr)
    assert len(load(workdir).user_attrs) == 1  # a study with one of its settings
    assert study_run.main(study_args(workdir, "--trials", "2", "--no-report")) == 0
    study = load(workdir)
    assert len(study.trials) == 2 and {"base_config", "space", "data_dir", "metric", "search"} <= set(study.user_attrs)


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


def test_a_trial_running_at_the_deadline_stops_after_its_epoch_as_pruned(workdir, monkeypatch):
    """--timeout ends the search then: a trial still running stops when its epoch in progress ends,
    in whichever seed, and is kept as pruned with the pruner's curve and the reason (never as
    complete with a part-trained seed in its mean)."""
    corpus = load_corpus(workdir / "corpus")
    base = TrainConfig(max_epochs=3, hidden_size=8, embed_dim=8, batch_size=32)
    searched = space.SearchSpace({"lr": (1e-3, 1e-2)})
    runtime = decide_runtime("cpu", 1, "float32")
    where = choose_storage(f"sqlite:///{workdir / 'study.db'}")
    for seeds, deadline in ((2, 4.5), (1, 0.5)):
        ticks = iter(range(1, 100))  # the clock moves one tick per epoch: deadline 4.5 falls in the 5th
        monkeypatch.setattr(study_objective, "time", SimpleNamespace(monotonic=ticks.__next__))
        objective = study_objective.Objective(corpus, base, searched, runtime, seeds=seeds, deadline=deadline)
        study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
        study.optimize(objective, n_trials=1)
        (trial,) = study.trials
        assert trial.state == TrialState.PRUNED and trial.user_attrs["stop_reason"] == study_objective.TIMED_OUT
        epochs = [1, 2, 3] if seeds == 2 else [1]  # the first seed's curve, as far as it ran
        assert sorted(trial.intermediate_values) == epochs and trial.user_attrs["epochs_run"] == len(epochs)
        assert next(ticks) == (6 if seeds == 2 else 2)  # stopped in epoch 2 of seed 2, or epoch 1: none after
        line = trial_line(study, trial)
        assert "PRUNED" in line and line.count("(stopped at --timeout)") == 1
        printed = summary(study, where, 60.0, target=5)
        assert "stopped by --timeout at 1 of 5 trials (1 of them stopped while running)" in printed
        # no complete trial: study.best has nothing to retrain, so it is not the next command
        assert "python -m study.best" not in printed and "next: the same command again, to finish a trial" in printed


def test_a_failing_trial_is_recorded_and_the_study_goes_on(workdir, monkeypatch):
    real_fit = study_objective.fit
    calls = []

    def flaky_fit(config, *args, **kwargs):
        calls.append(config)
        if len(calls) == 2:
            raise NonFiniteLossError("training loss became nan at epoch 1, batch 3")
        return real_fit(config, *args, **kwargs)

    monkeypatch.setattr(study_objective, "fit", flaky_fit)
    assert study_run.main(study_args(workdir, "--trials", "3")) == 0
    study = load(workdir)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "nan" in failed[0].user_attrs["fail_reason"]
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 3


def test_best_retrains_tests_and_saves_a_loadable_model(workdir, capsys):
    with (workdir / "corpus" / "dev.txt").open("a", encoding="utf-8") as dev_file:
        dev_file.write("魏\tS-LOC\n之\tO\n\n")  # a character only dev has
    assert study_run.main(study_args(workdir, "--trials", "3", "--no-report")) == 0
    storage = f"sqlite:///{workdir / 'study.db'}"
    torch.set_num_threads(2)  # the retraining must take the trials' thread count (1), not this one
    try:
        args = ["--storage", storage, "--seeds", "2", "--refit", "--ensemble", "1", "--test", "--quiet"]
        assert study_best.main(args) == 0
    finally:
        torch.set_num_threads(1)
    out = workdir / "results" / "bilstm-crf"
    report = json.loads((out / "best.json").read_text())
    assert report["split"] == "test" and report["seeds"] == [42, 43] and len(report["runs"]) == 2
    assert report["runtime"]["threads"] == 1
    assert 0 < report["summary"]["entity_f1"]["mean"] <= 1 and report["summary"]["entity_f1"]["std"] >= 0
    assert set(report["summary"]["per_type"]) == {"LOC", "PER"}
    study = load(workdir)
    # seed 42 retrains exactly what the search trained (one seed per trial by default)
    assert study.user_attrs["search"]["seeds_per_trial"] == 1
    dev = [run["dev"]["token_macro_f1"] for run in report["runs"]]
    assert "dev_per_seed" not in study.best_trial.user_attrs  # one seed: its value is that run's
    assert dev[0] == pytest.approx(study.best_value, abs=1e-6) and dev[1] != dev[0]
    assert "| entity f1 |" in (out / "report.md").read_text()
    # where the seeds' token macro-F1 spread comes from, tag by tag, in best.json and report.md
    shares = report["summary"]["token_spread_by_tag"]
    if report["summary"]["token_macro_f1"]["std"] > 0:
        assert sum(r["share"] for r in shares) == pytest.approx(1.0) and all(len(r["f1"]) == 2 for r in shares)
        assert f"| {shares[0]['tag']} | {shares[0]['support']} |" in (out / "report.md").read_text()
    else:
        assert shares == []
    # dev chose; then each seed was refit on train + dev for the whole schedule, and those are tested and kept
    assert report["refit"]
    for run in report["runs"]:
        assert run["refit_folders"] == [run["kept_folder"]]
        refit = json.loads((Path(run["kept_folder"]) / "metrics.json").read_text())
        assert refit["epochs_run"] == refit["best_epoch"] == 3 and refit["dev"] == {}
        assert "魏" in load_model(run["kept_folder"]).vocab.stoi and "魏" not in load_model(run["folder"]).vocab.stoi
    saved = load_model(out / "model")
    best_seed = max(report["runs"], key=lambda r: r["dev"]["token_macro_f1"])
    kept = load_model(best_seed["kept_folder"])
    assert torch.equal(saved.model.embedding.weight, kept.model.embedding.weight)
    assert saved.config.hidden_size == study.best_params["hidden_size"]
    assert (
        f"test scores of trial {study.best_trial.number} over 2 seeds, of the models refit on train + dev"
        in capsys.readouterr().out
    )

    # without --test: dev scores only, and the command that scores test, as the study's summary prints it;
    # --no-refit keeps the model trained on train alone (--ensemble 1 then), here copied to decode with the
    # entity bias given
    args = ["--storage", storage, "--seeds", "1", "--quiet", "--no-refit", "--entity-bias", "1.5"]
    assert study_best.main(args) == 0
    report = json.loads((out / "best.json").read_text())
    assert report["split"] == "dev" and not report["refit"] and "refit_folders" not in report["runs"][0]
    assert report["entity_bias"] == 1.5 and report["dev_by_entity_bias"] is None
    run = report["runs"][0]
    assert Path(run["kept_folder"]) == Path("results/bilstm-crf/kept/trial-{}-seed-0".format(report["trial"]))
    kept, trained, saved = (load_model(f) for f in (run["kept_folder"], run["folder"], out / "model"))
    assert torch.equal(kept.model.embedding.weight, trained.model.embedding.weight) and "魏" not in saved.vocab.stoi
    assert (kept.config.entity_bias, saved.config.entity_bias, trained.config.entity_bias) == (1.5, 1.5, 0.0)
    printed = capsys.readouterr().out
    assert f"python -m study.best --test --storage {storage}   # scores the test split once" in printed
    assert (
        "entity bias 1.5 (given)\n" in printed
        and "decode with entity bias 1.5 (given)." in (out / "report.md").read_text()
    )
    for bad in ("high", "inf"):
        assert study_best.main([*args[:-1], bad]) == 2
        assert capsys.readouterr().err == (
            f"error: --entity-bias must be auto or a number, got '{bad}'\n"
            if bad == "high"
            else "error: --entity-bias must be a finite number, got inf\n"
        )


def test_best_ensemble_keeps_an_ensemble_of_refits_per_seed_and_scores_its_members(workdir, capsys):
    assert study_run.main(study_args(workdir, "--trials", "2", "--no-report")) == 0
    storage = f"sqlite:///{workdir / 'study.db'}"
    args = ["--storage", storage, "--seeds", "2", "--refit", "--ensemble", "2", "--jobs", "2", "--test", "--quiet"]
    args += ["--entity-bias", "auto"]
    assert study_best.main(args) == 0
    out = workdir / "results" / "bilstm-crf"
    report = json.loads((out / "best.json").read_text())
    assert report["ensemble"] == 2 and report["seeds"] == [42, 43]
    for index, run in enumerate(report["runs"]):
        # seed i's ensemble: the refits under seeds 42 + i and 42 + i + 2
        members = [json.loads((Path(f) / "metrics.json").read_text())["config"]["seed"] for f in run["refit_folders"]]
        assert members == [42 + index, 44 + index]
        kept = load_model(run["kept_folder"])
        assert isinstance(kept.model, Ensemble) and [m["seed"] for m in kept.metrics["ensemble"]] == members
        assert len(run["member_tests"]) == 2 and 0 < run["test"]["entity_f1"] <= 1
    singles = [m["token_macro_f1"] for run in report["runs"] for m in run["member_tests"]]
    assert report["single_models"]["token_macro_f1"]["mean"] == pytest.approx(sum(singles) / 4)
    # with auto the kept models decode with the entity bias under which the retrainings (train alone)
    # did best on dev
    scores = {float(b): s for b, s in report["dev_by_entity_bias"].items()}
    assert list(scores) == list(GRID) and report["entity_bias"] == best_bias(scores, "token_macro_f1")
    # (the kept models being ensembles, judged by the ensemble of the retrainings)
    runtime = decide_runtime("cpu", 1, report["runtime"]["precision"])
    dev = load_corpus(workdir / "corpus").dev
    retrained = [load_model(run["folder"], runtime) for run in report["runs"]]
    together = Ensemble([m.model for m in retrained])
    encoded = EncodedSplit(dev, retrained[0].vocab, retrained[0].tagset)
    for bias in (GRID[0], 0.0, GRID[-1]):
        expected = evaluate(with_entity_bias(together, bias), encoded, dev, retrained[0].tagset)
        assert scores[bias] == pytest.approx({k: expected[k] for k in ("token_macro_f1", "entity_f1")})
    for folder in [run["kept_folder"] for run in report["runs"]] + [out / "model"]:
        kept = load_model(folder)
        assert kept.config.entity_bias == report["entity_bias"]
        assert all(m.config.entity_bias == report["entity_bias"] for m in kept.model.members)
    printed = capsys.readouterr().out
    assert (
        f"entity bias {report['entity_bias']:g}, chosen on dev by the ensemble of the 2 retrainings' token macro f1 ("
        in printed
    )
    # the trade is visible: both dev scores at the chosen bias and at 0
    chosen = scores[report["entity_bias"]]
    trade = (
        f"dev at entity bias {report['entity_bias']:g}: token macro-F1 {chosen['token_macro_f1']:.4f}, entity F1 "
        f"{chosen['entity_f1']:.4f}; at 0 (as trained): token macro-F1 {scores[0.0]['token_macro_f1']:.4f}, "
        f"entity F1 {scores[0.0]['entity_f1']:.4f}"
    )
    assert (trade in printed) == (report["entity_bias"] != 0)
    assert isinstance(load_model(out / "model").model, Ensemble)
    assert "over 2 seeds, of the ensembles of 2 models refit on train + dev" in printed
    assert "the 4 single models, each on its own:" in printed
    assert "The 4 single models of the ensembles, each on its own: token macro f1" in (out / "report.md").read_text()
    assert study_best.main(["--storage", storage, "--ensemble", "2"]) == 2  # no refit by default
    assert capsys.readouterr().err == "error: --ensemble combines refits on train + dev; give --refit too\n"


def test_best_time_budget_makes_the_ensembles_as_large_as_are_estimated_to_fit(workdir, capsys, monkeypatch):
    assert study_run.main(study_args(workdir, "--trials", "2", "--no-report")) == 0
    storage = f"sqlite:///{workdir / 'study.db'}"
    args = ["--storage", storage, "--seeds", "1", "--refit", "--quiet", "--jobs", "1"]
    # a budget no training fits: one refit per seed, not the 10 asked for, said in one line
    assert study_best.main([*args, "--ensemble", "10", "--time-budget", "0.0001"]) == 0
    printed = capsys.readouterr().out
    assert "--time-budget 0.0001 min: ensembles of 1, not 10 (estimated " in printed
    assert ", though even these pass the budget" in printed
    report = json.loads((workdir / "results" / "bilstm-crf" / "best.json").read_text())
    assert report["ensemble"] == 1 and len(report["runs"][0]["refit_folders"]) == 1
    # room enough: the size asked for, and the estimate on the line that announces the work
    assert study_best.main([*args, "--ensemble", "2", "--time-budget", "600"]) == 0
    printed = capsys.readouterr().out
    assert "--time-budget" not in printed and "(estimated from the search's own timing)" in printed
    assert json.loads((workdir / "results" / "bilstm-crf" / "best.json").read_text())["ensemble"] == 2
    assert study_best.main([*args, "--time-budget", "0"]) == 2
    assert capsys.readouterr().err == "error: --time-budget must be positive, got 0\n"
    monkeypatch.setattr(study_best, "run_times", lambda *_: None)  # trials of a version that did not time them
    assert study_best.main([*args, "--ensemble", "2", "--time-budget", "0.0001"]) == 0
    assert "--time-budget has nothing to go by; ensembles of 2\n" in capsys.readouterr().err


def test_best_within_a_budget_prefers_a_fast_near_equal_trial_whose_ensembles_fit(workdir, capsys, monkeypatch):
    assert study_run.main(study_args(workdir, "--trials", "1", "--no-report")) == 0
    study = load(workdir)
    made = study.trials[0]
    assert made.value < 0.985  # the tiny model's own trial ranks below both added ones
    for value in (0.99, 0.985):  # a slow best trial and a fast one just below it
        study.add_trial(optuna.trial.create_trial(params=made.params, distributions=made.distributions, value=value))
    slow, fast = RunTimes(100.0, 1000.0), RunTimes(100.0, 100.0)
    monkeypatch.setattr(study_best, "run_times", lambda trial, *_: slow if trial.value == 0.99 else fast)
    # one retraining and 1 or 2 refits on one worker within 20 minutes: the slow trial fits one refit
    # (1100 s; two take 2100), the fast one two (300 s), which gain 0.01 (study.choice): 0.995 > 0.99
    args = ["--storage", f"sqlite:///{workdir / 'study.db'}", "--seeds", "1", "--refit", "--ensemble", "2"]
    args += ["--jobs", "1"]
    assert study_best.main([*args, "--quiet", "--time-budget", "20"]) == 0
    printed = capsys.readouterr().out
    assert "--time-budget 20 min: trial 2 (dev 0.9850, ensembles of 2 fit) chosen over trial 1 (dev 0.9900, " in printed
    report = json.loads((workdir / "results" / "bilstm-crf" / "best.json").read_text())
    assert report["trial"] == 2 and report["ensemble"] == 2
    assert study_best.main([*args, "--quiet", "--time-budget", "20", "--no-cost-aware"]) == 0
    assert "chosen over" not in capsys.readouterr().out
    report = json.loads((workdir / "results" / "bilstm-crf" / "best.json").read_text())
    assert report["trial"] == 1 and report["ensemble"] == 1


def test_best_chooses_among_the_top_trials_by_mean_dev_and_tests_only_the_chosen(workdir, capsys):
    args = without(study_args(workdir, "--trials", "4", "--no-report", "--pruner", "none"), "--startup-trials")
    assert study_run.main(without(args, "--warmup-epochs")) == 0
    storage = f"sqlite:///{workdir / 'study.db'}"
    assert (
        study_best.main(
            ["--storage", storage, "--top", "2", "--seeds", "2", "--refit", "--jobs", "2", "--test", "--quiet"]
        )
        == 0
    )
    report = json.loads((workdir / "results" / "bilstm-crf" / "best.json").read_text())
    ranked = sorted(load(workdir).get_trials(states=(TrialState.COMPLETE,)), key=lambda t: -t.value)[:2]
    assert [c["trial"] for c in report["candidates"]] == [t.number for t in ranked]
    chosen = max(report["candidates"], key=lambda c: c["mean_dev"])
    assert report["trial"] == chosen["trial"] and len(report["runs"]) == 2
    assert all(run["test"] is not None for run in report["runs"])
    runs = workdir / "results" / "bilstm-crf" / "retrained"
    assert len(list(runs.iterdir())) == 4  # every candidate under every seed, in parallel jobs
    refits = workdir / "results" / "bilstm-crf" / "refit"
    # only the chosen one is refit: under 2 seeds x the default ensemble size
    expected = sorted(f"trial-{chosen['trial']}-seed-{i}" for i in range(2 * study_best.DEFAULT_ENSEMBLE))
    assert sorted(p.name for p in refits.iterdir()) == expected
    assert f"chosen: trial {chosen['trial']}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lr-range", "0.1", "0.01"], "--lr-range needs LOW <= HIGH within [0, 1], got 0.1 0.01"),
        (["--lr-range", "0", "0.01"], "--lr-range: --lr must be positive, got 0"),
        (["--dropout-range", "0", "1"], "--dropout-range: --dropout must be in [0, 1), got 1.0"),
        (["--hidden-sizes", "0"], "--hidden-sizes needs values within [1, 4096], got 0"),
        (["--storage", "mongodb://x/y"], "unknown storage scheme 'mongodb'"),
        (["--trials", "0"], "--trials must be at least 1, got 0"),
        (["--startup-trials", "-1"], "--startup-trials must be at least 0, got -1"),
        (["--seeds-per-trial", "0"], "--seeds-per-trial must be at least 1, got 0"),
        (
            ["--sampler", "random", "--startup-trials", "0"],
            "--startup-trials applies to --sampler tpe only",
        ),
        (
            ["--pruner", "hyperband", "--pruner-startup-trials", "0"],
            "--pruner-startup-trials applies to --pruner median only",
        ),
        (["--hidden-size", "8"], "--hidden-size: hidden_size is searched (range --hidden-sizes)"),
        (["--embed-dims", "8", "16"], "--embed-dims is given but embed_dim is not searched; add it to --search"),
        (
            ["--baseline"],
            "--baseline: the notebook's configuration is outside the search space (hidden_size 512, num_layers 3, "
            "batch_size 128); widen --hidden-sizes, --layers-range, --batch-sizes",
        ),
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


def test_resuming_without_data_dir_uses_the_studys_own_corpus(workdir, capsys):
    args = study_args(workdir, "--trials", "2", "--no-report")
    assert study_run.main(args) == 0
    assert not (workdir / "data" / "chisiec").exists()
    assert study_run.main([*without(args, "--data-dir", "--trials"), "--trials", "3"]) == 0
    assert len(load(workdir).trials) == 3
    assert "error" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "given, warmup",
    [
        ([], 1),
        (["--pruner", "hyperband"], study_run.HYPERBAND_WARMUP_EPOCHS),
        (["--pruner", "hyperband", "--warmup-epochs", "2"], 2),
    ],
)
def test_the_warm_up_defaults_to_the_median_pruner_s_and_hyperband_keeps_its_own(given, warmup):
    settings = study_run.settings_from_args(study_run.build_parser().parse_args(given), "corpus", False)
    assert settings.warmup_epochs == warmup and study_run.HYPERBAND_WARMUP_EPOCHS == 3
    pruner = search.make_pruner(settings)
    if isinstance(pruner, optuna.pruners.MedianPruner):
        assert (pruner._n_startup_trials, pruner._n_warmup_steps) == (2, 1)  # docs/decisions.md, The pruner
    else:
        assert pruner._min_resource == warmup


def test_the_pruner_is_stored_and_a_resume_with_another_says_so_once(workdir, capsys):
    args = without(study_args(workdir, "--trials", "3", "--no-report"), "--startup-trials", "--pruner")
    assert study_run.main(args) == 0  # the default pruner: median
    study = load(workdir)
    assert study.user_attrs["search"] == {
        "sampler": "tpe",
        "pruner": "median",
        "startup_trials": 5,
        "pruner_startup_trials": 2,
        "warmup_epochs": 1,
        "seeds_per_trial": 1,
    }
    assert study.metric_names == ["dev token macro-F1"]  # the dashboard's name for the objective
    assert len(study.user_attrs["uid"]) == 32  # its checkpoints' folder, apart from a namesake's elsewhere
    capsys.readouterr()
    args = study_args(workdir, "--trials", "4", "--no-report", "--pruner", "none")
    args = [*without(args, "--warmup-epochs", "--startup-trials", "--hidden-sizes"), "--hidden-sizes", "8"]
    assert study_run.main(args) == 0
    err = capsys.readouterr().err
    assert (
        err == "note: study 'bilstm-crf' keeps the settings it was created with; ignored: --hidden-sizes 8, "
        "--pruner none\n"
    )
    assert load(workdir).user_attrs["search"]["pruner"] == "median" and len(load(workdir).trials) == 4
    args = without(study_args(workdir, "--trials", "4", "--no-report", "--seed", "7"), "--startup-trials")
    assert study_run.main(without(args, "--warmup-epochs", "--pruner")) == 0
    assert capsys.readouterr().err == ""  # a worker's own --seed is not a setting it ignores


def test_a_study_stored_before_seeds_per_trial_keeps_one_seed_per_trial():
    attrs = StudySettings(TrainConfig(), space.SearchSpace.default(), "corpus", seeds_per_trial=2).to_attrs()
    assert StudySettings.from_attrs(attrs, "new").seeds_per_trial == 2
    del attrs["search"]["seeds_per_trial"]
    assert StudySettings.from_attrs(attrs, "old").seeds_per_trial == 1


def test_a_study_stored_before_its_pruner_keeps_median_pruning():
    attrs = StudySettings(TrainConfig(), space.SearchSpace.default(), "corpus").to_attrs()
    assert attrs["search"]["pruner"] == "median"  # the default for new studies, as the design card asks
    del attrs["search"]["pruner_startup_trials"]  # stored before the pruner had start-up trials of its own
    assert StudySettings.from_attrs(attrs, "older").pruner_startup_trials == attrs["search"]["startup_trials"] == 5
    del attrs["search"]
    old = StudySettings.from_attrs(attrs, "old")
    assert (old.pruner, old.seeds_per_trial, old.pruner_startup_trials) == ("median", 1, 5)


def test_seeds_per_trial_scores_a_trial_by_its_seeds_mean_and_best_retrains_those_seeds(workdir, capsys, monkeypatch):
    real_fit = study_objective.fit

    def fit_naming_its_seed(config, *args, **kwargs):
        result = real_fit(config, *args, **kwargs)
        return dataclasses.replace(result, stop_reason=f"{result.stop_reason}, seed {config.seed}")

    monkeypatch.setattr(study_objective, "fit", fit_naming_its_seed)
    args = study_args(workdir, "--trials", "3", "--no-report", "--seeds-per-trial", "2")
    assert study_run.main(args) == 0
    study = load(workdir)
    assert study.user_attrs["search"]["seeds_per_trial"] == 2
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete
    for trial in complete:
        per_seed = trial.user_attrs["dev_per_seed"]
        assert len(per_seed) == 2 and per_seed[0] != per_seed[1]  # two runs, not one counted twice
        assert trial.value == pytest.approx(sum(per_seed) / 2, abs=1e-6)
        assert trial.user_attrs["dev_token_macro_f1"] == pytest.approx(trial.value, abs=1e-6)
    # the pruner judges the first seed's curve: one intermediate value per epoch of that run, and
    # the epoch counts and stop reason are that run's too
    assert all(len(t.intermediate_values) == t.user_attrs["epochs_run"] for t in study.trials)
    assert all(t.user_attrs["stop_reason"].endswith(", seed 42") for t in complete)
    # study.best retrains the same seeds (42, 43): each reproduces its search run exactly
    storage = f"sqlite:///{workdir / 'study.db'}"
    assert study_best.main(["--storage", storage, "--seeds", "2", "--quiet", "--jobs", "1"]) == 0
    report = json.loads((workdir / "results" / "bilstm-crf" / "best.json").read_text())
    runs = [r["dev"]["token_macro_f1"] for r in report["runs"]]
    assert runs == pytest.approx(study.best_trial.user_attrs["dev_per_seed"], abs=1e-6)
    capsys.readouterr()
    assert study_run.main([*without(args, "--seeds-per-trial", "--trials"), "--trials", "3"]) == 0
    assert capsys.readouterr().err == ""  # not given: nothing ignored
    assert study_run.main([*without(args, "--seeds-per-trial"), "--seeds-per-trial", "3"]) == 0
    assert "ignored: --seeds-per-trial 3" in capsys.readouterr().err


def test_a_new_searched_setting_is_one_table_row(workdir, monkeypatch):
    """Embedding sizes are searchable by --search alone; a new row (here: clip_norm) brings its own flag."""
    monkeypatch.setitem(
        space.PARAMS,
        "clip_norm",
        space.Param("clip_norm", "float", (1.0, 5.0), "--clip-range", "gradient clipping", (0.1, 100)),
    )
    args = study_args(
        workdir,
        "--trials",
        "3",
        "--no-report",
        "--search",
        "lr",
        "embed_dim",
        "bigram_dim",
        "clip_norm",
        "--embed-dims",
        "8",
        "12",
        "--bigram-dims",
        "0",
        "4",
        "--clip-range",
        "2",
        "3",
        "--hidden-size",
        "8",
    )
    args[args.index("--embed-dim") : args.index("--embed-dim") + 2] = []  # searched now, so not fixed
    for flag in ("--hidden-sizes", "--layers-range", "--batch-sizes"):  # not searched: no ranges
        i = args.index(flag)
        del args[i : i + (3 if flag != "--hidden-sizes" else 3)]
    assert study_run.main(args) == 0
    trials = load(workdir).trials
    assert all(set(t.params) == {"lr", "embed_dim", "bigram_dim", "clip_norm"} for t in trials)
    assert all(t.params["embed_dim"] in (8, 12) and 2 <= t.params["clip_norm"] <= 3 for t in trials)
    assert all(t.params["bigram_dim"] in (0, 4) for t in trials)
    assert all(t.user_attrs["parameters"] > 0 for t in trials)
    assert load(workdir).user_attrs["base_config"]["hidden_size"] == 8


def test_a_study_and_best_run_without_bfloat16_and_take_over_bfloat16_trials(workdir, monkeypatch, capsys):
    """The float32-only CPU path end to end, and a study whose trials ran in bfloat16 elsewhere."""
    monkeypatch.setenv("NER_HPO_BFLOAT16", "0")
    assert study_run.main(study_args(workdir, "--trials", "2", "--no-report")) == 0
    study = load(workdir)
    assert {t.user_attrs["precision"] for t in study.trials} == {"float32"}

    def ran_in_bfloat16():  # as if a machine with bfloat16 hardware had run the trials so far
        with sqlite3.connect(workdir / "study.db") as db:
            db.execute("UPDATE trial_user_attributes SET value_json = '\"bfloat16\"' WHERE key = 'precision'")

    ran_in_bfloat16()
    capsys.readouterr()
    assert study_run.main(study_args(workdir, "--trials", "3", "--no-report")) == 0
    note = "note: earlier trials ran with a bfloat16 LSTM, but this CPU has no bfloat16 hardware: running in float32\n"
    assert capsys.readouterr().err == note
    assert load(workdir).trials[2].user_attrs["precision"] == "float32"
    ran_in_bfloat16()
    storage = f"sqlite:///{workdir / 'study.db'}"
    assert study_best.main(["--storage", storage, "--seeds", "1", "--test", "--quiet", "--jobs", "1"]) == 0
    captured = capsys.readouterr()
    assert "with a bfloat16 LSTM, but this CPU has no bfloat16 hardware: running in float32" in captured.err
    assert "float32 LSTM" in captured.out
    report = json.loads((workdir / "results" / "bilstm-crf" / "best.json").read_text())
    assert report["runtime"]["precision"] == "float32"


def test_on_a_gpu_the_default_space_covers_the_notebooks_configuration():
    cpu, gpu = space.SearchSpace.default(cuda=False), space.SearchSpace.default(cuda=True)
    assert cpu.outside(TrainConfig()) == ["hidden_size", "num_layers"]  # sized for 2 cores
    assert gpu.outside(TrainConfig()) == []  # so --baseline fits it
    assert gpu.ranges["hidden_size"] == (64, 128, 256, 512) and gpu.ranges["num_layers"] == (1, 3)
    assert gpu.ranges["batch_size"] == cpu.ranges["batch_size"] == (16, 32, 64, 128)
    args = study_run.build_parser().parse_args(["--hidden-sizes", "8"])
    assert space.space_from_args(args, cuda=True).ranges["hidden_size"] == (8,)  # given ranges win


@pytest.fixture
def two_gpus(monkeypatch):
    """What study.workers sees on a machine with GPUs 3 and 5 visible (none is touched)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")


def test_workers_are_placed_on_the_gpus_round_robin(two_gpus):
    from ner_core.runtime import Runtime
    from study import workers

    assert workers.gpu_slots(Runtime("cuda", 4, "bfloat16"), 5) == ["3", "5", "3", "5", "3"]
    assert workers.gpu_slots(Runtime("cuda:1", 4, "bfloat16"), 3) == ["5", "5", "5"]  # one GPU, shared
    assert workers.gpu_slots(Runtime("cpu", 1, "float32"), 2) == [None, None]
    assert workers.auto_workers("auto") == 8 and workers.auto_workers("cuda:0") == 4  # 4 per GPU
    assert workers.auto_workers("cpu") == min(os.cpu_count(), 8)
    assert workers.placement(["3", "5", "3"], 4) == (
        "3 workers on 2 GPU(s), 4 torch thread(s) each (GPU 3: worker(s) 0, 2; GPU 5: worker(s) 1)"
    )


def test_each_gpu_worker_sees_its_gpu_alone(workdir, two_gpus, monkeypatch, capsys):
    from study import workers

    started = []

    class Started:
        returncode = 0

        def __init__(self, command, env, **kwargs):
            started.append((command, env))

        def poll(self):
            return 0

        def wait(self):
            return 0

    monkeypatch.setattr(workers.subprocess, "Popen", Started)
    study = optuna.create_study(storage=f"sqlite:///{workdir / 'w.db'}")
    slots = ["3", "5", "3"]
    workers.run_workers(study, ["--trials", "9"], 4, 42, 9, workdir / "logs", False, {"X": "1"}, slots)
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in started] == slots
    assert all(command[-2:] == ["--device", "cuda"] and env["X"] == "1" for command, env in started)
    assert [command[command.index("--seed") + 1] for command, _ in started] == ["42", "1042", "2042"]
    assert "3 workers on 2 GPU(s)" in capsys.readouterr().out


def write_vectors(path, chars="之乎者也張王李", dim=8):
    """A word2vec text file of ``dim``-sized vectors for ``chars``, plus one character no corpus has."""
    lines = [f"{c} " + " ".join(f"{(i + k) % 7 / 10:.1f}" for k in range(dim)) for i, c in enumerate(chars + "龘")]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_study_knows_its_corpus_refuses_another_and_resumes_on_a_copy(workdir, capsys):
    args = study_args(workdir, "--trials", "2", "--no-report")
    assert study_run.main(args) == 0
    kept = load(workdir).user_attrs["corpus"]
    assert kept["folder"] == str(workdir / "corpus") and kept["scheme"] == "BIOES" and "S-PER" in kept["tags"]
    assert len(kept["train_sha256"]) == len(kept["dev_sha256"]) == 64
    make_corpus(workdir / "other", (120, 30, 30), seed=1)
    other = [*without(args, "--data-dir", "--trials"), "--data-dir", str(workdir / "other"), "--trials", "4"]
    capsys.readouterr()
    assert study_run.main(other) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: study 'bilstm-crf' was made on the corpus in {workdir / 'corpus'}; {workdir / 'other'} holds "
        "another (train.txt, dev.txt differ): give --study-name NAME for a new study on them\n"
    )
    assert len(load(workdir).trials) == 2  # no trial trained
    # a worker (or study.best) pointed at it by $NER_DATA_DIR is refused the same way
    os.environ["NER_DATA_DIR"] = str(workdir / "other")
    try:
        assert study_run.main([*without(args, "--data-dir", "--trials"), "--trials", "4"]) == 2
        assert study_best.main(["--storage", f"sqlite:///{workdir / 'study.db'}", "--quiet"]) == 2
        assert capsys.readouterr().err.count("holds another") == 2
    finally:
        del os.environ["NER_DATA_DIR"]
    # the same corpus in another folder (a copy, another machine) is the study's own
    (workdir / "copy").mkdir()
    for name in ("train.txt", "dev.txt", "test.txt"):
        (workdir / "copy" / name).write_bytes((workdir / "corpus" / name).read_bytes())
    assert study_run.main([*without(other, "--data-dir"), "--data-dir", str(workdir / "copy")]) == 0
    assert len(load(workdir).trials) == 4 and "error" not in capsys.readouterr().err
    # another study name is the way out
    assert study_run.main([*other, "--study-name", "other"]) == 0


def test_a_study_made_before_fingerprints_takes_its_corpus_at_the_next_run(workdir, capsys):
    args = study_args(workdir, "--trials", "2", "--no-report")
    assert study_run.main(args) == 0
    with sqlite3.connect(workdir / "study.db") as db:  # as an older version left it
        db.execute("DELETE FROM study_user_attributes WHERE key IN ('corpus', 'embeddings')")
    assert "corpus" not in load(workdir).user_attrs
    capsys.readouterr()
    assert study_run.main([*without(args, "--trials"), "--trials", "3"]) == 0
    assert capsys.readouterr().err == (
        "note: study 'bilstm-crf' was made before studies stored their corpus; it now keeps that of "
        f"{workdir / 'corpus'}, and later runs on another corpus are refused\n"
    )
    assert load(workdir).user_attrs["corpus"]["folder"] == str(workdir / "corpus")
    make_corpus(workdir / "other", (120, 30, 30), seed=1)
    assert study_run.main([*without(args, "--data-dir"), "--data-dir", str(workdir / "other")]) == 2


def test_a_study_keeps_its_vectors_and_best_retrains_and_refits_with_them(workdir, capsys, monkeypatch):
    vectors = write_vectors(workdir / "vectors.txt")
    args = study_args(workdir, "--trials", "2", "--no-report", "--embeddings", str(vectors))
    assert study_run.main(args) == 0
    kept = load(workdir).user_attrs["embeddings"]
    assert kept["path"] == str(vectors) and len(kept["sha256"]) == 64
    storage = f"sqlite:///{workdir / 'study.db'}"
    best = ["--storage", storage, "--seeds", "1", "--refit", "--ensemble", "1", "--quiet", "--jobs", "1"]
    assert study_best.main(best) == 0
    report = json.loads((workdir / "results" / "bilstm-crf" / "best.json").read_text())
    for folder in (report["runs"][0]["folder"], report["runs"][0]["kept_folder"]):  # retraining, refit
        assert "龘" in load_model(folder).vocab.itos  # only the vectors have it
    # the dev score of the search's trial is reproduced: the same vectors, the same seed
    assert report["runs"][0]["dev"]["token_macro_f1"] == pytest.approx(load(workdir).best_value, abs=1e-6)
    # the same file elsewhere is the study's own; a changed or missing one stops with one line
    moved = workdir / "moved.txt"
    vectors.rename(moved)
    capsys.readouterr()
    assert study_best.main(best) == 2
    assert capsys.readouterr().err == (
        f"error: study 'bilstm-crf' trains with the pretrained vectors of {vectors}, and {vectors} is missing: "
        "give --embeddings PATH to the same file\n"
    )
    write_vectors(vectors, chars="之乎者也")
    assert study_best.main(best) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: study 'bilstm-crf' trains with the pretrained vectors of {vectors} (sha256 ")
    assert err.endswith(f"{vectors} differs: give --study-name NAME for a new study on them\n")
    assert study_run.main([*without(args, "--trials"), "--trials", "3"]) == 2  # the search too
    assert study_best.main([*best, "--embeddings", str(moved)]) == 0
    assert (
        study_run.main([*without(args, "--trials", "--embeddings"), "--trials", "3", "--embeddings", str(moved)]) == 0
    )
    assert len(load(workdir).trials) == 3
    # vectors given to a study made without them
    plain = [*without(args, "--embeddings"), "--study-name", "plain"]
    assert study_run.main(plain) == 0
    capsys.readouterr()
    assert study_run.main([*plain, "--embeddings", str(moved)]) == 2
    assert capsys.readouterr().err == (
        "error: study 'plain' was made without pretrained vectors; give --study-name NAME for a new study on them\n"
    )


def test_a_timeout_that_cannot_hold_the_startup_trials_is_refused_before_anything_is_made(workdir, capsys, monkeypatch):
    from study import budget

    measured = []
    real = budget.fastest_speed
    monkeypatch.setattr(budget, "fastest_speed", lambda *a: measured.append(real(*a)) or 100.0)  # 100 chars/s
    chars = sum(map(len, load_corpus(workdir / "corpus").train))
    # median pruning waits for its 2 start-up trials: each trains 2 seeds of 3 epochs (max_epochs < patience + 1)
    args = study_args(workdir, "--trials", "2", "--no-report", "--timeout", "30", "--seeds-per-trial", "2")
    assert study_run.main(args) == 2
    epoch = chars / 100
    assert capsys.readouterr().err == (
        f"error: --timeout 30: not even the 2 startup trial(s) can finish in it: an epoch of this corpus ({chars:,} "
        f"training characters) takes at least {epoch:.1f} s here (the space's fastest shape, measured), and they "
        f"train 12 epoch(s) at least, 1 at a time; give --timeout {math.ceil(12 * epoch)} or more\n"
    )
    assert measured and measured[0] > 0  # a real timed training ran
    assert not (workdir / "study.db").exists() or not optuna.get_all_study_names(f"sqlite:///{workdir / 'study.db'}")
    # Hyperband may stop a startup trial after its warm-up (1 epoch here), on 2 workers at once
    hyperband = [*without(args, "--pruner", "--timeout"), "--pruner", "hyperband", "--workers", "2", "--timeout", "1"]
    assert study_run.main(hyperband) == 2
    assert (
        f"and they train 2 epoch(s) at least, 2 at a time; give --timeout {math.ceil(epoch)} or more"
        in capsys.readouterr().err
    )
    # a budget that holds them searches; a study past its startup trials is not timed again
    monkeypatch.setattr(budget, "fastest_speed", lambda *a: 1e9)
    assert study_run.main([*without(args, "--timeout"), "--timeout", "600"]) == 0
    monkeypatch.setattr(budget, "fastest_speed", lambda *a: pytest.fail("timed again"))
    assert study_run.main([*without(args, "--timeout", "--trials"), "--timeout", "1e-6", "--trials", "3"]) == 0


def test_the_test_split_is_read_once_per_study_and_every_reading_is_counted(workdir, capsys):
    from ner_core import train as ner_train

    assert study_run.main(study_args(workdir, "--trials", "2", "--no-report")) == 0
    # a reading outside any study, by a plain training on the same corpus
    plain = ["--data-dir", str(workdir / "corpus"), "--out", str(workdir / "plain"), "--max-epochs", "1"]
    assert ner_train.main([*plain, "--hidden-size", "8", "--embed-dim", "8", "--test", "--quiet"]) == 0
    storage = f"sqlite:///{workdir / 'study.db'}"
    best = ["--storage", storage, "--seeds", "1", "--no-refit", "--quiet"]
    assert study_best.main(best) == 0  # no test: the count shows, nothing is read
    assert "test split read 1 time(s); the first: " in capsys.readouterr().out
    assert load(workdir).user_attrs.get("test_readings") is None
    assert study_best.main([*best, "--test"]) == 0
    out = workdir / "results" / "bilstm-crf"
    report = json.loads((out / "best.json").read_text())
    assert "test split read 2 time(s); the first: " in capsys.readouterr().out
    assert "test split read 2 time(s)" in (out / "report.md").read_text()
    kept = load(workdir).user_attrs["test_readings"]  # what the dashboard shows
    assert [r["study"] for r in kept] == [None, "bilstm-crf"] and kept == report["test_readings"]
    assert kept[1]["token_macro_f1"] == pytest.approx(report["summary"]["token_macro_f1"]["mean"])
    # a second reading by study.best is refused up front, in one line, unless asked for
    assert study_best.main([*best, "--test"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: study 'bilstm-crf': its test split was read before (") and err.count("\n") == 1
    assert err.endswith("give --retest to read it again anyway (it is recorded too)\n")
    assert study_best.main([*best, "--retest"]) == 2
    assert capsys.readouterr().err == "error: --retest reads the test split again; give --test too\n"
    assert study_best.main([*best, "--test", "--retest"]) == 0
    assert "test split read 3 time(s)" in capsys.readouterr().out
    assert len(load(workdir).user_attrs["test_readings"]) == 3


def test_best_takes_one_job_per_core_and_a_time_budget_by_default(workdir, monkeypatch):
    from study import workers

    monkeypatch.setattr(workers.os, "cpu_count", lambda: 6)
    assert workers.auto_jobs("cpu", 1) == 6 and workers.auto_jobs("cpu", 4) == 1 and workers.auto_jobs("auto", 2) == 3
    monkeypatch.setattr(workers.os, "cpu_count", lambda: 64)
    assert workers.auto_jobs("cpu", 1) == workers.MAX_CPU_WORKERS
    args = study_best.parser().parse_args([])
    assert (args.jobs, args.time_budget) == ("auto", study_best.DEFAULT_TIME_BUDGET)
    assert study_best.parser().parse_args(["--time-budget", "none", "--jobs", "3"]).time_budget is None
    with pytest.raises(SystemExit):
        study_best.parser().parse_args(["--jobs", "many"])


def test_ctrl_c_that_cuts_a_write_short_is_still_a_one_line_interrupt(workdir, capsys, monkeypatch):
    def cut_short(*_args, **_kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")  # noqa: B904

    monkeypatch.setattr(study_run, "run_trials", cut_short)
    assert study_run.main(study_args(workdir, "--trials", "1", "--no-report")) == 130
    assert capsys.readouterr().err.strip().startswith("interrupted: finished trials are kept in ")
    monkeypatch.setattr(study_run, "run_trials", lambda *_a, **_k: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="other"):  # any other error is not taken for an interrupt
        study_run.main(study_args(workdir, "--trials", "1", "--no-report"))
