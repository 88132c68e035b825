"""study: the Optuna layer (search space, objective, run, best, report) on top of ner_core."""
