"""What a study run prints: a line per finished trial, and the summary with the next commands."""

from __future__ import annotations

import json

import optuna
from optuna.trial import FrozenTrial, TrialState

from storage import DEFAULT_URL, describe

from .stored import DEFAULT_STUDY


def trial_line(study: optuna.Study, trial: FrozenTrial) -> str:
    """One line per finished trial: state, value, epochs, time, parameters."""
    params = "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    attrs = trial.user_attrs
    if trial.state == TrialState.FAIL:
        reason = attrs.get("fail_reason") or trial.system_attrs.get("fail_reason", "")
        head = f"trial {trial.number:>3} FAIL      {reason}"
    else:
        value = trial.value if trial.value is not None else float("nan")
        head = (
            f"trial {trial.number:>3} {trial.state.name:<8}  dev {value:.4f}  "
            f"{attrs.get('epochs_run', 0):>2} epochs {attrs.get('seconds', 0):6.0f} s"
        )
    try:
        best = f"  (best {study.best_value:.4f}, #{study.best_trial.number})"
    except ValueError:
        best = ""
    return f"{head}  {params}{best}"


def summary(study: optuna.Study, url: str | None, seconds: float) -> str:
    """Counts, the best trial, and the commands to run next."""
    trials = study.get_trials(deepcopy=False)
    counts = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    lines = [
        f"\nstudy '{study.study_name}' in {describe(url)}: {done} finished trials "
        f"({counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned, "
        f"{counts[TrialState.FAIL]} failed); this run took {seconds / 60:.1f} min",
    ]
    if counts[TrialState.COMPLETE]:
        best = study.best_trial
        lines.append(
            f"best: trial {best.number}, dev {study.user_attrs.get('metric', 'score')} {best.value:.4f}, "
            f"dev entity F1 {best.user_attrs.get('dev_entity_f1', float('nan')):.4f}"
        )
        lines.append("      " + json.dumps(best.params))
    where = []
    if study.study_name != DEFAULT_STUDY:
        where += ["--study-name", study.study_name]
    if url:
        where += ["--storage", url]
    lines.append(f"next: python -m study.best --test {' '.join(where)}".rstrip())
    lines.append(f"      optuna-dashboard {url or DEFAULT_URL}")
    return "\n".join(lines)
