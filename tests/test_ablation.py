import json

import pytest

from ner_core import ablation
from ner_core.data import EncodedSplit, load_corpus
from ner_core.saving import load_model
from ner_core.train import evaluate


@pytest.fixture
def config_file(tiny_config, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(tiny_config.replace(max_epochs=2, embed_dropout=0.2, bigram_dim=8).to_json(), encoding="utf-8")
    return path


def arguments(config_file, corpus_dir, out, *extra):
    return ["--config", str(config_file), "--data-dir", str(corpus_dir), "--out", str(out), "--threads", "1", *extra]


def test_the_halves_split_dev_in_two_and_the_second_fold_swaps_them(corpus_dir):
    corpus = load_corpus(corpus_dir)
    a, b = ablation.fold_halves(corpus, 0, 0)
    assert len(a.dev) == len(corpus.dev) // 2 and len(a.dev) + len(b.dev) == len(corpus.dev)
    assert sorted(map(id, a.dev + b.dev)) == sorted(map(id, corpus.dev))
    assert a.train is corpus.train and b.train is corpus.train
    swapped = ablation.fold_halves(corpus, 0, 1)
    assert (swapped[0].dev, swapped[1].dev) == (b.dev, a.dev)
    assert ablation.fold_halves(corpus, 0, 0)[0].dev == a.dev != ablation.fold_halves(corpus, 1, 0)[0].dev


def scores(token, token_std, entity, entity_std):
    return {"token_macro_f1": {"mean": token, "std": token_std}, "entity_f1": {"mean": entity, "std": entity_std}}


@pytest.mark.parametrize(
    "on, off, said",
    [
        (scores(0.80, 0.01, 0.70, 0.01), scores(0.78, 0.005, 0.70, 0.01), "helps"),  # ahead by 0.02 > 0.01
        (scores(0.80, 0.01, 0.70, 0.01), scores(0.795, 0.005, 0.70, 0.01), "level"),  # within the larger std
        (scores(0.80, 0.01, 0.70, 0.01), scores(0.78, 0.005, 0.72, 0.01), "hurts"),  # ahead on one, behind on one
        (scores(0.78, 0.01, 0.70, 0.01), scores(0.80, 0.005, 0.70, 0.01), "hurts"),
    ],
)
def test_verdict_counts_a_difference_only_beyond_the_larger_std(on, off, said):
    assert ablation.verdict(on, off) == said


def test_ablation_trains_each_arm_on_its_half_and_judges_on_the_other(config_file, corpus_dir, tmp_path, capsys):
    (corpus_dir / "test.txt").write_text("not a CoNLL file\n", encoding="utf-8")  # never read
    out = tmp_path / "ablation"
    assert ablation.main(arguments(config_file, corpus_dir, out, "--seeds", "3", "4", "--folds", "2")) == 0
    report = json.loads((out / "ablation.json").read_text(encoding="utf-8"))
    assert set(report["arms"]) == set(ablation.ARMS) and set(report["verdicts"]) == set(ablation.ARMS) - {"base"}
    corpus = load_corpus(corpus_dir)
    for fold, where in ((0, out), (1, out / "fold-1")):
        half_a, half_b = ablation.fold_halves(corpus, 0, fold)
        base = load_model(where / "base" / "seed-3")
        assert base.config.embed_dropout == 0.2 and base.metrics["dev"]  # early stopping judged on half A
        assert load_model(where / "no-embed-dropout" / "seed-3").config.embed_dropout == 0.0
        assert load_model(where / "no-bigrams" / "seed-4").config.bigram_dim == 0
        refit = load_model(where / "refit" / "seed-3")
        assert refit.metrics["epochs_run"] == 2 and refit.metrics["dev"] == {}  # whole schedule, nothing judged
        judged = evaluate(base.model, EncodedSplit(half_b.dev, base.vocab, base.tagset), half_b.dev, base.tagset)
        assert report["folds"][fold]["runs"]["base"][0] == {k: judged[k] for k in ("token_macro_f1", "entity_f1")}
    assert [row["size"] for row in report["ensembles"]] == [1, 2]
    printed = capsys.readouterr().out
    assert "mean ± std over 4 trainings (2 fold(s) x 2 seeds)" in printed
    assert "fold 1, by entity_f1: bias " in printed
    # a second run trains nothing again
    assert ablation.main(arguments(config_file, corpus_dir, out, "--seeds", "3", "4", "--folds", "2")) == 0
    assert "reusing 8 training(s) already saved" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seeds", "5"], "error: --seeds: give two or more different seeds (a spread needs them)"),
        (["--folds", "3"], "error: --folds must be 1 or 2, got 3"),
        (["--jobs", "0"], "error: --jobs must be at least 1, got 0"),
        (["--arms", "refit"], "error: --arms: the other arms are judged against base; include it"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(config_file, corpus_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "ablation"
    assert ablation.main(arguments(config_file, corpus_dir, out, *extra)) == 2
    assert capsys.readouterr().err.strip() == message
    assert not out.exists()


def test_an_arm_that_switches_off_what_is_off_already_is_refused(tiny_config, corpus_dir, tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(tiny_config.to_json(), encoding="utf-8")  # no embedding dropout, no bigrams
    out = tmp_path / "ablation"
    assert ablation.main(arguments(path, corpus_dir, out, "--arms", "base", "no-bigrams")) == 2
    expected = "error: --arms no-bigrams: the configuration's bigram_dim is 0 already; leave that arm out"
    assert capsys.readouterr().err.strip() == expected
    assert not out.exists()
