import hashlib
import json
import math
import os
from pathlib import Path

import pytest
import torch

import ner_core.train as train_module
from ner_core import memory
from ner_core.data import EncodedSplit, load_corpus
from ner_core.embeddings import read_word2vec
from ner_core.errors import NonFiniteLossError, UserError
from ner_core.model import BiLSTMCRF
from ner_core.runtime import Runtime
from ner_core.saving import load_model, save_model
from ner_core.train import evaluate, fit, predict_ids, result_metrics

from .conftest import needs_bfloat16, run


def test_model_learns_a_synthetic_task(corpus_dir, tiny_config):
    corpus = load_corpus(corpus_dir)
    result = fit(tiny_config.replace(hidden_size=32, max_epochs=12, patience=12, lr=2e-2), corpus)
    assert result.best_dev["entity_f1"] >= 0.95
    assert result.history[-1].loss < result.history[0].loss


@pytest.mark.parametrize(
    "precision, atol, bigram_dim",
    [("float32", 1e-5, 0), ("float32", 1e-5, 8), pytest.param("bfloat16", 2e-2, 0, marks=needs_bfloat16)],
)
def test_padding_never_changes_a_prediction(corpus_dir, tiny_config, precision, atol, bigram_dim):
    corpus = load_corpus(corpus_dir)
    config = tiny_config.replace(max_epochs=1, num_layers=2, dropout=0.3, bigram_dim=bigram_dim)
    result = fit(config, corpus, runtime=Runtime("cpu", 1, precision))
    dev = EncodedSplit(corpus.dev, result.vocab, result.tagset)
    alone = predict_ids(result.model, dev, batch_size=1)
    together = predict_ids(result.model, dev, batch_size=len(corpus.dev))
    assert alone == together
    # unsorted batch mixing short and long sentences: real-position emissions match too
    model = result.model
    batch = dev.batch(list(range(len(dev))))
    with torch.inference_mode():
        padded = model.emissions(batch.tokens, batch.mask, batch.lengths)
        for row, i in enumerate(batch.index[:10]):
            single = dev.batch([i])
            one = model.emissions(single.tokens, single.mask, single.lengths)[0]
            assert torch.allclose(padded[row, : len(one)], one, atol=atol)
    scores = evaluate(model, dev, corpus.dev, result.tagset)
    assert scores["token_macro_f1"] == result.best_dev["token_macro_f1"]


@needs_bfloat16
def test_bfloat16_lstm_learns_what_float32_learns(corpus_dir, tiny_config):
    """The bfloat16 LSTM is a speed-up only: same task, same scores, nearly the same tags."""
    corpus = load_corpus(corpus_dir)
    config = tiny_config.replace(hidden_size=32, max_epochs=12, patience=12, lr=2e-2)
    full, half = (fit(config, corpus, runtime=Runtime("cpu", 1, p)) for p in ("float32", "bfloat16"))
    assert half.model.lstm.bfloat16 and not full.model.lstm.bfloat16
    assert half.best_dev["entity_f1"] >= 0.95
    assert abs(half.best_dev["token_macro_f1"] - full.best_dev["token_macro_f1"]) <= 0.02
    dev = EncodedSplit(corpus.dev, full.vocab, full.tagset)
    tags = [(a, b) for x, y in zip(predict_ids(full.model, dev), predict_ids(half.model, dev)) for a, b in zip(x, y)]
    assert sum(a == b for a, b in tags) / len(tags) >= 0.98


def test_same_seed_same_numbers(corpus_dir, tiny_config):
    corpus = load_corpus(corpus_dir)
    first = fit(tiny_config, corpus)
    second = fit(tiny_config, corpus)
    assert [h.loss for h in first.history] == [h.loss for h in second.history]
    assert first.best_dev == second.best_dev
    third = fit(tiny_config.replace(seed=7), corpus)
    assert [h.loss for h in third.history] != [h.loss for h in first.history]


def test_hook_sees_each_epoch_and_can_stop(corpus_dir, tiny_config):
    seen = []
    result = fit(
        tiny_config.replace(max_epochs=5),
        load_corpus(corpus_dir),
        on_epoch=lambda r: seen.append(r.epoch) or r.epoch == 2,
    )
    assert seen == [1, 2]
    assert result.stop_reason == "stopped by hook"


def test_early_stopping_keeps_the_best_state(corpus_dir, tiny_config):
    corpus = load_corpus(corpus_dir)
    # lr so small nothing improves after the first epoch's scores
    result = fit(tiny_config.replace(max_epochs=20, patience=2, lr=1e-7), corpus)
    assert len(result.history) < 20 and result.stop_reason.startswith("early stop")
    dev = EncodedSplit(corpus.dev, result.vocab, result.tagset)
    assert evaluate(result.model, dev, corpus.dev, result.tagset)["token_macro_f1"] == result.best_value


def test_keep_last_trains_the_whole_schedule_and_keeps_the_last_weights(corpus_dir, tiny_config, monkeypatch):
    corpus = load_corpus(corpus_dir)
    states, real_epoch, real_evaluate = [], train_module.train_epoch, train_module.evaluate

    def recording_epoch(model, *args):
        out = real_epoch(model, *args)
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        return out

    scores = iter([0.9, 0.8, 0.7, 0.6] * 2)  # dev gets worse every epoch: the best is the first
    monkeypatch.setattr(train_module, "train_epoch", recording_epoch)
    monkeypatch.setattr(train_module, "evaluate", lambda *a: {**real_evaluate(*a), "token_macro_f1": next(scores)})
    config = tiny_config.replace(max_epochs=4, patience=2)

    def same(model, state):
        return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())

    best = fit(config, corpus)
    assert len(best.history) == 3 and same(best.model, states[0])  # early stop, the first epoch kept
    states.clear()
    last = fit(config, corpus, keep_last=True)
    assert len(last.history) == 4 and last.stop_reason == "max_epochs" and last.best_epoch == 4
    assert same(last.model, states[-1]) and not same(last.model, states[0])

    lines = []
    refit = fit(config, corpus.with_dev_in_train(), keep_last=True, log=lines.append)
    assert refit.best_dev == {} and len(refit.history) == 4 and "dev" not in lines[-1]
    assert json.loads(json.dumps(result_metrics(refit, corpus), allow_nan=False))["history"][-1]["objective"] is None
    assert sum(e.tokens for e in refit.history) == 4 * sum(map(len, [*corpus.train, *corpus.dev]))
    with pytest.raises(UserError, match="no dev split to choose the best epoch on"):
        fit(config, corpus.with_dev_in_train())


def test_nan_loss_is_a_clear_catchable_error(corpus_dir, tiny_config, monkeypatch):
    monkeypatch.setattr(BiLSTMCRF, "loss", lambda self, *a: torch.tensor(math.nan, requires_grad=True))
    with pytest.raises(NonFiniteLossError, match="training loss became nan at epoch 1, batch 1"):
        fit(tiny_config, load_corpus(corpus_dir))


def test_pretrained_vectors_are_loaded_and_reported(corpus_dir, tiny_config, tmp_path):
    path = tmp_path / "vec.txt"
    path.write_text(
        "3 16\n張 "
        + " ".join(["0.5"] * 16)
        + "\n洛 "
        + " ".join(["0.25"] * 16)
        + "\n朕 "
        + " ".join(["1"] * 16)
        + "\n",
        encoding="utf-8",
    )
    lines = []
    result = fit(tiny_config.replace(max_epochs=1), load_corpus(corpus_dir), embeddings=path, log=lines.append)
    assert "朕" in result.vocab.stoi  # the file's characters join the vocabulary
    assert result.embeddings_found == 3
    assert any("3 of" in line and "found" in line for line in lines)
    headerless = tmp_path / "plain.txt"
    headerless.write_text("張 " + " ".join(["0.5"] * 16) + "\n", encoding="utf-8")
    assert torch.equal(read_word2vec(headerless, 16)["張"], torch.full((16,), 0.5))


def test_pretrained_dimension_mismatch_is_a_user_error(tmp_path):
    path = tmp_path / "vec.txt"
    path.write_text("張 0.1 0.2\n洛 0.1 0.2 0.3\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"vec\.txt:1: vector has 2 values but --embed-dim is 3"):
        read_word2vec(path, 3)


def test_train_cli_then_predict_round_trip(corpus_dir, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"embed_dim": 16, "hidden_size": 32, "num_layers": 1, "batch_size": 16, "lr": 0.02}))
    out = tmp_path / "model"
    proc = run(
        "ner_core.train",
        "--data-dir",
        str(corpus_dir),
        "--out",
        str(out),
        "--config",
        str(config),
        "--max-epochs",
        "10",
        "--test",
        "--quiet",
        "--threads",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    assert "epoch  10/10" in proc.stdout and "test  token macro-F1" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["max_epochs"] == 10 and metrics["config"]["hidden_size"] == 32
    assert metrics["test"]["entity_f1"] > 0.9 and len(metrics["history"]) == 10
    # the reading is in the ledger of test readings ($NER_HPO_LEDGER here), and the count is printed
    (reading,) = [json.loads(line) for line in Path(os.environ["NER_HPO_LEDGER"]).read_text().splitlines()]
    assert reading["models"] == [str(out)] and reading["entity_f1"] == metrics["test"]["entity_f1"]
    assert reading["test_sha256"] == hashlib.sha256((corpus_dir / "test.txt").read_bytes()).hexdigest()
    assert "test split read 1 time(s); the first: " in proc.stdout

    text = tmp_path / "raw.txt"
    text.write_text("之張王曰於洛陽也\n\n之 趙也\n", encoding="utf-8")
    proc = run("ner_core.predict", str(out), str(text))
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert records[0]["entities"] == [
        {"type": "PER", "start": 1, "end": 3, "text": "張王"},
        {"type": "LOC", "start": 5, "end": 7, "text": "洛陽"},
    ]
    assert records[1] == {"text": "", "entities": []}
    assert records[2]["entities"] == [{"type": "PER", "start": 2, "end": 3, "text": "趙"}]
    proc = run("ner_core.predict", str(out), "--format", "conll", input="之張王曰\n")
    assert proc.stdout == "之\tO\n張\tB-PER\n王\tE-PER\n曰\tO\n\n"
    # a bias toward the entity tags large enough to outweigh what the model knows: no character is O
    proc = run("ner_core.predict", str(out), "--format", "conll", "--entity-bias", "50", input="之張王曰\n")
    assert proc.returncode == 0 and "\tO\n" not in proc.stdout and proc.stdout.count("\n") == 5, proc.stdout
    proc = run("ner_core.predict", str(out), "--entity-bias", "nan", input="之\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        "error: --entity-bias must be a finite number, got nan\n",
    )


def test_a_bigram_model_reads_bigrams_and_saves_their_table(corpus_dir, tiny_config, tmp_path):
    corpus = load_corpus(corpus_dir)
    result = fit(tiny_config.replace(bigram_dim=8, max_epochs=2), corpus)
    assert result.vocab.n_bigrams > 2 and result.model.lstm.forward_layers[0].input_size == 16 + 8
    dev = EncodedSplit(corpus.dev, result.vocab, result.tagset)
    assert dev.batch([0, 1]).tokens.shape[-1] == 2  # [character id, bigram id] per position
    save_model(tmp_path / "m", result, {})
    saved = load_model(tmp_path / "m")
    assert saved.vocab.bigrams == result.vocab.bigrams
    assert predict_ids(saved.model, EncodedSplit(corpus.dev, saved.vocab, None)) == predict_ids(result.model, dev)
    # the bigrams change the model: without them the same seed learns other weights
    plain = fit(tiny_config.replace(max_epochs=2), corpus)
    assert [h.loss for h in plain.history] != [h.loss for h in result.history]
    (tmp_path / "m" / "bigrams.json").unlink()
    with pytest.raises(UserError, match=r"m: not a saved model \(missing bigrams.json, which --bigram-dim needs\)"):
        load_model(tmp_path / "m")


def test_predict_cli_rejects_a_folder_that_is_not_a_model(tmp_path):
    proc = run("ner_core.predict", str(tmp_path), input="張\n")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {tmp_path}: not a saved model (missing model.pt")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("bigram_dim", [0, 8])
def test_the_gpu_paths_compute_what_the_cpu_paths_compute(corpus_dir, tiny_config, bigram_dim):
    """The packed LSTM and the CRF's trees, run here on the CPU: same emissions, loss, gradients and tags
    as the padded LSTM and the loops over time (what a GPU runs is tested where CI runs). In float32:
    a bfloat16 LSTM rounds the two ways differently."""
    corpus = load_corpus(corpus_dir)
    config = tiny_config.replace(max_epochs=1, num_layers=2, bigram_dim=bigram_dim)
    result = fit(config, corpus, runtime=Runtime(precision="float32"))
    model = result.model.eval()  # no dropout: both ways see the same network
    dev = EncodedSplit(corpus.dev, result.vocab, corpus.tagset)
    batch = dev.batch(list(range(len(dev))))  # unsorted: every length padded to the longest
    outputs = []
    for gpu_paths in (False, True):
        model.lstm.packed = model.crf.scan = gpu_paths
        model.zero_grad()
        loss = model.loss(batch.tokens, batch.tags, batch.mask, batch.lengths)
        loss.backward()
        with torch.no_grad():
            emissions = model.emissions(batch.tokens, batch.mask, batch.lengths)[batch.mask]
            tags = model.decode(batch.tokens, batch.mask, batch.lengths)
        outputs.append((emissions, loss.detach(), [p.grad.clone() for p in model.parameters()], tags))
    (e1, l1, g1, t1), (e2, l2, g2, t2) = outputs
    assert torch.allclose(e1, e2, atol=1e-5) and torch.allclose(l1, l2, atol=1e-4)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(g1, g2))
    assert t1 == t2


def test_embedding_dropout_acts_in_training_only(corpus_dir, tiny_config):
    corpus = load_corpus(corpus_dir)
    result = fit(tiny_config.replace(max_epochs=1, embed_dropout=0.5, dropout=0.0), corpus)
    batch = EncodedSplit(corpus.dev, result.vocab, result.tagset).batch(list(range(8)))
    model = result.model

    def twice():
        with torch.no_grad():
            return [model.emissions(batch.tokens, batch.mask, batch.lengths) for _ in range(2)]

    model.train()
    first, second = twice()
    assert not torch.equal(first, second)  # the only dropout left is on the embeddings
    model.eval()
    first, second = twice()
    assert torch.equal(first, second)


def test_the_weights_average_is_what_dev_judges_and_what_is_kept(corpus_dir, tiny_config):
    corpus = load_corpus(corpus_dir)
    config = tiny_config.replace(max_epochs=4, patience=4)
    plain, averaged = fit(config, corpus), fit(config.replace(ema=0.9), corpus)
    assert [h.loss for h in plain.history] == [h.loss for h in averaged.history]  # training itself is the same
    assert [h.objective for h in plain.history] != [h.objective for h in averaged.history]  # judged: the average
    dev = EncodedSplit(corpus.dev, averaged.vocab, averaged.tagset)
    assert evaluate(averaged.model, dev, corpus.dev, averaged.tagset) == averaged.best_dev  # kept: the average


def test_training_and_tagging_batches_keep_to_their_char_caps(corpus_dir, tiny_config, monkeypatch):
    corpus = load_corpus(corpus_dir)
    uncapped = fit(tiny_config.replace(batch_chars=0), corpus)
    default = fit(tiny_config, corpus)  # no batch of the small corpus reaches the default cap: as without one
    assert [h.loss for h in default.history] == [h.loss for h in uncapped.history]
    assert default.best_dev == uncapped.best_dev
    seen, real_batch = [], EncodedSplit.batch

    def recording_batch(self, index):
        batch = real_batch(self, index)
        seen.append((len(self), batch.mask.numel()))
        return batch

    monkeypatch.setattr(EncodedSplit, "batch", recording_batch)
    capped = fit(tiny_config.replace(batch_chars=64, max_epochs=1), corpus)
    training = [positions for rows, positions in seen if rows == len(corpus.train)]
    assert max(training) <= 64 and len(training) > math.ceil(len(corpus.train) / tiny_config.batch_size)
    assert sum(training) == capped.history[0].positions
    dev = EncodedSplit(corpus.dev, capped.vocab, capped.tagset)
    seen.clear()
    tagged = predict_ids(capped.model, dev, batch_chars=64)
    assert max(positions for _, positions in seen) <= 64 and len(seen) > 1
    assert tagged == predict_ids(capped.model, dev, batch_chars=0)  # cut or not, the same tags


def test_memory_benchmark_trains_the_longest_batches_and_reports_the_peak(corpus_dir, capsys):
    from study.stored import STUDY_BASE

    assert memory.STUDY_FIXED == STUDY_BASE  # the benchmark measures the study's fixed settings
    argv = ["--data-dir", str(corpus_dir), "--hidden-size", "8", "--num-layers", "1", "--batch-size", "16"]
    assert memory.main([*argv, "--batches", "2", "--batch-chars", "100", "--eval-batch-chars", "200"]) == 0
    out = capsys.readouterr().out
    longest = max(map(len, load_corpus(corpus_dir).train))
    assert f"trained 2 batch(es) ({max(1, 100 // longest)}x{longest}, " in out
    assert "per batch, peak RSS" in out and out.splitlines()[-1].startswith("peak RSS ")
    assert memory.main([*argv, "--batches", "0"]) == 2
    assert "--batches must be at least 1" in capsys.readouterr().err
