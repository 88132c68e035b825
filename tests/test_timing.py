import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from ner_core.config import TrainConfig
from study.timing import RunTimes, estimate_seconds, largest_ensemble, makespan, run_times, shape_speeds, speed_key


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


def sized(hidden: int, lr: float, speed: float, state=TrialState.COMPLETE, threads: int = 1):
    distributions = {"lr": FloatDistribution(1e-4, 1e-2), "hidden_size": CategoricalDistribution([128, 256])}
    return optuna.trial.create_trial(
        params={"lr": lr, "hidden_size": hidden},
        distributions=distributions,
        value=0.5 if state == TrialState.COMPLETE else None,
        state=state,
        user_attrs={"seconds": 600.0, "tokens_per_s": speed, "device": "cpu", "threads": threads},
    )


def test_a_trial_is_timed_at_its_shapes_median_speed():
    # one shape (the learning rate does not change it), a pruned trial's speed counted too
    shape = [sized(128, 1e-3, 900.0), sized(128, 2e-3, 1000.0, TrialState.PRUNED), sized(128, 3e-3, 1600.0)]
    other, elsewhere = sized(256, 1e-3, 500.0), sized(128, 1e-3, 3000.0, threads=4)
    speeds = shape_speeds([*shape, other, elsewhere, trial()])  # the last recorded no speed
    assert speeds == {speed_key(shape[0]): 1000.0, speed_key(other): 500.0, speed_key(elsewhere): 3000.0}
    config = TrainConfig(max_epochs=20)
    # the fast one at its shape's 1000 characters/s: a refit of 20 x 5000 in 100 s, its one run's
    # 600 s at 1600 characters/s taking 960 at 1000
    assert run_times(shape[2], config, 5000, speeds) == RunTimes(retraining=960.0, refit=100.0)
    assert run_times(shape[2], config, 5000) == RunTimes(retraining=600.0, refit=62.5)  # its own speed
    assert run_times(other, config, 5000, speeds) == RunTimes(retraining=600.0, refit=200.0)
    assert run_times(elsewhere, config, 5000, {}).refit == run_times(elsewhere, config, 5000, speeds).refit


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
