"""LiveCodeBench code generation (``livecodebench/code_generation_lite``), by release and date.

Releases. The hub dataset is a set of JSONL shards; each release is cumulative, the union of
the shards up to it (the dataset's loading script, ``ALLOWED_FILES``):

==============  ==========================================  ========  =====================
release         files                                       problems  contest dates
==============  ==========================================  ========  =====================
release_v1      test.jsonl                                  400       May 2023 - Mar 2024
release_v2      + test2.jsonl                               511       May 2023 - May 2024
release_v3      + test3.jsonl                               612       May 2023 - Jul 2024
release_v4      + test4.jsonl                               713       May 2023 - Sep 2024
release_v5      + test5.jsonl                               880       May 2023 - Jan 2025
release_v6      + test6.jsonl                               1055      May 2023 - Apr 2025
==============  ==========================================  ========  =====================

``release_latest`` is the newest of these; ``v2`` names one shard (test2.jsonl) and ``v2_v4`` a
range of shards (test2-test4), as the loading script allows. LeaF's numbers are multiples of
1/713: release_v4, no date window. `load_problems` reads the shards from a local folder laid out
like the hub repo (``<data dir>/livecodebench/test.jsonl``, ...) or from the hub with
``datasets.load_dataset("json", data_files=["hf://datasets/livecodebench/code_generation_lite/
test.jsonl", ...])`` (the repo's loading script itself no longer runs on current ``datasets``).
``start_date``/``end_date`` ("YYYY-MM-DD") keep problems with ``start <= contest_date <= end``,
compared as datetimes exactly as LCB's `load_code_generation_dataset` does (so the end date means
its midnight).

Records: ``question_title``, ``question_content``, ``platform``, ``question_id``, ``contest_id``,
``contest_date`` (ISO), ``starter_code`` (set for LeetCode-style functional problems),
``difficulty``, ``public_test_cases`` (a JSON string: a list of {input, output, testtype}),
``private_test_cases`` (the same list as a JSON string, or on the hub base64(zlib(pickle(that
JSON string)))), ``metadata`` (a JSON string; ``func_name`` names the method of a functional
problem). Private tests are decoded lazily (`tests`), with `plain_data.decode_blob`: a pickle
that asks for any global (``os.system``, ...) is refused before anything runs.

Prompt: LCB's generic chat format (`SYSTEM_MESSAGE`, then "### Question", the format
instruction with the starter code or a ``# YOUR CODE HERE`` stub, "### Answer"). Extraction:
LCB's `extract_code` for chat models: the text between the last two lines containing ```.

Verdict (`sandbox_harness.run_lcb`, LCB's `testing_util.run_test`): public then private tests,
each under ``signal.alarm(6)``, stopping at the first failure; the whole run has LCB's global
limit ``(6 + 1) * n_tests + 5`` seconds. Functional problems: LCB's import block + the code,
``Solution()`` when the code mentions ``class Solution``, each test line JSON-decoded into an
argument, tuples compared as lists, ``==``. Stdin problems: ``if __name__ == '__main__'``
unwrapped, the program wrapped into one function called per test with stdin patched as LCB
patches it (``exit()`` ends the test), and the output compared line by line after stripping,
falling back to a Decimal comparison of whitespace-separated tokens. "pass" iff every test
passes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from leafbench.evaluation.code.execution import (
    CODE_MEMORY_BYTES,
    single_suite_verdict,
)
from leafbench.evaluation.code.plain_data import decode_blob
from leafbench.evaluation.code.task import CodeTask
from leafbench.evaluation.sandbox import Limits

HUB_DATASET = "livecodebench/code_generation_lite"
LOCAL_DIR = "livecodebench"
DEFAULT_RELEASE = "release_v4"
TIMEOUT_SECONDS = 6
SHARDS = ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl", "test6.jsonl")
RELEASE_SIZES = {
    "release_v1": 400, "release_v2": 511, "release_v3": 612, "release_v4": 713,
    "release_v5": 880, "release_v6": 1055,
}
REQUIRED_FIELDS = (
    "question_title", "question_content", "platform", "question_id", "contest_date",
    "starter_code", "difficulty", "public_test_cases", "private_test_cases", "metadata",
)

SYSTEM_MESSAGE = (
    "You are an expert Python programmer. You will be given a question (problem specification) "
    "and will generate a correct Python program that matches the specification and passes all "
    "tests. You will NOT return anything except for the program."
)
FORMAT_WITH_STARTER_CODE = (
    "You will use the following starter code to write the solution to the problem and enclose "
    "your code within delimiters."
)
FORMAT_WITHOUT_STARTER_CODE = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not "
    "directly test on the sample inputs). Enclose your code within delimiters as follows."
)


def task(
    *,
    release: str = DEFAULT_RELEASE,
    start_date: str | None = None,
    end_date: str | None = None,
    timeout: int = TIMEOUT_SECONDS,
) -> CodeTask:
    """Code generation as `registry.TASKS["leaf_livecodebench"]` builds it (`release`, an
    optional contest date window, and the per-test `timeout` in whole seconds, LCB's 6)."""
    release_files(release)  # fail early on a wrong release name

    def load(path: Path | None) -> list[dict[str, Any]]:
        return load_problems(release, local_dir=path, start_date=start_date, end_date=end_date)

    return CodeTask(
        name="leaf_livecodebench",
        suites=("tests",),
        load=load,
        problem_id=lambda doc: str(doc["question_id"]),
        prompt=prompt,
        extract=extract_code,
        check_job=lambda doc, code: check_job(doc, code, timeout=timeout),
        verdict=verdict,
        system=SYSTEM_MESSAGE,
        max_gen_toks=2000,  # lcb_runner's --max_tokens
        stop=("###",),  # lcb_runner's --stop
    )


def _release_table() -> dict[str, tuple[str, ...]]:
    table = {f"release_v{i}": SHARDS[:i] for i in range(1, len(SHARDS) + 1)}
    table["release_latest"] = SHARDS
    for first in range(1, len(SHARDS) + 1):
        table[f"v{first}"] = (SHARDS[first - 1],)
        for last in range(first + 1, len(SHARDS) + 1):
            table[f"v{first}_v{last}"] = SHARDS[first - 1 : last]
    return table


RELEASE_FILES = _release_table()


def release_files(release: str) -> tuple[str, ...]:
    """The shard files that make up `release` (cumulative for release_vN)."""
    try:
        return RELEASE_FILES[release]
    except KeyError:
        raise ValueError(
            f"unknown LiveCodeBench release {release!r}; expected release_v1..release_v"
            f"{len(SHARDS)}, release_latest, vN or vN_vM"
        ) from None


def hub_data_files(release: str, revision: str = "main") -> list[str]:
    """hf:// URLs of the release's shards, as `datasets.load_dataset("json", ...)` takes them."""
    return [
        f"hf://datasets/{HUB_DATASET}@{revision}/{name}" for name in release_files(release)
    ]


def load_problems(
    release: str = DEFAULT_RELEASE,
    *,
    local_dir: str | Path | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    revision: str = "main",
) -> list[dict[str, Any]]:
    """The release's problems, shard by shard in file order (doc id = position after the date
    filter), from `local_dir` (laid out like the hub repo) or else from the hub."""
    files = release_files(release)
    if local_dir is not None:
        folder = Path(local_dir)
        missing = [name for name in files if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"LiveCodeBench {release} needs {list(files)} in {folder}; missing {missing}"
            )
        rows: Iterable[dict[str, Any]] = _read_jsonl_files([folder / name for name in files])
    else:
        import datasets

        rows = datasets.load_dataset(
            "json", data_files=hub_data_files(release, revision), split="train"
        )
    start = _parse_day(start_date, "start_date")
    end = _parse_day(end_date, "end_date")
    problems = []
    for row in rows:
        problem = parse_problem(row)
        when = problem["contest_datetime"]
        if (start is None or start <= when) and (end is None or when <= end):
            problems.append(problem)
    return problems


def _read_jsonl_files(paths: Sequence[Path]) -> Iterable[dict[str, Any]]:
    for path in paths:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None


def _parse_day(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise ValueError(f"{name} must be YYYY-MM-DD, got {value!r}") from None


def parse_problem(row: dict[str, Any]) -> dict[str, Any]:
    """One hub record as a doc: public tests and metadata decoded, private tests kept encoded
    until `tests` needs them, ``fn_name`` set for functional problems."""
    missing = [f for f in REQUIRED_FIELDS if f not in row]
    if missing:
        raise ValueError(f"LiveCodeBench record {row.get('question_id')!r} lacks {missing}")
    doc = dict(row)
    doc["public_test_cases"] = json.loads(row["public_test_cases"])
    doc["metadata"] = json.loads(row["metadata"]) if row["metadata"] else {}
    doc["fn_name"] = doc["metadata"].get("func_name")
    doc["contest_datetime"] = datetime.fromisoformat(row["contest_date"])
    return doc


def decode_private_tests(field: str) -> list[dict[str, Any]]:
    """LCB's private_test_cases: a JSON list, or base64(zlib(pickle(JSON string))) decoded with
    the plain-data unpickler (as LCB does: plain JSON first, the compressed form otherwise)."""
    try:
        return json.loads(field)
    except json.JSONDecodeError:
        pass
    decoded = decode_blob(field)
    if isinstance(decoded, bytes):
        decoded = decoded.decode("utf-8")
    if not isinstance(decoded, str):
        raise ValueError(
            f"private_test_cases decoded to a {type(decoded).__name__}, expected a JSON string"
        )
    return json.loads(decoded)


def tests(doc: dict[str, Any]) -> list[dict[str, str]]:
    """Public then private tests as {"input", "output", "testtype"} (LCB's order)."""
    private = doc["private_test_cases"]
    if isinstance(private, str):
        private = decode_private_tests(private)
    return list(doc["public_test_cases"]) + list(private)


def messages(doc: dict[str, Any]) -> list[dict[str, str]]:
    """LCB's chat prompt: the generic system message and question template."""
    return [{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": prompt(doc)}]


def prompt(doc: dict[str, Any]) -> str:
    """LCB's get_generic_question_template_answer."""
    text = f"### Question:\n{doc['question_content']}\n\n"
    if doc["starter_code"]:
        text += f"### Format: {FORMAT_WITH_STARTER_CODE}\n"
        text += f"```python\n{doc['starter_code']}\n```\n\n"
    else:
        text += f"### Format: {FORMAT_WITHOUT_STARTER_CODE}\n"
        text += "```python\n# YOUR CODE HERE\n```\n\n"
    text += "### Answer: (use the provided format with backticks)\n\n"
    return text


def extract_code(response: str, doc: dict[str, Any] | None = None) -> str:
    """LCB's extract_code for chat models: between the last two lines that contain ```."""
    lines = response.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return ""
    return "\n".join(lines[fences[-2] + 1 : fences[-1]])


def check_job(
    doc: dict[str, Any], code: str, *, timeout: int = TIMEOUT_SECONDS
) -> tuple[dict[str, Any], Limits]:
    """The sandbox job running `code` on the problem's tests, and its limits."""
    cases = tests(doc)
    job = {
        "mode": "lcb",
        "code": code,
        "fn_name": doc["fn_name"],
        "tests": [{"input": t["input"], "output": t["output"]} for t in cases],
        "timeout": timeout,
        "preimport": ["numpy"] if "numpy" in code else [],  # loaded in LCB's workers
    }
    wall = (timeout + 1) * len(cases) + 5.0  # LCB's global timeout
    return job, Limits(wall_seconds=wall, cpu_seconds=int(wall), memory_bytes=CODE_MEMORY_BYTES)


verdict = single_suite_verdict
