"""evalplus' own verdicts on a set of HumanEval+ programs, for comparison with leafbench's.

`evalplus_statuses` runs ``evalplus.evaluate("humaneval", samples=...)`` (evalplus 0.3.1, the
version leafbench mirrors) on the programs, with the dataset overridden by a local file —
inside `sandbox.run_python` (program: `evalplus_runner.py`), because the programs are
generated code and evalplus executes them in its own processes. evalplus computes its own
ground truth there, in a fresh cache. Only benchmarks and tests call this; scoring never does.

evalplus insists on at least one sample for every task of the data file; the caller supplies
them (the canonical solutions serve). Its statuses per sample are "pass", "fail" or "timeout"
(a check that never reported: a crash, ``os._exit``), and it runs the plus suite even when
base failed.
"""

from __future__ import annotations

import base64
import functools
import json
import secrets
import zlib
from collections.abc import Sequence
from pathlib import Path

from leafbench.evaluation.sandbox import Limits, run_python

RUNNER_PATH = Path(__file__).resolve().with_name("evalplus_runner.py")
EVALPLUS_LIMITS = Limits(
    wall_seconds=3600.0, cpu_seconds=3600, memory_bytes=16 << 30,
    file_size_bytes=1 << 30, max_processes=64, max_output_bytes=16 << 20,
)

Status = tuple[str | None, str | None]  # (base_status, plus_status)


@functools.cache
def runner_source() -> str:
    return RUNNER_PATH.read_text(encoding="utf-8")


def evalplus_statuses(
    data_file: str | Path,
    samples: Sequence[tuple[str, str]],
    *,
    workers: int = 2,
    limits: Limits = EVALPLUS_LIMITS,
) -> list[Status]:
    """(base_status, plus_status) as evalplus reports them, for each (task_id, solution), in
    order. Raises RuntimeError when evalplus did not finish (its log's tail says why)."""
    nonce = secrets.token_hex(16)
    job = {
        "nonce": nonce,
        "workers": workers,
        "data": base64.b64encode(Path(data_file).read_bytes()).decode("ascii"),
        "samples": [{"task_id": t, "solution": code} for t, code in samples],
    }
    stdin = base64.b64encode(zlib.compress(json.dumps(job).encode(), 1)).decode("ascii")
    outcome = run_python(runner_source(), stdin=stdin, limits=limits)
    report = next((json.loads(line[len(nonce) + 1:]) for line in outcome.stdout.splitlines()
                   if line.startswith(nonce + " ")), None)
    if report is None or "error" in report:
        why = report["error"] if report else f"{outcome.detail}\n{outcome.stderr[-2000:]}"
        raise RuntimeError(f"evalplus.evaluate did not finish: {why}")
    statuses: dict[str, list[list[str | None]]] = report["statuses"]
    seen: dict[str, int] = {}
    out: list[Status] = []
    for task_id, _ in samples:  # evalplus lists each task's samples in file order
        index = seen.get(task_id, 0)
        seen[task_id] = index + 1
        base, plus = statuses[task_id][index]
        out.append((base, plus))
    return out
