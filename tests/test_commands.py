"""Every command a study prints works as printed: a tiny study per backend, then the next commands
its summary printed, run as printed (the dashboard on 127.0.0.1 and a free port, checked over
HTTP). On PostgreSQL the study runs two workers with a password in its URL, and the password shows
nowhere: not in the output, the workers' logs, or the workers' command lines.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ner_core.synthetic import make_corpus

from .conftest import free_port, get_json

SECRET = "s3cretpw"
TRIALS = 3
TINY = (
    f"--trials {TRIALS} --max-epochs 2 --hidden-sizes 8 --layers-range 1 1 --batch-sizes 16 --embed-dim 8 "
    "--no-report --threads 1 --data-dir corpus"
).split()
WAIT_S = 240  # generous: the 2 cores are shared


def printed_commands(summary: str) -> list[list[str]]:
    """The commands after 'next:', as the shell would split them (comments dropped)."""
    lines = summary[summary.index("\nnext: ") + 1 :].splitlines()
    commands = [lines[0].removeprefix("next: ")] + [line.strip() for line in lines[1:] if line.startswith("      ")]
    return [shlex.split(c, comments=True) for c in commands if c.startswith("python ")]


def children_of(pid: int) -> dict[int, str]:
    """Command lines of the running processes whose parent is ``pid`` (what ps shows every user)."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            if entry.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):  # ended meanwhile
            continue
    return found


def run_study(folder: Path, options: list[str], env: dict[str, str]) -> tuple[str, str, dict[int, str]]:
    """study.run in ``folder`` as a shell would start it: stdout, stderr, and its children's command lines."""
    out, err = folder / "run.out", folder / "run.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "study.run", *TINY, *options], cwd=folder, stdout=stdout, stderr=stderr, env=env
        )
    children: dict[int, str] = {}
    deadline = time.monotonic() + WAIT_S
    while process.poll() is None and time.monotonic() < deadline:
        children.update(children_of(process.pid))
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
    assert process.wait() == 0, f"study.run exited {process.returncode}:\n{out.read_text()}\n{err.read_text()}"
    return out.read_text(), err.read_text(), children


def serve_and_list(command: list[str], folder: Path, env: dict[str, str], study: str) -> dict:
    """Run the printed dashboard command on a free port; what it serves of ``study``."""
    port = free_port()
    log = folder / "dashboard.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, *command[1:], "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                break
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"the dashboard did not answer:\n{log.read_text()}"
                time.sleep(0.2)
        (summary,) = [s for s in studies if s["study_name"] == study]
        return get_json(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}")
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(params=["sqlite", "journal", "postgresql"])
def backend(request, tmp_path):
    """(options for study.run, environment, study name, secret to look for) per backend:
    SQLite through --storage, a journal file through NER_HPO_STORAGE, PostgreSQL with a password
    in --storage and two workers."""
    env = dict(os.environ)
    if request.param == "sqlite":
        return ["--storage", f"sqlite:///{tmp_path}/study.db"], env, "bilstm-crf", None
    if request.param == "journal":
        env["NER_HPO_STORAGE"] = f"journal:///{tmp_path}/shared/study.log"
        return [], env, "journal", None
    url = request.getfixturevalue("pg_url").replace("postgres@", f"postgres:{SECRET}@", 1)
    return ["--storage", url, "--workers", "2"], env, "pw", SECRET


def test_the_printed_next_commands_work_as_printed(backend, tmp_path):
    options, env, study, secret = backend
    make_corpus(tmp_path / "corpus", (60, 15, 15))
    out, err, children = run_study(tmp_path, [*options, "--study-name", study], env)
    assert "\r" not in out + err  # no progress bar remnants where the output is not a terminal
    commands = printed_commands(out)
    assert [c[:3] for c in commands] == [["python", "-m", "study.best"], ["python", "-m", "study.dashboard"]]
    if "NER_HPO_STORAGE" in env:  # the shell has the URL: the commands need no --storage
        assert all("--storage" not in c for c in commands)
    if secret:
        logs = sorted((tmp_path / "results" / study).glob("worker-*.log"))
        assert len(logs) == 2 and len(children) == 2, (logs, children)
        for where, text in [("output", out + err), *[(p.name, p.read_text()) for p in logs]]:
            assert secret not in text, f"the password shows in {where}:\n{text}"
        for pid, command in children.items():
            assert secret not in command and "--storage" not in command, f"worker {pid}: {command}"
        assert "***@" in out and "PGPASSWORD" in out  # shown hidden, and how to give it said
        env = {**env, "PGPASSWORD": SECRET}  # as the note says (the test server trusts any password)

    served = serve_and_list(commands[1], tmp_path, env, study)
    finished = [t for t in served["trials"] if t["state"] in ("Complete", "Pruned")]
    assert len(finished) == TRIALS
    # besides them, at most the slot a worker put back in the queue when the other took the last place
    assert [t["state"] for t in served["trials"] if t not in finished] in ([], ["Waiting"])
    assert served["objective_names"] == ["dev token macro-F1"]  # the objective by its name
    columns = {attr["key"] for attr in served["union_user_attrs"]}  # the trial table's extra columns
    assert {"dev_entity_f1", "epochs_run", "seconds", "device", "precision", "threads"} <= columns

    best = subprocess.run([sys.executable, *commands[0][1:]], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert best.returncode == 0, best.stdout + best.stderr
    assert "test scores of trial" in best.stdout and "\r" not in best.stdout + best.stderr
    # its plan first, then a plain line as each training ends in place of the bars
    assert re.search(r"^retraining 1 trial\(s\) x 3 seed\(s\) .*, about \d+ min", best.stdout, re.M)
    assert re.search(r"^trial \d+, seed 42: best epoch \d+, dev 0\.\d{4}$", best.stdout, re.M)
    # the defaults: the retrainings are tested and kept, decoding as trained (no refit, entity bias 0)
    assert re.search(r"^test scores of trial \d+ over 3 seeds, of the retrainings on train \(mean", best.stdout, re.M)
    assert re.search(r"^entity bias 0 \(the models decode as trained\)$", best.stdout, re.M)
    assert not (tmp_path / "results" / "bilstm-crf" / "refit").exists()
    if secret:
        assert secret not in best.stdout + best.stderr


def test_a_bad_storage_in_the_environment_is_one_line(tmp_path, monkeypatch, capsys):
    from study import dashboard, run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NER_HPO_STORAGE", f"mongodb://root:{SECRET}@db/x")
    assert run.main(["--data-dir", str(tmp_path)]) == 2
    assert dashboard.main([]) == 2
    for line in capsys.readouterr().err.strip().splitlines():
        assert line == "error: mongodb://root:***@db/x: unknown storage scheme 'mongodb'; use one of " + (
            "sqlite:///PATH, postgresql://USER@HOST:PORT/DB, journal:///PATH"
        )
    monkeypatch.setenv("NER_HPO_STORAGE", f"sqlite:///{tmp_path}/missing.db")
    assert dashboard.main([]) == 2
    assert "no such database file" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()  # the dashboard made no empty database
