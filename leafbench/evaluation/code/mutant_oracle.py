"""The verdict each mutant (`mutants`) must get, from how it was built and what it computes —
never from leafbench's or evalplus' checker.

A program passes HumanEval+ when, on every input of a suite, it returns the canonical output
in time. So we run each program in the sandbox on the suites' inputs (harness mode
``outputs``: the program's outputs are compared with the canonical ones by plain Python
equality, or for HumanEval/32 by being a root of the polynomial as the task asks; each call's
CPU time is recorded; a CPU-time cap stops a program that never ends) and read the verdict off:

* a suite passes if every output is equal and every call took at most `TIME_FRACTION` of its
  limit or at most `REFERENCE_SLACK` × the canonical solution's time (the limit is 4 × that
  time wherever it is above the 1 s floor, so the canonical solution itself sits at a quarter
  of it), and the suite as a whole at most that share of its budget;
* a suite fails if some output is clearly different, a call raises, or a call runs past
  twice its limit in CPU time — whatever a checker does first, it cannot pass;
* everything in between is *ambiguous* and left out, with the reason: an output that differs
  from the canonical one only by float rounding (a tolerance rule decides it), one that is not
  plain data, a call slow enough that the load at check time could decide, a run that ended
  without telling (other than a mutant built to call ``os._exit``).

HumanEval+ passes (``plus``) when base and the plus suite both pass. The behaviour kinds also
say what they were built to do (`INTENDED`); a mutant whose observed verdict differs (say, a
trap input holding a NaN, which never compares equal) did not turn out as built and is left
out too. ``sleeps`` is judged by construction alone: it sleeps 2.5 s on an input whose limit
is 1 s, which no CPU-time observation shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from leafbench.evaluation.code.execution import CODE_MEMORY_BYTES, DEFAULT_WORKERS, run_jobs
from leafbench.evaluation.code.humaneval_plus import suite_budget, time_limits
from leafbench.evaluation.code.mutants import Mutant
from leafbench.evaluation.code.plain_data import decode_blob
from leafbench.evaluation.sandbox import Limits

TIME_FRACTION = 0.25  # a call under a quarter of its limit cannot be made to time out by load
REFERENCE_SLACK = 1.5  # ... nor one as fast as the canonical solution, whose limit is 4 × it
CAP_FACTOR = 2.0  # CPU time past twice the limit: over it on any machine state
FLOAT_CLOSE = 1e-3  # relative and absolute: closer than this, a tolerance rule decides


@dataclass(frozen=True)
class Expected:
    """The verdict a correct checker gives: base suite passed, HumanEval+ (base and plus)."""

    base: bool
    plus: bool
    why: str


@dataclass(frozen=True)
class Ambiguous:
    """No verdict follows from construction and outputs; the mutant is left out."""

    why: str


Expectation = Expected | Ambiguous

# What the behaviour kinds were built to do: (base passes, HumanEval+ passes).
INTENDED: dict[str, tuple[bool, bool]] = {
    "canonical": (True, True),
    "prints": (True, True),
    "slow": (True, True),
    "hangs": (False, False),
    "sleeps": (False, False),
    "raises": (False, False),
    "raises_on_plus": (True, False),
    "exits": (False, False),
    "exits_on_plus": (True, False),
}
# Kinds whose observation allows more time: "slow" computes everything twice, which is within
# half of every limit by construction (limits are at least 4 × the reference time).
TIME_FRACTIONS: dict[str, float] = {"slow": 0.5}
# Kinds built to end the process: a suite that reports nothing after a clean exit failed.
EXITING = frozenset({"exits", "exits_on_plus"})
# Kinds judged by construction alone, without running them.
BY_CONSTRUCTION: dict[str, Callable[[Mutant], Expectation]] = {
    "sleeps": lambda m: Expected(False, False, "sleeps 2.5 s on an input limited to 1 s"),
}


def expected_verdicts(
    programs: Sequence[tuple[Mutant, str]],
    problems: Mapping[str, dict[str, Any]],
    truth: Mapping[str, dict[str, Any]],
    *,
    workers: int = DEFAULT_WORKERS,
) -> list[Expectation]:
    """The expectation of each (mutant, program tested) pair, in order. `problems` and `truth`
    (`humaneval_plus.ground_truth`) are keyed by task id."""
    run = [i for i, (m, _) in enumerate(programs) if m.kind not in BY_CONSTRUCTION]

    def job(i: int) -> tuple[dict[str, Any], Limits]:
        mutant, code = programs[i]
        return oracle_job(problems[mutant.task_id], truth[mutant.task_id], code)

    results = dict(zip(run, run_jobs(run, job, workers=workers), strict=True))
    out: list[Expectation] = []
    for i, (mutant, _) in enumerate(programs):
        if mutant.kind in BY_CONSTRUCTION:
            out.append(BY_CONSTRUCTION[mutant.kind](mutant))
            continue
        result = results[i]
        observed = judge(mutant, truth[mutant.task_id], result.by("suite"),
                         clean_exit=result.outcome.returncode == 0,
                         detail=result.outcome.detail)
        out.append(_as_built(mutant, observed))
    return out


def oracle_job(
    problem: dict[str, Any], truth: dict[str, Any], code: str
) -> tuple[dict[str, Any], Limits]:
    """The sandbox job that records what `code` does on `problem`'s suites."""
    suites, wall = [], 20.0
    for name in ("base", "plus"):
        limits = time_limits(truth[f"{name}_time"])
        total_cap = CAP_FACTOR * suite_budget(limits)
        wall += total_cap + CAP_FACTOR * max(limits)
        suites.append({
            "name": name,
            "inputs": problem[f"{name}_input"],
            "expected": truth[name],
            "caps": [CAP_FACTOR * limit for limit in limits],
            "total_cap": total_cap,
        })
    job = {
        "mode": "outputs",
        "code": code,
        "entry_point": problem["entry_point"],
        "accept": "root" if problem["entry_point"] == "find_zero" else "equal",
        "atol": problem["atol"],
        "suites": suites,
        "memory_bytes": CODE_MEMORY_BYTES,
        "preimport": ["numpy"] if "numpy" in code else [],
    }
    return job, Limits(wall_seconds=wall, cpu_seconds=math.ceil(wall),
                       memory_bytes=CODE_MEMORY_BYTES)


def judge(
    mutant: Mutant,
    truth: dict[str, Any],
    reports: Mapping[str, dict[str, Any]],
    *,
    clean_exit: bool,
    detail: str = "",
) -> Expectation:
    """The verdict the observations (`reports`, by suite) imply; see the module docstring."""
    fraction = TIME_FRACTIONS.get(mutant.kind, TIME_FRACTION)
    passed: dict[str, bool] = {}
    for name in ("base", "plus"):
        report = reports.get(name)
        if report is None:
            if mutant.kind in EXITING and clean_exit:
                passed[name] = False
                why = f"{name}: the program ended the process"
            else:
                return Ambiguous(f"{name}: the run ended without a report ({detail[:120]})")
        else:
            state, why = _judge_suite(report, truth, name, fraction)
            if state == "ambiguous":
                return Ambiguous(f"{name}: {why}")
            passed[name] = state == "pass"
        if not passed[name]:
            return Expected(name == "plus", False, why)
    return Expected(True, True, "equal outputs in time on every input")


def _judge_suite(
    report: dict[str, Any], truth: dict[str, Any], name: str, fraction: float
) -> tuple[str, str]:
    stop = report["stop"]
    if stop is not None and stop["what"] in ("raised", "cpu_cap"):
        return "fail", f"input {stop['index']}: {stop['what']}: {stop['reason']}"
    if stop is not None:  # "differs"
        index = stop["index"]
        if stop.get("output") is None:
            return "ambiguous", f"input {index}: the output does not pickle"
        try:
            output = decode_blob(stop["output"])
        except (ValueError, TypeError) as exc:  # UnsafePickleError is a ValueError
            return "ambiguous", f"input {index}: the output is not plain data ({exc})"
        if _within_rounding(output, truth[name][index]):
            return "ambiguous", f"input {index}: differs only by float rounding"
        return "fail", f"input {index}: a different output"
    references = truth[f"{name}_time"]
    limits = time_limits(references)
    for i, (seconds, limit, reference) in enumerate(zip(report["times"], limits, references,
                                                        strict=False)):
        if seconds > max(fraction * limit, REFERENCE_SLACK * reference):
            return "ambiguous", f"input {i} took {seconds:.3g}s CPU of its {limit:.3g}s limit"
    budget = suite_budget(limits)
    if sum(report["times"]) > fraction * budget:
        return "ambiguous", f"the suite took {sum(report['times']):.3g}s of its {budget:.3g}s"
    return "pass", ""


def _within_rounding(out: Any, exp: Any) -> bool:
    """Whether `out` differs from `exp` only by float rounding or a NaN — so that a tolerance
    rule, not the program's logic, decides: numbers (one of them a float) within FLOAT_CLOSE,
    or containers of one type and length whose unequal items all are."""
    if isinstance(out, bool) or isinstance(exp, bool):
        return False
    if isinstance(out, (int, float)) and isinstance(exp, (int, float)):
        if isinstance(out, int) and isinstance(exp, int):
            return False
        if math.isnan(out) or math.isnan(exp):
            return True
        return math.isclose(out, exp, rel_tol=FLOAT_CLOSE, abs_tol=FLOAT_CLOSE)
    if type(out) is type(exp) and isinstance(out, (list, tuple)) and len(out) == len(exp):
        return all(a == b or _within_rounding(a, b) for a, b in zip(out, exp, strict=True))
    return False


def _as_built(mutant: Mutant, observed: Expectation) -> Expectation:
    """`observed`, unless the kind was built to do something else (then it is left out)."""
    intended = INTENDED.get(mutant.kind)
    if intended is None or isinstance(observed, Ambiguous):
        return observed
    if (observed.base, observed.plus) != intended:
        return Ambiguous(f"built to give {intended}, observed {(observed.base, observed.plus)}: "
                         f"{observed.why}")
    return observed
