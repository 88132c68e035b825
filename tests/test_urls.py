"""Storage URLs: where they come from, and that a password in one is never shown."""

import pytest

from storage import DEFAULT_URL, choose_storage, describe, has_password, without_password
from study.run import build_parser, without_storage
from study.summary import next_commands, storage_note

SECRET = "s3cret%40pw"


@pytest.mark.parametrize(
    "url, shown, bare",
    [
        (
            f"postgresql://postgres:{SECRET}@db:5432/ner_hpo",
            "postgresql://postgres:***@db:5432/ner_hpo",
            "postgresql://postgres@db:5432/ner_hpo",
        ),
        (
            f"postgresql://me@db/ner_hpo?sslmode=require&password={SECRET}&options=-c%20a%3Db",
            "postgresql://me@db/ner_hpo?sslmode=require&password=***&options=-c%20a%3Db",
            "postgresql://me@db/ner_hpo?sslmode=require&options=-c%20a%3Db",
        ),
        ("postgresql://postgres:@db/x", "postgresql://postgres:***@db/x", "postgresql://postgres@db/x"),
    ],
)
def test_a_password_is_hidden_in_messages_and_left_out_of_commands(url, shown, bare):
    assert has_password(url)
    assert describe(url) == shown
    assert without_password(url) == bare and not has_password(bare)


@pytest.mark.parametrize("url", ["sqlite:///results/study.db", "journal:////shared/study.log", "postgresql://u@h/d"])
def test_urls_without_a_password_are_shown_as_given(url):
    assert not has_password(url)
    assert describe(url) == without_password(url) == url


def test_the_option_wins_then_the_environment_then_the_default():
    env = {"NER_HPO_STORAGE": f"postgresql://postgres:{SECRET}@db/x"}
    assert choose_storage("sqlite:///a.db", env).source == "option"
    chosen = choose_storage(None, env)
    assert (chosen.url, chosen.source) == (env["NER_HPO_STORAGE"], "environment")
    assert SECRET not in str(chosen) and SECRET not in repr(chosen)
    assert choose_storage(None, {"NER_HPO_STORAGE": " "}) == choose_storage(None, {})
    assert choose_storage(None, {}).url == DEFAULT_URL


def test_printed_commands_work_in_the_same_shell_without_the_password():
    """From the environment: no --storage (the shell has it). From the option: the URL without its
    password, and a note on how to give it."""
    from_env = choose_storage(None, {"NER_HPO_STORAGE": f"postgresql://postgres:{SECRET}@db/x"})
    assert next_commands("bilstm-crf", from_env) == ["python -m study.best --test", "python -m study.dashboard"]
    assert storage_note(from_env) is None and from_env.password_note() is None

    given = choose_storage(f"postgresql://postgres:{SECRET}@db/x?sslmode=require")
    best, dashboard = next_commands("pw", given)
    assert best == "python -m study.best --test --study-name pw --storage 'postgresql://postgres@db/x?sslmode=require'"
    assert dashboard == "python -m study.dashboard --storage 'postgresql://postgres@db/x?sslmode=require'"
    for note in (storage_note(given), given.password_note()):
        assert "PGPASSWORD" in note and "~/.pgpass" in note and "NER_HPO_STORAGE" in note and SECRET not in note

    plain = choose_storage("sqlite:///results/other.db")
    assert next_commands("bilstm-crf", plain)[1] == "python -m study.dashboard --storage sqlite:///results/other.db"
    assert storage_note(plain) is None and plain.password_note() is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--trials", "4", "--storage", "URL", "--study-name", "x"],
        ["--trials", "4", "--storage=URL", "--study-name", "x"],
        ["--trials", "4", "--stor", "URL", "--study-name", "x"],  # argparse takes unique abbreviations
        ["--trials", "4", "--study-name", "x"],
    ],
)
def test_workers_get_the_command_line_without_the_storage(argv):
    assert build_parser().parse_args(argv).storage in ("URL", None)  # each form is one study.run reads
    assert without_storage(argv) == ["--trials", "4", "--study-name", "x"]
