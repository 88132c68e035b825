"""ner_core: a character-level BiLSTM-CRF tagger, its trainer and its scores.

Everything needed to train and judge one configuration; nothing here imports optuna.
"""

__version__ = "0.1.0"
