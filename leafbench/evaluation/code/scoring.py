"""Score the code tasks: extract, run in the sandbox, pass@k, sample rows.

`evaluate_code_tasks(run, sources)`
    The code engine of `harness.evaluate` (`harness.ENGINES["code"]`): per task, build its
    `CodeTask` (`registry.Task.build`), load the docs, get the responses (generated with the
    run's LM, or the stored samples under replay), score them, and hand back a
    `results.TaskResult`; `harness.evaluate` writes the files.
`score_responses(task, responses)`
    In memory. `responses` maps doc id -> one response or a list of n samples. Returns
    ``({"pass@1": x, "n": problems, "samples": total, ...}, rows)``.

Metrics: ``pass@k`` (the unbiased estimator, mean over problems; k = 1 and any `ks` that every
problem has enough samples for), ``n`` (problems scored) and ``samples``. HumanEval+ adds
``pass@k,base`` and ``pass@k,plus``; its ``pass@k`` is the plus one (the HumanEval+ number).

Rows, one per sample (`results.ROW_FIELDS` first): doc_id, sample (0-based), correct (the
sample passed: for HumanEval+ base and plus), prompt, response, then problem (the benchmark's
own id), extracted (the program tested, None when the response holds no code), status (per
suite: HumanEval+ "base"/"plus", the others "tests"; "pass", "fail", "timeout", "error", or None
for a suite not run), reason (why it did not pass), and for HumanEval+ correct_base.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from leafbench.evaluation.code.execution import DEFAULT_WORKERS, run_jobs
from leafbench.evaluation.code.passk import pass_at_k
from leafbench.evaluation.code.task import CodeTask, code_task
from leafbench.evaluation.provenance import docs_sha256
from leafbench.evaluation.registry import get_task, resolve_data
from leafbench.evaluation.results import EvalRun, TaskResult, decoding
from leafbench.evaluation.sandbox import isolation

NO_CODE = "the response contains no code"
REPORTED_KS = (1, 10, 100)  # evalplus' pass@k set; a k above the samples per item is skipped


def evaluate_code_tasks(run: EvalRun, sources: Mapping[str, Path | None]) -> dict[str, TaskResult]:
    """Score `run` on the code tasks of `sources` ({task: local data or None})."""
    from leafbench.evaluation.code.generation import generate_responses, generation_kwargs

    # Before anything is generated: a machine that cannot contain generated code refuses here
    # (SandboxUnavailable names what is missing), not after hours of generation. The mechanisms
    # that took effect go into every code task's entry of results.json.
    contained = sorted(isolation()) if sources else []
    if sources:
        print(f"leafbench: generated code runs contained by {', '.join(contained)}",
              file=sys.stderr)
    chat = run.use_chat()
    results = {}
    for name, data in sources.items():
        task = code_task(name, **dict(run.task_options.get(name, {})))
        all_docs = task.load(data)
        docs = all_docs[: run.limit] if run.limit is not None else all_docs
        responses: Mapping[int, str | Sequence[str]]
        if run.stored is None:
            responses = generate_responses(run.lm, task, docs, max_gen_toks=run.max_gen_toks,
                                           chat=chat)
            gen_kwargs: dict[str, Any] | None = generation_kwargs(task, run.max_gen_toks)
        else:
            responses, gen_kwargs = run.stored.get(name, {}), None
        metrics, rows = score_responses(task, responses, docs=all_docs, limit=run.limit,
                                        ks=REPORTED_KS, source=run.model)
        results[name] = TaskResult(
            task=name, metrics=metrics, rows=rows, data=data, docs_sha256=docs_sha256(all_docs),
            decoding=decoding(gen_kwargs, chat=chat, num_fewshot=0, rows=rows),
            details={"isolation": contained,
                     "task_options": task_options(name, run.task_options.get(name, {}))},
        )
    return results


def task_options(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The options a code task was built with, its builder's defaults filled in: what decides
    which problems were scored (LiveCodeBench's release and contest date window), recorded in
    results.json so a leaderboard can show it."""
    builder = get_task(name).definition.split(":")
    function = getattr(importlib.import_module(builder[0]), builder[1])
    defaults = {k: p.default for k, p in inspect.signature(function).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return {**defaults, **dict(given)}


# ------------------------------------------------------------------------------ scoring
def score_responses(
    task: str | CodeTask,
    responses: Mapping[int, str | Sequence[str]],
    *,
    docs: Sequence[dict[str, Any]] | None = None,
    data_file: str | Path | None = None,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    ks: Iterable[int] = (1,),
    workers: int = DEFAULT_WORKERS,
    source: str = "responses",
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Score `responses` ({doc_id: response or [samples]}) on `task` (a name or a `CodeTask`).

    Every doc of the task (the first `limit` with `limit`) must have at least one response, and
    no response may name a doc the task does not have. `docs` skips loading. Returns the metrics
    and one row per sample (see the module docstring)."""
    spec = code_task(task) if isinstance(task, str) else task
    ks = sorted({1, *ks})
    bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, int) or k < 1]
    if bad:
        raise ValueError(f"pass@k needs integer k >= 1, got {bad}")
    if docs is None:
        docs = spec.load(resolve_data(spec.name, data_file=data_file, data_dir=data_dir))
    samples = _samples_per_doc(spec.name, responses, len(docs), limit, source)
    if not samples:
        raise ValueError(f"{source}: nothing to score for {spec.name}: {len(docs)} docs, "
                         f"limit {limit}")
    scored = sorted(samples)
    spec.prepare([docs[d] for d in scored], workers)

    plan: list[tuple[int, int, str, str | None]] = []  # (doc_id, sample, response, code)
    for doc_id in scored:
        for index, response in enumerate(samples[doc_id]):
            plan.append((doc_id, index, response, spec.extract(response, docs[doc_id])))
    programs = {i: code for i, (_, _, _, code) in enumerate(plan) if code}
    runnable = list(programs)
    results = run_jobs(
        runnable, lambda i: spec.check_job(docs[plan[i][0]], programs[i]), workers=workers
    )
    verdicts: dict[int, dict[str, Any]] = {
        i: spec.verdict(result) for i, result in zip(runnable, results, strict=True)
    }

    rows = []
    for i, (doc_id, index, response, code) in enumerate(plan):
        verdict = verdicts.get(i) or _no_code_verdict(spec)
        rows.append({
            "doc_id": doc_id,
            "sample": index,
            "correct": verdict.pop("correct"),
            "prompt": spec.prompt(docs[doc_id]),
            "response": response,
            "problem": spec.problem_id(docs[doc_id]),
            "extracted": code or None,
            **verdict,
        })
    return _metrics(spec, rows, ks), rows


def _samples_per_doc(
    task: str,
    responses: Mapping[int, str | Sequence[str]],
    n_docs: int,
    limit: int | None,
    source: str,
) -> dict[int, list[str]]:
    samples: dict[int, list[str]] = {}
    for doc_id, value in responses.items():
        if isinstance(doc_id, bool) or not isinstance(doc_id, int) or not 0 <= doc_id < n_docs:
            raise ValueError(
                f"{source}: {task} has no doc_id {doc_id!r}; its test set has {n_docs} docs "
                f"(ids 0-{n_docs - 1})"
            )
        values = [value] if isinstance(value, str) else list(value)
        if not values or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{source}: {task} doc {doc_id}: responses must be strings")
        samples[doc_id] = values
    n_scored = n_docs if limit is None else min(limit, n_docs)
    missing = [d for d in range(n_scored) if d not in samples]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise ValueError(
            f"{source}: {task} has no response for {len(missing)} of the {n_scored} docs being "
            f"scored (doc ids {shown}); add them, or pass limit=N to score only the first N docs"
        )
    return {d: samples[d] for d in range(n_scored)}


def _no_code_verdict(spec: CodeTask) -> dict[str, Any]:
    verdict: dict[str, Any] = {
        "status": dict.fromkeys(spec.suites, "fail"),
        "correct": False,
        "reason": NO_CODE,
    }
    if "base" in spec.suites:
        verdict["correct_base"] = False
    return verdict


def _metrics(
    spec: CodeTask, rows: Sequence[dict[str, Any]], ks: Sequence[int]
) -> dict[str, float]:
    """pass@k for each k every problem has enough samples for, with n and samples."""
    per_doc: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        per_doc.setdefault(row["doc_id"], []).append(row)
    fewest = min(len(v) for v in per_doc.values())
    verdicts = {"": "correct"} if "base" not in spec.suites else {
        "": "correct", ",base": "correct_base", ",plus": "correct"
    }
    metrics: dict[str, float] = {}
    for k in (k for k in ks if k <= fewest):
        for suffix, key in verdicts.items():
            values = [
                pass_at_k(len(rs), sum(bool(r[key]) for r in rs), k) for rs in per_doc.values()
            ]
            metrics[f"pass@{k}{suffix}"] = sum(values) / len(values)
    metrics["n"] = len(per_doc)
    metrics["samples"] = len(rows)
    return metrics
