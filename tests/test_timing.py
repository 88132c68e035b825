import optuna
import pytest
from optuna.distributions import FloatDistribution

from ner_core.config import TrainConfig
from study.timing import RunTimes, estimate_seconds, largest_ensemble, makespan, run_times


def trial(**attrs):
    return optuna.trial.create_trial(
        params={"lr": 1e-3}, distributions={"lr": FloatDistribution(1e-4, 1e-2)}, value=0.5, user_attrs=attrs
    )


def test_makespan_starts_each_run_on_the_first_free_worker():
    assert makespan([3, 1, 1, 1], jobs=2) == 3  # the three short runs share the second worker
    assert makespan([1, 1, 1, 3], jobs=2) == 4  # the long one starts last, on a worker freed at 1
    assert makespan([5, 5, 5], jobs=2) == 10
    assert makespan([5, 5, 5], jobs=1) == 15
    assert makespan([], jobs=2) == 0


def test_run_times_come_from_the_trials_own_seconds_and_speed():
    config = TrainConfig(max_epochs=20)
    times = run_times(trial(seconds=600.0, tokens_per_s=1000.0, dev_per_seed=[0.7, 0.72]), config, refit_tokens=5000)
    # a retraining repeats one of the trial's two runs; a refit trains 20 epochs of 5000 characters
    assert times == RunTimes(retraining=300.0, refit=100.0)
    assert run_times(trial(seconds=600.0, tokens_per_s=1000.0), config, 5000).retraining == 600.0  # one seed
    assert run_times(trial(), config, 5000) is None  # a trial from before the timings were recorded


def test_estimate_counts_the_retrainings_and_the_ensembles_refits():
    one = [RunTimes(retraining=300.0, refit=400.0)]
    # one candidate: 3 retrainings and 9 refits in one pool of 2
    assert estimate_seconds(one, seeds=3, ensemble=3, jobs=2) == makespan([300.0] * 3 + [400.0] * 9, 2) == 2300.0
    assert estimate_seconds(one, seeds=3, ensemble=3, jobs=2, refit=False) == 600.0
    # two candidates: every retraining, then the refits, counted at the slower candidate's time
    two = [*one, RunTimes(retraining=100.0, refit=700.0)]
    assert estimate_seconds(two, seeds=2, ensemble=2, jobs=2) == makespan([300.0, 300.0, 100.0, 100.0], 2) + 1400.0


@pytest.mark.parametrize("budget, expected", [(2300.0, 3), (2299.0, 2), (1800.0, 2), (1799.0, 1), (1.0, 1)])
def test_the_largest_ensemble_that_fits_the_budget(budget, expected):
    one = [RunTimes(retraining=300.0, refit=400.0)]
    # ensembles of 3, 2, 1: 2300, 1800 and 1100 seconds (two workers, free after 600 and 300)
    assert largest_ensemble(one, seeds=3, most=3, jobs=2, budget_s=budget) == expected
    assert largest_ensemble(one, seeds=3, most=2, jobs=2, budget_s=1e9) == 2  # never past the largest asked for
