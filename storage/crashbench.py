"""``python -m storage.crashbench``: does a study end right when a worker is killed at any moment?

Each round: a fresh storage, two ``python -m study.run`` workers sharing one study (as on two
machines), one of them killed with SIGKILL at a moment of the round's phase, and, in about half
the rounds, a replacement worker started at once (a restarted machine). The survivors must finish
the study. A round is OK when every surviving worker exits 0, the study holds exactly --trials
finished trials and no RUNNING one, and every trial that was COMPLETE when the kill landed is
still COMPLETE with the same value. Every worker's log is kept under --logs; the logs and the
trial table of a round that is not OK are printed.

Phases, in turn: ``start`` (0-1.5 s after the storage's tables appear: the study and its
settings being created, first trials), ``epoch`` (the worker of a trial that has reported an
epoch: mid-trial), ``result`` (the worker of a trial that has reported its last epoch: writing
its attributes and result), ``next`` (the worker of a trial that has just completed, within
0.3 s: asking for its next trial, creating it, before its first heartbeat), ``any`` (0-16 s after
launch); ``--phases`` picks some. Each round names the dead workers' trials the survivors failed,
and how many of them never beat. Heartbeats are short (1 s, stale after 3 s) so that a round takes
seconds; the models are tiny (1 layer of 8 or 16 units, 3 epochs of 120 sentences).

``--mid-epoch`` asks what a kill costs: trials of 6 epochs under one seed, each round's kill landing
at a random moment of a random epoch from the third on, and for each retried trial the epochs it trained
again (those its dead predecessor had reported, less those its checkpoint restored). A round of it is
also not OK when a retry trained more than one epoch again, or a checkpoint is left behind.

    python -m storage.crashbench --rounds 20 --backends sqlite postgresql
    python -m storage.crashbench --mid-epoch --rounds 10
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from ner_core.synthetic import make_corpus

from .backends import engine_url, open_storage
from .bench import add_backend_arguments, connect_postgres
from .urls import ENV_STORAGE

STUDY = "crash"
EPOCHS = 3
MID_EPOCHS = 6  # --mid-epoch: room for a kill in any of epochs 2 to 6


def tiny(epochs: int) -> list[str]:
    return (
        f"--max-epochs {epochs} --patience {epochs} --hidden-sizes 8 16 --layers-range 1 1 --batch-sizes 16 "
        "--embed-dim 8 --pruner none --no-report --threads 1"
    ).split()


# one seed per trial: the epochs a trial reported to the pruner are then all those it trained
MID_EPOCH_OPTIONS = [*tiny(MID_EPOCHS), "--seeds-per-trial", "1"]
HEARTBEAT = {"NER_HPO_HEARTBEAT_INTERVAL": "1", "NER_HPO_GRACE_PERIOD": "3"}
PHASES = ("start", "epoch", "result", "next", "any")
ROUND_TIMEOUT_S = 180  # for the survivors to finish; a round that takes longer is stuck
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Round:
    """What one round did and found."""

    backend: str
    number: int
    phase: str
    replacement: bool
    killed: str = ""  # "worker-K after S s", or why nothing was killed
    landed: str = ""  # the study as the kill left it
    recovered: str = ""  # the dead trials the survivors failed (and retried)
    # --mid-epoch: per retried trial (retry, dead trial, epochs it reported, epochs restored)
    retrained: list[tuple[int, int, int, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


class Watch:
    """Reads the study without creating anything: no tables, no study, until a worker has made them."""

    def __init__(self, url: str):
        self.url = url
        self.engine = sqlalchemy.create_engine(engine_url(url), poolclass=sqlalchemy.pool.NullPool)
        self.storage = None

    def no_file(self) -> bool:
        """A SQLite storage whose file no worker has made yet: connecting would create it."""
        return self.url.startswith("sqlite:///") and not Path(self.url[len("sqlite:///") :]).exists()

    def exists(self) -> bool:
        """Whether a worker has made the storage's tables (the study is created next)."""
        if self.no_file():
            return False
        try:
            return sqlalchemy.inspect(self.engine).has_table("studies")
        except sqlalchemy.exc.DBAPIError:
            return False

    def trials(self) -> list[FrozenTrial] | None:
        """The study's trials; None while no worker has created the study."""
        if self.storage is None:
            if self.no_file():
                return None
            try:
                with self.engine.connect() as connection:
                    query = sqlalchemy.text("SELECT 1 FROM studies WHERE study_name = :name")
                    if connection.execute(query, {"name": STUDY}).first() is None:
                        return None
            except sqlalchemy.exc.DBAPIError:  # no table yet, or a writer holds the schema
                return None
            # the study row exists: the schema is complete, opening it writes nothing
            self.storage = open_storage(self.url, heartbeat=False)
        study_id = self.storage.get_study_id_from_name(STUDY)
        return self.storage.get_all_trials(study_id, deepcopy=False)

    def never_beaten(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """Those of ``trials`` that never sent a heartbeat (Optuna's table of them)."""
        with self.engine.connect() as connection:
            beaten = {row[0] for row in connection.execute(sqlalchemy.text("SELECT trial_id FROM trial_heartbeats"))}
        return [t for t in trials if t._trial_id not in beaten]

    def close(self) -> None:
        self.engine.dispose()
        if self.storage is not None and hasattr(self.storage, "engine"):
            self.storage.engine.dispose()


def describe_study(trials: list[FrozenTrial] | None) -> str:
    if trials is None:
        return "no study yet"
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "study, no trial yet"


def trial_table(trials: list[FrozenTrial] | None) -> str:
    if not trials:
        return "  (no trials)"
    lines = []
    for t in trials:
        retry = t.system_attrs.get("failed_trial")
        lines.append(
            f"  trial {t.number:>2} {t.state.name:<8} value {t.value!s:<20} epochs {len(t.intermediate_values)} "
            f"worker {t.user_attrs.get('worker', '-')}" + (f"  (retry of {retry})" if retry is not None else "")
        )
    return "\n".join(lines)


class Workers:
    """The round's ``study.run`` processes, each with its log file."""

    def __init__(self, url: str, folder: Path, trials: int, options: list[str]):
        self.folder = folder
        self.command = [sys.executable, "-m", "study.run", "--study-name", STUDY, "--trials", str(trials)]
        self.command += ["--data-dir", str(folder.parent / "corpus"), *options]
        # the URL through the environment, as a worker started by --workers gets it; and this
        # checkout's code, whatever copy of it is installed (the workers run in the round's folder)
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        self.env = {**os.environ, **HEARTBEAT, ENV_STORAGE: url, "PYTHONPATH": path}
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self) -> str:
        name = f"worker-{len(self.processes)}"
        with (self.folder / f"{name}.log").open("w") as log:
            command = [*self.command, "--seed", str(42 + 1000 * len(self.processes))]
            self.processes[name] = subprocess.Popen(
                command, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        return name

    def by_worker_attr(self, trial: FrozenTrial) -> str | None:
        """The name of the live process that runs ``trial`` (its ``worker`` attribute, host:pid)."""
        pid = str(trial.user_attrs.get("worker", "")).rpartition(":")[2]
        return next((n for n, p in self.processes.items() if str(p.pid) == pid and p.poll() is None), None)

    def alive(self) -> bool:
        return any(p.poll() is None for p in self.processes.values())

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()}" for log in sorted(self.folder.glob("worker-*.log")))

    def kill_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def random_alive(workers: Workers, rng: random.Random, moment: float) -> str | None:
    """At monotonic ``moment``, a random worker still running (None: all ended first)."""
    while time.monotonic() < moment:
        if not workers.alive():
            return None
        time.sleep(0.01)
    return rng.choice([n for n, p in workers.processes.items() if p.poll() is None] or [None])


def pick_victim(phase: str, workers: Workers, watch: Watch, rng: random.Random, started: float) -> str | None:
    """Wait for the phase's moment; the worker to kill then (None: the study finished first)."""
    if phase == "mid-epoch":
        return mid_epoch_victim(workers, watch, rng)
    if phase == "any":
        return random_alive(workers, rng, started + rng.uniform(0.0, 16.0))
    if phase == "start":
        while not watch.exists():
            if not workers.alive():
                return None
            time.sleep(0.01)
        # soon after the tables appear: the study, its settings, the first trials
        return random_alive(workers, rng, time.monotonic() + rng.uniform(0.0, 1.5))
    complete: set[int] | None = None
    while workers.alive():
        trials = watch.trials() or []
        for trial in trials:
            epochs = len(trial.intermediate_values)
            if phase == "next":  # a trial just completed: its worker is asking for the next one
                wanted = trial.state == TrialState.COMPLETE and complete is not None and trial.number not in complete
            else:
                running = trial.state == TrialState.RUNNING
                wanted = running and (1 <= epochs < EPOCHS if phase == "epoch" else epochs == EPOCHS)
            if wanted and (name := workers.by_worker_attr(trial)):
                # epoch: somewhere in the next epoch; result: within its writes; next: while the
                # worker reports the trial, asks for another, creates it and starts to beat it
                time.sleep(rng.uniform(0.0, {"epoch": 0.1, "result": 0.03, "next": 0.3}[phase]))
                return name
        complete = {t.number for t in trials if t.state == TrialState.COMPLETE}
        time.sleep(0.01)
    return None


def mid_epoch_victim(workers: Workers, watch: Watch, rng: random.Random) -> str | None:
    """The worker of a running trial, at a random moment of a random epoch from the third on: the
    length of the epoch before is timed from the moments its start and end were reported."""
    done = rng.randint(1, MID_EPOCHS - 2)  # the kill comes in epoch done + 2
    seen: dict[int, float] = {}  # epochs reported -> when first seen, for the trial followed
    followed: int | None = None
    while workers.alive():
        trial = next(
            (
                t
                for t in watch.trials() or []
                if t.state == TrialState.RUNNING
                and (t.number == followed or followed is None)
                and len(t.intermediate_values) in (done, done + 1)
            ),
            None,
        )
        if trial is not None:
            followed = trial.number
            seen.setdefault(len(trial.intermediate_values), time.monotonic())
            if len(seen) == 2 and (name := workers.by_worker_attr(trial)):
                time.sleep(rng.uniform(0.0, seen[done + 1] - seen[done]))
                return name
        elif followed is not None:  # it ended, or went past unseen: follow the next one
            followed, seen = None, {}
        time.sleep(0.01)
    return None


def retrained(trials: list[FrozenTrial]) -> list[tuple[int, int, int, int]]:
    """For each retried trial: (its number, the dead trial it went on from, epochs that one had
    reported, epochs the retry restored from its checkpoint; 0 where it trained from the start)."""
    by_number = {t.number: t for t in trials}
    out = []
    for trial in trials:
        history = trial.system_attrs.get("retry_history")
        if history and trial.state in FINISHED:
            resumed = trial.user_attrs.get("resumed_from")
            dead = by_number[resumed["trial"] if resumed else history[-1]]
            out.append((trial.number, dead.number, len(dead.intermediate_values), resumed["epoch"] if resumed else 0))
    return out


def run_round(backend: str, url: str, number: int, folder: Path, trials: int, phase: str, rng: random.Random) -> Round:
    result = Round(backend, number, phase, replacement=rng.random() < 0.5)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder / "results", ignore_errors=True)  # an earlier run's checkpoints are not this round's
    workers = Workers(url, folder, trials, MID_EPOCH_OPTIONS if phase == "mid-epoch" else tiny(EPOCHS))
    watch = Watch(url)
    started = time.monotonic()
    try:
        workers.start()
        workers.start()
        victim = pick_victim(phase, workers, watch, rng, started)
        complete_before: dict[int, float | None] = {}
        if victim is None:
            result.killed = "nobody (the study finished first)"
        else:
            workers.processes[victim].send_signal(signal.SIGKILL)
            workers.processes[victim].wait()
            result.killed = f"{victim} after {time.monotonic() - started:.1f} s"
            snapshot = watch.trials()
            result.landed = describe_study(snapshot)
            complete_before = {t.number: t.value for t in snapshot or [] if t.state == TrialState.COMPLETE}
            if result.replacement:
                workers.start()
        deadline = time.monotonic() + ROUND_TIMEOUT_S
        while workers.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if workers.alive():
            result.problems.append(f"workers still running after {ROUND_TIMEOUT_S} s")
            workers.kill_all()
        for name, process in workers.processes.items():
            if name != victim and process.returncode != 0:
                result.problems.append(f"{name} exited {process.returncode}")
        final = watch.trials()
        finished = sum(t.state in FINISHED for t in final or [])
        if finished != trials:
            result.problems.append(f"{finished} finished trials, not {trials}")
        running = [t.number for t in final or [] if t.state == TrialState.RUNNING]
        if running:
            result.problems.append(f"trial(s) {running} left RUNNING")
        dead = [t for t in final or [] if t.state == TrialState.FAIL]
        unbeaten = watch.never_beaten(dead)
        if dead:
            result.recovered = f"failed: trial {', '.join(str(t.number) for t in dead)}" + (
                f" ({len(unbeaten)} that never beat)" if unbeaten else ""
            )
        after = {t.number: t for t in final or []}
        lost = [n for n, v in complete_before.items() if n not in after or after[n].state != TrialState.COMPLETE]
        lost += [n for n, v in complete_before.items() if n in after and after[n].value != v]
        if lost:
            result.problems.append(f"complete trial(s) {sorted(set(lost))} changed after the kill")
        if phase == "mid-epoch":
            result.retrained = retrained(final or [])
            again = [f"trial {r}" for r, _, reported, restored in result.retrained if reported - restored > 1]
            if again:
                result.problems.append(f"{', '.join(again)} trained more than one epoch again")
            left = sorted(p.name for p in (folder / "results" / STUDY / "checkpoints").glob("*"))
            if left:
                result.problems.append(f"checkpoints left behind: {', '.join(left)}")
        if not result.ok:
            result.problems.append(f"trials:\n{trial_table(final)}\n{workers.logs()}")
    finally:
        workers.kill_all()
        watch.close()
    result.seconds = time.monotonic() - started
    return result


def main(argv: list[str] | None = None) -> int:
    # a kill of the bench itself ends its workers too (the finally clauses run)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(prog="python -m storage.crashbench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds per backend (default 20)")
    parser.add_argument("--trials", type=int, default=6, help="finished trials each study ends with (default 6)")
    add_backend_arguments(parser)
    parser.add_argument("--logs", default="results/crashbench", help="where every round's logs are kept")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments and victims (default 0)")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES), help="taken in turn (default all)")
    parser.add_argument(
        "--mid-epoch",
        action="store_true",
        help=f"instead of --phases: every kill mid-epoch, in trials of {MID_EPOCHS} epochs under one seed; reports "
        "how many epochs each retried trial trained again (its checkpoint should leave at most the one running)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.trials < 2:
        parser.error("--rounds must be at least 1 and --trials at least 2")
    phases = ["mid-epoch"] if args.mid_epoch else args.phases
    postgres = connect_postgres(args)
    logs = Path(args.logs).resolve()
    make_corpus(logs / "corpus", (120, 30, 30))
    rng = random.Random(args.seed)
    print(f"{args.rounds} rounds per backend, {args.trials} trials each; logs in {logs}/")
    results: list[Round] = []
    for backend in args.backends:
        if backend == "postgresql" and postgres is None:
            continue
        for number in range(args.rounds):
            folder = logs / f"{backend}-{number:02d}"
            url = postgres.create() if postgres and backend == "postgresql" else f"sqlite:///{folder}/study.db"
            if backend == "sqlite":
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "study.db").unlink(missing_ok=True)
            try:
                phase = phases[number % len(phases)]
                result = run_round(backend, url, number, folder, args.trials, phase, rng)
            finally:
                if postgres and backend == "postgresql":
                    postgres.drop(url)
            results.append(result)
            where = f" ({result.landed})" if result.landed else ""
            replaced = "+ replacement" if result.replacement else "survivor alone"
            recovered = f"  {result.recovered}" if result.recovered else ""
            print(
                f"{backend:<10} {number:>3}  {result.phase:<6}  killed {result.killed}{where}  {replaced}{recovered}  "
                f"{'OK' if result.ok else 'NOT OK'}  {result.seconds:.1f} s",
                flush=True,
            )
            for retry, dead, reported, restored in result.retrained:
                print(
                    f"    retry trial {retry} of trial {dead}: {reported} epoch(s) done before the kill, "
                    f"{restored} restored, {reported - restored} trained again",
                    flush=True,
                )
            for problem in result.problems:
                print(f"    {problem}", flush=True)
    print("\nbackend     rounds OK   kills landed   no kill (finished first)   a trial that never beat")
    for backend in args.backends:
        mine = [r for r in results if r.backend == backend]
        if mine:
            ok = sum(r.ok for r in mine)
            missed = sum(r.killed.startswith("nobody") for r in mine)
            unbeaten = sum("never beat" in r.recovered for r in mine)
            print(f"{backend:<11} {ok:>3} / {len(mine):<5} {len(mine) - missed:>12}   {missed:>24}   {unbeaten:>23}")
    if args.mid_epoch:
        print("\nbackend     retried trials   trained again: 0 epochs   1 epoch   more   resumed from a checkpoint")
        for backend in args.backends:
            mine = [(done, restored) for r in results if r.backend == backend for *_, done, restored in r.retrained]
            if any(r.backend == backend for r in results):
                again = [done - restored for done, restored in mine]
                resumed = sum(restored > 0 for _, restored in mine)
                print(
                    f"{backend:<11} {len(mine):>14}   {again.count(0):>24}   {again.count(1):>7}   "
                    f"{sum(a > 1 for a in again):>4}   {resumed:>25}"
                )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
