"""Tests for ner_core.datasets: fetching and verifying corpora, served only from 127.0.0.1 or local folders."""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ner_core import datasets
from ner_core.data import load_corpus
from ner_core.datasets import DatasetSpec, fetch, main
from ner_core.errors import UserError

CORPUS = {
    "train.txt": "王\tS-PER\n曰\tO\n\n臣\tO\n聞\tO\n",
    "dev.txt": "長\tB-LOC\n安\tE-LOC\n\n",
    "test.txt": "太\tB-OFI\n守\tE-OFI\n\n",
}


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "served"
    folder.mkdir()
    for name, text in CORPUS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def spec(corpus_dir: Path) -> DatasetSpec:
    sums = {name: hashlib.sha256((corpus_dir / name).read_bytes()).hexdigest() for name in CORPUS}
    return DatasetSpec("tiny", "http://127.0.0.1:9/unused", sums, "tiny test corpus")


@pytest.fixture
def server_url(corpus_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # A proxy from the environment must not intercept requests to the local server.
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "*")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(corpus_dir)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _served(spec: DatasetSpec, url: str) -> DatasetSpec:
    return DatasetSpec(spec.name, url, spec.files, spec.description)


def test_fetch_from_server(spec: DatasetSpec, server_url: str, corpus_dir: Path, tmp_path: Path) -> None:
    dest = fetch(_served(spec, server_url), tmp_path / "out" / "tiny", log=lambda line: None)
    for name in CORPUS:
        assert (dest / name).read_bytes() == (corpus_dir / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny"]  # no staging folder left


def test_second_fetch_skips_verified_files(spec: DatasetSpec, server_url: str, tmp_path: Path) -> None:
    fetch(_served(spec, server_url), tmp_path / "tiny", log=lambda line: None)
    lines: list[str] = []
    fetch(_served(spec, "http://127.0.0.1:9/never-contacted"), tmp_path / "tiny", log=lines.append)
    assert len(lines) == 3 and all("skipped" in line for line in lines)


def test_tampered_file_is_refused(spec: DatasetSpec, server_url: str, corpus_dir: Path, tmp_path: Path) -> None:
    (corpus_dir / "test.txt").write_text("太\tO\n守\tO\n\n", encoding="utf-8")  # the last file fetched
    out = tmp_path / "out"
    with pytest.raises(UserError) as info:
        fetch(_served(spec, server_url), out / "tiny", log=lambda line: None)
    message = str(info.value)
    assert message.startswith(f"{server_url}/test.txt: sha256 mismatch (expected {spec.files['test.txt']}, got ")
    assert message.endswith("; refusing it") and "\n" not in message
    assert not out.exists() or not any(out.iterdir())


def test_tampered_file_leaves_existing_dest_unchanged(spec: DatasetSpec, corpus_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "tiny"
    dest.mkdir()
    (dest / "train.txt").write_text("old\n", encoding="utf-8")
    (corpus_dir / "test.txt").write_text("changed\n", encoding="utf-8")
    with pytest.raises(UserError, match="sha256 mismatch"):
        fetch(spec, dest, mirror=corpus_dir, log=lambda line: None)
    assert [p.name for p in dest.iterdir()] == ["train.txt"]
    assert (dest / "train.txt").read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_fetch_from_mirror_folder(spec: DatasetSpec, corpus_dir: Path, tmp_path: Path) -> None:
    dest = fetch(spec, tmp_path / "tiny", mirror=corpus_dir, log=lambda line: None)
    assert {p.name: p.read_text(encoding="utf-8") for p in dest.iterdir()} == CORPUS


def test_missing_mirror_file(spec: DatasetSpec, corpus_dir: Path, tmp_path: Path) -> None:
    (corpus_dir / "dev.txt").unlink()
    with pytest.raises(UserError, match=r"dev\.txt: missing from the mirror folder"):
        fetch(spec, tmp_path / "tiny", mirror=corpus_dir, log=lambda line: None)
    assert not (tmp_path / "tiny").exists()


def test_main_with_mirror_url(
    spec: DatasetSpec,
    server_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(datasets, "DATASETS", {"tiny": spec})
    dest = tmp_path / "tiny"
    assert main(["fetch", "tiny", "--mirror", server_url + "/", "--dest", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == sorted(CORPUS)
    out = capsys.readouterr().out
    # the next command is a study of its own on it (the default study keeps the default corpus)
    assert f"next: python -m study.run --trials 50 --data-dir {dest} --study-name tiny\n" in out


def test_unknown_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fetch", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unknown dataset 'nosuch'") and "chisiec" in err


def test_server_404(spec: DatasetSpec, server_url: str, tmp_path: Path) -> None:
    missing = DatasetSpec("gone", server_url, {"absent.txt": "0" * 64})
    with pytest.raises(UserError) as info:
        fetch(missing, tmp_path / "gone", log=lambda line: None)
    assert str(info.value) == f"{server_url}/absent.txt: cannot download (HTTP 404 File not found)"


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    assert "chisiec" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["chisiec", "cclue"])
def test_real_spec_matches_shared_copy(name: str, tmp_path: Path) -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / name
    if not shared.is_dir():
        pytest.skip(f"no local {name} copy at {shared}")
    dest = fetch(datasets.DATASETS[name], tmp_path / name, mirror=shared, log=lambda line: None)
    assert sorted(p.name for p in dest.iterdir()) == ["dev.txt", "test.txt", "train.txt"]
    if (shared / "SHA256SUMS").is_file():  # the spec pins what the copy's own checksums say
        sums = dict(reversed(line.split()) for line in (shared / "SHA256SUMS").read_text().splitlines() if line)
        assert sums == datasets.DATASETS[name].files


def test_cclue_reads_as_a_bio_corpus_of_two_types(tmp_path: Path) -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "cclue"
    if not shared.is_dir():
        pytest.skip(f"no local CCLUE copy at {shared}")
    corpus = load_corpus(shared)
    assert (len(corpus.train), len(corpus.dev)) == (2566, 281)
    assert sum(map(len, corpus.train)) == 574_405 and max(map(len, corpus.train)) == 510
    assert corpus.scheme == "BIO" and corpus.tagset.types == ["NOUN_BOOKNAME", "NOUN_OTHER"]
