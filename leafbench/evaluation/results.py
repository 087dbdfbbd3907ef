"""The result schema: what every evaluation writes, whatever the task, backend or engine.

Every run of `harness.evaluate` (called by `run_evaluation` for the hf and vllm backends and by
`replay.run_replay`) writes into its output folder:

``results.json``
    Run level: ``schema`` (this module's `SCHEMA_VERSION`), ``model``, ``model_fingerprint``,
    ``backend``, ``versions``, ``lm_eval_version``, ``generation_cache``, ``bootstrap`` (how the
    intervals were drawn), ``settings`` (the call's own settings) and ``results``, one entry per
    task. Every task entry has these fields (`TASK_FIELDS`), the contract that the leaderboard,
    the tracking and the end-of-run summary read:

    ==================  ==========================================================================
    task                the task's name (`registry.TASKS`)
    metric              the headline metric's name: ``exact_match,strict-match`` for the math and
                        synthetic tasks, ``pass@1`` for the code tasks (`registry.Task.metric`)
    score               its value, = the mean over items of the mean of the rows' ``correct``
    n                   items (distinct doc ids) scored
    samples             sample rows (n times the samples per item)
    ci95                [low, high]: percentile bootstrap of ``score`` over items (each item's mean
                        ``correct``, so several samples per item stay clustered), seeded
    backend             what produced the responses: "hf", "vllm", or "replay" (stored responses)
    decoding            chat_template, num_fewshot, samples_per_item, do_sample, temperature,
                        max_gen_toks, until: what the responses were generated with (the last
                        four None under replay: the stored responses were decoded elsewhere)
    model_fingerprint   `fingerprint.model_fingerprint` of the model, or under replay
                        ``responses:sha256:<hex>`` of the responses file
    data                the local data path, or the default source (a hub dataset, ...)
    data_sha256         sha256 of the data file (of a folder: of its files' names and hashes);
                        None for a default source, which has no local file
    docs_sha256         sha256 of the test documents as loaded (covers hub data too)
    versions            `provenance.package_versions()`: python, torch, transformers, lm_eval, ...
    grading             how a response is judged (`registry.Task.grading` under the strict
                        mode; the mode's own description otherwise)
    grading_mode        the grading mode the task was judged by (`grading.GRADERS`): "strict"
                        (leafbench's verdicts) or "paper" (the Qwen2.5-Math toolkit's rules);
                        tasks a mode does not cover (synthetic, code) stay "strict"
    ==================  ==========================================================================

    Besides these, each entry keeps the task's own metrics under their usual names, so older
    readers keep working: ``exact_match,strict-match``, ``exact_match,flexible-extract``, their
    stderr and intervals (math and synthetic); ``pass@k`` and for HumanEval+ ``pass@k,base`` and
    ``pass@k,plus`` (code). Code tasks also record ``isolation``: the sandbox mechanisms that
    took effect for their programs (`sandbox.isolation()`, found before anything is generated;
    ``UNSAFE_no_sandbox`` among them when the user opted out of containment), and ``task_options``:
    the options the task was built with, its builder's defaults filled in (for LiveCodeBench the
    release and the contest date window, which decide the problems scored).

``samples_<task>.jsonl``
    One row per (doc_id, sample), sorted by both. Every row starts with `ROW_FIELDS`:
    ``doc_id`` (the item's position in the test split, as lm-eval numbers docs), ``sample``
    (0-based; always 0 under greedy decoding), ``correct`` (bool: the headline verdict, the one
    ``score`` averages), ``prompt`` and ``response``; then the task's own details: for math and
    synthetic ``target``, ``extracted_strict``/``correct_strict`` and ``extracted_flexible``/
    ``correct_flexible`` (``correct`` is ``correct_strict``); for code ``problem`` (the
    benchmark's id), ``extracted`` (the program tested), ``status`` (per test suite), ``reason``
    and for HumanEval+ ``correct_base``. Two runs of a task therefore line up item by item on
    (doc_id, sample) and compare on ``correct``, whatever the task.

Why the headline of the math tasks is strict-match: it scores only an answer the model marked
(the last \\boxed{}, "The answer is N"), as the paper's evaluation (Qwen2.5-Math's toolkit) does;
flexible-extract stays in the rows and the entry for error analysis.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leafbench.evaluation.grading import DEFAULT_GRADING, grading_description
from leafbench.evaluation.provenance import (
    BOOTSTRAP_RESAMPLES,
    CONFIDENCE,
    bootstrap_interval,
    package_versions,
)
from leafbench.evaluation.registry import data_label, get_task

SCHEMA_VERSION = 2
TASK_FIELDS = ("task", "metric", "score", "n", "samples", "ci95", "backend", "decoding",
               "model_fingerprint", "data", "data_sha256", "docs_sha256", "versions", "grading",
               "grading_mode")
ROW_FIELDS = ("doc_id", "sample", "correct", "prompt", "response")
DECODING_FIELDS = ("chat_template", "num_fewshot", "samples_per_item", "do_sample",
                   "temperature", "max_gen_toks", "until")


@dataclass
class TaskResult:
    """What an engine hands back for one task: its metrics and rows, and what it ran on."""

    task: str
    metrics: dict[str, float]  # the task's own metrics, the headline `registry` names among them
    rows: list[dict[str, Any]]  # sample rows, `ROW_FIELDS` first
    data: Path | None  # the local data, None for the default source
    docs_sha256: str
    decoding: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # more entry fields (stderr, ...)
    grading_mode: str = DEFAULT_GRADING  # the mode the verdicts were given in


def decoding(
    gen_kwargs: Mapping[str, Any] | None, *, chat: bool, num_fewshot: int | None,
    rows: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The `decoding` field: `gen_kwargs` is what the requests were generated with (lm-eval's
    generation_kwargs: until, max_gen_toks, do_sample, temperature), None under replay."""
    gen = dict(gen_kwargs or {})
    per_item = max((r["sample"] for r in rows), default=-1) + 1
    return {
        "chat_template": chat,
        "num_fewshot": num_fewshot or 0,
        "samples_per_item": per_item,
        "do_sample": gen.get("do_sample"),
        "temperature": gen.get("temperature"),
        "max_gen_toks": gen.get("max_gen_toks"),
        "until": list(gen["until"]) if gen.get("until") is not None else None,
    }


def write_results(
    out_dir: str | Path,
    results: Sequence[TaskResult],
    *,
    model: str,
    model_fingerprint: str | None,
    backend: str,
    seed: int,
    settings: Mapping[str, Any],
    generation_cache: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, float]]:
    """Write ``samples_<task>.jsonl`` per task and ``results.json`` (the module docstring);
    return {task: the task's own metrics and n}, what `run_evaluation` returns."""
    from lm_eval import __version__ as lm_eval_version

    out = Path(out_dir)
    versions = package_versions()
    entries = {}
    for result in results:
        _check_rows(result.task, result.rows)
        entries[result.task] = _task_entry(result, model_fingerprint=model_fingerprint,
                                           backend=backend, versions=versions, seed=seed)
        write_jsonl(out / f"samples_{result.task}.jsonl", result.rows)
    write_json(out / "results.json", {
        "schema": SCHEMA_VERSION,
        "model": model,
        "model_fingerprint": model_fingerprint,
        "backend": backend,
        "lm_eval_version": lm_eval_version,
        "versions": versions,
        "generation_cache": dict(generation_cache) if generation_cache is not None else None,
        "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "confidence": CONFIDENCE, "seed": seed,
                      "method": "percentile, over items (each item's mean verdict)"},
        "settings": dict(settings),
        "results": entries,
    })
    return {r.task: {**r.metrics, "n": entries[r.task]["n"]} for r in results}


def _task_entry(
    result: TaskResult, *, model_fingerprint: str | None, backend: str,
    versions: Mapping[str, Any], seed: int,
) -> dict[str, Any]:
    spec = get_task(result.task)
    per_item = item_verdicts(result.rows)
    score = result.metrics[spec.metric]
    if abs(score - sum(per_item) / len(per_item)) > 1e-9:  # the rows must explain the score
        raise AssertionError(
            f"{result.task}: {spec.metric} = {score} but the rows' verdicts average "
            f"{sum(per_item) / len(per_item)}"
        )
    return {
        "task": result.task,
        "metric": spec.metric,
        "score": score,
        "n": len(per_item),
        "samples": len(result.rows),
        "ci95": list(bootstrap_interval(per_item, seed=seed)),
        "backend": backend,
        "decoding": result.decoding,
        "model_fingerprint": model_fingerprint,
        "data": data_label(result.task, result.data),
        "data_sha256": data_sha256(result.data),
        "docs_sha256": result.docs_sha256,
        "versions": dict(versions),
        "grading": grading_description(result.task, result.grading_mode, spec.grading),
        "grading_mode": result.grading_mode,
        **result.metrics,
        **result.details,
    }


def item_verdicts(rows: Sequence[dict[str, Any]]) -> list[float]:
    """Each item's mean `correct` over its samples, in doc id order: what `score` averages and
    the bootstrap resamples (one sample per item: the verdicts themselves)."""
    by_item: dict[int, list[bool]] = {}
    for row in rows:
        by_item.setdefault(row["doc_id"], []).append(row["correct"])
    return [sum(v) / len(v) for _, v in sorted(by_item.items())]


def data_sha256(path: Path | None) -> str | None:
    """sha256 of a data file; of a folder, of its files' relative names and sha256s; None for
    a default (remote) source."""
    from leafbench.evaluation.fingerprint import sha256_file

    if path is None:
        return None
    if path.is_file():
        return sha256_file(path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    parts = [[str(p.relative_to(path)), sha256_file(p)] for p in files]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _check_rows(task: str, rows: Sequence[dict[str, Any]]) -> None:
    """Every row carries the key fields, once per (doc_id, sample): an engine that breaks the
    contract fails here, not in a reader comparing two runs later."""
    if not rows:
        raise ValueError(f"{task}: no sample rows to write")
    seen = set()
    for row in rows:
        missing = [k for k in ROW_FIELDS if k not in row]
        if missing or not isinstance(row["correct"], bool):
            raise AssertionError(f"{task}: sample row lacks {missing} or a boolean correct: {row}")
        key = (row["doc_id"], row["sample"])
        if key in seen:
            raise AssertionError(f"{task}: two rows for (doc_id, sample) {key}")
        seen.add(key)


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


@dataclass
class EvalRun:
    """One evaluation: what answers the prompts, how, and where the files go."""

    lm: Any  # an lm-eval LM answering generate_until: GenerationLM, ReplayLM, a test's own
    out: Path
    model: str  # as results.json names it
    backend: str  # what produced the responses: "hf", "vllm", "replay"
    fingerprint: str | None = None
    # Stored responses {task: {doc_id: [samples]}} for the code engine (replay); None: generate.
    stored: Mapping[str, Mapping[int, Sequence[str]]] | None = None
    limit: int | None = None
    max_gen_toks: int | None = None  # None keeps each task's own budget (2048 for math)
    num_fewshot: int | None = None
    seed: int = 0
    chat: bool | None = None  # None: the chat template when the LM's tokenizer has one
    check_tasks: Callable[[Mapping[str, Any]], None] | None = None  # sees lm-eval's tasks first
    task_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # code builders
    settings: dict[str, Any] = field(default_factory=dict)  # the caller's, for results.json
    generation_cache: Callable[[], dict[str, Any]] | None = None
    grading: str = DEFAULT_GRADING  # the grading mode (`grading.GRADERS`)
    temperature: float = 0.0  # 0: the tasks' own (greedy) decoding; > 0: sampling (lm_eval tasks)

    @property
    def generated(self) -> bool:
        """Whether this run decoded its responses (False: stored responses are scored)."""
        return self.stored is None

    def use_chat(self) -> bool:
        if self.chat is not None:
            return self.chat
        return getattr(getattr(self.lm, "tokenizer", None), "chat_template", None) is not None
