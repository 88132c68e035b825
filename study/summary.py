"""What a study run prints: a line per finished trial, and the summary with the next commands."""

from __future__ import annotations

import json
import shlex
from collections import Counter

import optuna
from optuna.trial import FrozenTrial, TrialState

from storage import HOW_TO_PASS, StorageURL

from .objective import TIMED_OUT
from .stored import DEFAULT_STUDY, FINISHED
from .warm import ATTR as WARM_ATTR


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
        if attrs.get("stop_reason") == TIMED_OUT:
            head += f"  ({TIMED_OUT})"
    try:
        best = f"  (best {study.best_value:.4f}, #{study.best_trial.number})"
    except ValueError:
        best = ""
    return f"{head}  {params}{best}"


def warm_start_line(study: optuna.Study, trials: list[FrozenTrial]) -> str | None:
    """Which trials a warm-started study began with, and how they did (None: not warm-started)."""
    origin = study.user_attrs.get(WARM_ATTR)
    if not origin:
        return None
    # a retried trial's attributes are copied to its retry: the finished one of them tells
    mine = [t for t in trials if WARM_ATTR in t.user_attrs and t.state in FINISHED]
    shown = [
        f"#{t.number} {'dev ' + format(t.value, '.4f') if t.state == TrialState.COMPLETE else 'pruned'} "
        f"(#{t.user_attrs[WARM_ATTR]['trial']} there: {t.user_attrs[WARM_ATTR]['value']:.4f})"
        for t in mine
    ]
    line = f"warm start from study '{origin['study']}': " + (", ".join(shown) or "none finished yet")
    values = sorted((t.value for t in trials if t.state == TrialState.COMPLETE), reverse=True)
    warm_values = [t.value for t in mine if t.state == TrialState.COMPLETE]
    if warm_values:
        line += f"; the best of them ranks {values.index(max(warm_values)) + 1} of {len(values)} complete trials"
    if len(mine) < len(origin["trials"]):
        line += f"; {len(origin['trials']) - len(mine)} of the {len(origin['trials'])} queued not finished"
    return line


def next_commands(study_name: str, where: StorageURL) -> list[str]:
    """The commands to run next, each working as printed in the shell that ran the study (a password
    is left out of the URL: the note from ``storage_note`` says how to give it)."""
    name = [] if study_name == DEFAULT_STUDY else ["--study-name", study_name]
    return [
        shlex.join(["python", "-m", "study.best", "--test", *name, *where.command_args()]),
        shlex.join(["python", "-m", "study.dashboard", *where.command_args()]),
    ]


def storage_note(where: StorageURL) -> str | None:
    """For printed commands whose URL lost its password: how to give it to them."""
    return f"note: the password is not shown; {HOW_TO_PASS}" if where.password_hidden else None


def summary(study: optuna.Study, where: StorageURL, seconds: float, target: int | None = None) -> str:
    """Counts, the best trial, and the commands to run next (``target``: the trials asked for)."""
    trials = study.get_trials(deepcopy=False)
    counts = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    lines = [
        f"\nstudy '{study.study_name}' in {where}: {done} finished trials "
        f"({counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned, "
        f"{counts[TrialState.FAIL]} failed); this run took {seconds / 60:.1f} min",
    ]
    if target is not None and done < target:  # only --timeout ends a run short of its target
        cut = sum(t.user_attrs.get("stop_reason") == TIMED_OUT for t in trials)
        lines.append(
            f"stopped by --timeout at {done} of {target} trials"
            + (f" ({cut} of them stopped while running)" if cut else "")
            + "; the same command resumes the study"
        )
    if counts[TrialState.COMPLETE]:
        best = study.best_trial
        lines.append(
            f"best: trial {best.number}, dev {study.user_attrs.get('metric', 'score')} {best.value:.4f}, "
            f"dev entity F1 {best.user_attrs.get('dev_entity_f1', float('nan')):.4f}"
        )
        lines.append("      " + json.dumps(best.params))
    if warm := warm_start_line(study, trials):
        lines.append(warm)
    ran = Counter(t.user_attrs["device_name"] for t in trials if "device_name" in t.user_attrs)
    if ran:  # every worker, on this machine or another
        lines.append("ran on: " + ", ".join(f"{name} ({n} trials)" for name, n in ran.items()))
    best_command, dashboard_command = next_commands(study.study_name, where)
    if counts[TrialState.COMPLETE]:
        lines.append(f"next: {best_command}")
    else:  # study.best would only say that it has nothing to retrain
        lines.append("next: the same command again, to finish a trial: study.best needs a complete one")
    lines.append(f"      {dashboard_command}   # then open http://127.0.0.1:8080")
    if note := storage_note(where):
        lines.append(f"      {note}")
    return "\n".join(lines)
