import json

import pytest

from ner_core import spread
from ner_core.data import EncodedSplit, load_corpus
from ner_core.model import Ensemble, with_entity_bias
from ner_core.saving import load_model
from ner_core.train import evaluate


@pytest.fixture
def config_file(tiny_config, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(tiny_config.replace(max_epochs=2, seed=7).to_json(), encoding="utf-8")
    return path


def arguments(config_file, corpus_dir, out, *extra):
    return ["--config", str(config_file), "--data-dir", str(corpus_dir), "--out", str(out), "--threads", "1", *extra]


def test_spread_trains_members_as_refits_and_scores_groupings_as_the_ensembles_would(
    config_file, corpus_dir, tmp_path, capsys
):
    out = tmp_path / "spread"
    args = arguments(config_file, corpus_dir, out, "--members", "6", "--sizes", "1", "2", "--draws", "20", "--test")
    assert spread.main(args) == 0
    report = json.loads((out / "spread.json").read_text(encoding="utf-8"))
    assert report["seeds"] == [7, 8, 9, 10, 11, 12]
    assert [row["size"] for row in report["dev"]] == [1, 2] and [row["size"] for row in report["test"]] == [1, 2]
    for row in report["dev"] + report["test"]:
        for key in ("token_macro_f1", "entity_f1"):
            assert 0.0 <= row[key]["share_within_bound"] <= 1.0 and row[key]["std_of_three_mean"] >= 0.0
    members = [load_model(out / "members" / f"seed-{s}") for s in report["seeds"]]
    # a refit: the whole schedule on train alone, last weights kept
    assert all(m.metrics["epochs_run"] == 2 and m.metrics["dev"] == {} for m in members)
    corpus = load_corpus(corpus_dir)
    scores = spread.SplitScores(members, corpus.dev)
    dev = EncodedSplit(corpus.dev, members[0].vocab, members[0].tagset)
    for pick, model in (((0,), members[0].model), ((1, 2), Ensemble([members[1].model, members[2].model]))):
        expected = evaluate(model, dev, corpus.dev, members[0].tagset)
        assert scores.score(pick) == {k: expected[k] for k in spread.KEYS}
        # under an entity bias (one that changes the tags of models this sure), as the model decoding with it
        expected = evaluate(with_entity_bias(model, 20.0), dev, corpus.dev, members[0].tagset)
        assert scores.score(pick, 20.0) == {k: expected[k] for k in spread.KEYS} != scores.score(pick)
        with_entity_bias(model, 0.0)
    # the same seed draws the same groupings
    again = spread.spread(scores, 2, 20, 0.01, 7)
    assert again == spread.spread(spread.SplitScores(members, corpus.dev), 2, 20, 0.01, 7)
    assert again == report["dev"][1]
    printed = capsys.readouterr().out
    assert "dev: 20 draws of three disjoint ensembles per size, from 6 members" in printed
    assert printed.strip().splitlines()[-1].startswith(f"next: python -m ner_core.ensemble --out {out}/ensemble ")


def test_a_rerun_reuses_the_members_it_finds(config_file, corpus_dir, tmp_path, capsys):
    out = tmp_path / "spread"
    assert spread.main(arguments(config_file, corpus_dir, out, "--members", "3", "--sizes", "1", "--draws", "2")) == 0
    weights = (out / "members" / "seed-7" / "model.pt").stat().st_mtime_ns
    capsys.readouterr()
    more = arguments(config_file, corpus_dir, out, "--members", "6", "--sizes", "2", "--draws", "2", "--jobs", "2")
    assert spread.main(more) == 0
    assert "reusing 3 member(s)" in capsys.readouterr().out
    assert (out / "members" / "seed-7" / "model.pt").stat().st_mtime_ns == weights
    assert (out / "members" / "seed-12").is_dir()


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--members", "5", "--sizes", "2"],
            "error: --sizes 2 needs 6 members (three disjoint ensembles), --members is 5",
        ),
        (["--sizes", "0"], "error: --sizes must be at least 1, got 0"),
        (["--draws", "0"], "error: --draws must be at least 1, got 0"),
        (["--bound", "nan"], "error: --bound must be positive, got nan"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(config_file, corpus_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "spread"
    assert spread.main(arguments(config_file, corpus_dir, out, *extra)) == 2
    err = capsys.readouterr().err
    assert err.strip() == message
    assert not out.exists()


def test_a_member_of_another_configuration_is_not_reused(config_file, corpus_dir, tiny_config, tmp_path, capsys):
    out = tmp_path / "spread"
    folder = out / "members" / "seed-7"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(tiny_config.replace(seed=7, hidden_size=8).to_json(), encoding="utf-8")
    assert spread.main(arguments(config_file, corpus_dir, out, "--members", "3", "--sizes", "1")) == 2
    err = capsys.readouterr().err
    differs = "differs in hidden_size, max_epochs"
    assert err.strip() == f"error: {folder}: a member of another configuration ({differs}); use another --out"
    assert not (out / "spread.json").exists()
