import argparse

import pytest

from ner_core.config import TrainConfig, add_config_arguments, config_from_args
from ner_core.errors import UserError


def test_defaults_are_the_notebooks_configuration():
    c = TrainConfig()
    assert (c.embed_dim, c.hidden_size, c.num_layers, c.dropout, c.batch_size) == (50, 512, 3, 0.5, 128)
    assert (c.lr, c.max_epochs, c.clip_norm, c.patience, c.layer_norm, c.attention) == (5e-4, 30, 5.0, 10, True, True)


def test_precision_from_an_older_config_is_read_and_left_to_the_runtime():
    config = TrainConfig.from_json('{"hidden_size": 64, "precision": "bfloat16"}')
    assert config.hidden_size == 64 and "precision" not in config.to_dict()


def test_json_round_trip():
    config = TrainConfig(hidden_size=64, dropout=0.1, attention=False, entity_bias=0.75, batch_chars=4096)
    assert TrainConfig.from_json(config.to_json()) == config
    older = TrainConfig.from_json('{"hidden_size": 64}')
    assert older.entity_bias == 0.0  # models saved before it decode as then
    assert older.batch_chars == TrainConfig().batch_chars >= 128 * 128  # and train CHisIEC's batches as then


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"hiden_size": 3}', "unknown setting(s) hiden_size"),
        ('{"hidden_size": "big"}', "hidden_size must be int"),
        ('{"dropout": 1.5}', "--dropout must be in [0, 1)"),
        ('{"embed_dropout": -0.1}', "--embed-dropout must be in [0, 1)"),
        ('{"bigram_dim": -1}', "--bigram-dim must be >= 0 (0: no bigrams), got -1"),
        ('{"batch_chars": -1}', "--batch-chars must be >= 0 (0: no cap), got -1"),
        ('{"batch_chars": 1.5}', "batch_chars must be int"),
        ('{"entity_bias": NaN}', "--entity-bias must be a finite number, got nan"),
        ("[1]", "expected a JSON object"),
        ('{"lr": }', "c.json:1: not valid JSON"),
    ],
)
def test_bad_config_is_a_user_error(text, message):
    with pytest.raises(UserError) as err:
        TrainConfig.from_json(text, "c.json")
    assert message in str(err.value)


def test_command_line_overrides_the_config():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--hidden-size", "64", "--no-attention"])
    config = config_from_args(args, TrainConfig(hidden_size=8, dropout=0.2))
    assert (config.hidden_size, config.attention, config.dropout, config.layer_norm) == (64, False, 0.2, True)
