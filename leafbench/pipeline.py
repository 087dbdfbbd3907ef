"""Stage runner: mine -> prune -> distill -> evaluate, cached, atomic and resumable.

Which stages a run computes is `planned_stages`: an experiment that evaluates no distilled
student (a Pre-KD or teacher row) skips training, and the paper's preliminary experiment runs
only when enabled or asked for with `until`.

Each stage is a plain function from a context (the experiment, its upstream artifact
directories, the resolved models) to an artifact directory plus a dict of summary metrics. Its
cache key hashes the stage's own config, its upstream keys and its version, so

  * a second identical run recomputes nothing (every key already has a finished directory);
  * changing τ re-runs prune and later stages but reuses the τ-independent mining pass;
  * a stage writes into `<key>.partial/` and is renamed to `<key>/` only when complete, so a
    killed run never leaves a half artifact, and the stage's own resume logic (mining batches,
    distillation checkpoints) picks up what the partial directory already holds;
  * several processes (and machines) may share a workspace: a stage is computed only under the
    lease `<key>.lease` (leafbench/lease.py), so exactly one process writes `<key>.partial/`;
    the others wait and report the finished stage as `cached`. A crashed holder's lease goes
    stale and the next process resumes from its partial directory.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from leafbench.config import Experiment
from leafbench.contract import (
    SUMMARY,
    ModelRefs,
    StageContext,
    StageResult,
    artifact,
    digest,
    file_hash,
)
from leafbench.distill.launch import run_distill_stage
from leafbench.distill.teacher_cache import run_teach
from leafbench.errors import FailedStage, mark_failed_stage
from leafbench.evaluation.stage import run_evaluate
from leafbench.interpret.stage import run_interpret
from leafbench.lease import Lease, compute_once
from leafbench.mining.stage import run_mine
from leafbench.preliminary.stage import run_preliminary
from leafbench.pruning.stage import run_prune
from leafbench.vocabulary import check as check_vocabularies

__all__ = ["STAGES", "STAGE_NAMES", "ModelRefs", "StageContext", "StageResult", "digest",
           "planned_stages", "run_experiment"]


@dataclass(frozen=True)
class Stage:
    name: str
    version: int
    upstream: tuple[str, ...]
    config: Callable[[Experiment], dict[str, Any]]
    run: Callable[[StageContext], dict[str, float]]
    # (upstream stage, file): key on that file's content instead of the upstream stage's key
    content: tuple[str, str] | None = None


class StageLogger(Protocol):
    """Where each finished stage is reported as the run goes (the MLflow tracker)."""

    def log_stage(self, result: StageResult) -> None: ...


def _threshold(e: Experiment) -> dict[str, Any]:
    """The threshold as keys see it: a field at its neutral default (a response τ of null) is
    left out, so definitions written before it existed keep their cached artifacts."""
    return _without_defaults(e.section("mining")["threshold"], {"response_tau": None})


def _distill_key(e: Experiment) -> dict[str, Any]:
    """Distillation's own settings, less the teacher cache (the teach stage's) and, when the
    last epoch is kept, the epoch-selection fields (neutral then, and absent from older keys)."""
    section = {k: v for k, v in e.section("distill").items() if k != "teacher_cache"}
    if e.distill.select == "last":
        section = {k: v for k, v in section.items() if k not in ("select", "select_fraction")}
    return section


def _without_defaults(section: dict[str, Any], neutral: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if not (k in neutral and v == neutral[k])}


# Mining's key leaves out τ and the threshold mode: one pass serves every threshold.
STAGES: tuple[Stage, ...] = (
    Stage("mine", 2, (), lambda e: {
        "level": e.mining.level, "segments": e.mining.segments, "data": e.section("data"),
        "dtype": e.models.dtype,
    }, run_mine),
    Stage("prune", 2, ("mine",), lambda e: {
        "threshold": _threshold(e), "baselines": e.mining.baselines,
        "report_taus": e.mining.report_taus,
        "pruning": _without_defaults(e.section("pruning"), {"mask": "gradient"}), "seed": e.seed,
    }, run_prune),
    # The paper's preliminary experiment (no training): off unless enabled or asked for.
    Stage("preliminary", 1, ("mine", "prune"), lambda e: {
        "preliminary": {k: v for k, v in e.section("preliminary").items() if k != "enabled"},
        "checker": e.pruning.checker, "dtype": e.models.dtype, "seed": e.seed,
    }, run_preliminary),
    # The teacher's outputs depend on the teacher, the dataset and the truncation only: λ, the
    # learning rate and the epochs reuse them. Top-k rows are taken at the loss temperature.
    # Keyed by the counterfactual set's content, not prune's key: a seed or baseline change
    # that leaves the counterfactuals alone does not run the teacher again.
    Stage("teach", 2, ("prune",), lambda e: {
        # How many processes compute the cache is not part of it (the stores are identical).
        "teacher_cache": {k: v for k, v in e.section("distill")["teacher_cache"].items()
                          if k != "launch"},
        "max_length": e.data.max_length,
        "dtype": e.models.dtype,
        "temperature": e.distill.loss.temperature
        if e.distill.teacher_cache.mode in ("topk", "auto") else None,
    }, run_teach, content=("prune", artifact("prune", "counterfactuals"))),
    Stage("distill", 2, ("prune", "teach"), lambda e: {
        "distill": _distill_key(e),
        "seed": e.seed, "max_length": e.data.max_length,
        # The per-epoch validation scores are artifacts too: what decides them is in the key.
        **({"validation": {"max_gen_toks": e.evaluate.max_gen_toks,
                           "batch_size": e.evaluate.batch_size}}
           if e.distill.validate_each_epoch else {}),
    }, run_distill_stage),
    Stage("evaluate", 1, ("distill",), lambda e: e.section("evaluate"), run_evaluate),
    # Attention mass on the mined tokens before and after distillation, and the Δ view.
    Stage("interpret", 1, ("mine", "prune", "distill"), lambda e: {
        "threshold": _threshold(e), "max_length": e.data.max_length,
        "dtype": e.models.dtype, "seed": e.seed, "interpret": e.section("interpret"),
    }, run_interpret),
)
STAGE_NAMES = tuple(s.name for s in STAGES)

# Evaluation of the models as given (teacher, student_before): nothing upstream, so its key is
# the models' identity and the evaluate settings, never a distillation's.
EVALUATE_ONLY = Stage("evaluate", 1, (), lambda e: e.section("evaluate"), run_evaluate)
TRAINING = ("mine", "prune", "teach", "distill", "interpret")


def planned_stages(exp: Experiment, until: str | None = None) -> tuple[Stage, ...]:
    """The stages a run computes, in order.

    * Up to `until` when given.
    * `preliminary` only when `preliminary.enabled` or when it is `until` itself.
    * Evaluate-only: when no `student_after` is evaluated and the run goes to evaluation, the
      training stages are skipped (a Pre-KD or teacher row trains nothing) and evaluate runs
      without upstream — except mine and prune, when the preliminary experiment needs them.
    """
    stages = STAGES[: STAGE_NAMES.index(until) + 1] if until else STAGES
    preliminary = exp.preliminary.enabled or until == "preliminary"
    stages = tuple(s for s in stages if s.name != "preliminary" or preliminary)
    evaluate_only = not exp.trains and any(s.name == "evaluate" for s in stages)
    if not evaluate_only:
        return stages
    needed = {"mine", "prune"} if preliminary else set()
    return tuple(EVALUATE_ONLY if s.name == "evaluate" else s for s in stages
                 if s.name not in TRAINING or s.name in needed)


def stage_key(stage: Stage, exp: Experiment, upstream: dict[str, str], refs: ModelRefs,
              paths: dict[str, Path] | None = None) -> str:
    if stage.content is None:
        inputs: Any = {name: upstream[name] for name in stage.upstream}
    else:  # the upstream file's content, and the models it was made with
        name, filename = stage.content
        inputs = {"content": file_hash((paths or {})[name] / filename),
                  "models": refs.identity}
    payload = {
        "stage": stage.name,
        "version": stage.version,
        "config": stage.config(exp),
        "upstream": inputs,
        "models": refs.identity if not stage.upstream else None,
    }
    return digest(payload)


def resolve_models(exp: Experiment, workspace: Path) -> tuple[ModelRefs, StageResult | None]:
    """Turn `synthetic:*` references into the testbed's directories (building it if needed)."""
    uses_testbed = "synthetic" in (exp.data.train, exp.models.teacher.split(":")[0],
                                   exp.models.student.split(":")[0])
    if not uses_testbed:
        refs = ModelRefs(exp.models.teacher, exp.models.student, Path(exp.data.train), None,
                         {"teacher": _identify(exp.models.teacher),
                          "student": _identify(exp.models.student),
                          "train": file_hash(Path(exp.data.train))})
        return refs, None
    from leafbench.synthetic import build_testbed, testbed_key

    start = time.perf_counter()
    root = workspace / "synthetic" / testbed_key(exp.synthetic)
    # One builder per workspace: the others wait for its directory and report it cached.
    built = compute_once(root, root.is_dir, lambda _: build_testbed(exp.synthetic, workspace),
                         label=f"testbed {root.name}")
    testbed = build_testbed(exp.synthetic, workspace)  # finished now: this only opens it
    role = {"synthetic:teacher": str(testbed.teacher_dir),
            "synthetic:student": str(testbed.student_dir)}
    teacher = role.get(exp.models.teacher, exp.models.teacher)
    student = role.get(exp.models.student, exp.models.student)
    train = testbed.train_jsonl if exp.data.train == "synthetic" else Path(exp.data.train)
    refs = ModelRefs(teacher, student, train, testbed.test_jsonl, {
        "testbed": testbed.key, "teacher": exp.models.teacher, "student": exp.models.student,
        "train": exp.data.train if exp.data.train == "synthetic" else file_hash(train),
    }, validation_jsonl=testbed.validation_jsonl)
    status = "computed" if built else "cached"
    result = StageResult("testbed", testbed.key, status, time.perf_counter() - start,
                         testbed.root, dict(getattr(testbed, "metrics", {}) or {}))
    return refs, result


def _identify(ref: str) -> str:
    """A local model: its path, config and weight files (name, size, mtime — hashing weights
    of 100+ GB would cost more than the stages it protects); a hub id as given."""
    config = Path(ref) / "config.json"
    if config.is_file():
        weights = sorted((w.name, w.stat().st_size, w.stat().st_mtime_ns)
                         for pattern in ("*.safetensors", "*.bin") for w in Path(ref).glob(pattern))
        return f"{Path(ref).resolve()}@{file_hash(config)}@{digest(weights)}"
    return ref


def run_experiment(
    exp: Experiment, force: tuple[str, ...] = (), tracker: StageLogger | None = None,
    until: str | None = None
) -> list[StageResult]:
    """Run every stage in order (or up to `until`), reusing finished artifacts; return one
    result per stage run."""
    stages = planned_stages(exp, until)
    workspace = Path(exp.workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    refs, testbed = resolve_models(exp, workspace)
    if any(s.name == "distill" for s in stages):
        check_vocabularies(refs.teacher, refs.student)  # before any expensive stage
    results = [testbed] if testbed else []
    if tracker is not None and testbed is not None:
        tracker.log_stage(testbed)
    keys: dict[str, str] = {}
    paths: dict[str, Path] = {}
    for stage in stages:
        key = stage_key(stage, exp, keys, refs, paths)
        keys[stage.name] = key
        final = workspace / "artifacts" / stage.name / key
        forced = stage.name in force or "all" in force
        result = _run_stage(stage, exp, refs, workspace, final, paths, forced)
        paths[stage.name] = final
        results.append(result)
        if tracker is not None:
            tracker.log_stage(result)
    return results


def _run_stage(stage: Stage, exp: Experiment, refs: ModelRefs, workspace: Path, final: Path,
               paths: dict[str, Path], forced: bool) -> StageResult:
    """Compute one stage under its lease, or reuse it: finished before we came, or finished by
    another process while we waited (both reported `cached`)."""
    start = time.perf_counter()
    computed: dict[str, float] = {}
    try:
        fresh = compute_once(
            final, (final / SUMMARY).is_file,
            lambda lease: computed.update(_compute(stage, exp, refs, workspace, final, paths,
                                                   forced, lease)),
            label=f"{stage.name} {final.name}", force=forced)
    except BaseException as err:  # the command line names the stage in its one-line report
        mark_failed_stage(err, FailedStage(stage.name, final.name, str(workspace)))
        raise
    metrics = computed if fresh else json.loads((final / SUMMARY).read_text())
    return StageResult(stage.name, final.name, "computed" if fresh else "cached",
                       time.perf_counter() - start, final, metrics)


def _compute(stage: Stage, exp: Experiment, refs: ModelRefs, workspace: Path, final: Path,
             paths: dict[str, Path], forced: bool, lease: Lease) -> dict[str, float]:
    """Run the stage into `<key>.partial/` (resuming what a killed holder left there) and
    rename it into place; only the lease holder gets here, so nobody else writes either."""
    partial = final.with_name(final.name + ".partial")
    if forced:
        shutil.rmtree(final, ignore_errors=True)
        shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True, exist_ok=True)
    inputs = {name: paths[name] for name in stage.upstream}
    ctx = StageContext(exp, partial, inputs, refs, workspace)
    with _pinned_threads(exp):
        metrics = stage.run(ctx)
    (partial / SUMMARY).write_text(json.dumps(metrics, indent=2, sort_keys=True))
    lease.ensure_held()  # a holder that lost its lease must not commit
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return metrics


def _pinned_threads(exp: Experiment) -> contextlib.AbstractContextManager[Any]:
    """CPU stages run with a fixed intra-op thread count (leafbench.determinism): the count
    decides how float32 sums are split, so without it the figures depend on the machine's
    cores. GPU stages are left alone."""
    from leafbench.determinism import fixed_cpu_threads
    from leafbench.models import resolve_device

    if resolve_device(exp.models.device) == "cpu":
        return fixed_cpu_threads()
    return contextlib.nullcontext()

