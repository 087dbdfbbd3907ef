"""The `evaluate` stage: score teacher, student before and student after distillation.

Each (model, evaluation settings) pair is cached on its own under `artifacts/eval/<key>/`, so a
sweep over λ re-evaluates only the distilled student; the teacher and the undistilled student
are scored once per workspace.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

from leafbench.contract import StageContext, artifact, digest, file_hash
from leafbench.errors import ConfigError
from leafbench.evaluation.results import SCHEMA_VERSION
from leafbench.evaluation.sandbox import unsandboxed_permitted
from leafbench.lease import Lease, compute_once
from leafbench.models import resolve_device


def role_models(ctx: StageContext) -> dict[str, tuple[str, Any]]:
    """Role -> (model reference, what identifies it for caching). `student_after` exists only
    when a distillation ran upstream (an evaluate-only run scores the models as given)."""
    models = {
        "teacher": (ctx.refs.teacher, ctx.refs.identity.get("teacher")),
        "student_before": (ctx.refs.student, ctx.refs.identity.get("student")),
    }
    if "distill" in ctx.inputs:
        distilled = ctx.inputs["distill"] / artifact("distill", "student")
        models["student_after"] = (str(distilled), ctx.inputs["distill"].name)
    return models


def run_evaluate(ctx: StageContext) -> dict[str, float]:
    from leafbench.evaluation.harness import run_evaluation  # lm-eval: only when evaluating

    cfg = ctx.exp.evaluate
    data_files = _split_files(ctx)
    models = role_models(ctx)
    metrics: dict[str, float] = {}
    for role in cfg.models:
        ref, identity = models[role]
        # The result schema is in the key: a cached evaluation in an older format is redone.
        payload = {"model": identity, "testbed": ctx.refs.identity.get("testbed"),
                   "evaluate": ctx.exp.section("evaluate") | {"models": None},
                   "schema": SCHEMA_VERSION}
        if cfg.split == "validation":  # what the validation files hold decides the scores
            payload["validation"] = {task: file_hash(Path(path))
                                     for task, path in sorted(ctx.exp.data.validation.items())}
        key = digest(payload)
        cached = ctx.workspace / "artifacts" / "eval" / key

        def evaluate(lease: Lease, ref: str = ref, cached: Path = cached) -> None:
            # Only the lease holder is here, so the partial directory is nobody else's: a
            # killed holder's leftovers go (its generations survive in the generation cache).
            partial = cached.with_name(cached.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            with _sandbox_opt_in(cfg.unsafe_run_generated_code_unsandboxed):
                run_evaluation(
                    ref, list(cfg.tasks), partial, data_files=data_files, data_dir=cfg.data_dir,
                    limit=cfg.limit, batch_size=cfg.batch_size, max_gen_toks=cfg.max_gen_toks,
                    device=resolve_device(ctx.exp.models.device), seed=ctx.exp.seed,
                    backend=cfg.backend, dtype=cfg.dtype, grading=cfg.grading,
                    backend_options=cfg.vllm.model_dump() if cfg.backend == "vllm" else None,
                    cache_dir=ctx.workspace / "generations" if cfg.cache_generations else None,
                )
            lease.ensure_held()
            partial.rename(cached)

        # The teacher and the undistilled student are shared by every experiment on this
        # testbed: whichever process gets there first evaluates, the others wait and copy.
        compute_once(cached, (cached / artifact("evaluate", "results")).is_file, evaluate,
                     label=f"evaluation of {role} {key}")
        shutil.copytree(cached, ctx.out / role)
        metrics.update(_flatten(role, json.loads((cached / artifact("evaluate", "results")).read_text())))
    return metrics


def _split_files(ctx: StageContext) -> dict[str, str] | None:
    """The data each task is scored on: the test split, or for `evaluate.split: validation`
    the testbed's validation split and `data.validation`'s files (every task needs one)."""
    cfg = ctx.exp.evaluate
    if cfg.split == "test":
        # A testbed experiment may be scored on other tasks only (the testbed's models on
        # GSM8K): its own split is passed only when its task is evaluated.
        testbed = ctx.refs.test_jsonl is not None and "leaf_synthetic" in cfg.tasks
        return {"leaf_synthetic": str(ctx.refs.test_jsonl)} if testbed else None
    files = {t: f for t, f in ctx.exp.data.validation.items() if t in cfg.tasks}
    if ctx.refs.validation_jsonl is not None and "leaf_synthetic" in cfg.tasks:
        files["leaf_synthetic"] = str(ctx.refs.validation_jsonl)
    missing = [task for task in cfg.tasks if task not in files]
    if missing:
        raise ConfigError("evaluate.split", f"data.validation.{missing[0]}", None,
                          "evaluate.split is validation, and this task has no validation data "
                          "(only the synthetic testbed has its own)")
    return files


def _sandbox_opt_in(unsandboxed: bool) -> contextlib.AbstractContextManager[None]:
    """The experiment's explicit opt-in to unprotected code execution, or nothing."""
    if not unsandboxed:
        return contextlib.nullcontext()
    return unsandboxed_permitted("evaluate.unsafe_run_generated_code_unsandboxed: true")


def _flatten(role: str, results: dict[str, Any]) -> dict[str, float]:
    """`{task: {"exact_match,strict-match": x}}` -> `{"teacher.task.exact_match.strict-match": x}`."""
    scores = results.get("results", results)
    out = {}
    for task, values in scores.items():
        if not isinstance(values, dict):
            continue
        for metric, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{role}.{task}.{metric.replace(',', '.')}"] = float(value)
    return out

