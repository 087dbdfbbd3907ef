"""Code-task evaluation: pass@k, the plain-data unpickler, HumanEval+, LeetCode, LiveCodeBench.

Every program runs in the real sandbox. HumanEval+ and LeetCode use ../shared/data (or
$LEAFBENCH_DATA_DIR) when present, else fixture files written here in the same formats with
problems of our own wording that reuse the entry points / task ids the tests look up. The
HumanEval+ gold self-check scores canonical solutions (base and plus) through the whole
pipeline: extraction, ground truth computed in the sandbox, one sandbox run per sample; the
default suite takes a deterministic 16 of the 164 (the special comparisons among them), ``-m
slow`` all 164 (1.5-2 min on two shared cores).
LiveCodeBench is not in the shared data (its hidden tests live only on the hub), so its tests
write hub-format shards, compressed private tests included.
"""

from __future__ import annotations

import base64
import copyreg
import gzip
import itertools
import json
import math
import os
import pickle
import threading
import time
import zlib
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from leafbench.evaluation.code import (
    code_task,
    mean_pass_at_k,
    pass_at_k,
    score_responses,
)
from leafbench.evaluation.code import humaneval_plus as he
from leafbench.evaluation.code import leetcode as lc
from leafbench.evaluation.code import livecodebench as lcb
from leafbench.evaluation.code.plain_data import (
    UnsafePickleError,
    decode_blob,
    encode_blob,
    loads_plain,
)
from leafbench.evaluation.code.scoring import NO_CODE
from leafbench.evaluation.registry import TASKS, resolve_data

SHARED_HE = SHARED_DATA / he.LOCAL_FILE
SHARED_LC = SHARED_DATA / lc.LOCAL_FILE


def _fence(code: str, prose: str = "Here is my solution.") -> str:
    return f"{prose}\n\n```python\n{code}\n```\n\nIt runs in linear time."


# ============================================================================ pass@k
def _brute_force(n: int, c: int, k: int) -> Fraction:
    """Share of the k-subsets of n samples (the first c correct) holding a correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return Fraction(sum(any(i < c for i in s) for s in subsets), len(subsets))


def test_pass_at_k_matches_brute_force_enumeration():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(float(_brute_force(n, c, k)),
                                                           abs=1e-12), (n, c, k)


def test_pass_at_k_is_stable_for_large_n():
    # C(200, 100) ~ 9e58 and C(1000, 500) overflow a float; the product form does not.
    for n, c, k in [(200, 37, 50), (200, 1, 100), (1000, 3, 500), (1000, 999, 1)]:
        exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the share correct
    assert pass_at_k(5, 0, 3) == 0.0 and pass_at_k(5, 3, 3) == 1.0


def test_pass_at_k_agrees_with_evalplus():
    from evalplus.eval import estimate_pass_at_k

    cases = [(20, 3, 5), (20, 0, 1), (7, 7, 2), (50, 11, 10)]
    ours = [pass_at_k(n, c, k) for n, c, k in cases]
    theirs = [estimate_pass_at_k(n, [c], k)[0] for n, c, k in cases]
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert mean_pass_at_k([(4, 1), (4, 4)], 1) == pytest.approx(0.625)


@pytest.mark.parametrize(("n", "c", "k"), [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4),
                                           (3, True, 1)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises((ValueError, TypeError)):
        pass_at_k(n, c, k)


# ============================================================================ plain-data pickles
class _CallsOsSystem:
    def __init__(self, marker: Path) -> None:
        self.command = f"touch {marker}"

    def __reduce__(self):
        return (os.system, (self.command,))


def test_plain_data_round_trips_and_loads_plain_values():
    value = {"a": [1, 2.5, None, True], "b": ("x", b"\x00"), "c": {frozenset({1}), 3}}
    assert decode_blob(encode_blob(value)) == value
    tests_json = json.dumps([{"input": "1\n2", "output": "3", "testtype": "stdin"}])
    assert lcb.decode_private_tests(encode_blob(tests_json)) == json.loads(tests_json)
    depth = 5000  # deeper than the recursion limit: the type check walks iteratively
    nested = loads_plain(b"\x80\x04" + b"]" * depth + b"a" * (depth - 1) + b".")
    for _ in range(depth - 1):
        (nested,) = nested
    assert nested == []


def test_malicious_private_tests_are_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "pwned"
    blob = base64.b64encode(zlib.compress(pickle.dumps(_CallsOsSystem(marker)))).decode()
    with pytest.raises(UnsafePickleError, match=r"refused to load global (posix|os)\.system"):
        lcb.decode_private_tests(blob)
    assert not marker.exists()
    # the unrestricted loader would have run it: the blob really is an attack
    pickle.loads(zlib.decompress(base64.b64decode(blob)))
    assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_every_way_to_reach_code_from_a_pickle_is_refused(protocol):
    attacks = [pickle.dumps(print, protocol=protocol), pickle.dumps(Fraction(1, 3), protocol)]

    class Persistent(pickle.Pickler):
        def persistent_id(self, obj):
            return "x" if obj == "secret" else None

    buffer = __import__("io").BytesIO()
    Persistent(buffer, protocol=protocol).dump(["secret"])
    attacks.append(buffer.getvalue())
    copyreg.add_extension("builtins", "eval", 0x4C42)  # the EXT opcodes' registry
    try:
        attacks.append(pickle.dumps(eval, protocol=max(protocol, 2)))
        assert b"\x83" in attacks[-1]  # EXT1, not a GLOBAL
        for data in attacks:
            with pytest.raises(UnsafePickleError, match="refused"):
                loads_plain(data)
    finally:
        copyreg.remove_extension("builtins", "eval", 0x4C42)


def test_decompression_bomb_and_garbage_are_errors():
    bomb = base64.b64encode(zlib.compress(b"0" * (8 << 20))).decode()
    with pytest.raises(ValueError, match="expands beyond"):
        decode_blob(bomb, max_bytes=1 << 20)
    with pytest.raises(ValueError, match="not base64"):
        lcb.decode_private_tests("this is neither JSON nor base64!")


# ============================================================================ HumanEval+
FIXTURE_HE = [
    {
        "task_id": "HumanEval/0",
        "entry_point": "has_close_elements",
        "prompt": 'from typing import List\n\n\ndef has_close_elements(numbers: List[float], '
                  'threshold: float) -> bool:\n    """True if two of the numbers are closer than '
                  'the threshold."""\n',
        "canonical_solution": "    for i, a in enumerate(numbers):\n"
                              "        for b in numbers[i + 1:]:\n"
                              "            if abs(a - b) < threshold:\n"
                              "                return True\n    return False\n",
        "base_input": [[[1.0, 2.0, 3.0], 0.5], [[1.0, 2.8, 3.0], 0.3]],
        "plus_input": [[[], 1.0], [[5.0, 5.0], 0.1], [[1.0, 9.0, 4.5], 4.0]],
        "atol": 0,
    },
    {
        "task_id": "HumanEval/2",
        "entry_point": "truncate_number",
        "prompt": 'def truncate_number(number: float) -> float:\n    """The fractional part of a '
                  'positive number."""\n',
        "canonical_solution": "    return number % 1.0\n",
        "base_input": [[3.5], [1.25]],
        "plus_input": [[7.125], [1000000.75], [0.001]],
        "atol": 1e-06,
    },
    {
        "task_id": "HumanEval/5",
        "entry_point": "intersperse",
        "prompt": 'from typing import List\n\n\ndef intersperse(numbers: List[int], delimeter: int)'
                  ' -> List[int]:\n    """Put the delimeter between every two neighbours."""\n',
        "canonical_solution": "    out = []\n    for i, n in enumerate(numbers):\n        if i:\n"
                              "            out.append(delimeter)\n        out.append(n)\n"
                              "    return out\n",
        "base_input": [[[], 4], [[1, 2, 3], 4]],
        "plus_input": [[[7], 0], [[1, 1], -1], [[5, 6, 7, 8], 9]],
        "atol": 0,
    },
    {
        "task_id": "HumanEval/32",
        "entry_point": "find_zero",
        "prompt": 'import math\n\n\ndef poly(xs: list, x: float):\n    """The polynomial with '
                  'coefficients xs at x."""\n    return sum([coeff * math.pow(x, i) for i, coeff '
                  'in enumerate(xs)])\n\n\ndef find_zero(xs: list):\n    """A root of the '
                  'polynomial (even number of coefficients)."""\n',
        "canonical_solution": "    lo, hi = -1.0, 1.0\n    while poly(xs, lo) * poly(xs, hi) > 0:\n"
                              "        lo, hi = lo * 2.0, hi * 2.0\n    while hi - lo > 1e-10:\n"
                              "        mid = (lo + hi) / 2.0\n        if poly(xs, mid) * poly(xs, "
                              "lo) > 0:\n            lo = mid\n        else:\n            hi = mid"
                              "\n    return lo\n",
        "base_input": [[[1, 2]], [[-6, 11, -6, 1]]],
        "plus_input": [[[3, -4]], [[-10, 1, 0, 1]], [[2, 1, 0, 5]]],
        "atol": 0.0001,
    },
]


def _fixture_he(path: Path) -> Path:
    with gzip.open(path, "wt") as fh:
        for problem in FIXTURE_HE:
            record = {"test": "", "contract": "", **problem}
            fh.write(json.dumps(record) + "\n")
    return path


@pytest.fixture(scope="module")
def he_problems(tmp_path_factory) -> list[dict]:
    path = SHARED_HE if SHARED_HE.is_file() else _fixture_he(
        tmp_path_factory.mktemp("he") / "HumanEvalPlus.jsonl.gz"
    )
    return he.load_problems(path)


@pytest.fixture(scope="module")
def he_task(tmp_path_factory):
    """One task object for the module: the ground truth is computed once (fresh cache dir)."""
    return code_task("leaf_humaneval_plus", cache_dir=tmp_path_factory.mktemp("he_cache"))


def _problem(problems: list[dict], entry_point: str) -> dict:
    return next(p for p in problems if p["entry_point"] == entry_point)


def _gold(problem: dict) -> str:
    return _fence(problem["prompt"] + problem["canonical_solution"])


# The special comparisons: atol 1e-6 (HumanEval/2, /4), the find_zero oracle (HumanEval/32).
SPECIAL_ENTRY_POINTS = ("truncate_number", "mean_absolute_deviation", "find_zero")


def gold_subset(problems: list[dict]) -> list[dict]:
    """Every 13th problem and the special ones: 16 of the 164 (all of a small fixture)."""
    if len(problems) <= 20:
        return problems
    return [p for i, p in enumerate(problems)
            if i % 13 == 0 or p["entry_point"] in SPECIAL_ENTRY_POINTS]


def _run_gold(task, problems: list[dict]):
    threads_before = set(threading.enumerate())
    start = time.monotonic()
    responses = {i: _gold(p) for i, p in enumerate(problems)}
    metrics, records = score_responses(task, responses, docs=problems)
    print(f"\nHumanEval+ gold: {len(problems)} problems, ground truth + scoring in "
          f"{time.monotonic() - start:.1f}s: {metrics}")
    return metrics, records, set(threading.enumerate()) - threads_before


def _assert_all_gold_pass(metrics: dict, records: list[dict], n: int) -> None:
    failures = [(r["problem"], r["status"], r["reason"]) for r in records if not r["correct"]]
    assert failures == []
    assert metrics == {"pass@1": 1.0, "pass@1,base": 1.0, "pass@1,plus": 1.0, "n": n,
                       "samples": n}
    assert all(r["status"] == {"base": "pass", "plus": "pass"} for r in records)


@pytest.fixture(scope="module")
def he_gold(he_task, he_problems):
    return _run_gold(he_task, gold_subset(he_problems))


def test_humaneval_plus_gold_solutions_pass_base_and_plus(he_gold, he_problems):
    """A quick gold self-check on a deterministic subset, ahead of the full 164 below."""
    metrics, records, _ = he_gold
    subset = gold_subset(he_problems)
    _assert_all_gold_pass(metrics, records, len(subset))
    assert {"truncate_number", "find_zero"} <= {p["entry_point"] for p in subset}
    if SHARED_HE.is_file():
        assert len(subset) == 16


@pytest.mark.slow
def test_humaneval_plus_gold_all_164(he_task, he_problems):
    """All canonical solutions pass base and plus (1.5-2 minutes on 2 shared cores)."""
    metrics, records, _ = _run_gold(he_task, he_problems)
    _assert_all_gold_pass(metrics, records, len(he_problems))
    if SHARED_HE.is_file():
        assert len(records) == 164 and records[32]["problem"] == "HumanEval/32"


def test_scoring_leaves_no_threads_and_no_evalplus_result_files(he_gold, tmp_path):
    """evalplus.evaluate would leave a 20 s watchdog thread and write *_eval_results.json."""
    _, _, new_threads = he_gold
    assert [t for t in new_threads if t.is_alive()] == []
    assert list(Path.cwd().glob("*eval_results.json")) == []


def _score_he(he_task, problem: dict, responses: list[str]) -> list[dict]:
    return score_responses(he_task, {0: responses}, docs=[problem])[1]


def test_a_solution_wrong_only_on_a_plus_input_passes_base_but_not_plus(he_task, he_problems):
    problem = _problem(he_problems, "has_close_elements")
    base_inputs = {json.dumps(i) for i in problem["base_input"]}
    trap = next(i for i in problem["plus_input"] if json.dumps(i) not in base_inputs)
    code = "import json\nTRAP = json.loads(" + repr(json.dumps(trap)) + ")\n" + _wrapped(
        problem, "if list(args) == TRAP:\n    return not reference(*args)"
    )
    (record,) = _score_he(he_task, problem, [_fence(code)])
    assert record["status"] == {"base": "pass", "plus": "fail"}, record
    assert record["correct_base"] and not record["correct"]
    assert "wrong output" in record["reason"]


def test_floats_compare_with_evalplus_tolerance(he_task, he_problems):
    problem = _problem(he_problems, "truncate_number")  # atol 1e-6
    close = "def truncate_number(number: float) -> float:\n    return number % 1.0 + 1e-9\n"
    far = "def truncate_number(number: float) -> float:\n    return number % 1.0 + 1e-3\n"
    as_int = "def truncate_number(number: float) -> int:\n    return int(number % 1.0 * 0)\n"
    records = _score_he(he_task, problem, [_fence(close), _fence(far), _fence(as_int)])
    assert [r["correct"] for r in records] == [True, False, False], records


def test_outputs_must_have_the_expected_type(he_task, he_problems):
    problem = _problem(he_problems, "intersperse")
    tuple_out = (
        "def intersperse(numbers, delimeter):\n"
        "    out = []\n    for n in numbers:\n        out += [n, delimeter]\n"
        "    return tuple(out[:-1])\n"
    )
    (record,) = _score_he(he_task, problem, [_fence(tuple_out)])
    assert record["status"]["base"] == "fail" and record["status"]["plus"] is None


def find_zero(xs: list):
    """A HumanEval/32 answer that often returns another root than the canonical solution."""
    import math

    def value(c, x):
        return sum(a * math.pow(x, i) for i, a in enumerate(c))

    slopes = [i * a for i, a in enumerate(xs)][1:]
    x = 0
    for _ in range(1000):  # the canonical search: Newton from 0
        fx = value(xs, x)
        if abs(fx) < 1e-5:
            break
        x = x - fx / value(slopes, x)
    root = x
    try:  # another root, when Newton from 5 finds one cleanly
        x = 5.0
        for _ in range(100):
            fx = value(xs, x)
            if abs(fx) < 1e-10:
                return x
            x = x - fx / value(slopes, x)
    except (ZeroDivisionError, OverflowError):
        pass
    return root


def test_find_zero_accepts_any_root_within_atol(he_task, he_problems, tmp_path):
    """evalplus' special oracle for HumanEval/32: |poly(xs, out)| <= atol, not closeness to the
    canonical root. (evalplus 0.3.1 fails every program there by a bug; we follow its fix.)"""
    import inspect

    problem = _problem(he_problems, "find_zero")
    expected = he.ground_truth([problem], cache_dir=tmp_path)[problem["task_id"]]["base"]
    other_root = [abs(find_zero(*i) - e) > 1e-4 for i, e in
                  zip(problem["base_input"], expected, strict=True)]
    assert any(other_root)  # allclose would reject these outputs
    zero = "def find_zero(xs):\n    return 0.0\n"
    records = _score_he(he_task, problem, [_fence(inspect.getsource(find_zero)), _fence(zero)])
    assert [r["correct"] for r in records] == [True, False], records


def _wrapped(problem: dict, before: str) -> str:
    """The canonical solution renamed, and the entry point running `before` then calling it."""
    entry = problem["entry_point"]
    return (
        problem["prompt"].replace(f"def {entry}(", "def reference(")
        + problem["canonical_solution"]
        + f"\n\ndef {entry}(*args):\n"
        + "".join(f"    {line}\n" for line in before.splitlines())
        + "    return reference(*args)\n"
    )


def test_candidate_behaviour_is_judged_like_evalplus(he_task, he_problems):
    problem = _problem(he_problems, "intersperse")
    body = problem["prompt"] + problem["canonical_solution"]
    responses = {
        # __name__ is not "__main__": the solution is exec'd in fresh globals
        "main_check": _wrapped(problem, "if __name__ == '__main__':\n    raise SystemExit(3)"),
        # printing, even straight to file descriptor 1, is swallowed and is no report
        "prints": _wrapped(problem, "import os\nos.write(1, b'x' * 65536)\nprint('pass')"),
        # exit() is removed by the reliability guard: calling it fails
        "exits": _wrapped(problem, "exit(0)"),
        # leaving the process early is never a pass
        "os_exit": _wrapped(problem, "import os\nos._exit(0)"),
        "reads_stdin": _wrapped(problem, "input()"),
        "sleeps": _wrapped(problem, "import time\ntime.sleep(3)"),
        # sanitize keeps imports and definitions only: top-level statements never run
        "top_level": "exit(0)\n" + body + "\nif __name__ == '__main__':\n    print(input())\n",
    }
    records = _score_he(he_task, problem, [_fence(r) for r in responses.values()])
    got = dict(zip(responses, records, strict=True))
    assert got["main_check"]["correct"] and got["prints"]["correct"], got
    assert got["exits"]["status"]["base"] == "fail"
    assert "NoneType" in got["exits"]["reason"]
    assert got["os_exit"]["status"]["base"] == "error" and not got["os_exit"]["correct"]
    assert got["reads_stdin"]["status"]["base"] == "fail"
    assert got["sleeps"]["status"]["base"] == "fail" and "time limit" in got["sleeps"]["reason"]
    assert got["top_level"]["correct"] and "exit(0)" not in got["top_level"]["extracted"]


def test_extraction_of_programs_completions_and_non_code(he_task, he_problems):
    problem = _problem(he_problems, "intersperse")
    body_only = problem["canonical_solution"]  # a base model continuing the prompt
    no_code = "I am not sure how to solve this, sorry."
    program = he.extract_solution(_gold(problem), problem)
    assert program is not None and he.defines(program, "intersperse")
    assert "It runs in linear time" not in program and "```" not in program
    completion = he.extract_solution(body_only, problem)
    assert completion is not None and he.defines(completion, "intersperse")
    assignment = _fence("def _impl(numbers, delimeter):\n" + problem["canonical_solution"]
                        + "\nintersperse = _impl\n")
    records = _score_he(he_task, problem, [body_only, assignment, no_code, ""])
    assert [r["correct"] for r in records] == [True, True, False, False], records
    assert "SyntaxError" in records[2]["reason"]  # the prose itself was run, as by evalplus
    assert records[3]["extracted"] is None and records[3]["reason"] == NO_CODE
    assert records[3]["status"] == {"base": "fail", "plus": "fail"}


def test_another_problems_canonical_solution_fails(he_task, he_problems):
    records = score_responses(
        he_task, {i: _gold(he_problems[(i + 1) % 4]) for i in range(4)}, docs=he_problems[:4]
    )[1]
    assert not any(r["correct"] for r in records)


SANITIZE_CORPUS = [
    "Sure!\n```python\nimport math\n\ndef f(x):\n    return g(x) + 1\n\ndef g(y):\n    return "
    "math.floor(y)\n\ndef unused():\n    return 0\n```\nDone.",
    "def f(a):\n    b = helper(a)\n    return b\n\nclass Box:\n    pass\n\ndef helper(a):\n"
    "    return [a]\n\nprint(f(2))\n",
    "text before\n```\ndef f(x):\n    return x\n```\nmore text\n```\ndef f(x):\n    return x * 2"
    "\n\n\n\nassert f(1) == 2\n```\n",
    "no code at all here\njust words",
    "LIMIT = 10\n\ndef f(x):\n    return min(x, LIMIT)\n\nif __name__ == '__main__':\n"
    "    f(3)\n",
    "```python\ndef f(x):\n    if x:\n        return 1\n    return 0\n",  # no closing fence
    "def broken(:\n    pass\ndef f(x):\n    return x\n",
]


@pytest.mark.parametrize("text", SANITIZE_CORPUS)
def test_sanitize_matches_evalplus(text):
    """Our faster search finds exactly what evalplus' sanitize finds."""
    from evalplus.sanitize import code_extract, sanitize

    assert he.code_extract(text) == code_extract(text)
    assert he.sanitize(text, "f") == sanitize(text, "f")


def test_code_extract_matches_evalplus_on_random_texts():
    from evalplus.sanitize import code_extract

    pool = ["def f(x):", "    return x", "    y = (1,", "    2)", "", "  ", "Some prose.",
            "```python", "```", "x = \'\'\'", "\'\'\'", "if x:", "    pass", "print(f(1))",
            "a = 1 \\", "    + 2", "# note", "class A:", "    z = 3", ")", "else:"]
    rng = __import__("random").Random(1234)
    for _ in range(400):
        text = "\n".join(rng.choice(pool) for _ in range(rng.randint(1, 11)))
        assert he.code_extract(text) == code_extract(text), text


def test_sanitize_is_fast_on_long_responses():
    helpers = "\n".join(f"def h{i}(x):\n    y = x + {i}\n    return y" for i in range(150))
    text = "Intro.\n```python\n" + helpers + "\ndef f(a):\n    return h1(a)\n```\n"
    text += "Prose.\n" * 80
    start = time.monotonic()
    code = he.sanitize(text, "f")
    assert time.monotonic() - start < 5  # evalplus' own takes ~minutes on this
    assert code == "def h1(x):\n    y = x + 1\n    return y\ndef f(a):\n    return h1(a)"


def test_ground_truth_is_cached_and_read_back_safely(he_problems, tmp_path):
    problems = [_problem(he_problems, "truncate_number")]
    first = he.ground_truth(problems, cache_dir=tmp_path)
    (path,) = (tmp_path / "humaneval_plus").rglob("*.pkl")
    start = time.monotonic()
    again = he.ground_truth(problems, cache_dir=tmp_path)
    assert time.monotonic() - start < 1 and again == first  # no sandbox run the second time
    assert len(first["HumanEval/2"]["plus"]) == len(problems[0]["plus_input"])
    path.write_bytes(pickle.dumps(_CallsOsSystem(tmp_path / "pwned")))
    with pytest.raises(UnsafePickleError):
        he.ground_truth(problems, cache_dir=tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_override_path_is_read_when_called_not_when_imported(tmp_path, monkeypatch):
    import evalplus.data.humaneval  # noqa: F401 - imported before the variable is set

    path = _fixture_he(tmp_path / "override.jsonl.gz")
    monkeypatch.setenv(he.OVERRIDE_ENV, str(path))
    assert [p["task_id"] for p in he.load_problems()] == [p["task_id"] for p in FIXTURE_HE]


def test_incomplete_humaneval_file_is_rejected(tmp_path):
    path = tmp_path / "broken.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps({"task_id": "HumanEval/0", "prompt": "def f(): pass"}) + "\n")
    with pytest.raises(ValueError, match="not a complete HumanEval\\+ file"):
        he.load_problems(path)


def test_humaneval_prompt_is_evalplus_chat_prompt(he_problems):
    task = code_task("leaf_humaneval_plus")
    doc = he_problems[0]
    (turn,) = task.messages(doc)
    assert turn["role"] == "user" and turn["content"].startswith(he.INSTRUCTION_PREFIX)
    assert doc["prompt"].strip() in turn["content"]
    assert task.response_prefix.endswith("```python\n")


# ============================================================================ LeetCode
LC_FIXTURE = [
    {
        "task_id": "weekly-contest-381-minimum-number-of-pushes-to-type-word-i",
        "prompt": '"""\nEach of 8 keys types letters; the i-th letter on a key costs i presses. '
                  'Return the fewest presses for a word of distinct letters.\n"""\nclass '
                  "Solution:\n    def minimumPushes(self, word: str) -> int:\n        ",
        "test": "\nmy_solution = Solution()\n\n"
                + "\n".join(f'test_input = {{ "word": "{w}" }}\nassert my_solution.minimumPushes('
                            f"**test_input) == {v}\n"
                            for w, v in [("abcde", 5), ("xycdefghij", 12), ("a", 1),
                                         ("abcdefghijklmnopqrstuvwxyz", 56)]),
    },
    {
        "task_id": "weekly-contest-358-double-a-number-represented-as-a-linked-list",
        "prompt": '"""\nDouble the number whose digits a linked list holds.\n"""\n# Definition '
                  "for singly-linked list.\nclass ListNode:\n    def __init__(self, val=0, next="
                  "None):\n        self.val = val\n        self.next = next\nclass Solution:\n"
                  "    def doubleIt(self, head: Optional[ListNode]) -> Optional[ListNode]:\n"
                  "        ",
        "test": "\nmy_solution = Solution()\n\n_f1 = lambda lst: ListNode(lst[0], _f1(lst[1:])) "
                "if lst else None\n_f2 = lambda node: [node.val] + _f2(node.next) if node else "
                "[]\n\n"
                + "\n".join(f'test_input = {{ "head": _f1({a}) }}\nassert _f2(my_solution.'
                            f"doubleIt(**test_input)) == {b}\n"
                            for a, b in [([1, 8, 9], [3, 7, 8]), ([9, 9, 9], [1, 9, 9, 8]),
                                         ([0], [0]), ([5], [1, 0])]),
    },
    {
        "task_id": "biweekly-contest-110-insert-greatest-common-divisors-in-linked-list",
        "prompt": '"""\nBetween every two adjacent nodes insert a node holding their greatest '
                  'common divisor.\n"""\n# Definition for singly-linked list.\nclass ListNode:\n'
                  "    def __init__(self, val=0, next=None):\n        self.val = val\n"
                  "        self.next = next\nclass Solution:\n    def insertGreatestCommonDivisors"
                  "(self, head: Optional[ListNode]) -> Optional[ListNode]:\n        ",
        "test": "\nmy_solution = Solution()\n\n_f1 = lambda lst: ListNode(lst[0], _f1(lst[1:])) "
                "if lst else None\n_f2 = lambda node: [node.val] + _f2(node.next) if node else "
                "[]\n\n"
                + "\n".join(f'test_input = {{ "head": _f1({a}) }}\nassert _f2(my_solution.'
                            f"insertGreatestCommonDivisors(**test_input)) == {b}\n"
                            for a, b in [([18, 6, 10, 3], [18, 6, 6, 2, 10, 1, 3]), ([7], [7]),
                                         ([4, 8], [4, 4, 8])]),
    },
]
for _record in LC_FIXTURE:
    _stub = _record["prompt"].split('"""\n', 2)[-1].rstrip() + "\n        "
    _record.update(
        url="https://leetcode.com/problems/x", title=_record["task_id"].split("-", 3)[-1],
        meta={"difficulty": "Easy"}, start_time=1700000000,
        prompt_sft=_record["prompt"].split('"""')[1].strip()
        + "\n\nPlease complete the code below to solve above prblem:\n```python\n" + _stub
        + "\n```",
    )

LC_SOLUTIONS = {  # hand-written, correct; they lean on the preamble (Optional, math, Counter)
    "weekly-contest-381-minimum-number-of-pushes-to-type-word-i":
        "class Solution:\n    def minimumPushes(self, word: str) -> int:\n"
        "        counts = Counter(word)\n"
        "        return sum(i // 8 + 1 for i in range(len(counts)))\n",
    "weekly-contest-358-double-a-number-represented-as-a-linked-list":
        "class ListNode:\n    def __init__(self, val=0, next=None):\n        self.val = val\n"
        "        self.next = next\n\nclass Solution:\n"
        "    def doubleIt(self, head: Optional[ListNode]) -> Optional[ListNode]:\n"
        "        digits = []\n        while head:\n            digits.append(head.val)\n"
        "            head = head.next\n        value = int(''.join(map(str, digits))) * 2\n"
        "        out = None\n        for d in reversed(str(value)):\n"
        "            out = ListNode(int(d), out)\n        return out\n",
    "biweekly-contest-110-insert-greatest-common-divisors-in-linked-list":
        "class ListNode:\n    def __init__(self, val=0, next=None):\n        self.val = val\n"
        "        self.next = next\n\nclass Solution:\n"
        "    def insertGreatestCommonDivisors(self, head):\n        node = head\n"
        "        while node and node.next:\n"
        "            node.next = ListNode(math.gcd(node.val, node.next.val), node.next)\n"
        "            node = node.next.next\n        return head\n",
}
LC_WRONG = {  # plausible mistakes
    "weekly-contest-381-minimum-number-of-pushes-to-type-word-i":
        "class Solution:\n    def minimumPushes(self, word: str) -> int:\n"
        "        return sum(i // 9 + 1 for i in range(len(word)))\n",
    "weekly-contest-358-double-a-number-represented-as-a-linked-list":
        "class ListNode:\n    def __init__(self, val=0, next=None):\n        self.val = val\n"
        "        self.next = next\n\nclass Solution:\n    def doubleIt(self, head):\n"
        "        node = head\n        while node:\n            node.val = node.val * 2 % 10\n"
        "            node = node.next\n        return head\n",
    "biweekly-contest-110-insert-greatest-common-divisors-in-linked-list":
        "class ListNode:\n    def __init__(self, val=0, next=None):\n        self.val = val\n"
        "        self.next = next\n\nclass Solution:\n"
        "    def insertGreatestCommonDivisors(self, head):\n        return head\n",
}


def _write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def lc_fixture_file(tmp_path_factory) -> Path:
    return _write_jsonl(tmp_path_factory.mktemp("lc") / "20240121-Jul.jsonl", LC_FIXTURE)


@pytest.fixture(scope="module")
def lc_problems(lc_fixture_file) -> list[dict]:
    """The three problems the hand-written solutions solve: from the real file when present."""
    problems = lc.load_problems(SHARED_LC if SHARED_LC.is_file() else lc_fixture_file)
    if SHARED_LC.is_file():
        assert len(problems) == 180
    by_id = {p["task_id"]: p for p in problems}
    return [by_id[task_id] for task_id in LC_SOLUTIONS]


def test_leetcode_hand_written_solutions_pass_and_mistakes_fail(lc_problems):
    task = code_task("leaf_leetcode")
    responses = {
        i: [_fence(LC_SOLUTIONS[p["task_id"]]), _fence(LC_WRONG[p["task_id"]])]
        for i, p in enumerate(lc_problems)
    }
    metrics, records = score_responses(task, responses, docs=lc_problems, ks=(1, 2))
    assert [r["correct"] for r in records] == [True, False] * 3, records
    assert all("AssertionError" in r["reason"] for r in records[1::2])
    assert metrics == {"pass@1": 0.5, "pass@2": 1.0, "n": 3, "samples": 6}
    program = lc.program(records[0]["extracted"], lc_problems[0])
    assert program.startswith("import math\n") and "from typing import *" in program
    assert program.endswith(lc_problems[0]["test"] + "\n")


def test_leetcode_extraction_follows_deepseek(lc_problems):
    doc = lc_problems[0]
    two_blocks = "```python\nFIRST = 1\n```\ntext\n```python\nSECOND = 2\n```"
    assert lc.extract_code(two_blocks, doc) == "FIRST = 1"  # the first python block
    assert lc.extract_code("[PYTHON]\nx = 1\n[/PYTHON]", doc) == "x = 1"
    assert lc.extract_code("x = 1\nprint(x)\n", doc) == "x = 1"  # no fence: up to "\nprint"
    unclosed = "```python\nx = 1"
    assert lc.extract_code(unclosed, doc) == unclosed  # the pattern fails: the whole response
    continuation = "\n        return 0\n"
    extracted = lc.extract_code(continuation, doc)
    assert extracted.startswith("class Solution") or extracted.startswith("#")
    assert extracted.endswith(continuation) and "def minimumPushes" in extracted
    assert lc.prompt(doc) == doc["prompt_sft"]
    assert lc.prompt(doc, cot=True).endswith("step-by-step outline and then write the code.")


def test_leetcode_runtime_rules(lc_problems):
    task = code_task("leaf_leetcode", timeout=2.0)
    correct = LC_SOLUTIONS[lc_problems[0]["task_id"]]
    responses = [
        correct + "\nif __name__ == '__main__':\n    raise SystemExit(1)\n",  # not run
        "exit()\n" + correct,  # the guard removes exit
        correct.replace("return sum", "while True:\n            pass\n        return sum"),
        "import os\nos._exit(0)\n",
    ]
    records = score_responses(task, {0: [_fence(r) for r in responses]}, docs=lc_problems[:1])[1]
    assert [r["status"]["tests"] for r in records] == ["pass", "fail", "timeout", "error"]


# ============================================================================ LiveCodeBench
def _lcb_record(qid: str, date: str, *, starter: str, func: str | None, tests: list[dict],
                private: str) -> dict:
    public, _ = tests[:1], tests[1:]
    return {
        "question_title": f"Problem {qid}",
        "question_content": f"Solve problem {qid}.",
        "platform": "leetcode" if func else "atcoder",
        "question_id": qid,
        "contest_id": f"c{qid}",
        "contest_date": date,
        "starter_code": starter,
        "difficulty": "easy",
        "public_test_cases": json.dumps(public),
        "private_test_cases": private,
        "metadata": json.dumps({"func_name": func} if func else {}),
    }


def _functional(qid: str, date: str, *, compressed: bool = True) -> dict:
    tests = [{"input": f"{a}\n{b}", "output": json.dumps([a + b, a * b]), "testtype": "functional"}
             for a, b in [(1, 2), (3, 4), (-5, 6), (0, 0)]]
    private = json.dumps(tests[1:])
    return _lcb_record(
        qid, date, func="sumAndProduct", tests=tests,
        starter="class Solution:\n    def sumAndProduct(self, a: int, b: int) -> List[int]:\n"
                "        ",
        private=encode_blob(private) if compressed else private,
    )


def _stdin(qid: str, date: str, *, compressed: bool = False) -> dict:
    tests = [{"input": f"{len(xs)}\n{' '.join(map(str, xs))}\n",
              "output": f"{sum(xs)}\n{sum(xs) / len(xs):.2f}\n", "testtype": "stdin"}
             for xs in ([1, 2], [4, 4, 7], [10])]
    private = json.dumps(tests[1:])
    return _lcb_record(qid, date, func=None, tests=tests, starter="",
                       private=encode_blob(private) if compressed else private)


LCB_SHARDS = {
    "test.jsonl": [_functional("p1", "2023-05-20T00:00:00"), _stdin("p2", "2023-08-01T12:30:00")],
    "test2.jsonl": [_functional("p3", "2024-04-10T00:00:00", compressed=False)],
    "test3.jsonl": [_stdin("p4", "2024-06-15T00:00:00", compressed=True)],
    "test4.jsonl": [_functional("p5", "2024-09-30T19:30:00")],
}
LCB_FUNCTIONAL = (
    "class Solution:\n    def sumAndProduct(self, a: int, b: int) -> List[int]:\n"
    "        return (a + b, a * b)\n"  # a tuple: LCB compares it as a list
)
LCB_STDIN = (
    "def main():\n    n = int(input())\n    xs = list(map(int, input().split()))\n"
    "    print(sum(xs))\n    print(sum(xs) / n)\n    exit()\n    print('never')\n\n"
    "if __name__ == '__main__':\n    main()\n"
)


@pytest.fixture(scope="module")
def lcb_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lcb_data")
    for name, rows in LCB_SHARDS.items():
        _write_jsonl(root / "livecodebench" / name, rows)
    return root


def _ids(problems: list[dict]) -> list[str]:
    return [p["question_id"] for p in problems]


def test_lcb_releases_are_cumulative_shards(lcb_dir):
    assert lcb.release_files("release_v4") == ("test.jsonl", "test2.jsonl", "test3.jsonl",
                                               "test4.jsonl")
    assert lcb.release_files("release_v1") == ("test.jsonl",)
    assert lcb.release_files("v2_v3") == ("test2.jsonl", "test3.jsonl")
    assert lcb.RELEASE_SIZES["release_v4"] == 713
    assert lcb.hub_data_files("release_v2") == [
        "hf://datasets/livecodebench/code_generation_lite@main/test.jsonl",
        "hf://datasets/livecodebench/code_generation_lite@main/test2.jsonl",
    ]
    folder = lcb_dir / "livecodebench"
    assert _ids(lcb.load_problems("release_v1", local_dir=folder)) == ["p1", "p2"]
    assert _ids(lcb.load_problems("release_v4", local_dir=folder)) == ["p1", "p2", "p3", "p4",
                                                                       "p5"]
    assert _ids(lcb.load_problems("v2", local_dir=folder)) == ["p3"]
    with pytest.raises(FileNotFoundError, match="missing \\['test5.jsonl'\\]"):
        lcb.load_problems("release_v5", local_dir=folder)
    with pytest.raises(ValueError, match="unknown LiveCodeBench release 'v4_lite'"):
        lcb.load_problems("v4_lite", local_dir=folder)


def test_lcb_date_window_matches_lcb(lcb_dir):
    folder = lcb_dir / "livecodebench"
    window = lcb.load_problems("release_v4", local_dir=folder, start_date="2023-08-01",
                               end_date="2024-06-15")
    assert _ids(window) == ["p2", "p3", "p4"]  # p4 is at midnight of the end date: inside
    late = lcb.load_problems("release_v4", local_dir=folder, start_date="2024-06-15",
                             end_date="2024-09-30")
    assert _ids(late) == ["p4"]  # p5 (19:30 on the end date) is after the end's midnight
    with pytest.raises(ValueError, match="end_date must be YYYY-MM-DD"):
        lcb.load_problems("release_v4", local_dir=folder, end_date="30.09.2024")


def test_lcb_records_decode_tests_and_prompts(lcb_dir):
    p1, p2 = lcb.load_problems("release_v1", local_dir=lcb_dir / "livecodebench")
    assert p1["fn_name"] == "sumAndProduct" and p2["fn_name"] is None
    assert isinstance(p1["private_test_cases"], str)  # decoded only when needed
    assert [t["input"] for t in lcb.tests(p1)] == ["1\n2", "3\n4", "-5\n6", "0\n0"]
    assert len(lcb.tests(p2)) == 3
    assert "```python\nclass Solution:" in lcb.prompt(p1)
    assert "# YOUR CODE HERE" in lcb.prompt(p2) and "Read the inputs from stdin" in lcb.prompt(p2)
    task = code_task("leaf_livecodebench")
    assert task.messages(p1)[0] == {"role": "system", "content": lcb.SYSTEM_MESSAGE}
    reply = "Plan:\n```python\nprint(1)\n```\nFinal:\n```python\nprint(2)\n```\nDone"
    assert lcb.extract_code(reply) == "print(2)"  # the last fenced block
    assert lcb.extract_code("print(3)") == ""


def test_lcb_functional_and_stdin_verdicts(lcb_dir):
    task = code_task("leaf_livecodebench", release="release_v4", timeout=1)
    wrong_functional = LCB_FUNCTIONAL.replace("a * b", "a * b + 1")
    slow = LCB_FUNCTIONAL.replace("return", "while True:\n            pass\n        return")
    float_mismatch = LCB_STDIN.replace("print(sum(xs) / n)", "print(sum(xs) / n + 0.5)")
    responses = {
        0: [_fence(LCB_FUNCTIONAL), _fence(wrong_functional), _fence(slow)],
        1: [_fence(LCB_STDIN), _fence(float_mismatch), "no code block"],
        2: _fence(LCB_FUNCTIONAL),
        3: _fence(LCB_STDIN),
        4: _fence("class Solution:\n    def somethingElse(self):\n        return 0\n"),
    }
    metrics, records = score_responses(task, responses, data_dir=lcb_dir)
    statuses = [(r["doc_id"], r["status"]["tests"]) for r in records]
    assert statuses == [(0, "pass"), (0, "fail"), (0, "timeout"), (1, "pass"), (1, "fail"),
                        (1, "fail"), (2, "pass"), (3, "pass"), (4, "fail")], records
    assert "Wrong Answer" in records[1]["reason"] and "Time Limit" in records[2]["reason"]
    assert records[5]["reason"] == NO_CODE
    # stdin: "2.50" expected, "2.5" printed: equal as Decimals; exit() ended the test early
    assert metrics["n"] == 5 and metrics["pass@1"] == pytest.approx((1 / 3 + 1 / 3 + 1 + 1) / 5)


def test_lcb_malicious_private_tests_stop_scoring_without_running(tmp_path):
    marker = tmp_path / "pwned"
    record = _functional("evil", "2023-06-01T00:00:00")
    record["private_test_cases"] = base64.b64encode(
        zlib.compress(pickle.dumps(_CallsOsSystem(marker)))
    ).decode()
    _write_jsonl(tmp_path / "livecodebench" / "test.jsonl", [record])
    task = code_task("leaf_livecodebench", release="release_v1")
    with pytest.raises(UnsafePickleError, match="system"):
        score_responses(task, {0: _fence(LCB_FUNCTIONAL)}, data_dir=tmp_path)
    assert not marker.exists()


# ============================================================================ files, registry
def test_replaying_a_responses_file_with_samples(lc_fixture_file, tmp_path):
    from leafbench.evaluation.replay import run_replay

    lines = [
        {"task": "leaf_math500", "doc_id": 0, "response": "\\boxed{1}"},  # not asked for
        {"task": "leaf_leetcode", "doc_id": 0, "responses": [
            _fence(LC_SOLUTIONS[LC_FIXTURE[0]["task_id"]]),
            _fence(LC_WRONG[LC_FIXTURE[0]["task_id"]]),
            "I give up."]},
        {"task": "leaf_leetcode", "doc_id": 1, "responses": [
            _fence(LC_WRONG[LC_FIXTURE[1]["task_id"]])] * 3},
    ]
    path = _write_jsonl(tmp_path / "responses.jsonl", lines)
    scores = run_replay(path, ["leaf_leetcode"], tmp_path / "out", limit=2,
                        data_files={"leaf_leetcode": lc_fixture_file})
    assert scores == {"leaf_leetcode": {"pass@1": pytest.approx(1 / 6), "n": 2, "samples": 6}}
    rows = [json.loads(x) for x in (tmp_path / "out" / "samples_leaf_leetcode.jsonl").open()]
    assert [(r["doc_id"], r["sample"], r["correct"]) for r in rows] == [
        (0, 0, True), (0, 1, False), (0, 2, False), (1, 0, False), (1, 1, False), (1, 2, False)]
    assert rows[0]["problem"] == LC_FIXTURE[0]["task_id"] and rows[0]["prompt"]
    assert rows[0]["extracted"].startswith("class Solution")
    assert rows[2]["extracted"] == "I give up." and "SyntaxError" in rows[2]["reason"]
    entry = json.loads((tmp_path / "out" / "results.json").read_text())["results"]["leaf_leetcode"]
    assert entry["n"] == 2 and entry["samples"] == 6 and entry["backend"] == "replay"
    assert entry["data"] == str(lc_fixture_file)
    assert entry["decoding"]["samples_per_item"] == 3
    # pass@k for k above 1, in memory: pass@3 of (1 of 3, 0 of 3) is (1 + 0) / 2
    metrics, _ = score_responses("leaf_leetcode", {0: lines[1]["responses"],
                                                   1: lines[2]["responses"]},
                                 data_file=lc_fixture_file, limit=2, ks=(1, 3))
    assert metrics["pass@3"] == 0.5
    with pytest.raises(ValueError, match="no response for 1 of the 3 docs"):
        run_replay(path, "leaf_leetcode", tmp_path / "again",
                   data_files={"leaf_leetcode": lc_fixture_file})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"task": "leaf_humaneval", "doc_id": 0, "response": "x"}, "unknown task 'leaf_humaneval'"),
        ({"task": "leaf_leetcode", "doc_id": -1, "response": "x"}, "doc_id must be"),
        ({"task": "leaf_leetcode", "doc_id": 0, "response": "x", "responses": ["y"]},
         "exactly one of response"),
        ({"task": "leaf_leetcode", "doc_id": 0, "responses": []}, "non-empty list"),
        ({"task": "leaf_leetcode", "doc_id": 1, "response": "again"}, "already has a response"),
    ],
)
def test_malformed_response_lines_name_the_line(tmp_path, line, message):
    from leafbench.evaluation.replay import read_responses

    path = _write_jsonl(tmp_path / "r.jsonl",
                        [{"task": "leaf_leetcode", "doc_id": 1, "response": "x"}, line])
    with pytest.raises(ValueError, match=rf"r\.jsonl:2: .*{message}"):
        read_responses(path)


def test_responses_for_docs_the_task_lacks_are_errors(lc_fixture_file):
    with pytest.raises(ValueError, match="has no doc_id 7; its test set has 3 docs"):
        score_responses("leaf_leetcode", {7: "x"}, data_file=lc_fixture_file)


def test_code_tasks_are_registered_with_their_data(lc_fixture_file, tmp_path, monkeypatch):
    code_tasks = {name for name, task in TASKS.items() if task.engine == "code"}
    assert code_tasks == {"leaf_humaneval_plus", "leaf_leetcode", "leaf_livecodebench"}
    assert TASKS["leaf_humaneval_plus"].local_file == he.LOCAL_FILE
    assert TASKS["leaf_leetcode"].local_file == lc.LOCAL_FILE
    assert TASKS["leaf_livecodebench"].local_file == lcb.LOCAL_DIR
    for name in code_tasks:  # the registry's builder makes the task of that name
        assert code_task(name).name == name and TASKS[name].metric == "pass@1"
    monkeypatch.delenv("LEAFBENCH_DATA_DIR", raising=False)
    _write_jsonl(tmp_path / lc.LOCAL_FILE, LC_FIXTURE)
    assert resolve_data("leaf_leetcode", data_dir=tmp_path) == (tmp_path / lc.LOCAL_FILE)
    assert resolve_data("leaf_livecodebench") is None  # the hub
    with pytest.raises(FileNotFoundError, match="has no livecodebench"):
        resolve_data("leaf_livecodebench", data_dir=tmp_path)
    with pytest.raises(ValueError, match="leaf_leetcode: no data given and the task has no"):
        score_responses("leaf_leetcode", {0: "x"})
    with pytest.raises(ValueError, match="unknown evaluation task 'leaf_mbpp'"):
        code_task("leaf_mbpp")
    with pytest.raises(ValueError, match="leaf_gsm8k is an lm-eval task"):
        code_task("leaf_gsm8k")


# ============================================================================ generation
def test_generation_with_an_lm_eval_model_feeds_scoring(
    tiny_pair, lc_fixture_file, he_problems, tmp_path
):
    """The hf backend's path: HFLM generates from the task's chat prompt, scoring takes over."""
    from lm_eval.models.huggingface import HFLM

    from leafbench.evaluation import run_evaluation
    from leafbench.evaluation.code.generation import contexts, generate_responses

    lm = HFLM(pretrained=str(tiny_pair[1]), device="cpu", batch_size=2)
    task = code_task("leaf_leetcode")
    docs = lc.load_problems(lc_fixture_file)[:2]
    (context, _) = contexts(lm, task, docs)
    assert context.startswith("<|user|>\n" + docs[0]["prompt_sft"])
    assert context.endswith("<|assistant|>\n")
    he_context = contexts(lm, code_task("leaf_humaneval_plus"), he_problems[:1])[0]
    assert he_context.endswith("<|assistant|>\n" + he.RESPONSE_PREFIX)
    responses = generate_responses(lm, task, docs, max_gen_toks=4)
    assert sorted(responses) == [0, 1] and all(isinstance(r, str) for r in responses.values())
    metrics, records = score_responses(task, responses, docs=docs)
    assert metrics == {"pass@1": 0.0, "n": 2, "samples": 2}  # a random model solves nothing
    assert [r["response"] for r in records] == [responses[0], responses[1]]
    scores = run_evaluation(tiny_pair[1], ["leaf_leetcode"], tmp_path, limit=2, max_gen_toks=4,
                            data_files={"leaf_leetcode": lc_fixture_file})
    assert scores == {"leaf_leetcode": metrics}
    entry = json.loads((tmp_path / "results.json").read_text())["results"]["leaf_leetcode"]
    assert entry["backend"] == "hf" and entry["model_fingerprint"].startswith("sha256:")
    assert entry["decoding"]["max_gen_toks"] == 4 and entry["decoding"]["do_sample"] is False
    assert entry["decoding"]["chat_template"] is True
    rows = [json.loads(x) for x in (tmp_path / "samples_leaf_leetcode.jsonl").open()]
    assert [r["prompt"] for r in rows] == [r["prompt"] for r in records]
