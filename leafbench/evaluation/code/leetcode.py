"""LeetCode contest benchmark (DeepSeek-Coder, 180 problems, July 2023 - January 2024).

Mirrors DeepSeek-Coder's ``Evaluation/LeetCode`` (vllm_inference.py, evaluate_leetcode.py and
its human_eval package), except that programs run in leafbench's sandbox:

* Prompt: the record's ``prompt_sft`` (problem statement, then "Please complete the code below
  to solve above prblem:" and the ``class Solution`` stub in a python fence) as the only user
  turn; ``cot=True`` appends DeepSeek's "You need first write a step-by-step outline and then
  write the code." Greedy decoding, 1024 new tokens upstream.
* Extraction (`extract_code`, DeepSeek's `extract_python_code` and its caller): ``[PYTHON]``
  tags count as a python fence; with a ```python fence, the FIRST ```python ... ``` block
  (closing fence on its own line); without one, the text before the first line starting with
  ``def``, ``class``, ``if``, ``#`` or ``print``; a response that starts with a newline and eight
  spaces continues the method body and is appended to the stub; when the fenced pattern does not
  match, the whole response is the program.
* Program: DeepSeek's IMPORT_HELPER["python"] preamble (math, re, sys, copy, datetime,
  itertools, collections, heapq, functools, hashlib, numpy, string, ``from typing import *``,
  ``from collections import *``, ``from functools import *``) plus ``import bisect``, then the
  code, then the record's ``test`` (``my_solution = Solution()`` and 100 asserts on it).
* Verdict: the program is exec'd in fresh globals (``__name__`` is not ``"__main__"``) after
  human-eval's reliability guard, stdout/stderr swallowed, under one 10 s time limit (the
  ``timeout`` DeepSeek's evaluate_functional_correctness uses): "pass" when it finishes,
  "fail" on any exception (a failed assert is a wrong answer), "timeout" past 10 s; "error" when
  the sandbox run ended without a report. pass@1 = passing problems / 180.

The file has no reference solutions; the tests check the harness with hand-written correct and
wrong solutions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from leafbench.evaluation.code.execution import (
    CODE_MEMORY_BYTES,
    single_suite_verdict,
)
from leafbench.evaluation.code.task import CodeTask
from leafbench.evaluation.sandbox import Limits

LOCAL_FILE = "leetcode/20240121-Jul.jsonl"
TIMEOUT_SECONDS = 10.0
COT_SUFFIX = "\nYou need first write a step-by-step outline and then write the code."
# DeepSeek-Coder Evaluation/LeetCode/human_eval/evaluation.py IMPORT_HELPER["python"], then
# `import bisect` (LeetCode's judge imports it; the module name only, no star import).
IMPORT_HELPER = (
    "import math",
    "import re",
    "import sys",
    "import copy",
    "import datetime",
    "import itertools",
    "import collections",
    "import heapq",
    "import functools",
    "import hashlib",
    "import numpy",
    "import numpy as np",
    "import string",
    "from typing import *",
    "from collections import *",
    "from functools import *",
    "import bisect",
)
REQUIRED_FIELDS = ("task_id", "prompt", "prompt_sft", "test")


def task(*, cot: bool = False, timeout: float = TIMEOUT_SECONDS) -> CodeTask:
    """The contest set as `registry.TASKS["leaf_leetcode"]` builds it (`cot`: the
    chain-of-thought prompt variant; `timeout`: seconds per program, DeepSeek's 10 by default).
    Its data has no default source: `registry.resolve_data` asks for a file first."""
    return CodeTask(
        name="leaf_leetcode",
        suites=("tests",),
        load=load_problems,
        problem_id=lambda doc: doc["task_id"],
        prompt=lambda doc: prompt(doc, cot=cot),
        extract=extract_code,
        check_job=lambda doc, code: check_job(doc, code, timeout=timeout),
        verdict=verdict,
        max_gen_toks=1024,  # DeepSeek's vllm_inference.py
    )


def load_problems(path: str | Path | None) -> list[dict[str, Any]]:
    """The contest problems in file order (doc id = position). The set has no hub source, so
    `None` (no file given) is an error naming what is needed."""
    if path is None:
        raise FileNotFoundError("LeetCode needs a data file (the contest JSONL); none was given")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LeetCode data file {path} does not exist")
    problems = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            missing = [f for f in REQUIRED_FIELDS if f not in record]
            if missing:
                raise ValueError(f"{path}:{number}: LeetCode record lacks {missing}")
            problems.append(record)
    return problems


def prompt(doc: dict[str, Any], *, cot: bool = False) -> str:
    return doc["prompt_sft"] + (COT_SUFFIX if cot else "")


def _python_code(generation: str) -> str:
    """DeepSeek's extract_python_code (raises IndexError when a fence does not close)."""
    generation = generation.replace("[PYTHON]", "```python").replace("[/PYTHON]", "```")
    if "```python" in generation:
        return re.findall(r"```python\n(.*?)\n```", generation, flags=re.DOTALL)[0]
    return re.split("\ndef|\nclass|\nif|\n#|\nprint", generation)[0]


def extract_code(response: str, doc: dict[str, Any]) -> str:
    """The program DeepSeek's evaluate_leetcode.py would test for `response`."""
    try:
        if response.startswith("\n        "):
            return _python_code(doc["prompt_sft"]).strip() + "\n" + response
        return _python_code(response)
    except IndexError:
        return response


def program(code: str, doc: dict[str, Any]) -> str:
    """Preamble, candidate code, the record's asserts: DeepSeek's process_humaneval_test."""
    return "\n".join(IMPORT_HELPER) + "\n" + code + "\n" + doc["test"] + "\n"


def check_job(
    doc: dict[str, Any], code: str, *, timeout: float = TIMEOUT_SECONDS
) -> tuple[dict[str, Any], Limits]:
    """The sandbox job running `code` against the record's asserts, and its limits."""
    job = {
        "mode": "exec",
        "program": program(code, doc),
        "timeout": timeout,
        "preimport": ["numpy"],  # imported by DeepSeek's evaluator before the guard
    }
    wall = timeout + 5.0  # interpreter start, numpy, the guard
    return job, Limits(wall_seconds=wall, cpu_seconds=int(wall), memory_bytes=CODE_MEMORY_BYTES)


verdict = single_suite_verdict
