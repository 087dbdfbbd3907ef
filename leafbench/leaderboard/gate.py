"""The regression gate: is the candidate worse than the baseline, task by task, item by item?

`check` lines the two entries up and hands each task's item verdicts to `stats`:

1. Only like is compared with like. Per task the grading modes must agree (always), and the
   item sets and the data hashes must agree unless `intersect` says to compare the items both
   share; a task of the baseline the candidate was not evaluated on is refused the same way (a
   candidate must not pass by dropping a task). Anything else is a usage error (exit 2), found
   before any statistic is computed.
2. Per task: the paired difference candidate − baseline over the shared items with its paired
   bootstrap interval, the one-sided p-value of a drop (McNemar exact with one sample per item,
   a within-item sign-flip permutation test with several) and the flip counts (`stats`).
3. Across the tasks checked: Holm's step-down adjustment, then the rule (`stats.verdicts`):
   by default a task fails when its drop is significant after Holm AND larger than the margin.

Why paired: the two models answered the same items, so most of the sampling noise (which
items happen to be hard) is shared and cancels; only discordant items carry information. An
unpaired test on the same data throws that away and needs several times the items for the same
power (`leafbench.bench.gate` measures both).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from leafbench.errors import ConfigError
from leafbench.leaderboard import stats
from leafbench.leaderboard.entry import Entry, TaskScore
from leafbench.leaderboard.verdict import Report, TaskVerdict


@dataclass(frozen=True)
class GateSettings:
    alpha: float = 0.05
    margin: float = 0.0     # in score units: 0.02 is two points
    rule: str = "significant-drop"
    intersect: bool = False
    seed: int = 0


def check(baseline: Entry, candidate: Entry, settings: GateSettings) -> Report:
    """The gate's report on `candidate` against `baseline` (the module docstring)."""
    _check_settings(settings)
    tasks, not_compared = _tasks_to_compare(baseline, candidate, settings)
    pairs = {name: _aligned(name, baseline.tasks[name], candidate.tasks[name], settings)
             for name in tasks}
    comparisons = {name: stats.compare_items(base, cand, seed=settings.seed)
                   for name, (base, cand) in pairs.items()}
    decided = stats.verdicts(comparisons, alpha=settings.alpha, margin=settings.margin,
                             rule=settings.rule)
    rows = {name: _task_verdict(comparisons[name], decided[name]) for name in tasks}
    return Report.model_validate({
        "schema": 1,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "baseline": baseline.label, "candidate": candidate.label,
        "rule": settings.rule, "alpha": settings.alpha, "margin": settings.margin,
        "intersect": settings.intersect,
        "passed": not any(v.failed for v in rows.values()),
        "tasks": rows, "not_compared": not_compared,
    })


def _check_settings(settings: GateSettings) -> None:
    if not 0.0 < settings.alpha < 1.0:
        raise ConfigError("leaderboard check", "--alpha", settings.alpha, "expected 0 < alpha < 1")
    if not 0.0 <= settings.margin < 1.0:
        raise ConfigError("leaderboard check", "--margin", settings.margin,
                          "expected a margin in score units, 0 <= margin < 1 (0.02 = 2 points)")
    if settings.rule not in stats.RULES:
        raise ConfigError("leaderboard check", "--rule", settings.rule,
                          f"expected one of {sorted(stats.RULES)}")


def _tasks_to_compare(baseline: Entry, candidate: Entry,
                      settings: GateSettings) -> tuple[list[str], dict[str, str]]:
    for role, entry in (("--baseline", baseline), ("--candidate", candidate)):
        if entry.kind != "evaluation":
            raise ConfigError(entry.label, role, entry.label,
                              "a reference entry holds published numbers only; the gate "
                              "compares evaluations item by item")
    missing = sorted(set(baseline.tasks) - set(candidate.tasks))
    if missing and not settings.intersect:
        raise ConfigError(candidate.label, "tasks", missing,
                          f"the baseline {baseline.label!r} was evaluated on these and the "
                          "candidate was not; evaluate them, or pass --intersect to check only "
                          "the tasks both have")
    not_compared = {t: "the candidate was not evaluated on it" for t in missing}
    not_compared |= {t: "the baseline was not evaluated on it"
                     for t in sorted(set(candidate.tasks) - set(baseline.tasks))}
    tasks = sorted(set(baseline.tasks) & set(candidate.tasks))
    if not tasks:
        raise ConfigError(candidate.label, "tasks", sorted(candidate.tasks),
                          f"no task in common with the baseline's {sorted(baseline.tasks)}")
    return tasks, not_compared


def _aligned(name: str, base: TaskScore, cand: TaskScore,
             settings: GateSettings) -> tuple[list[list[int]], list[list[int]]]:
    """The two sides' verdicts on the items to compare, in doc id order."""
    where = f"tasks.{name}"
    if base.grading_mode != cand.grading_mode:
        raise ConfigError(where, "grading_mode", cand.grading_mode,
                          f"the baseline was graded {base.grading_mode!r}: verdicts under "
                          "different grading modes do not compare")
    base_items, cand_items = base.verdicts(), cand.verdicts()
    if not settings.intersect:
        for field in ("docs_sha256", "data_sha256"):
            if getattr(base, field) != getattr(cand, field):
                raise ConfigError(where, field, getattr(cand, field),
                                  f"the baseline's is {getattr(base, field)!r}: different test "
                                  "data; pass --intersect to compare the doc ids both share")
        if set(base_items) != set(cand_items):
            only_base = len(set(base_items) - set(cand_items))
            only_cand = len(set(cand_items) - set(base_items))
            raise ConfigError(where, "doc_ids", f"{len(cand_items)} items",
                              f"{only_base} items only in the baseline and {only_cand} only in "
                              "the candidate; pass --intersect to compare the common ones")
    common = sorted(set(base_items) & set(cand_items))
    if not common:
        raise ConfigError(where, "doc_ids", f"{len(cand_items)} items",
                          "no item in common with the baseline")
    return [base_items[d] for d in common], [cand_items[d] for d in common]


def _task_verdict(comparison: stats.PairedComparison, verdict: stats.Verdict) -> TaskVerdict:
    return TaskVerdict(
        n=comparison.n_items, samples_per_item=comparison.samples_per_item,
        baseline=comparison.baseline, candidate=comparison.candidate,
        difference=comparison.difference, ci95=comparison.ci,
        p_drop=comparison.p_drop, p_holm=verdict.p_adjusted, test=comparison.test,
        right_to_wrong=comparison.right_to_wrong, wrong_to_right=comparison.wrong_to_right,
        failed=verdict.failed, reason=verdict.reason)


def table(report: Report) -> list[str]:
    """The report as the lines a person reads in a CI log."""
    head = (f"{'task':<22} {'n':>5} {'base':>6} {'cand':>6} {'diff [95% CI]':>24} "
            f"{'p':>7} {'p_holm':>7} {'r→w':>5} {'w→r':>5}  verdict")
    lines = [f"gate: {report.candidate!r} against {report.baseline!r} — rule {report.rule}, "
             f"alpha {report.alpha}, margin {report.margin * 100:g} points"
             + (", common items only (--intersect)" if report.intersect else ""), head]
    for name, v in report.tasks.items():
        interval = f"{v.difference * 100:+.1f} [{v.ci95[0] * 100:+.1f}, {v.ci95[1] * 100:+.1f}]"
        lines.append(f"{name:<22} {v.n:>5} {v.baseline:>6.3f} {v.candidate:>6.3f} "
                     f"{interval:>24} {v.p_drop:>7.4f} {v.p_holm:>7.4f} {v.right_to_wrong:>5} "
                     f"{v.wrong_to_right:>5}  {'FAIL' if v.failed else 'pass'}: {v.reason}")
    lines += [f"{name:<22} not compared: {why}" for name, why in report.not_compared.items()]
    lines.append("verdict: " + ("PASS" if report.passed else "REGRESSION") + " (differences in "
                 "points, candidate − baseline; p: one-sided for a drop, Holm across tasks)")
    return lines


def as_mapping(report: Report) -> Mapping[str, object]:
    return report.model_dump(by_alias=True, mode="json")
