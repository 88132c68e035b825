import json
import shutil

import pytest
import torch

from ner_core import ensemble as ensemble_cli
from ner_core import predict
from ner_core.data import EncodedSplit, load_corpus
from ner_core.errors import UserError
from ner_core.model import Ensemble
from ner_core.runtime import Runtime
from ner_core.saving import load_model, save_ensemble, save_model
from ner_core.tags import invalid_transitions
from ner_core.train import fit, predict_ids, result_metrics


@pytest.fixture
def seeds(corpus_dir, tiny_config, tmp_path):
    """Three saved trainings of one configuration, seeds 1-3, and the corpus they were trained on."""
    corpus = load_corpus(corpus_dir, with_test=True)
    folders = []
    for seed in (1, 2, 3):
        result = fit(tiny_config.replace(seed=seed, max_epochs=2), corpus)
        folders.append(save_model(tmp_path / f"seed-{seed}", result, result_metrics(result, corpus)))
    return folders, corpus


def test_a_saved_ensemble_loads_as_one_model_that_tags_by_its_members_mean(seeds, tmp_path):
    folders, corpus = seeds
    members = [load_model(f) for f in folders]
    out = save_ensemble(tmp_path / "ensemble", members, folders)
    saved = load_model(out)
    assert isinstance(saved.model, Ensemble) and len(saved.model.members) == 3
    assert saved.config.seed == 1 and [m["seed"] for m in saved.metrics["ensemble"]] == [1, 2, 3]
    assert saved.trained_precision == members[0].trained_precision
    test = EncodedSplit(corpus.test, saved.vocab, saved.tagset)
    tagged = predict_ids(saved.model, test)
    assert tagged == predict_ids(Ensemble([m.model for m in members]), test)
    assert all(invalid_transitions([saved.tagset.tags[i] for i in p], saved.tagset.scheme) == 0 for p in tagged)
    singles = [predict_ids(m.model, test) for m in members]
    assert any(len({tuple(s[i]) for s in singles}) > 1 for i in range(len(tagged)))  # the members disagree somewhere


def test_only_trainings_of_one_configuration_on_one_vocabulary_combine(seeds, tiny_config, tmp_path):
    folders, corpus = seeds
    wider = fit(tiny_config.replace(hidden_size=8, max_epochs=2), corpus)
    other = save_model(tmp_path / "wider", wider, {})
    with pytest.raises(UserError, match=rf"^{other}: its configuration differs from {folders[0]}'s in hidden_size$"):
        save_ensemble(tmp_path / "e", [load_model(folders[0]), load_model(other)], [folders[0], other])
    renamed = tmp_path / "other-data"
    shutil.copytree(folders[1], renamed)
    vocab = json.loads((renamed / "vocab.json").read_text(encoding="utf-8"))
    (renamed / "vocab.json").write_text(json.dumps([*vocab[:-1], "魏"]), encoding="utf-8")  # as if other data
    with pytest.raises(
        UserError, match=r"other-data: its vocabulary differs from .*seed-1's \(trained on other data\?\)"
    ):
        save_ensemble(tmp_path / "e", [load_model(folders[0]), load_model(renamed)], [folders[0], renamed])
    made = save_ensemble(tmp_path / "made", [load_model(f) for f in folders[:2]], folders[:2])
    with pytest.raises(UserError, match=rf"^{made}: already an ensemble; combine the models it was made of instead$"):
        save_ensemble(tmp_path / "e", [load_model(made), load_model(folders[2])], [made, folders[2]])
    with pytest.raises(UserError, match="an ensemble needs at least two models, got 1"):
        save_ensemble(tmp_path / "e", [load_model(folders[0])], folders[:1])
    assert not (tmp_path / "e").exists()


def test_ensemble_cli_combines_scores_and_the_result_predicts(seeds, corpus_dir, tmp_path, capsys):
    folders, _ = seeds
    out = tmp_path / "ensemble"
    args = ["--out", str(out), *map(str, folders), "--data-dir", str(corpus_dir), "--test", "--threads", "1"]
    assert ensemble_cli.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"wrote an ensemble of 3 models to {out}"
    scored = [line for line in lines if "dev token macro-F1" in line and "test token macro-F1" in line]
    assert [line.split(":")[0] for line in scored] == [*map(str, folders), str(out)]
    assert lines[-1] == f"next: echo '太祖遣使至洛陽' | python -m ner_core.predict {out}"
    raw = tmp_path / "raw.txt"
    raw.write_text("之張王曰於洛陽也\n", encoding="utf-8")
    assert predict.main([str(out), str(raw), "--threads", "1"]) == 0
    assert "entities" in json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--test"], "error: --test scores the corpus of --data-dir; give --data-dir too"),
        (["NOT-A-MODEL"], "error: NOT-A-MODEL: not a saved model (missing model.pt"),
    ],
)
def test_ensemble_cli_bad_input_is_one_line_and_exit_2(seeds, tmp_path, capsys, extra, message):
    folders, _ = seeds
    assert ensemble_cli.main(["--out", str(tmp_path / "e"), *map(str, folders), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "e").exists()


def test_an_ensemble_runs_in_bfloat16_where_its_members_do(seeds, tmp_path):
    folders, corpus = seeds
    out = save_ensemble(tmp_path / "e", [load_model(f) for f in folders], folders)
    saved = load_model(out)
    # place() reaches every member: the LSTMs compute as the runtime says
    saved.model.place(Runtime(precision="bfloat16"))
    assert all(m.lstm.bfloat16 for m in saved.model.members)
    assert torch.equal(saved.model.members[1].embedding.weight, load_model(folders[1]).model.embedding.weight)
