"""A trial's checkpoint: a run resumed from an epoch's state goes on as if it had never stopped, and a
worker killed mid-trial leaves a checkpoint its trial's retry starts from."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from ner_core.checkpoint import load_state, save_state
from ner_core.config import TrainConfig
from ner_core.data import load_corpus
from ner_core.runtime import Runtime
from ner_core.synthetic import make_corpus
from ner_core.train import fit
from study import objective as objective_module
from study.checkpoints import Progress, TrialCheckpoints
from study.objective import Objective
from study.space import SearchSpace

from .test_storage import FAST_HEARTBEAT, WAIT_S

FLOAT32 = Runtime(device="cpu", threads=1, precision="float32")


def scores(history) -> list[float]:
    return [x for e in history for x in (e.loss, e.objective)]


@pytest.mark.parametrize("ema", [0.0, 0.5])
def test_a_run_resumed_from_an_epochs_state_goes_on_as_the_uninterrupted_run(corpus_dir, tiny_config, tmp_path, ema):
    config = tiny_config.replace(max_epochs=5, patience=5, dropout=0.3, embed_dropout=0.2, ema=ema)
    corpus = load_corpus(corpus_dir)
    states = {}

    def keep(state):
        path = tmp_path / f"epoch-{len(state['history'])}.pt"
        save_state(path, state)
        states[len(state["history"])] = path

    whole = fit(config, corpus, runtime=FLOAT32, checkpoint=keep)
    assert sorted(states) == [1, 2, 3, 4]  # none after the last epoch: nothing goes on from it
    for epoch in (1, 3):
        seen = []
        resumed = fit(config, corpus, runtime=FLOAT32, resume=load_state(states[epoch]), on_epoch=seen.append)
        assert [e.epoch for e in seen] == list(range(epoch + 1, 6))  # the restored epochs are not trained again
        assert scores(resumed.history) == pytest.approx(scores(whole.history), abs=1e-6)
        assert resumed.best_epoch == whole.best_epoch
        for name, weights in whole.model.state_dict().items():
            torch.testing.assert_close(resumed.model.state_dict()[name], weights, atol=1e-6, rtol=0)


def test_a_resumed_run_keeps_the_best_epochs_weights_from_before_the_stop(corpus_dir, tiny_config, tmp_path):
    # the synthetic task is learnt within about 5 epochs, after which no epoch scores better: over a
    # schedule of 8 the best is one before the last state (the 7th epoch's)
    config = tiny_config.replace(max_epochs=8, patience=8, lr=0.3)
    corpus = load_corpus(corpus_dir)
    path = tmp_path / "state.pt"
    last: dict = {}

    def keep(state):
        save_state(path, state)
        last.update(epochs=len(state["history"]), best=state["best"] is not None)

    whole = fit(config, corpus, runtime=FLOAT32, checkpoint=keep)
    assert whole.best_epoch < last["epochs"] and last["best"], "the test needs a best epoch before the last state"
    resumed = fit(config, corpus, runtime=FLOAT32, resume=load_state(path))
    assert resumed.best_epoch == whole.best_epoch
    for name, weights in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], weights, atol=1e-6, rtol=0)


def test_a_save_that_fails_halfway_leaves_the_previous_state_whole(tmp_path, monkeypatch):
    path = tmp_path / "trial-0.pt"
    save_state(path, {"epoch": 1, "weights": torch.ones(3)})

    def broken(state, file):
        file.write(b"half a state")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError):
        save_state(path, {"epoch": 2, "weights": torch.zeros(3)})
    assert [p.name for p in tmp_path.iterdir()] == ["trial-0.pt"]  # no temporary file left behind
    state = load_state(path)
    assert state["epoch"] == 1 and torch.equal(state["weights"], torch.ones(3))
    assert load_state(tmp_path / "none.pt") is None


# --- a worker killed mid-trial -----------------------------------------------------------------

# One configuration drawn the same way in every study of the same --seed: 6 epochs under 2 seeds,
# never pruned nor stopped early, in float32 (exact on any CPU).
TRIAL = (
    "--trials 1 --seeds-per-trial 2 --max-epochs 6 --patience 6 --pruner none --hidden-sizes 16 --layers-range 1 1 "
    "--batch-sizes 16 --embed-dim 8 --threads 1 --precision float32 --no-report --quiet --seed 7"
).split()
WORKER_ENV = {**FAST_HEARTBEAT, "NER_HPO_BFLOAT16": "0"}


def study_run(tmp_path: Path, db: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "study.run", "--storage", f"sqlite:///{tmp_path / db}"]
    command += ["--data-dir", str(tmp_path / "corpus"), *TRIAL]
    with (tmp_path / f"{db}.log").open("a") as log:
        return subprocess.Popen(
            command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **WORKER_ENV}
        )


def finish(process: subprocess.Popen, tmp_path: Path, db: str) -> None:
    try:
        rc = process.wait(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        rc = "still running"
    assert rc == 0, f"worker exited {rc}:\n{(tmp_path / f'{db}.log').read_text()}"


def study_checkpoint(tmp_path: Path, db: str) -> Path:
    """Trial 0's checkpoint file: in the folder of its study's uid (a study of this name in another
    storage, run from the same folder, keeps its own). Read with sqlite3 alone: opening the file
    with Optuna while the worker creates it would race it to create the tables."""
    uid = "not-yet"
    if (tmp_path / db).exists():
        try:
            with sqlite3.connect(tmp_path / db) as connection:
                row = connection.execute("SELECT value_json FROM study_user_attributes WHERE key = 'uid'").fetchone()
            uid = json.loads(row[0]) if row else uid
        except sqlite3.OperationalError:  # the tables are not there yet
            pass
    return tmp_path / "results" / "bilstm-crf" / "checkpoints" / uid / "trial-0.pt"


def progress_at(path: Path) -> tuple[int, int] | None:
    """(finished seeds, epochs of the running one) of a trial's checkpoint; None while there is none."""
    state = load_state(path)
    if state is None:
        return None
    return len(state["finished"]), len(state["training"]["history"]) if state["training"] else 0


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> optuna.trial.FrozenTrial:
    """The trial as a worker that is never killed runs it."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    make_corpus(folder / "corpus", (120, 30, 30))
    finish(study_run(folder, "study.db"), folder, "study.db")
    assert not list((folder / "results").rglob("*.pt"))  # a finished trial keeps no checkpoint
    return optuna.load_study(study_name="bilstm-crf", storage=f"sqlite:///{folder}/study.db").trials[0]


@pytest.mark.parametrize("kill_at", [(0, 2), (1, 1)], ids=["first seed, epoch 2", "second seed, epoch 1"])
def test_a_killed_trial_is_retried_from_its_checkpoint_and_ends_as_the_uninterrupted_one(
    tmp_path, kill_at, uninterrupted
):
    make_corpus(tmp_path / "corpus", (120, 30, 30))  # the same sentences as the uninterrupted trial's
    worker = study_run(tmp_path, "killed.db")
    deadline = time.monotonic() + WAIT_S
    while (seen := progress_at(checkpoint := study_checkpoint(tmp_path, "killed.db"))) is None or seen < kill_at:
        assert worker.poll() is None, f"the trial ended first:\n{(tmp_path / 'killed.db.log').read_text()}"
        assert time.monotonic() < deadline, f"no checkpoint at {kill_at} after {WAIT_S} s (last: {seen})"
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    left = Progress.from_state(load_state(checkpoint))  # where the kill left the trial: its retry goes on from here
    finish(study_run(tmp_path, "killed.db"), tmp_path, "killed.db")  # fails trial 0 as stale, retries it

    killed = {
        t.number: t
        for t in optuna.load_study(study_name="bilstm-crf", storage=f"sqlite:///{tmp_path}/killed.db").trials
    }
    whole = uninterrupted
    assert killed[0].state == TrialState.FAIL and killed[1].state == TrialState.COMPLETE
    retry = killed[1]
    assert retry.params == whole.params
    seed_run, epoch = left.resumes_after(2)
    assert (seed_run, epoch) >= (kill_at[0] + 1, kill_at[1])
    assert retry.user_attrs["resumed_from"] == {"trial": 0, "seed_run": seed_run, "epoch": epoch}
    if seed_run == 1:
        # trained again: at most the epoch that was running, and one whose result was reported but not yet saved
        assert len(killed[0].intermediate_values) - epoch <= 1
    # the first seed's curve, re-reported and trained on, and both seeds' scores: those of the uninterrupted trial
    assert sorted(retry.intermediate_values) == list(range(1, 7))
    for step, value in whole.intermediate_values.items():
        assert retry.intermediate_values[step] == pytest.approx(value, abs=1e-6)
    assert retry.user_attrs["dev_per_seed"] == pytest.approx(whole.user_attrs["dev_per_seed"], abs=1e-6)
    assert retry.value == pytest.approx(whole.value, abs=1e-6)
    assert not list(checkpoint.parent.iterdir())  # the retry's checkpoint went with it


def retry_of(study: optuna.Study, dead: optuna.trial.FrozenTrial) -> None:
    """Queue what RetryHeartbeatStaleTrialCallback queues for a dead worker's trial."""
    study.add_trial(
        optuna.create_trial(
            state=TrialState.WAITING,
            params=dead.params,
            distributions=dead.distributions,
            system_attrs={"failed_trial": dead.number, "retry_history": [dead.number]},
        )
    )


@pytest.fixture
def objective(corpus_dir, tmp_path, monkeypatch) -> Objective:
    """Trials of 2 seeds x 3 epochs keeping checkpoints under tmp_path."""
    monkeypatch.chdir(tmp_path)  # the study's results folder
    base = TrainConfig(max_epochs=3, patience=3, hidden_size=8, embed_dim=8, batch_size=32)
    space = SearchSpace({"lr": (1e-3, 1e-2)})
    return Objective(load_corpus(corpus_dir), base, space, FLOAT32, seeds=2, checkpoints=TrialCheckpoints("s", "uid"))


def test_a_trial_killed_while_its_result_is_stored_is_retried_without_training(objective, monkeypatch):
    """Every seed trained, the worker dies before the trial's end is stored: its retry trains nothing,
    reports the curve again and ends with the same value; once it is stored, no checkpoint is left."""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.optimize(objective, n_trials=1)  # no ``ended`` callback: as if killed before it
    dead = study.trials[0]
    assert objective.checkpoints.path(0).exists()
    retry_of(study, dead)
    monkeypatch.setattr(objective_module, "fit", lambda *a, **k: pytest.fail("the retry trained"))
    study.optimize(objective, n_trials=1, callbacks=[objective.ended])
    retry = study.trials[1]
    assert retry.user_attrs["resumed_from"] == {"trial": 0, "seed_run": 2, "epoch": dead.user_attrs["epochs_run"]}
    assert retry.value == dead.value and retry.intermediate_values == dead.intermediate_values
    assert retry.user_attrs["dev_per_seed"] == dead.user_attrs["dev_per_seed"]
    assert not list(objective.checkpoints.folder.iterdir())


def test_a_retry_whose_checkpoint_cannot_be_read_trains_from_the_start_with_a_note(objective, capsys):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.enqueue_trial({"lr": 0.005})
    study.optimize(objective, n_trials=1, callbacks=[objective.ended])
    objective.checkpoints.path(0).write_bytes(b"not a checkpoint")
    retry_of(study, study.trials[0])
    study.optimize(objective, n_trials=1, callbacks=[objective.ended])
    retry = study.trials[1]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["resumed_from"] is None
    assert retry.value == study.trials[0].value  # trained again, to the same scores
    assert "note: trial 1 retries trial 0, whose checkpoint cannot be read" in capsys.readouterr().err
    assert not list(objective.checkpoints.folder.iterdir())


def test_a_retry_by_a_worker_of_another_seed_goes_on_under_the_seed_its_checkpoint_ran(objective, monkeypatch):
    """Each worker trains under its own --seed; the retry of a dead worker's trial, taken by another,
    goes on from the checkpoint under the dead worker's seed, not from the start under its own."""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.optimize(objective, n_trials=1)  # no ``ended`` callback: as if killed before its end was stored
    dead = study.trials[0]
    retry_of(study, dead)
    other = Objective(
        objective.corpus,
        objective.base.replace(seed=7),
        objective.space,
        FLOAT32,
        seeds=2,
        checkpoints=objective.checkpoints,
    )
    trained = []
    real_fit = objective_module.fit
    monkeypatch.setattr(
        objective_module, "fit", lambda config, *a, **k: trained.append(config.seed) or real_fit(config, *a, **k)
    )
    # the second seed's run is cut back to its first epoch, as if the kill came in its second
    state = load_state(objective.checkpoints.path(0))
    progress = Progress.from_state(state)
    progress.training = None
    progress.finished, progress.stop_reasons = progress.finished[:1], progress.stop_reasons[:1]
    objective.checkpoints.save(0, progress)
    study.optimize(other, n_trials=1, callbacks=[other.ended])
    retry = study.trials[1]
    assert retry.user_attrs["resumed_from"] == {
        "trial": 0,
        "seed_run": 2,
        "epoch": 0,
    }  # the second seed, from its start
    assert trained == [43]  # the dead worker's seed + 1, not 7 + 1
    assert retry.user_attrs["dev_per_seed"] == pytest.approx(dead.user_attrs["dev_per_seed"], abs=1e-6)
