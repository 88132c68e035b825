"""Storage backends against real servers, real processes and real signals.

Every study is tiny (a synthetic corpus of 60 training sentences, one LSTM layer of 8 or 16
units), every worker is a separate ``python -m study.run`` started in tmp_path (its results/ lands
there). PostgreSQL tests use the server at 127.0.0.1:5432 (user postgres, trust auth; ``.ci/run``
starts it): each creates a database of its own and drops it afterwards (``pg_url`` in conftest),
and all of them skip with the reason when the server cannot be reached. ``pytest -s`` shows the measured recovery times.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import optuna
import pytest
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from ner_core.synthetic import make_corpus
from storage import Heartbeat, StorageError, open_storage
from study.gate import GatedTPESampler, NoRoom, TrialGate
from study.loop import run_trials

from .conftest import free_port, get_json

STUDY = "bilstm-crf"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# About half a second a trial on a free core: two epochs of a tiny model.
# 2-epoch trials, judged from epoch 3: never pruned, so every finished trial is complete.
TINY = (
    "--max-epochs 2 --hidden-sizes 8 16 --layers-range 1 1 --batch-sizes 16 --embed-dim 8 --warmup-epochs 3 "
    "--no-report --quiet --threads 1"
).split()
# Trials of a second or two, to be caught running: more epochs, never stopped early.
SLOW = [*TINY, "--max-epochs", "10", "--patience", "10"]
FAST_HEARTBEAT = {"NER_HPO_HEARTBEAT_INTERVAL": "1", "NER_HPO_GRACE_PERIOD": "3"}
WAIT_S = 240  # for one worker to end; generous, the 2 cores are shared


# --- helpers -----------------------------------------------------------------------------------


@dataclass
class Worker:
    """One ``python -m study.run`` process; its output goes to files (no pipe to fill up)."""

    process: subprocess.Popen
    out: Path
    err: Path

    def finish(self, timeout: float = WAIT_S) -> tuple[int, str, str]:
        """Return code, stdout, stderr once it has ended."""
        try:
            rc = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"{self.out.stem} did not end within {timeout} s; stderr:\n{self.err.read_text()}")
        return rc, self.out.read_text(), self.err.read_text()


def default_sigint() -> None:
    """Ctrl-C works in the worker even when the tests run in the background: a shell starts a
    background job with SIGINT ignored, and a child process inherits that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def spawn(tmp_path):
    """spawn(storage, trials, *options, env=..., name=...) starts a worker; leftovers are killed."""
    started: list[subprocess.Popen] = []

    def start(storage: str | None, trials: int, *options: str, env: dict | None = None, name: str = "worker"):
        name = f"{name}-{len(started)}"
        command = [sys.executable, "-m", "study.run", "--trials", str(trials), "--data-dir", str(tmp_path / "corpus")]
        command += ["--storage", storage] if storage else []
        out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            process = subprocess.Popen(
                [*command, *options],
                cwd=tmp_path,
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, **(env or {})},
                preexec_fn=default_sigint,
            )
        started.append(process)
        return Worker(process, out, err)

    make_corpus(tmp_path / "corpus", (60, 15, 15))
    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def finish_all(workers: list[Worker]) -> list[tuple[int, str, str]]:
    results = [w.finish() for w in workers]
    for k, (rc, out, err) in enumerate(results):
        assert rc == 0, f"worker {k} exited {rc}:\n{out}\n{err}"
        assert "Traceback" not in err, err
    return results


def trials_of(storage: optuna.storages.BaseStorage) -> list[FrozenTrial]:
    """The study's trials, fresh from the database ([] before a worker created it)."""
    try:
        study_id = storage.get_study_id_from_name(STUDY)
    except KeyError:
        return []
    return storage.get_all_trials(study_id)


def states(storage: optuna.storages.BaseStorage) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in trials_of(storage):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def settled(storage: optuna.storages.BaseStorage) -> dict[str, int]:
    """Trial counts by state, less WAITING trials without parameters: a worker that lost the race
    for the study's last place leaves its unstarted trial queued for a later, larger run."""
    counts = states(storage)
    unstarted = sum(t.state == TrialState.WAITING and not t.params for t in trials_of(storage))
    if unstarted:
        counts["WAITING"] -= unstarted
        counts = {k: v for k, v in counts.items() if v}
    return counts


def finished(storage: optuna.storages.BaseStorage) -> int:
    return sum(t.state in FINISHED for t in trials_of(storage))


def wait_for_running(
    storage: optuna.storages.BaseStorage,
    worker: Worker,
    epochs: int = 2,
    after_complete: bool = True,
    number: int | None = None,
) -> FrozenTrial:
    """A RUNNING trial (number ``number``, if given) that has reported ``epochs`` epochs (once a
    COMPLETE trial exists)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert worker.process.poll() is None, f"worker ended early:\n{worker.err.read_text()}"
        trials = trials_of(storage)
        running = [t for t in trials if t.state == TrialState.RUNNING and len(t.intermediate_values) >= epochs]
        running = [t for t in running if number is None or t.number == number]
        if running and (not after_complete or any(t.state == TrialState.COMPLETE for t in trials)):
            return running[0]
        time.sleep(0.1)
    pytest.fail(f"no trial running after {WAIT_S} s")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/study.db"
    return request.getfixturevalue("pg_url")


# --- many workers ------------------------------------------------------------------------------


def test_postgres_four_independent_workers_finish_exactly_n(pg_url, spawn):
    n = 8
    started = time.perf_counter()
    finish_all([spawn(pg_url, n, *TINY) for _ in range(4)])  # four machines running the same command
    storage = open_storage(pg_url, heartbeat=False)
    assert settled(storage) == {"COMPLETE": n}
    print(f"\nPostgreSQL, 4 independent workers: {n} trials in {time.perf_counter() - started:.1f} s")


def test_sqlite_three_workers_while_the_dashboard_reads(tmp_path, spawn):
    n = 8
    url = f"sqlite:///{tmp_path}/study.db"
    dashboard = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    assert dashboard, "optuna-dashboard is not installed next to the Python running the tests"
    open_storage(url)  # the dashboard opens existing databases only
    port = free_port()
    log = (tmp_path / "dashboard.log").open("w")
    server = subprocess.Popen(
        [dashboard, "--host", "127.0.0.1", "--port", str(port), url], stdout=log, stderr=subprocess.STDOUT
    )
    api = f"http://127.0.0.1:{port}/api/studies"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get_json(api)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "dashboard.log").read_text()
                time.sleep(0.2)
        workers = [spawn(url, n, *TINY) for _ in range(3)]
        polls, seen = 0, 0
        while any(w.process.poll() is None for w in workers):
            summaries = get_json(api)["study_summaries"]  # raises on any error status
            for summary in summaries:
                seen = max(seen, len(get_json(f"{api}/{summary['study_id']}")["trials"]))
            polls += 1
            time.sleep(0.5)
        results = finish_all(workers)
        assert polls >= 3 and seen >= 1, (polls, seen)
        assert settled(open_storage(url, heartbeat=False)) == {"COMPLETE": n}
        listed = get_json(f"{api}/{get_json(api)['study_summaries'][0]['study_id']}")["trials"]
        assert sum(t["state"] == "Complete" for t in listed) == n  # the dashboard sees every finished trial
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    outputs = [out + err for _, out, err in results] + [(tmp_path / "dashboard.log").read_text()]
    assert not [o for o in outputs if "database is locked" in o]
    print(f"\nSQLite, 3 workers and the dashboard: {polls} dashboard polls, none failed")


# --- dead and interrupted workers --------------------------------------------------------------


def test_a_killed_workers_trial_is_retried(any_url, spawn):
    n = 3
    storage = open_storage(any_url, heartbeat=False)
    first = spawn(any_url, n, *SLOW, env=FAST_HEARTBEAT)
    victim = wait_for_running(storage, first)
    complete_before = {t.number for t in trials_of(storage) if t.state == TrialState.COMPLETE}
    first.process.send_signal(signal.SIGKILL)
    killed_at = datetime.now()
    first.process.wait()

    finish_all([spawn(any_url, n, *SLOW, env=FAST_HEARTBEAT)])
    trials = {t.number: t for t in trials_of(storage)}
    assert trials[victim.number].state == TrialState.FAIL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retried = {t.number: RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials.values()}
    retries = [trials[k] for k, original in retried.items() if original is not None]
    assert [retried[t.number] for t in retries] == [victim.number]
    retry = retries[0]
    assert retry.state in FINISHED and retry.params == victim.params
    assert sum(t.state in FINISHED for t in trials.values()) == n
    assert [t.number for t in trials.values() if t.state == TrialState.FAIL] == [victim.number]
    assert all(trials[k].state == TrialState.COMPLETE for k in complete_before)
    failed_after = (trials[victim.number].datetime_complete - killed_at).total_seconds()
    retried_after = (retry.datetime_start - killed_at).total_seconds()
    print(
        f"\n{any_url.split(':')[0]}: SIGKILL -> trial {victim.number} FAIL after {failed_after:.1f} s, "
        f"retry (trial {retry.number}) started after {retried_after:.1f} s (a new worker's start included)"
    )


def test_sigint_stops_cleanly_and_the_same_command_resumes(tmp_path, spawn):
    n = 2
    # Long trials: the signal must land before the study ends. With 60 epochs (3 s a trial) a worker
    # once finished both trials (exit 0, 6 s in all) between being seen in trial 0 and the signal, on
    # a loaded machine where the read that saw it, racing the worker's commit every epoch, was slow.
    # One seed a trial: each epoch also writes the trial's checkpoint, so 300 epochs take as long as
    # two seeds' did without, and the second run, which trains both trials to the end, half as long.
    long = [*TINY, "--max-epochs", "300", "--patience", "300", "--seeds-per-trial", "1"]
    worker = spawn(None, n, *long)  # the default storage: results/study.db in tmp_path
    storage = open_storage(f"sqlite:///{tmp_path}/results/study.db", heartbeat=False)
    # caught in its first trial, the worker cannot have finished the study when the signal lands
    wait_for_running(storage, worker, epochs=1, after_complete=False, number=0)
    worker.process.send_signal(signal.SIGINT)
    rc, out, err = worker.finish()
    assert rc == 130, f"exit {rc}\nstdout:\n{out}\nstderr:\n{err}"
    assert "interrupted: finished trials are kept in sqlite:///results/study.db" in err
    assert "Traceback" not in err

    assert optuna.get_all_study_names(storage) == [STUDY]
    before = finished(storage)
    assert before < n
    finish_all([spawn(None, n, *long)])
    assert finished(storage) == n


@pytest.fixture
def quiet_optuna():
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(verbosity)


def gated_study(url: str, monkeypatch) -> tuple[optuna.storages.BaseStorage, TrialGate, optuna.Study]:
    """A study whose sampler keeps it at 2 finished trials, with a 1 s heartbeat and a 2 s grace period."""
    monkeypatch.setenv("NER_HPO_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("NER_HPO_GRACE_PERIOD", "2")
    storage = open_storage(url)
    gate = TrialGate(storage, STUDY, target=2)
    study = optuna.create_study(
        study_name=STUDY, storage=storage, sampler=GatedTPESampler(gate, seed=0), direction="maximize"
    )
    return storage, gate, study


def test_a_waiting_worker_takes_over_a_dead_workers_trial(tmp_path, monkeypatch, quiet_optuna):
    """The gate, in one process: no trial past --trials, and the last worker retries a dead one's."""
    storage, gate, study = gated_study(f"sqlite:///{tmp_path}/gate.db", monkeypatch)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    dead = storage.create_new_trial(storage.get_study_id_from_name(STUDY))  # a worker that beat once, then died
    storage.record_heartbeat(dead)
    with pytest.raises(NoRoom):  # 1 finished + 1 running + this one > 2: back to the queue, nothing run
        study.optimize(lambda trial: 1.0, n_trials=1)
    assert states(storage) == {"COMPLETE": 1, "RUNNING": 1, "WAITING": 1}

    assert gate.wait_for_room(study, deadline=None)  # until the dead worker's trial is stale
    assert states(storage) == {"COMPLETE": 1, "FAIL": 1, "WAITING": 2}  # the retry queued too
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    assert not gate.wait_for_room(study, deadline=None)
    assert states(storage) == {"COMPLETE": 2, "FAIL": 1, "WAITING": 1}


def test_a_trial_that_never_beat_is_failed_and_retried(any_url, monkeypatch, quiet_optuna):
    """A worker killed after creating its trial and before the trial's first heartbeat (found by
    storage.crashbench): the trial is failed after the grace period and queued again, and the study
    does not wait for it forever."""
    storage, gate, study = gated_study(any_url, monkeypatch)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    storage.create_new_trial(storage.get_study_id_from_name(STUDY))  # RUNNING, and its worker died at once
    assert gate.wait_for_room(study, deadline=time.monotonic() + WAIT_S), states(storage)
    assert states(storage) == {"COMPLETE": 1, "FAIL": 1, "WAITING": 1}
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    assert settled(storage) == {"COMPLETE": 2, "FAIL": 1}


def test_a_worker_whose_trial_another_worker_failed_goes_on(tmp_path, monkeypatch, quiet_optuna, capsys):
    """A worker stopped (Ctrl-Z, a suspended laptop) past the grace period: another worker has failed
    its trial meanwhile, and Optuna's tell raises when it resumes. The worker goes on; an error of
    the objective's own still stops it."""
    storage, gate, study = gated_study(f"sqlite:///{tmp_path}/study.db", monkeypatch)

    def objective(trial):
        if trial.number == 0:  # what fail_stale_trials in another worker does while this one is stopped
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        return trial.suggest_float("x", 0, 1)

    run_trials(study, objective, gate, deadline=None, bar=False, lines=False)
    assert settled(storage) == {"COMPLETE": 2, "FAIL": 1}
    assert "note: trial 0 was failed by another worker while it ran here" in capsys.readouterr().err

    def broken(trial):
        raise RuntimeError("a bug")

    gate.target = 3
    with pytest.raises(RuntimeError, match="a bug"):
        run_trials(study, broken, gate, deadline=None, bar=False, lines=False)


# --- URLs --------------------------------------------------------------------------------------


def test_default_url_is_a_sqlite_file_under_results(tmp_path, monkeypatch):
    for name in ("NER_HPO_HEARTBEAT_INTERVAL", "NER_HPO_GRACE_PERIOD", "NER_HPO_MAX_RETRY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    storage = open_storage()
    assert isinstance(storage, RDBStorage)
    assert (tmp_path / "results" / "study.db").is_file()
    assert storage.get_heartbeat_interval() == 60 and storage.grace_period == 180


def test_heartbeat_settings_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NER_HPO_HEARTBEAT_INTERVAL", "2")
    monkeypatch.setenv("NER_HPO_GRACE_PERIOD", "7")
    monkeypatch.setenv("NER_HPO_MAX_RETRY", "0")
    assert Heartbeat.from_env() == Heartbeat(2, 7, 0)
    storage = open_storage(f"sqlite:///{tmp_path}/a.db")
    assert storage.get_heartbeat_interval() == 2 and storage.grace_period == 7
    assert open_storage(f"sqlite:///{tmp_path}/a.db", heartbeat=False).get_heartbeat_interval() is None
    monkeypatch.setenv("NER_HPO_GRACE_PERIOD", "2")
    with pytest.raises(StorageError, match="NER_HPO_GRACE_PERIOD=2 must be more than the heartbeat interval"):
        open_storage(f"sqlite:///{tmp_path}/a.db")
    monkeypatch.setenv("NER_HPO_HEARTBEAT_INTERVAL", "soon")
    with pytest.raises(StorageError, match="NER_HPO_HEARTBEAT_INTERVAL must be a whole number >= 1, got 'soon'"):
        Heartbeat.from_env()


def test_unknown_scheme_names_the_known_ones():
    with pytest.raises(StorageError) as caught:
        open_storage("mysql://root@localhost/optuna")
    assert str(caught.value) == (
        "mysql://root@localhost/optuna: unknown storage scheme 'mysql'; use one of "
        "sqlite:///PATH, postgresql://USER@HOST:PORT/DB, journal:///PATH"
    )


def test_unreachable_postgres_is_one_line():
    pytest.importorskip("psycopg")
    with pytest.raises(StorageError) as caught:
        open_storage("postgresql://postgres:secret@127.0.0.1:1/optuna")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("postgresql://postgres:***@127.0.0.1:1/optuna: cannot connect to PostgreSQL at ")
    assert "at 127.0.0.1:1 (is PostgreSQL running?)" in message
    assert "secret" not in message


def test_journal_file_runs_a_study(tmp_path, spawn):
    url = f"journal:///{tmp_path}/journal/study.log"
    finish_all([spawn(url, 2, *TINY)])
    assert (tmp_path / "journal" / "study.log").is_file()
    assert states(open_storage(url)) == {"COMPLETE": 2}


def test_an_interrupted_querys_cursor_error_is_not_printed_but_other_errors_are(tmp_path, capsys):
    open_storage(f"sqlite:///{tmp_path}/study.db")
    pool_logger = logging.getLogger("sqlalchemy.pool.impl.QueuePool")

    def report(during: BaseException) -> None:
        try:
            try:
                raise during
            except BaseException:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")  # noqa: B904
        except sqlite3.ProgrammingError:
            pool_logger.error("Error closing cursor", exc_info=True)

    report(KeyboardInterrupt())  # Ctrl-C during a query: the one-line "interrupted" says it all
    assert capsys.readouterr().err == ""
    report(OSError("disk full"))  # anything else is still reported, with its traceback
    err = capsys.readouterr().err
    assert err.startswith("Error closing cursor\nTraceback") and "disk full" in err
    open_storage(f"sqlite:///{tmp_path}/other.db")  # a second storage adds no second handler
    report(OSError("disk full"))
    assert capsys.readouterr().err.count("Error closing cursor") == 1


def test_an_error_raised_while_ctrl_c_unwinds_counts_as_the_interrupt():
    from ner_core.errors import caused_by_interrupt

    def write_cut_short(during: BaseException) -> RuntimeError:
        try:
            try:
                raise during
            except BaseException:
                raise RuntimeError("unexpected pos 118464 vs 118384")  # noqa: B904 (torch.save's zip writer)
        except RuntimeError as err:
            return err

    assert caused_by_interrupt(write_cut_short(KeyboardInterrupt()))
    assert caused_by_interrupt(KeyboardInterrupt())
    assert not caused_by_interrupt(write_cut_short(OSError("disk full")))
    assert not caused_by_interrupt(None)
