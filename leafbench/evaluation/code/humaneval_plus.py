"""HumanEval+ (EvalPlus v0.1.10): evalplus' data and correctness rules, our sandbox.

We never call `evalplus.evaluate`: it reads HUMANEVAL_OVERRIDE_PATH once at import time, returns
nothing (it prints), reuses a stale ``*_eval_results.json`` beside the samples, may block on
``input()`` when asked to overwrite one, and leaves a non-daemon watchdog thread sleeping 20 s.
Instead:

Data. `load_problems` reads the file with evalplus' own `stream_jsonl` (gzip by suffix) and
checks it with evalplus' `completeness_check`. The file is an explicit path, else
``<data dir>/humaneval_plus/HumanEvalPlus-v0.1.10.jsonl.gz``, else HUMANEVAL_OVERRIDE_PATH as
set *when we are called*, else evalplus' release download into its cache (`make_cache`) —
evalplus' import-time copy of the variable is never consulted.

Ground truth. Like evalplus' `get_groundtruth`, expected outputs come from running
``prompt + canonical_solution`` on ``base_input`` and on ``plus_input`` (each input deep-copied,
each call timed), but in our sandbox, cached on disk per problem keyed by a digest of the
problem, the machine and the timing policy, and read back with the plain-data unpickler. The
calls are timed so that the limits do not depend on the load at the time (`reference_times`:
the child's CPU time, the fastest of repeated runs for heavy inputs — evalplus takes one
wall-clock reading); each entry records its conditions (machine, load, calibration, policy).

A sample's verdict — `evalplus.eval.untrusted_check` semantics, one sandbox run per sample:

* The solution is exec'd in fresh globals (``__name__`` is not ``"__main__"``, so a
  ``if __name__ == "__main__":`` block does not run), after the reliability guard evalplus 0.3.1
  installs (``exit``, ``quit``, ``open``, ``os.system``, ``os.kill``, ``subprocess.Popen``, ...
  are gone) and with stdout/stderr swallowed and stdin unreadable.
* Suite "base" runs the base inputs, suite "plus" the plus inputs, each with a fresh exec. Input
  i has the time limit ``max(1.0, 4.0 * t_i)`` (`DEFAULT_MIN_TIME_LIMIT`,
  `DEFAULT_GT_TIME_LIMIT_FACTOR`, t_i the canonical solution's CPU time, see above); the suite
  as a whole has ``min(60, sum of limits) + 1`` seconds (EVALPLUS_TIMEOUT_PER_TASK); the
  candidate is held to them in wall time, as in evalplus. The first failing input ends the
  suite (evalplus' default ``fast_check``).
* Output ``out`` vs expected ``exp``: ``out == exp``; for float outputs (``is_floats(exp)``, or
  the task's ``atol`` > 0: HumanEval/2, /4, /32) a mismatch is retried as
  ``type(out) == type(exp)``, equal length for lists/tuples, and
  ``numpy.allclose(out, exp, rtol=1e-7, atol=atol)`` with atol 1e-6 when the task gives 0 —
  and, as in evalplus, once a float output raised atol to 1e-6 it stays raised for the rest of
  the suite. HumanEval/32 (``find_zero``) instead asks ``abs(_poly(*inp, out)) <= atol``
  (evalplus' own ``_poly``, sent into the sandbox as source).
* Statuses: "pass"; "fail" (wrong output, an exception, an input over its time limit — evalplus
  also reports those as failures); "timeout" (the suite's budget ran out, or the sandbox killed
  the run); "error" (the run ended without a report: a crash, a signal, ``os._exit``).
* base passes iff its suite passes; plus (HumanEval+) passes iff base and the plus suite both
  pass, as evalplus' ``base_status == plus_status == PASS``. When base fails the plus suite is
  not run (its status is None): the plus verdict is already "fail".

Checked against evalplus itself on mutants of the canonical solutions (`mutants`,
``python -m leafbench.bench.code_mutants``). One deliberate difference: evalplus 0.3.1's
``find_zero`` oracle branch ``continue``s before recording the input as passed, so its
``untrusted_check`` reports FAIL for every program on HumanEval/32, the canonical solution
included; upstream evalplus fixed that later (the branch now records the pass first). We
follow the fixed behaviour, so 164/164 canonical solutions pass.

Prompts and extraction follow evalplus' codegen for chat models: the user message is evalplus'
instruction prefix plus the prompt in a fence, and `RESPONSE_PREFIX` (ending in an open
```python fence) is what evalplus pre-fills as the start of the assistant turn. A response is
reduced with evalplus' ``sanitize(response, entry_point)`` (longest syntactically valid run of
lines, then the imports and the definitions the entry point reaches: top-level statements never
run); a response that does not define the entry point but does as a completion of the prompt
(``prompt + response``, what evalplus tests for base models) is read that way. `sanitize` here
is evalplus' algorithm with a faster search for the code run (identical result, checked against
evalplus in the tests): evalplus' own is cubic in the response length.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leafbench.evaluation.code.execution import (
    CODE_MEMORY_BYTES,
    DEFAULT_WORKERS,
    JobResult,
    describe_outcome,
    run_jobs,
    unreported_status,
)
from leafbench.evaluation.code.plain_data import decode_blob, loads_plain
from leafbench.evaluation.code.reference_times import (
    DEFAULT_POLICY,
    TimingPolicy,
    conditions,
    load_average,
    machine_key,
)
from leafbench.evaluation.code.task import CodeTask
from leafbench.evaluation.sandbox import Limits

LOCAL_FILE = "humaneval_plus/HumanEvalPlus-v0.1.10.jsonl.gz"
OVERRIDE_ENV = "HUMANEVAL_OVERRIDE_PATH"
CACHE_ENV = "LEAFBENCH_CACHE_DIR"
TRUTH_VERSION = 2  # bump when the ground-truth computation changes (2: CPU time, min of runs)
TRUTH_BATCH = 8  # canonical solutions per sandbox run
SUITE_BUDGET_CAP = 60.0  # evalplus' EVALPLUS_TIMEOUT_PER_TASK default

# evalplus.codegen.run_codegen's instruction and response prefixes (chat models)
INSTRUCTION_PREFIX = (
    "Please provide a self-contained Python script that solves the following problem in a "
    "markdown code block:"
)
RESPONSE_PREFIX = (
    "Below is a Python script with a self-contained function that solves the problem and passes "
    "corresponding tests:\n```python\n"
)


# ------------------------------------------------------------------------------ the task
def task(*, cache_dir: str | Path | None = None) -> CodeTask:
    """HumanEval+ as `registry.TASKS["leaf_humaneval_plus"]` builds it (`cache_dir`: where the
    ground truth is cached; default ~/.cache/leafbench)."""
    truth = _GroundTruth(cache_dir)
    return CodeTask(
        name="leaf_humaneval_plus",
        suites=("base", "plus"),
        load=load_problems,
        problem_id=lambda doc: doc["task_id"],
        prompt=prompt,
        extract=extract_solution,
        check_job=truth.check_job,
        verdict=verdict,
        prepare=truth.prepare,
        response_prefix=RESPONSE_PREFIX,
        max_gen_toks=768,  # evalplus' max_new_tokens
    )


@dataclass
class _GroundTruth:
    """The expected outputs of the problems scored so far, computed once per task object."""

    cache_dir: str | Path | None = None
    truth: dict[str, dict[str, Any]] = field(default_factory=dict)

    def prepare(self, docs: Sequence[dict[str, Any]], workers: int) -> None:
        todo = [d for d in docs if d["task_id"] not in self.truth]
        if todo:
            self.truth.update(ground_truth(todo, cache_dir=self.cache_dir, workers=workers))

    def check_job(self, doc: dict[str, Any], code: str) -> tuple[dict[str, Any], Limits]:
        return check_job(doc, self.truth[doc["task_id"]], code)


# ------------------------------------------------------------------------------ data
def default_source() -> Path:
    """HUMANEVAL_OVERRIDE_PATH as set now, else evalplus' cached release file (downloaded by
    evalplus on first use)."""
    override = os.environ.get(OVERRIDE_ENV)
    if override:
        return Path(override).expanduser()
    from evalplus.data.humaneval import HUMANEVAL_PLUS_VERSION
    from evalplus.data.utils import get_dataset_metadata, make_cache

    url, path = get_dataset_metadata("HumanEvalPlus", HUMANEVAL_PLUS_VERSION, False, False)
    make_cache(url, path)
    return Path(path)


def load_problems(path: str | Path | None = None) -> list[dict[str, Any]]:
    """HumanEval+ problems in file order (doc id = position), read with evalplus' loaders."""
    from evalplus.data.utils import completeness_check, stream_jsonl

    path = Path(path) if path is not None else default_source()
    if not path.is_file():
        raise FileNotFoundError(f"HumanEval+ data file {path} does not exist")
    problems = list(stream_jsonl(str(path)))
    try:
        completeness_check("HumanEval+", {p["task_id"]: p for p in problems})
    except (AssertionError, KeyError) as exc:
        raise ValueError(f"{path} is not a complete HumanEval+ file: {exc}") from None
    for p in problems:
        if "entry_point" not in p:
            raise ValueError(f"{path}: {p['task_id']} has no entry_point")
    return problems


# ------------------------------------------------------------------------------ prompt, extraction
def prompt(doc: dict[str, Any]) -> str:
    """evalplus' user message for chat models (the assistant turn starts with RESPONSE_PREFIX)."""
    return f"{INSTRUCTION_PREFIX}\n```\n{doc['prompt'].strip()}\n```\n"


def extract_solution(response: str, doc: dict[str, Any]) -> str | None:
    """The program evalplus would test for `response` (None: nothing left to run).

    evalplus sanitizes a chat model's response as it is and a base model's as a continuation of
    the prompt; we take the first reading that defines the entry point, else the plain one."""
    entry = doc["entry_point"]
    code = sanitize(response, entry)
    if not defines(code, entry):
        completion = sanitize(doc["prompt"].strip() + "\n" + response, entry)
        if defines(completion, entry):
            code = completion
    return code if code.strip() else None


def defines(code: str, name: str) -> bool:
    """Whether `code` parses and binds `name` at top level (def, class or assignment)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == name:
                return True
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
    return False


def _parses(code: str) -> bool:
    """evalplus.syncheck.syntax_check, also treating a null byte / too deep nesting as invalid."""
    try:
        ast.parse(code)
    except (SyntaxError, MemoryError, ValueError, RecursionError):
        return False
    return True


def code_extract(text: str) -> str:
    """evalplus.sanitize.code_extract: the first run of >= 2 lines that parses and has the most
    non-blank lines, found without evalplus' cubic cost. Its double loop keeps, per start line,
    the run with the most non-blank lines that parses (the shortest such), if it beats the best
    so far; we find the same run by trying end lines from the longest down, parse only runs
    that could beat the best, and skip runs holding a markdown fence line but no triple quote
    or backslash continuation (a backtick outside a string literal is a syntax error)."""
    lines = text.split("\n")
    n = len(lines)
    nonblank, fences, escapes = [0], [0], [0]
    for line in lines:
        nonblank.append(nonblank[-1] + (1 if line.strip() else 0))
        fences.append(fences[-1] + line.lstrip().startswith("```"))
        escapes.append(escapes[-1] + ('"""' in line or "'''" in line or line.endswith("\\")))

    def count(i: int, j: int) -> int:
        return nonblank[j + 1] - nonblank[i]

    def valid(i: int, j: int) -> bool:
        if fences[j + 1] > fences[i] and escapes[j + 1] == escapes[i]:
            return False
        return _parses("\n".join(lines[i : j + 1]))

    best, pair = 0, (0, 0)
    for i in range(n):
        if nonblank[n] - nonblank[i] <= best:
            break  # no run starting here or later can have more non-blank lines
        most = next(
            (count(i, j) for j in range(n - 1, i, -1) if count(i, j) > best and valid(i, j)), None
        )
        if most is not None:
            j = next(j for j in range(i + 1, n) if count(i, j) == most and valid(i, j))
            best, pair = most, (i, j)
    return "\n".join(lines[pair[0] : pair[1] + 1])


def sanitize(code: str, entrypoint: str | None = None) -> str:
    """evalplus.sanitize.sanitize (0.3.1) with the faster `code_extract`: keep the imports, and
    the classes, functions with a return and assignments the entry point depends on."""
    from evalplus.sanitize import (
        ASSIGNMENT_TYPE,
        CLASS_TYPE,
        EXPRESSION_TYPE,
        FUNCTION_TYPE,
        IMPORT_TYPE,
        get_definition_name,
        get_deps,
        get_function_dependency,
        has_return_statement,
    )
    from tree_sitter import Language, Parser
    from tree_sitter_python import language

    extracted = code_extract(code)
    code_bytes = bytes(extracted, "utf8")
    root = Parser(Language(language())).parse(code_bytes).root_node
    seen: set[str] = set()
    imports, definitions = [], []
    for child in root.children:
        if child.type in IMPORT_TYPE:
            imports.append(child)
        elif child.type == CLASS_TYPE:
            name = get_definition_name(child)
            if name not in seen:
                definitions.append((name, child))
                seen.add(name)
        elif child.type == FUNCTION_TYPE:
            name = get_definition_name(child)
            if name not in seen and has_return_statement(child):
                definitions.append((name, child))
                seen.add(name)
        elif child.type == EXPRESSION_TYPE and child.children[0].type == ASSIGNMENT_TYPE:
            node = child.children[0]
            name = get_definition_name(node)
            if name not in seen:
                definitions.append((name, node))
                seen.add(name)
    reachable = get_function_dependency(entrypoint, get_deps(definitions)) if entrypoint else None
    out = b""
    for node in imports:
        out += code_bytes[node.start_byte : node.end_byte] + b"\n"
    for name, node in definitions:
        if reachable is None or name in reachable:
            out += code_bytes[node.start_byte : node.end_byte] + b"\n"
    sanitized = out[:-1].decode("utf8").strip()
    return sanitized if sanitized else code_extract(code)


# ------------------------------------------------------------------------------ ground truth
def default_cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "leafbench"
    )
    return Path(root)


def problem_digest(problem: dict[str, Any]) -> str:
    fields = ("task_id", "prompt", "canonical_solution", "entry_point", "base_input", "plus_input")
    blob = json.dumps([problem[f] for f in fields], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def truth_path(
    problem: dict[str, Any], cache_dir: Path, policy: TimingPolicy = DEFAULT_POLICY
) -> Path:
    """Where `problem`'s ground truth is cached: per truth version, interpreter, machine (times
    from another CPU are never reused) and timing policy."""
    version = f"truth-v{TRUTH_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}"
    timing = f"{machine_key()}-{policy.key()}"
    name = f"{problem['task_id'].replace('/', '_')}-{problem_digest(problem)}.pkl"
    return cache_dir / "humaneval_plus" / version / timing / name


def ground_truth(
    problems: Sequence[dict[str, Any]],
    *,
    cache_dir: str | Path | None = None,
    workers: int = DEFAULT_WORKERS,
    batch: int = TRUTH_BATCH,
    policy: TimingPolicy = DEFAULT_POLICY,
) -> dict[str, dict[str, Any]]:
    """{task_id: {"base", "base_time", "plus", "plus_time", "conditions"}} for `problems`: from
    the cache, or by running the canonical solutions in the sandbox (then cached). The canonical
    solutions are trusted, so `batch` problems share one sandbox run (each suite still gets a
    fresh exec). Times are taken as `policy` says; "conditions" records how and where."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    truth: dict[str, dict[str, Any]] = {}
    missing = []
    for p in problems:
        path = truth_path(p, cache, policy)
        if path.is_file():
            truth[p["task_id"]] = loads_plain(path.read_bytes())
        else:
            missing.append(p)
    load_before = load_average()
    groups = [missing[i : i + batch] for i in range(0, len(missing), batch)]
    results = run_jobs(
        groups, lambda group: (_truth_job(group, policy), _TRUTH_LIMITS), workers=workers
    )
    for group, result in zip(groups, results, strict=True):
        calibration = [r["calibration"] for r in result.reports if "calibration" in r]
        recorded = conditions(policy, load_before=load_before, calibration=calibration)
        for p in group:
            entry = {**_read_truth(p, result), "conditions": recorded}
            _write_atomic(truth_path(p, cache, policy), entry)
            truth[p["task_id"]] = entry
    return truth


_TRUTH_LIMITS = Limits(
    wall_seconds=600.0, cpu_seconds=600, memory_bytes=CODE_MEMORY_BYTES,
    max_output_bytes=1 << 30,
)


def _truth_job(problems: Sequence[dict[str, Any]], policy: TimingPolicy) -> dict[str, Any]:
    return {
        "mode": "evalplus_truth",
        "timing": policy.job_fields(),
        "problems": [
            {
                "task_id": p["task_id"],
                "code": p["prompt"] + p["canonical_solution"],
                "entry_point": p["entry_point"],
                "suites": [
                    {"name": "base", "inputs": p["base_input"]},
                    {"name": "plus", "inputs": p["plus_input"]},
                ],
            }
            for p in problems
        ],
    }


def _read_truth(problem: dict[str, Any], result: JobResult) -> dict[str, list]:
    suites = {r["suite"]: r for r in result.reports if r.get("task_id") == problem["task_id"]}
    if set(suites) != {"base", "plus"}:
        raise RuntimeError(
            f"{problem['task_id']}: the canonical solution did not produce expected outputs: "
            + describe_outcome(result)
        )
    entry = {}
    for name in ("base", "plus"):
        outputs = decode_blob(suites[name]["outputs"])
        if len(outputs) != len(problem[f"{name}_input"]):
            raise RuntimeError(f"{problem['task_id']}: {name} outputs do not match its inputs")
        entry[name] = outputs
        entry[f"{name}_time"] = [float(t) for t in suites[name]["times"]]
    return entry


def _write_atomic(path: Path, entry: dict[str, Any]) -> None:
    import pickle

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".partial")
    with os.fdopen(fd, "wb") as fh:
        pickle.dump(entry, fh, protocol=4)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ checking
def time_limits(ref_times: Sequence[float]) -> list[float]:
    """evalplus' per-input limits: max(min_time_limit, factor * reference time)."""
    from evalplus.config import DEFAULT_GT_TIME_LIMIT_FACTOR, DEFAULT_MIN_TIME_LIMIT

    return [max(DEFAULT_MIN_TIME_LIMIT, DEFAULT_GT_TIME_LIMIT_FACTOR * t) for t in ref_times]


def suite_budget(limits: Sequence[float]) -> float:
    cap = float(os.environ.get("EVALPLUS_TIMEOUT_PER_TASK", SUITE_BUDGET_CAP))
    return min(cap, sum(limits)) + 1.0


def _is_floats(x: Any) -> bool:
    if isinstance(x, float):
        return True
    return isinstance(x, (list, tuple)) and bool(x) and all(isinstance(i, float) for i in x)


def check_job(problem: dict[str, Any], truth: dict[str, Any], code: str) -> tuple[dict, Limits]:
    """The sandbox job testing `code` on `problem` and the limits to run it under."""
    suites, total = [], 0.0
    for name in ("base", "plus"):
        limits = time_limits(truth[f"{name}_time"])
        budget = suite_budget(limits)
        total += budget
        suites.append({
            "name": name,
            "inputs": problem[f"{name}_input"],
            "expected": truth[name],
            "time_limits": limits,
            "budget": budget,
        })
    floats = problem["atol"] != 0 or any(_is_floats(e) for e in truth["base"] + truth["plus"])
    job = {
        "mode": "evalplus",
        "code": code,
        "entry_point": problem["entry_point"],
        "atol": problem["atol"],
        "suites": suites,
        "oracle": _poly_source() if problem["entry_point"] == "find_zero" else None,
        "memory_bytes": CODE_MEMORY_BYTES,
        # evalplus' worker has numpy loaded; our guard (like its) would stop a later import
        "preimport": ["numpy"] if floats or "numpy" in code else [],
    }
    wall = total + 10.0  # suites' budgets plus interpreter start, unpickling, numpy
    return job, Limits(wall_seconds=wall, cpu_seconds=math.ceil(wall),
                       memory_bytes=CODE_MEMORY_BYTES)


def _poly_source() -> str:
    import inspect

    from evalplus.eval._special_oracle import _poly

    return "import math\n" + inspect.getsource(_poly)


def verdict(result: JobResult) -> dict[str, Any]:
    """{"status": {"base": s, "plus": s}, "correct_base", "correct", "reason"} for one run."""
    suites = result.by("suite")
    status: dict[str, str | None] = {}
    reason = ""
    for name in ("base", "plus"):
        report = suites.get(name)
        if report is not None:
            status[name] = report["status"]
            reason = reason or report.get("reason", "")
        elif name == "plus" and status.get("base") not in (None, "pass"):
            status[name] = None  # not run: base already failed
        else:
            status[name] = unreported_status(result.outcome)
            reason = reason or describe_outcome(result)
    correct_base = status["base"] == "pass"
    return {
        "status": status,
        "correct_base": correct_base,
        "correct": correct_base and status["plus"] == "pass",
        "reason": reason,
    }
