"""What ``study.best`` reports of the chosen trial's models: mean ± sample std over the seeds, the
tags the token macro-F1 spread comes from, and report.md."""

from __future__ import annotations

import json
import statistics
from typing import Any

from ner_core.metrics import format_per_type, token_spread_by_tag

from .retrain import Candidate

HEADLINE = ("token_macro_f1", "token_accuracy", "entity_precision", "entity_recall", "entity_f1", "entity_macro_f1")


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def plus_minus(score: dict[str, float]) -> str:
    """A ``mean_std`` as report.md and the summary show it: 0.7911 ± 0.0212."""
    return f"{score['mean']:.4f} ± {score['std']:.4f}"


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation of each headline score and each type's P/R/F1, and the
    tags that make the runs' token macro-F1 differ (``token_spread_by_tag``)."""
    out: dict[str, Any] = {key: mean_std([r[key] for r in runs]) for key in HEADLINE}
    out["token_spread_by_tag"] = token_spread_by_tag([r["per_tag"] for r in runs])
    types = sorted({t for r in runs for t in r["per_type"]})
    out["per_type"] = {
        t: {m: mean_std([r["per_type"].get(t, {}).get(m, 0.0) for r in runs]) for m in ("precision", "recall", "f1")}
        | {"support": runs[0]["per_type"].get(t, {}).get("support", 0)}
        for t in types
    }
    return out


def leading_tags(rows: list[dict[str, Any]], cover: float = 0.8, most: int = 5) -> tuple[list[dict[str, Any]], float]:
    """The first of ``token_spread_by_tag``'s rows that carry ``cover`` of the variance (at most
    ``most``), and the share of the other tags."""
    lead: list[dict[str, Any]] = []
    for row in rows:
        if len(lead) == most or sum(r["share"] for r in lead) >= cover:
            break
        lead.append(row)
    return lead, 1 - sum(r["share"] for r in lead)


def spread_line(summary: dict[str, Any]) -> str:
    """One line: which tags the token macro-F1 spread over the seeds comes from (empty if none)."""
    rows = summary["token_spread_by_tag"]
    if not rows:
        return ""
    lead, other = leading_tags(rows)
    parts = [
        f"{r['tag']} {r['share']:.0%} ({r['support']} chars; F1 {' / '.join(f'{f:.2f}' for f in r['f1'])})"
        for r in lead
    ]
    rest = f", the other {len(rows) - len(lead)} tags {other:.0%}" if len(lead) < len(rows) else ""
    return "token macro-F1 spread by tag: " + ", ".join(parts) + rest


def spread_table(summary: dict[str, Any], seeds: int) -> list[str]:
    """report.md's lines on which tags the token macro-F1 spread comes from (none if the seeds agree)."""
    rows = summary["token_spread_by_tag"]
    if not rows:
        return []
    lead, other = leading_tags(rows)
    return [
        f"Where the token macro-F1 spread (std {summary['token_macro_f1']['std']:.4f} over the {seeds} seeds) comes "
        "from: each tag's share of its variance (docs/measurements.md, Why token macro-F1 hangs on a few characters).",
        "",
        "| tag | characters | F1 per seed | share |",
        "|---|---:|---|---:|",
        *[
            f"| {r['tag']} | {r['support']} | {' / '.join(f'{f:.3f}' for f in r['f1'])} | {r['share']:.0%} |"
            for r in lead
        ],
        *([f"| the other {len(rows) - len(lead)} tags | | | {other:.0%} |"] if len(lead) < len(rows) else []),
        "",
    ]


def scored_models(split: str, refit: bool, ensemble: int = 1) -> str:
    """Which models the scores are of: the retrainings on train, or the refits on train + dev."""
    if not refit:
        return ", of the retrainings on train"
    kept = f"ensembles of {ensemble} models refit on train + dev" if ensemble > 1 else "models refit on train + dev"
    if split == "test":
        return f", of the {kept}"
    return f", of the retrainings on train (the kept models, {kept}, have no dev score)"


def entity_bias_line(
    bias: float, scores: dict[float, dict[str, float]] | None, key: str, seeds: int, together: bool
) -> str:
    """What the kept models' entity bias is and, when chosen on dev by the ``key`` score, what chose it."""
    if scores is None:
        return f"entity bias {bias:g} (given)" if bias else "entity bias 0 (the models decode as trained)"
    tried = ", ".join(f"{b:g}: {s[key]:.4f}" for b, s in scores.items())
    by = f"the ensemble of the {seeds} retrainings'" if together else f"the {seeds} retrainings' mean"
    return f"entity bias {bias:g}, chosen on dev by {by} {key.replace('_', ' ')} ({tried})"


def bias_trade_line(bias: float, scores: dict[float, dict[str, float]] | None) -> str:
    """Both dev scores at the chosen bias and at 0, so that what one gains and the other loses shows
    (empty where the bias was given, or chosen as 0)."""
    if scores is None or bias == 0:
        return ""

    def both(b: float) -> str:
        return f"token macro-F1 {scores[b]['token_macro_f1']:.4f}, entity F1 {scores[b]['entity_f1']:.4f}"

    return f"dev at entity bias {bias:g}: {both(bias)}; at 0 (as trained): {both(0.0)}"


def markdown(
    study_name: str,
    chosen: Candidate,
    candidates: list[Candidate],
    split: str,
    scores: dict[str, Any],
    refit: bool,
    ensemble: int,
    singles: dict[str, Any] | None,
    bias_line: str,
    notes: list[str],
) -> str:
    """report.md: the candidates, the chosen configuration, its scores; ``notes``: the dev trade of the
    entity bias and the test split's readings, a line each (empty ones left out)."""
    seeds = [r["seed"] for r in chosen.runs]
    lines = [
        f"# Study `{study_name}`: the chosen configuration, retrained",
        "",
        f"Trial {chosen.trial.number}, chosen from the top {len(candidates)} trial(s) by mean dev score over seeds "
        f"{', '.join(map(str, seeds))}; scores on **{split}** as mean ± sample std over {len(seeds)} runs"
        f"{scored_models(split, refit, ensemble)}.",
        "",
        "| trial | search dev | mean dev over seeds |",
        "|---|---|---|",
        *[f"| {c.trial.number} | {c.trial.value:.4f} | {c.mean_dev:.4f} |" for c in candidates],
        "",
        "```json",
        json.dumps(chosen.config.to_dict(), indent=2, sort_keys=True),
        "```",
        "",
        f"The kept models decode with {bias_line}.",
        "",
        *[line + "." for line in notes if line],
        *([""] if any(notes) else []),
        "| score | value |",
        "|---|---|",
        *[f"| {key.replace('_', ' ')} | {plus_minus(scores[key])} |" for key in HEADLINE],
        "",
        *(
            [
                f"The {len(seeds) * ensemble} single models of the ensembles, each on its own: "
                + ", ".join(
                    f"{key.replace('_', ' ')} {plus_minus(singles[key])}" for key in ("token_macro_f1", "entity_f1")
                )
                + ".",
                "",
            ]
            if singles
            else []
        ),
        *spread_table(scores, len(seeds)),
        "| entity type | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
        *[
            f"| {t} | {' | '.join(plus_minus(r[m]) for m in ('precision', 'recall', 'f1'))} | {r['support']} |"
            for t, r in scores["per_type"].items()
        ],
        "",
    ]
    return "\n".join(lines)


def summary_lines(
    trial: int,
    split: str,
    summary: dict[str, Any],
    singles: dict[str, Any] | None,
    seeds: int,
    refit: bool,
    ensemble: int,
    notes: list[str],
) -> list[str]:
    """What ``study.best`` prints at the end: the headline scores (mean ± std over the seeds), the
    single members' where the kept models are ensembles, where the spread comes from, each type, then
    the ``notes`` (the entity bias's dev trade, the test split's readings)."""
    lines = [f"{split} scores of trial {trial} over {seeds} seeds{scored_models(split, refit, ensemble)} (mean ± std):"]
    lines += [f"  {key:<18} {plus_minus(summary[key])}" for key in HEADLINE]
    if singles:
        lines.append(f"  the {seeds * ensemble} single models, each on its own:")
        lines += [f"  {key:<18} {plus_minus(singles[key])}" for key in ("token_macro_f1", "entity_f1")]
    if line := spread_line(summary):
        lines.append(f"  {line}")
    per_type = {
        t: {**{m: r[m]["mean"] for m in ("precision", "recall", "f1")}, "support": r["support"]}
        for t, r in summary["per_type"].items()
    }
    return [*lines, format_per_type(per_type), *(line for line in notes if line)]
