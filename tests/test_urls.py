"""Storage URLs: where they come from, and that a password in one is never shown."""

import pytest

from storage import DEFAULT_URL, choose_storage, describe, has_password, without_password

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
