"""The end-of-run summary: what each stage did, and the numbers the demo exists to show."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from leafbench.config import Experiment
from leafbench.contract import StageResult


def _headline_scores(evaluated: dict[str, float]) -> list[tuple[str, str, str, float]]:
    """(role, task, metric, score) per evaluated model and task, from the evaluate stage's
    `<role>.<task>.score` metrics: every task's results.json entry has a `score`, the value of
    its headline metric (strict-match exact match for math, pass@1 for code), which the task
    registry names."""
    from leafbench.evaluation.registry import TASKS

    rows = []
    for name, value in evaluated.items():
        role, task, metric = name.split(".", 2)
        if metric == "score":
            label = TASKS[task].metric if task in TASKS else "score"
            rows.append((role, task, label, value))
    order = {"teacher": 0, "student_before": 1, "student_after": 2}
    return sorted(rows, key=lambda r: (order.get(r[0], 3), r[0], r[1]))


def _scores_by_grading(evaluated: dict[str, float]) -> list[tuple[str, str, float, float]]:
    """(role, task, strict score, paper score) for every math task evaluated."""
    rows = []
    for name, strict in evaluated.items():
        if name.endswith(".score_strict"):
            stem = name.removesuffix(".score_strict")
            paper = evaluated.get(f"{stem}.score_paper")
            if paper is not None:
                role, task = stem.split(".", 1)
                rows.append((role, task, strict, paper))
    order = {"teacher": 0, "student_before": 1, "student_after": 2}
    return sorted(rows, key=lambda r: (order.get(r[0], 3), r[0], r[1]))


def print_summary(exp: Experiment, results: list[StageResult], console: Console | None = None
                  ) -> None:
    console = console or Console()
    stages = Table(title=f"leafbench run '{exp.name}'")
    for col in ("stage", "status", "seconds", "cache key"):
        stages.add_column(col)
    for r in results:
        stages.add_row(r.name, r.status, f"{r.seconds:.1f}", r.key)
    console.print(stages)

    by_name = {r.name: r.metrics for r in results}
    evaluated = by_name.get("evaluate", {})
    headline = _headline_scores(evaluated)
    if headline:
        scores = Table(title="scores (each task's headline metric)")
        for col in ("model", "task", "metric", "score"):
            scores.add_column(col)
        for role, task, metric, value in headline:
            scores.add_row(role, task, metric, f"{value:.3f}")
        console.print(scores)
    by_mode = _scores_by_grading(evaluated)
    if by_mode:
        grading = Table(title="math grading modes (same generations, strict-match): strict is "
                              "leafbench's verdict, paper the Qwen2.5-Math toolkit's rules")
        for col in ("model", "task", "strict", "paper", "paper − strict"):
            grading.add_column(col)
        for role, task, strict, paper in by_mode:
            grading.add_row(role, task, f"{strict:.3f}", f"{paper:.3f}", f"{paper - strict:+.3f}")
        console.print(grading)

    pruned = by_name.get("prune", {})
    rows = sorted(tuple(k.split("/")[1:3]) for k in pruned
                  if k.startswith("detection/") and k.endswith("/f1"))
    if rows:
        detection = Table(title=f"mined tokens vs true distractor spans "
                                f"({exp.mining.threshold.mode} threshold, same token budget)")
        for col in ("τ", "masking", "precision", "recall", "F1"):
            detection.add_column(col)
        for tau, method in rows:
            detection.add_row(tau.removeprefix("tau"), method, *(
                f"{pruned[f'detection/{tau}/{method}/{k}']:.3f}"
                for k in ("precision", "recall", "f1")))
        console.print(detection)

    attention = by_name.get("interpret", {})
    if "attention_mass_before" in attention:
        table = Table(title="student attention on mined tokens (response positions, "
                            "mean over layers and heads)")
        for col in ("measure", "before", "after", "after / before"):
            table.add_column(col)
        for key, label in (("attention_mass", "mass on mined tokens"),
                           ("attention_mass_normalised", "mass / mined share of context"),
                           ("attention_non_mined_mass", "mass on other instruction tokens")):
            ratio = attention.get(f"{key}_ratio")
            table.add_row(label, f"{attention[f'{key}_before']:.4f}",
                          f"{attention[f'{key}_after']:.4f}",
                          "-" if ratio is None else f"{ratio:.3f}")
        console.print(table)
