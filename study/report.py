"""``python -m study.report``: plotly HTML figures and trials.csv for a study, under results/<study>/.

Also run at the end of study.run.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ner_core.errors import UserError
from storage import DEFAULT_URL, ENV_STORAGE, choose_storage, open_storage

from .stored import DEFAULT_STUDY, load_study, results_dir

# name -> (plot function, minimum complete trials it needs to say anything)
FIGURES = {
    "optimization_history": (optuna.visualization.plot_optimization_history, 1),
    "intermediate_values": (optuna.visualization.plot_intermediate_values, 1),
    "param_importances": (optuna.visualization.plot_param_importances, 2),
    "parallel_coordinate": (optuna.visualization.plot_parallel_coordinate, 2),
    "slice": (optuna.visualization.plot_slice, 1),
}


def write_trials_csv(study: optuna.Study, path: Path) -> Path:
    """One row per trial: number, state, value, parameters, user attributes, timings."""
    trials = study.get_trials(deepcopy=False)
    params = sorted({k for t in trials for k in t.params})
    attrs = sorted({k for t in trials for k in t.user_attrs})
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "state", "value", *params, *attrs, "datetime_start", "datetime_complete"])
        for t in trials:
            writer.writerow(
                [
                    t.number,
                    t.state.name,
                    "" if t.value is None else t.value,
                    *[t.params.get(k, "") for k in params],
                    *[t.user_attrs.get(k, "") for k in attrs],
                    t.datetime_start or "",
                    t.datetime_complete or "",
                ]
            )
    return path


def write_report(study: optuna.Study, out_dir: Path) -> list[Path]:
    """Every figure the study has enough trials for, plus trials.csv; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    written = [write_trials_csv(study, out_dir / "trials.csv")]
    metric = study.user_attrs.get("metric", "dev score")
    for name, (plot, needed) in FIGURES.items():
        if complete < needed:
            continue
        try:
            figure = plot(study)
        except (ValueError, RuntimeError):  # e.g. importances when every trial has the same value
            continue
        figure.update_layout(title=f"{figure.layout.title.text or name} — study {study.study_name} (dev {metric})")
        path = out_dir / f"{name}.html"
        figure.write_html(path, include_plotlyjs="directory")  # one plotly.min.js beside them: works offline
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m study.report",
        description="Write a study's plotly figures and trials.csv under results/<study>/.",
    )
    parser.add_argument("--study-name", default=DEFAULT_STUDY, help=f"study (default {DEFAULT_STUDY})")
    parser.add_argument("--storage", help=f"storage URL (default: ${ENV_STORAGE}, else {DEFAULT_URL})")
    parser.add_argument("--out", help="folder (default results/<study>)")
    args = parser.parse_args(argv)
    where = choose_storage(args.storage)
    if note := where.password_note():
        print(note, file=sys.stderr)
    try:
        study = load_study(open_storage(where.url), args.study_name, where.url)
        out = Path(args.out) if args.out else results_dir(args.study_name)
        written = write_report(study, out)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files in {out}/: {', '.join(p.name for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
