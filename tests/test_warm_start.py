"""--warm-start: a new study begins with an earlier study's best configurations."""

from __future__ import annotations

import os
import shutil

import optuna
import pytest
from optuna.trial import TrialState

from ner_core.synthetic import make_corpus
from study import run as study_run

from .test_study import load, study_args


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """The folder of a finished study 'old': 6 random draws of 8 or 16 hidden units, in study.db there."""
    folder = tmp_path_factory.mktemp("earlier")
    make_corpus(folder / "corpus", (120, 30, 30))
    here = os.getcwd()
    os.chdir(folder)  # its results/ goes there
    try:
        args = study_args(folder, "--study-name", "old", "--trials", "6", "--sampler", "random", "--no-report")
        assert study_run.main(args) == 0
    finally:
        os.chdir(here)
    return folder


@pytest.fixture
def workdir(tmp_path, monkeypatch, earlier):
    """A folder of its own holding a copy of the earlier study's storage and corpus."""
    monkeypatch.chdir(tmp_path)
    for path in earlier.glob("study.db*"):
        shutil.copy(path, tmp_path / path.name)
    shutil.copytree(earlier / "corpus", tmp_path / "corpus")
    return tmp_path


def best_first(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value, reverse=True)


def test_a_new_study_begins_with_the_best_configurations_of_an_earlier_one(workdir, capsys):
    old = best_first(load(workdir, name="old"))
    args = study_args(workdir, "--study-name", "new", "--trials", "3", "--no-report")
    assert study_run.main([*args, "--warm-start", "old", "--warm-start-top", "2"]) == 0
    new = load(workdir, name="new")
    trials = new.get_trials()
    assert [t.user_attrs.get("warm_start") for t in trials[:2]] == [
        {"study": "old", "trial": t.number, "value": t.value} for t in old[:2]
    ]
    assert [t.params for t in trials[:2]] == [t.params for t in old[:2]]
    assert "warm_start" not in trials[2].user_attrs  # then the search draws its own
    assert new.user_attrs["warm_start"] == {
        "study": "old",
        "storage": f"sqlite:///{workdir / 'study.db'}",
        "trials": [t.number for t in old[:2]],
        "skipped": [],
    }
    out = capsys.readouterr().out
    assert (
        f"warm start from study 'old': #0 dev {trials[0].value:.4f} (#{old[0].number} there: {old[0].value:.4f})" in out
    )

    # resuming: the study was warm-started once, when it was created
    assert study_run.main([*without_trials(args), "--trials", "4", "--warm-start", "old"]) == 0
    assert "ignored: --warm-start old" in capsys.readouterr().err
    assert sum("warm_start" in t.user_attrs for t in load(workdir, name="new").get_trials()) == 2


def without_trials(args: list[str]) -> list[str]:
    i = args.index("--trials")
    return args[:i] + args[i + 2 :]


def test_configurations_outside_the_new_space_are_named_and_skipped(workdir, capsys):
    old = best_first(load(workdir, name="old"))
    # a learning rate range that holds the upper half of the earlier complete trials' rates
    rates = sorted(t.params["lr"] for t in old)
    low = rates[len(rates) // 2]
    outside, inside = [t for t in old if t.params["lr"] < low], [t for t in old if t.params["lr"] >= low]
    assert outside and inside
    args = study_args(workdir, "--study-name", "new", "--trials", "1", "--no-report", "--lr-range", f"{low!r}", "0.01")
    storage = f"sqlite:///{workdir / 'new.db'}"  # another storage than the earlier study's
    args[args.index("--storage") + 1] = storage
    earlier = f"sqlite:///{workdir / 'study.db'}"
    warm = ["--warm-start", "old", "--warm-start-storage", earlier, "--warm-start-top", str(len(old))]
    assert study_run.main([*args, *warm]) == 0
    err = capsys.readouterr().err
    skipped = "; ".join(f"trial {t.number} (lr {t.params['lr']:g} not in --lr-range {low:g} 0.01)" for t in outside)
    assert f"note: --warm-start: skipped {len(outside)} outside the search space: {skipped}\n" in err
    new = optuna.load_study(study_name="new", storage=storage)
    queued = [t.user_attrs["warm_start"]["trial"] for t in new.get_trials() if "warm_start" in t.user_attrs]
    assert queued == [t.number for t in inside]
    assert new.user_attrs["warm_start"]["trials"] == queued and new.user_attrs["warm_start"]["storage"] == earlier


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--warm-start", "nope"], "no study named 'nope'"),
        (["--warm-start-top", "3"], "--warm-start-storage and --warm-start-top apply with --warm-start STUDY only"),
        (["--warm-start", "old", "--warm-start-top", "0"], "--warm-start-top must be at least 1, got 0"),
    ],
)
def test_bad_warm_start_options_give_one_line_and_exit_2(workdir, capsys, extra, message):
    assert study_run.main(study_args(workdir, "--study-name", "new", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert "new" not in optuna.study.get_all_study_names(f"sqlite:///{workdir / 'study.db'}")  # nothing made
