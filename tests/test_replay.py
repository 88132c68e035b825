import json
import math

import optuna
import pytest

from ner_core.data import EncodedSplit, load_corpus
from ner_core.train import evaluate, fit
from study import pool as pooling
from study import replay, search
from study.pool import Training
from study.space import SearchSpace
from study.stored import STUDY_BASE, StudySettings

# A space of small shapes: the pool trains in seconds on the test corpus.
SMALL = {"lr": (1e-3, 1e-2), "hidden_size": (8, 16), "num_layers": (1, 1), "dropout": (0.0, 0.3), "batch_size": (32,)}


def training(config, seed, curve, seconds=None, token=0.5, entity=0.5):
    seconds = seconds or [1.0] * len(curve)
    return Training(config, seed, curve, seconds, {"token_macro_f1": token, "entity_f1": entity})


def make_pool(rows):
    """rows: per configuration, (best of seed 1, best of seed 2, best of seed 3 on A, its judged score on B)."""
    return [
        [training(i, 1, [a1]), training(i, 2, [a2]), training(i, 3, [a3], token=b, entity=b)]
        for i, (a1, a2, a3, b) in enumerate(rows)
    ]


def test_one_seed_picks_by_its_seed_and_two_seeds_by_their_mean_each_judged_by_the_retraining():
    pool = make_pool([(0.9, 0.1, 0.5, 0.2), (0.6, 0.6, 0.5, 0.7), (0.5, 0.5, 0.5, 0.4), (0.1, 0.1, 0.5, 0.1)])
    arms = replay.seeds_arms(2)
    assert arms["1 seed"](pool, [0, 1, 2, 3])["token_macro_f1"] == 0.2  # seed 1's luck picks configuration 0
    assert arms["2 seeds"](pool, [0, 1, 2, 3])["token_macro_f1"] == 0.7  # the mean picks 1, among the first 2
    assert arms["2 seeds"](pool, [2, 3, 0, 1])["token_macro_f1"] == 0.4  # only the draw's first k are trained


def test_top_three_keeps_the_one_whose_retraining_scores_best_on_half_a():
    pool = make_pool([(0.9, 0.9, 0.1, 0.3), (0.8, 0.8, 0.9, 0.8), (0.7, 0.7, 0.2, 0.5), (0.6, 0.6, 0.99, 0.9)])
    arms = replay.top_arms(4, 2)
    assert arms["top 1"](pool, [3, 2, 1, 0])["entity_f1"] == 0.3
    assert arms["top 3"](pool, [3, 2, 1, 0])["entity_f1"] == 0.8  # 3 is fourth by trial value: not retrained


def test_compare_finds_no_gap_between_equal_arms_and_a_gap_beyond_its_noise():
    rows = [(0.9 - 0.05 * i, 0.9 - 0.05 * i, 0.5, 0.9 - 0.05 * i) for i in range(8)]
    pool = make_pool(rows)
    same = replay.compare(
        pool, {"a": replay.seeds_arms(2)["1 seed"], "b": replay.seeds_arms(2)["1 seed"]}, 4, 50, 20, 0
    )
    assert same["verdict"] == "level" and same["noise"] == {"token_macro_f1": 0.0, "entity_f1": 0.0}
    worst = {"worst": lambda p, d: p[max(d)][2].judged, "best": lambda p, d: p[min(d)][2].judged}
    found = replay.compare(pool, worst, 4, 50, 20, 0)
    assert found["verdict"] == "helps" and found["of"] == "best"
    assert found["means"]["best"]["token_macro_f1"] > found["means"]["worst"]["token_macro_f1"]


def test_a_replayed_search_charges_each_epoch_and_stops_at_the_budget():
    pool = [[training(i, s, [0.1 * i, 0.1 * i + 0.05], seconds=[10.0, 10.0]) for s in range(3)] for i in range(1, 6)]
    unpruned = replay.replay_search(pool, [0, 1, 2, 3, 4], 2, optuna.pruners.NopPruner(), budget=100.0)
    # a trial of two seeds costs 40 s: two complete within 100 s, the third ends past it
    assert unpruned == [(40.0, pytest.approx(0.15)), (80.0, pytest.approx(0.25))]
    assert replay.best_at(unpruned, 50.0) == pytest.approx(0.15) and replay.best_at(unpruned, 10.0) == -math.inf
    assert replay.reached(unpruned, 0.2) == 80.0 and replay.reached(unpruned, 0.9) == math.inf
    # worse curves after one start-up trial are pruned at their first epoch: 10 s each
    falling = [[training(i, s, [1.0 - 0.1 * i, 1.0], seconds=[10.0, 10.0]) for s in range(3)] for i in range(5)]
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1)
    pruned = replay.replay_search(falling, [0, 1, 2, 3, 4], 2, pruner, budget=1000.0)
    assert pruned == [(40.0, 1.0)]  # the other four stopped after 10 s each, none completed


def test_the_pruner_rule_takes_the_fastest_of_the_settings_near_the_best_and_the_current_on_a_tie():
    def row(name, best, time):
        return {"setting": name, "median_best": best, "median_time_to_target": time}

    rows = [row("current", 0.700, 0.4), row("a", 0.701, 0.3), row("b", 0.710, 0.5), row("c", 0.709, 0.45)]
    assert replay.choose_pruner(rows)["setting"] == "c"  # a is fastest but 0.009 below the best
    assert replay.choose_pruner([row("current", 0.7, 0.4), row("a", 0.7, 0.4)])["setting"] == "current"


def test_the_grid_starts_with_the_study_s_own_pruner_settings():
    made = search.make_pruner(StudySettings(STUDY_BASE, SearchSpace(), ""))
    current = (made._n_startup_trials, made._n_warmup_steps, made._interval_steps, made._n_min_trials)
    assert replay.PRUNER_GRID[0] == current == (2, 1, 1, 1)
    assert len(set(replay.PRUNER_GRID)) == len(replay.PRUNER_GRID) == 36 and (5, 3, 1, 1) in replay.PRUNER_GRID


def test_replay_trains_the_pool_on_half_a_judges_on_half_b_and_resumes(corpus_dir, tmp_path, capsys, monkeypatch):
    (corpus_dir / "test.txt").write_text("not a CoNLL file\n", encoding="utf-8")  # never read
    monkeypatch.setattr(replay, "SearchSpace", lambda: SearchSpace(SMALL))
    out = tmp_path / "replay"
    args = ["--data-dir", str(corpus_dir), "--configs", "8", "--max-epochs", "2", "--patience", "2"]
    args += ["--draws", "20", "--boots", "5", "--streams", "3", "--threads", "1", "--out", str(out)]
    assert replay.main(args) == 0
    report = json.loads((out / "replay.json").read_text(encoding="utf-8"))
    assert len(report["configs"]) == 8 and set(report["configs"][0]) == set(SMALL)
    assert report["seeds_per_trial"]["of"] == "2 seeds" and set(report["top"]) == {"1", "2"}
    assert report["pruner"]["2"]["settings"][0]["setting"] == {
        "startup_trials": 2,
        "warmup_epochs": 1,
        "interval": 1,
        "min_trials": 1,
    }
    # one saved training, checked against training it again: curve on half A, scores on half B
    corpus = load_corpus(corpus_dir)
    half_a, half_b = pooling.halves(corpus, 0)
    config = pooling.draw_configs(SearchSpace(SMALL), STUDY_BASE.replace(max_epochs=2, patience=2), 8, 0)[5]
    saved = pooling.load_training(pooling.training_path(out, 5, 43), config.replace(seed=43))
    again = fit(config.replace(seed=43), half_a)
    judged = evaluate(again.model, EncodedSplit(half_b.dev, again.vocab, half_b.tagset), half_b.dev, half_b.tagset)
    assert saved.curve == [e.objective for e in again.history] and len(saved.seconds) == 2
    assert saved.judged == {k: judged[k] for k in ("token_macro_f1", "entity_f1")}
    printed = capsys.readouterr().out
    assert "seeds per trial: 4 one-seed trials against 2 two-seed trials" in printed and "<- chosen" in printed
    assert replay.main(args) == 0
    assert "reusing 24 training(s) already saved" in capsys.readouterr().out


def test_a_folder_of_another_pool_is_refused(corpus_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(replay, "SearchSpace", lambda: SearchSpace(SMALL))
    out = tmp_path / "replay"
    path = pooling.training_path(out, 0, 42)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"settings": {"lr": 1}}), encoding="utf-8")
    assert replay.main(["--data-dir", str(corpus_dir), "--configs", "8", "--out", str(out), "--threads", "1"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: {path}: a training of another configuration (another pool); use another --out"
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--configs", "4"], "error: --configs must be at least 8, got 4"),
        (["--seeds", "1", "1", "2"], "error: --seeds: give three different seeds"),
        (["--jobs", "0"], "error: --jobs must be at least 1, got 0"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(corpus_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "replay"
    assert replay.main(["--data-dir", str(corpus_dir), "--out", str(out), *extra]) == 2
    assert capsys.readouterr().err.strip() == message
    assert not out.exists()
