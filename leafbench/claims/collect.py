"""Run the conditions over seeds and gather the claims' evidence and the diagnostics.

The diagnostics answer "why do LeaF and KD differ (or not)?" with measurements: per-item flips
between the two students, what each gets wrong (the distractor's number or something else),
and the per-epoch means of the two loss terms L_kd and L_cd from distillation's step log.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from statistics import fmean
from typing import Any

from leafbench.claims.claims import Evidence
from leafbench.claims.conditions import CONDITIONS, Condition, Runner, experiment_for
from leafbench.claims.measure import (
    attention_by_item,
    attention_items,
    detection_counts,
    item_responses,
    item_verdicts,
    store_rows,
    wrong_answers,
)
from leafbench.config import Experiment
from leafbench.contract import StageResult, artifact
from leafbench.samples import read_jsonl

ATTENTION_ITEMS = 64
PRELIMINARY_SUMMARY, PRELIMINARY_ITEMS = "summary.json", "items.jsonl"


def pipeline_runner(exp: Experiment, until: str) -> list[StageResult]:
    from leafbench.pipeline import run_experiment

    return run_experiment(exp, until=until)


def conditions_needed() -> list[Condition]:
    return [CONDITIONS[n] for n in ("leaf", "kd", "collective", "preliminary")]


def collect(path: Path, overrides: list[str], seeds: list[int], vary: str,
            runner: Runner = pipeline_runner, resamples: int = 2000
            ) -> tuple[Evidence, dict[str, Any]]:
    """Run (or reuse) every condition for every seed; return the evidence and diagnostics."""
    ev = Evidence(seeds=list(seeds), crossed=vary == "pipeline", resamples=resamples)
    conditions = conditions_needed()
    # Validate every definition before the first expensive stage.
    exps = {(c.name, s): experiment_for(path, overrides, c, s, vary) for s in seeds
            for c in conditions}
    wall: dict[str, float] = defaultdict(float)
    diag: dict[str, Any] = {"per_seed": []}
    attention: dict[str, dict[str, list[dict[str, float]]]] = {}
    before_cache: dict[tuple[str, str], dict[str, float]] = {}
    preliminary: list[list[dict[str, Any]]] = []
    for seed in seeds:
        runs: dict[str, dict[str, StageResult]] = {}
        for c in conditions:
            start = time.perf_counter()
            runs[c.name] = {r.name: r for r in runner(exps[(c.name, seed)], c.until)}
            wall[c.name] += time.perf_counter() - start
        for name in ("leaf", "kd", "collective"):
            ev.accuracy.setdefault(name, []).append(
                item_verdicts(runs[name]["evaluate"].path, "student_after"))
        leaf, exp = runs["leaf"], exps[("leaf", seed)]
        rows = store_rows(leaf["mine"].path)
        th = exp.mining.threshold
        if rows and all("distractor_spans" in r for r in rows):
            ev.detection.append(detection_counts(rows, th.mode, th.tau, exp.mining.baselines,
                                                 exp.seed))
        start = time.perf_counter()
        _attention(attention, before_cache, runs, exp)
        wall["attention"] += time.perf_counter() - start
        if "preliminary" in runs:
            preliminary.append(read_jsonl(runs["preliminary"]["preliminary"].path
                                          / PRELIMINARY_ITEMS))
        diag["per_seed"].append(_diagnose(seed, runs, exp.evaluate.split))
    ev.attention = attention
    ev.preliminary = preliminary or None
    diag["wall_seconds"] = {k: round(v, 1) for k, v in wall.items()}
    diag["summary"] = _summarise(diag["per_seed"])
    return ev, diag


def _attention(out: dict[str, dict[str, list[dict[str, float]]]],
               before_cache: dict[tuple[str, str], dict[str, float]],
               runs: dict[str, dict[str, StageResult]], exp: Experiment) -> None:
    from leafbench.pipeline import resolve_models

    refs, _ = resolve_models(exp, Path(exp.workspace))
    leaf = runs["leaf"]
    views = attention_items(leaf["mine"].path, leaf["prune"].path, ATTENTION_ITEMS)
    after = {c: str(runs[c]["distill"].path / artifact("distill", "student"))
             for c in ("leaf", "kd")}
    for view, samples in views.items():
        if not samples:
            continue

        def measure(ref: str, samples: list[Any] = samples) -> dict[str, float]:
            return attention_by_item(ref, refs.student, samples, exp.data.max_length,
                                     exp.models.dtype, exp.models.device)

        key = (refs.student, view)
        if key not in before_cache:  # the undistilled student: once per testbed
            before_cache[key] = measure(refs.student)
        slot = out.setdefault(view, {"before": [], "leaf": [], "kd": []})
        slot["before"].append(before_cache[key])
        for c, ref in after.items():
            slot[c].append(measure(ref))


def _diagnose(seed: int, runs: dict[str, dict[str, StageResult]], split: str
              ) -> dict[str, Any]:
    """Flips, error kinds and loss curves of one seed; `split` is the testbed split the
    students were scored on (test, or validation for the map), whose records the error kinds
    are read against."""
    leaf_eval, kd_eval = runs["leaf"]["evaluate"].path, runs["kd"]["evaluate"].path
    leaf, kd = item_verdicts(leaf_eval, "student_after"), item_verdicts(kd_eval, "student_after")
    before = item_verdicts(leaf_eval, "student_before")
    teacher = item_verdicts(leaf_eval, "teacher") if (leaf_eval / "teacher").is_dir() else {}
    common = sorted(leaf.keys() & kd.keys())
    testbed = runs["leaf"].get("testbed")
    test_rows = read_jsonl(testbed.path / "data" / f"{split}.jsonl") if testbed else []
    errors = {}
    if test_rows:
        for name, path in (("leaf", leaf_eval), ("kd", kd_eval)):
            errors[name] = wrong_answers(item_responses(path, "student_after"), test_rows)
        errors["before"] = wrong_answers(item_responses(leaf_eval, "student_before"), test_rows)
    return {
        "seed": seed,
        "accuracy": {"teacher": _mean(teacher), "student_before": _mean(before),
                     "leaf": _mean(leaf), "kd": _mean(kd),
                     "collective": _mean(item_verdicts(runs["collective"]["evaluate"].path,
                                                       "student_after"))},
        "flips": {"leaf_right_kd_wrong": sum(leaf[i] > kd[i] for i in common),
                  "kd_right_leaf_wrong": sum(kd[i] > leaf[i] for i in common),
                  "both_right": sum(leaf[i] == kd[i] == 1 for i in common),
                  "both_wrong": sum(leaf[i] == kd[i] == 0 for i in common)},
        "answers": errors,
        "losses": {c: _loss_curve(runs[c]["distill"].path / "steps.jsonl") for c in ("leaf", "kd")},
    }


def _mean(d: dict[str, float]) -> float | None:
    return fmean(d.values()) if d else None


def _loss_curve(steps: Path) -> dict[str, list[float]]:
    """Per-epoch means of L_kd and L_cd (λ = 1 still logs L_cd: the counterfactual term the
    student is *not* trained on, a free measure of how far it is from the teacher there)."""
    if not steps.is_file():
        return {}
    by_epoch: dict[str, dict[int, list[float]]] = {"l_kd": defaultdict(list),
                                                   "l_cd": defaultdict(list)}
    for row in read_jsonl(steps):
        for term in by_epoch:
            if row.get(term) is not None:
                by_epoch[term][int(row.get("epoch", 0))].append(float(row[term]))
    return {term: [round(fmean(v[e]), 4) for e in sorted(v)] for term, v in by_epoch.items()}


def _summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    if not per_seed:
        return {}
    out: dict[str, Any] = {"accuracy": {}, "flips": {}, "answers": {}}
    for role in per_seed[0]["accuracy"]:
        vals = [s["accuracy"][role] for s in per_seed if s["accuracy"][role] is not None]
        out["accuracy"][role] = round(fmean(vals), 4) if vals else None
    for k in per_seed[0]["flips"]:
        out["flips"][k] = sum(s["flips"][k] for s in per_seed)
    for cond in per_seed[0]["answers"]:
        out["answers"][cond] = {k: round(fmean(s["answers"][cond][k] for s in per_seed), 4)
                                for k in per_seed[0]["answers"][cond]}
    return out
