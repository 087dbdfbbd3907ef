"""HumanEval+ verdicts on mutants of the canonical solutions: leafbench must give the verdict
that follows from how each mutant was built and what it computes (`mutant_oracle`).

A fixed sample (a few tasks, every kind), scored through the whole pipeline in the sandbox; the
comparison with evalplus on every mutant is the benchmark ``python -m
leafbench.bench.code_mutants``. Uses ../shared/data when present, else a fixture of our own
wording with the same task ids and entry points.
"""

from __future__ import annotations

import ast
import gzip
import json
import time

import pytest
from conftest import SHARED_DATA

from leafbench.evaluation.code import code_task, score_responses
from leafbench.evaluation.code import humaneval_plus as he
from leafbench.evaluation.code import mutants as mu
from leafbench.evaluation.code.mutant_oracle import (
    Ambiguous,
    Expected,
    _within_rounding,
    expected_verdicts,
    judge,
)

SHARED_HE = SHARED_DATA / he.LOCAL_FILE
SAMPLE_TASKS = ("HumanEval/0", "HumanEval/2", "HumanEval/32", "HumanEval/55")
BEHAVIOUR_TASKS = ("HumanEval/0", "HumanEval/55")  # one loop, one recursive solution

FIXTURE = [
    {
        "task_id": "HumanEval/0",
        "entry_point": "has_close_elements",
        "prompt": "from typing import List\n\n\ndef has_close_elements(numbers: List[float], "
                  "threshold: float) -> bool:\n    \"\"\"Whether two numbers lie closer than the"
                  " threshold.\"\"\"\n",
        "canonical_solution": "    ordered = sorted(numbers)\n"
                              "    for i in range(len(ordered) - 1):\n"
                              "        if ordered[i + 1] - ordered[i] < threshold:\n"
                              "            return True\n    return False\n",
        "base_input": [[[1.0, 2.0, 3.0], 0.5], [[1.0, 2.8, 3.0, 4.0], 0.3]],
        "plus_input": [[[], 1.0], [[5.0, 5.0], 0.1], [[1.0, 9.0, 4.5], 4.0],
                       [[0.5, 0.75, 3.0], 0.3]],
        "atol": 0,
    },
    {
        "task_id": "HumanEval/2",
        "entry_point": "truncate_number",
        "prompt": "def truncate_number(number: float) -> float:\n    \"\"\"The part after the "
                  "decimal point.\"\"\"\n",
        "canonical_solution": "    return number % 1.0\n",
        "base_input": [[3.5], [1.25]],
        "plus_input": [[7.125], [1000000.75], [0.001]],
        "atol": 1e-06,
    },
    {
        "task_id": "HumanEval/32",
        "entry_point": "find_zero",
        "prompt": "import math\n\n\ndef poly(xs: list, x: float):\n    \"\"\"xs as polynomial "
                  "coefficients, at x.\"\"\"\n    return sum([coeff * math.pow(x, i) for i, coeff"
                  " in enumerate(xs)])\n\n\ndef find_zero(xs: list):\n    \"\"\"One root of "
                  "the polynomial.\"\"\"\n",
        "canonical_solution": "    lo, hi = -1.0, 1.0\n    while poly(xs, lo) * poly(xs, hi) > 0:\n"
                              "        lo, hi = lo * 2.0, hi * 2.0\n    while hi - lo > 1e-10:\n"
                              "        mid = (lo + hi) / 2.0\n"
                              "        if poly(xs, mid) * poly(xs, lo) > 0:\n"
                              "            lo = mid\n        else:\n            hi = mid\n"
                              "    return lo\n",
        "base_input": [[[1, 2]], [[-6, 11, -6, 1]]],
        "plus_input": [[[3, -4]], [[-10, 1, 0, 1]], [[2, 1, 0, 5]]],
        "atol": 0.0001,
    },
    {
        "task_id": "HumanEval/55",
        "entry_point": "fib",
        "prompt": "def fib(n: int):\n    \"\"\"The n-th Fibonacci number.\"\"\"\n",
        "canonical_solution": "    if n == 0:\n        return 0\n    if n <= 2:\n        return 1\n"
                              "    return fib(n - 1) + fib(n - 2)\n",
        "base_input": [[10], [1], [8]],
        "plus_input": [[11], [12], [3], [0]],
        "atol": 0,
    },
]


@pytest.fixture(scope="module")
def problems(tmp_path_factory) -> dict[str, dict]:
    if SHARED_HE.is_file():
        path = SHARED_HE
    else:
        path = tmp_path_factory.mktemp("he") / "HumanEvalPlus.jsonl.gz"
        with gzip.open(path, "wt") as fh:
            for problem in FIXTURE:
                fh.write(json.dumps({"contract": "", "test": "", **problem}) + "\n")
    return {p["task_id"]: p for p in he.load_problems(path)}


def _sample(problems: dict[str, dict]) -> list[mu.Mutant]:
    out = []
    for task_id in SAMPLE_TASKS:
        kinds = ("canonical", *mu.AST_KINDS)
        if task_id in BEHAVIOUR_TASKS:
            kinds += tuple(mu.BEHAVIOURS)
        out.extend(mu.mutants_of(problems[task_id], kinds))
    return out


def _fenced(code: str) -> str:
    return f"```python\n{code}```\n"


# ---------------------------------------------------------------------------- construction
def test_ast_mutants_change_exactly_the_chosen_site(problems):
    for problem in problems.values():
        original = ast.dump(ast.parse(mu.program(problem)))
        for kind in mu.AST_KINDS:
            n = mu.count_sites(problem, kind)
            dumps = {ast.dump(ast.parse(mu.ast_mutant(problem, kind, s).code)) for s in range(n)}
            assert original not in dumps, (problem["task_id"], kind)
            assert len(dumps) == n, (problem["task_id"], kind)  # every site gives another program
            with pytest.raises(ValueError, match="sites"):
                mu.ast_mutant(problem, kind, n)


def test_ast_kinds_rewrite_what_they_say(problems):
    problem = problems["HumanEval/0"]
    flipped = mu.ast_mutant(problem, "flip_comparison", 0).code
    assert ">=" in flipped or "!=" in flipped or "not in" in flipped
    assert mu.count_sites(problem, "off_by_one") % 2 == 0  # plus one and minus one per literal
    first = mu.ast_mutant(problem, "return_none", 0).code
    function = next(n for n in ast.parse(first).body
                    if isinstance(n, ast.FunctionDef) and n.name == "has_close_elements")
    assert ast.unparse(function.body[0]) == "return None"


def test_suites_are_reproducible_and_seeded(problems):
    listed = list(problems.values())
    first = mu.suite(listed, behaviour_every=2, seed=3)
    assert first == mu.suite(listed, behaviour_every=2, seed=3)
    assert {m.kind for m in first} == set(mu.KINDS)
    assert len({m.name for m in first}) == len(first)


def test_behaviour_mutants_survive_extraction_and_keep_recursion_direct():
    problem = FIXTURE[3]  # our fib calls itself: the wrapper must not be re-entered
    for kind in mu.BEHAVIOURS:
        mutant = mu.behaviour_mutant(problem, kind)
        assert mutant is not None, kind
        extracted = he.extract_solution(_fenced(mutant.code), problem)
        assert extracted is not None and mu.REFERENCE_NAME in extracted
        assert ast.dump(ast.parse(extracted)) == ast.dump(ast.parse(mutant.code)), kind
    reference = next(n for n in ast.parse(mu.behaviour_mutant(problem, "slow").code).body
                     if isinstance(n, ast.FunctionDef) and n.name == mu.REFERENCE_NAME)
    called = {n.func.id for n in ast.walk(reference)
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert "fib" not in called and mu.REFERENCE_NAME in called


# ---------------------------------------------------------------------------- expectations
def test_rounding_differences_are_left_to_the_tolerance_rule():
    assert _within_rounding(0.30000000000000004, 0.3)
    assert _within_rounding([1.0, 2.0000001], [1.0, 2.0])
    assert _within_rounding(float("nan"), 1.0)
    assert not _within_rounding(3, 4)  # integers: a different answer
    assert not _within_rounding(2.5, 2.0)
    assert not _within_rounding((1.0, 2.0), [1.0, 2.0])  # another type is another answer
    assert not _within_rounding([1.0], [1.0, 2.0])
    assert not _within_rounding(True, 1.0)


def test_judge_reads_verdicts_off_observations():
    truth = {"base": [1, 2], "base_time": [0.001, 0.001], "plus": [3], "plus_time": [0.4]}
    mutant = mu.Mutant("HumanEval/0", "off_by_one", 0, "")
    ok = {"stop": None, "times": [0.0, 0.0]}
    assert judge(mutant, truth, {"base": ok, "plus": {"stop": None, "times": [0.01]}},
                 clean_exit=True) == Expected(True, True, "equal outputs in time on every input")
    raised = {"stop": {"index": 0, "what": "raised", "reason": "E"}, "times": [0.0]}
    assert judge(mutant, truth, {"base": raised}, clean_exit=True).plus is False
    slow_plus = {"stop": None, "times": [0.9]}  # limit 1.6 s: load could decide
    assert isinstance(judge(mutant, truth, {"base": ok, "plus": slow_plus}, clean_exit=True),
                      Ambiguous)
    exits = mu.Mutant("HumanEval/0", "exits_on_plus", 0, "")
    assert judge(exits, truth, {"base": ok}, clean_exit=True).base is True
    assert isinstance(judge(mutant, truth, {"base": ok}, clean_exit=False), Ambiguous)


# ---------------------------------------------------------------------------- the sample
@pytest.fixture(scope="module")
def scored_sample(problems, tmp_path_factory):
    """The sample's expected verdicts and leafbench's, one ground truth for both."""
    start = time.monotonic()
    cache = tmp_path_factory.mktemp("he_cache")
    docs = [problems[t] for t in SAMPLE_TASKS]
    sample = _sample(problems)
    programs = [(m, he.extract_solution(_fenced(m.code), problems[m.task_id]) or "")
                for m in sample]
    truth = he.ground_truth(docs, cache_dir=cache)
    expected = expected_verdicts(programs, problems, truth)
    responses: dict[int, list[str]] = {i: [] for i in range(len(docs))}
    for m in sample:
        responses[SAMPLE_TASKS.index(m.task_id)].append(_fenced(m.code))
    task = code_task("leaf_humaneval_plus", cache_dir=cache)
    _, rows = score_responses(task, responses, docs=docs)
    print(f"\nmutant sample: {len(sample)} programs in {time.monotonic() - start:.1f}s")
    return sample, expected, rows


def test_leafbench_gives_the_expected_verdict_on_every_sampled_mutant(scored_sample):
    sample, expected, rows = scored_sample
    assert len(rows) == len(sample)
    decided = [(m, e, r) for m, e, r in zip(sample, expected, rows, strict=True)
               if isinstance(e, Expected)]
    ambiguous = [(m.name, e.why) for m, e in zip(sample, expected, strict=True)
                 if isinstance(e, Ambiguous)]
    assert len(ambiguous) <= len(sample) // 10, ambiguous
    wrong = [(m.name, (e.base, e.plus), (r["correct_base"], r["correct"]), r["reason"])
             for m, e, r in decided if (e.base, e.plus) != (r["correct_base"], r["correct"])]
    assert wrong == []
    kinds = {m.kind for m, _, _ in decided}
    assert kinds == set(mu.KINDS), set(mu.KINDS) - kinds
    assert {(e.base, e.plus) for _, e, _ in decided} == {(True, True), (True, False),
                                                         (False, False)}


def test_behaviour_kinds_get_the_statuses_they_were_built_for(scored_sample):
    sample, _, rows = scored_sample
    status = {m.name: r for m, r in zip(sample, rows, strict=True)}
    exits = status["HumanEval/55:exits_on_plus:0"]
    assert exits["status"] == {"base": "pass", "plus": "error"}, exits
    assert status["HumanEval/0:hangs:0"]["status"]["base"] == "fail"
    assert "time limit" in status["HumanEval/0:sleeps:0"]["reason"]
    assert status["HumanEval/55:prints:0"]["correct"]

