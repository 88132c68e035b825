import optuna
import pytest
from optuna.distributions import FloatDistribution

from study.choice import ENSEMBLE_GAIN, by_expected_score, ensemble_gain
from study.timing import RunTimes, estimate_seconds


def trial(number, value):
    made = optuna.trial.create_trial(
        params={"lr": 1e-3}, distributions={"lr": FloatDistribution(1e-4, 1e-2)}, value=value
    )
    made.number = number
    return made


def test_the_gain_grows_with_the_ensemble_and_levels_off():
    assert ensemble_gain(1) == 0.0  # one refit per seed: nothing to average
    gains = [ensemble_gain(n) for n in range(1, 11)]
    assert gains == sorted(gains) and gains[-1] < ENSEMBLE_GAIN
    # averaging removes 1 - 1/n of the members' variance: 3 to 10 gains less than 1 to 3
    assert ensemble_gain(10) - ensemble_gain(3) < ensemble_gain(3) - ensemble_gain(1)
    assert ensemble_gain(10) == pytest.approx(0.9 * ENSEMBLE_GAIN)


# 3 retrainings and 3 x n refits, two at a time: the slow trial fits ensembles of 3 in 2200 s, the
# fast one ensembles of 10
SLOW, FAST = RunTimes(retraining=200.0, refit=400.0), RunTimes(retraining=50.0, refit=100.0)
BUDGET = 2200.0


def test_the_budget_gives_each_trial_its_own_ensemble_size():
    assert estimate_seconds([SLOW], seeds=3, ensemble=3, jobs=2) <= BUDGET
    assert estimate_seconds([SLOW], seeds=3, ensemble=4, jobs=2) > BUDGET
    assert estimate_seconds([FAST], seeds=3, ensemble=10, jobs=2) <= BUDGET
    ranked = by_expected_score([(trial(0, 0.73), SLOW), (trial(1, 0.72), FAST)], 3, 10, 2, BUDGET)
    assert {r.trial.number: r.ensemble for r in ranked} == {0: 3, 1: 10}


@pytest.mark.parametrize(
    "slow, fast, first",
    [
        (0.730, 0.727, 1),  # within what 10 members gain over 3: the fast trial
        (0.730, 0.724, 0),  # past it: the better-searched trial, small ensembles and all
        (0.730, 0.730, 1),  # equal searches: the one with the larger ensembles
    ],
)
def test_trials_rank_by_search_score_plus_the_gain_of_the_ensembles_that_fit(slow, fast, first):
    ranked = by_expected_score([(trial(0, slow), SLOW), (trial(1, fast), FAST)], 3, 10, 2, BUDGET)
    assert ranked[0].trial.number == first
    assert [r.expected for r in ranked] == sorted((r.expected for r in ranked), reverse=True)
    assert all(r.expected == pytest.approx(r.trial.value + ensemble_gain(r.ensemble)) for r in ranked)


def test_equal_expectations_keep_the_better_searched_then_the_earlier_trial():
    # no budget limit: every trial gets the largest ensemble, and the search score alone decides
    trials = [(trial(2, 0.72), FAST), (trial(0, 0.71), FAST), (trial(1, 0.72), SLOW)]
    ranked = by_expected_score(trials, 3, 10, 2, 1e9)
    assert [r.trial.number for r in ranked] == [1, 2, 0]
