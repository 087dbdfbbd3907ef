"""Run code-task jobs in the sandbox and read their reports back.

A job is a dict for `sandbox_harness.py` (its ``mode`` picks the reference harness to mirror).
`run_job` sends the harness as the program and the job as its standard input, through
`leafbench.evaluation.sandbox.run_python` — the only way leafbench executes generated code —
and returns the harness's reports (JSON objects carrying this run's nonce) with the sandbox's
`Outcome`. A run that ends without a report (killed at the wall limit, crashed, the candidate
called ``os._exit``) simply has fewer reports; the task modules turn that into a verdict.

`run_jobs` runs many jobs on a small thread pool: each sandbox run is its own process tree, so
threads only wait; two workers keep a 2-core machine busy without starving everything else.
"""

from __future__ import annotations

import base64
import functools
import json
import pickle
import secrets
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from leafbench.evaluation.sandbox import Limits, Outcome, run_python

T = TypeVar("T")
HARNESS_PATH = Path(__file__).resolve().with_name("sandbox_harness.py")
DEFAULT_WORKERS = 2
# The reference harnesses cap memory at 4 GiB (evalplus) or not at all (LiveCodeBench, DeepSeek).
CODE_MEMORY_BYTES = 4 << 30


@dataclass(frozen=True)
class JobResult:
    """What one sandbox run of the harness produced."""

    reports: list[dict[str, Any]]
    outcome: Outcome
    errors: list[str] = field(default_factory=list)  # harness-level errors it reported

    def by(self, key: str) -> dict[Any, dict[str, Any]]:
        """Reports indexed by one of their fields (e.g. "suite")."""
        return {r[key]: r for r in self.reports if key in r}


@functools.cache
def harness_source() -> str:
    return HARNESS_PATH.read_text(encoding="utf-8")


def encode_job(job: dict[str, Any]) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(job, protocol=4), 1)).decode("ascii")


def run_job(job: dict[str, Any], limits: Limits) -> JobResult:
    """Run one harness job in the sandbox."""
    nonce = secrets.token_hex(16)
    outcome = run_python(harness_source(), stdin=encode_job({**job, "nonce": nonce}),
                         limits=limits)
    reports, errors = [], []
    prefix = nonce + " "
    for line in outcome.stdout.splitlines():
        if not line.startswith(prefix):
            continue
        try:
            report = json.loads(line[len(prefix):])
        except json.JSONDecodeError:
            continue
        if "error" in report:
            errors.append(str(report["error"]))
        else:
            reports.append(report)
    return JobResult(reports, outcome, errors)


def run_jobs(
    items: Sequence[T],
    make_job: Callable[[T], tuple[dict[str, Any], Limits]],
    *,
    workers: int = DEFAULT_WORKERS,
) -> list[JobResult]:
    """Run ``make_job(item)`` for every item on `workers` threads; results in item order.

    Jobs are built by the worker that runs them, so no more than `workers` of them (with their
    test data: LiveCodeBench's decoded private tests can be large) exist at a time."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")

    def one(item: T) -> JobResult:
        return run_job(*make_job(item))

    if workers == 1 or len(items) <= 1:
        return [one(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, items))


def unreported_status(outcome: Outcome) -> str:
    """The status of a suite the harness never reported on: the run hit the sandbox's wall or
    CPU limit ("timeout", as evalplus marks a killed check), or anything else ("error")."""
    return "timeout" if outcome.status == "timeout" else "error"


def describe_outcome(result: JobResult) -> str:
    """A short reason for a run that did not report: the harness error or the sandbox's detail."""
    if result.errors:
        return "; ".join(result.errors)
    tail = result.outcome.stderr.strip().rsplit("\n", 1)[-1][:200]
    return f"sandbox: {result.outcome.detail}" + (f" ({tail})" if tail else "")


def single_suite_verdict(result: JobResult) -> dict[str, Any]:
    """The verdict of a job whose harness reports one test suite (LeetCode, LiveCodeBench):
    the report's status, or the sandbox's when the harness never reported; the failing test's
    index, when the harness names one, leads the reason."""
    report = result.reports[0] if result.reports else None
    if report is None:
        status, reason = unreported_status(result.outcome), describe_outcome(result)
    else:
        status, reason = report["status"], report.get("reason", "")
        if report.get("failed_test") is not None:
            reason = f"test {report['failed_test']}: {reason}"
    return {"status": {"tests": status}, "correct": status == "pass", "reason": reason}
