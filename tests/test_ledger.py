import json
import shutil

import pytest

from ner_core import ledger
from ner_core.data import load_corpus
from ner_core.errors import UserError
from ner_core.synthetic import make_corpus

SCORES = [{"token_macro_f1": 0.6, "entity_f1": 0.8}, {"token_macro_f1": 0.7, "entity_f1": 0.9}]


def test_readings_are_appended_and_found_by_the_test_files_contents(tmp_path):
    corpus = load_corpus(make_corpus(tmp_path / "a"), with_test=True)
    other = load_corpus(make_corpus(tmp_path / "b", (60, 20, 25)), with_test=True)
    sha = ledger.test_sha256(corpus)
    assert ledger.readings(sha) == [] and ledger.count_line([]) == "test split not read yet"
    first = ledger.record("study.best", corpus, ["m1", "m2"], SCORES, study="s")
    ledger.record("ner_core.train", other, ["m3"], SCORES[:1])
    # the same test file in another folder (a copy, another machine) is the same split
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    copy = load_corpus(tmp_path / "copy", with_test=True)
    second = ledger.record("ner_core.ensemble", copy, ["m4"], SCORES[1:])
    found = ledger.readings(sha)
    assert [r.id for r in found] == [first.id, second.id] and found[1].corpus == str(tmp_path / "copy")
    assert (found[0].token_macro_f1, found[0].entity_f1) == pytest.approx((0.65, 0.85))
    assert found[0].study == "s" and found[1].study is None and found[0].models == ["m1", "m2"]
    assert ledger.count_line(found).startswith("test split read 2 time(s); the first: ")
    assert found[0].line().endswith("by study 's': token macro-F1 0.6500, entity F1 0.8500 (2 model(s))")
    assert " UTC by ner_core.ensemble: token macro-F1 0.7000" in found[1].line()
    assert found[1].command.startswith("python -m ner_core.ensemble")
    assert len(ledger.ledger_path().read_text().splitlines()) == 3


def test_the_ledger_defaults_to_the_results_folder_and_a_broken_line_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv(ledger.LEDGER_ENV)
    monkeypatch.chdir(tmp_path)
    corpus = load_corpus(make_corpus(tmp_path / "c"), with_test=True)
    reading = ledger.record("ner_core.train", corpus, ["m"], SCORES)
    path = tmp_path / "results" / "test-readings.jsonl"
    assert json.loads(path.read_text())["id"] == reading.id
    with path.open("a") as out:
        out.write("{not json\n")
    with pytest.raises(UserError, match=r"results/test-readings.jsonl:2: not a JSON line"):
        ledger.readings(reading.test_sha256)
