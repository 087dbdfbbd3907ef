"""One result schema for every task (leafbench.evaluation.results is the contract).

Every task leafbench ships is evaluated twice here: by the replay backend on known responses
(gold solutions where the data has them, plus a wrong answer, so `correct` takes both values)
and by the hf backend on a tiny random-weight model (a few tokens per question). Both runs must
write, for every task, the same results.json fields and sample rows keyed by (doc_id, sample)
with a boolean `correct`, and the two runs must line up item by item.

Benchmark items come from ../shared/data when present (read in place, never copied), else from
a few records written here in the same formats (own wording). LiveCodeBench is not in the
shared data, and the synthetic set is made per run: both are always written here.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from conftest import shared_data_dir

from leafbench.evaluation.registry import TASKS
from leafbench.evaluation.results import DECODING_FIELDS, ROW_FIELDS, TASK_FIELDS

ALL_TASKS = list(TASKS)
LIMIT = 2  # items per task: enough for a right and a wrong answer

FIXTURES = {  # used only when ../shared/data lacks the file
    "leaf_gsm8k": [{"question": "Ann has 3 apples and buys 4 more. How many?",
                    "answer": "3 + 4 = 7\n#### 7"},
                   {"question": "A pen costs $2. What do 6 pens cost?", "answer": "6 * 2 = 12\n#### 12"}],
    "leaf_math500": [{"problem": "What is $2+3$?", "solution": "It is $\\boxed{5}$.", "answer": "5",
                      "subject": "Algebra", "level": 1, "unique_id": "a/1.json"},
                     {"problem": "What is $3 \\cdot 4$?", "solution": "It is $\\boxed{12}$.",
                      "answer": "12", "subject": "Algebra", "level": 1, "unique_id": "a/2.json"}],
    "leaf_olympiadbench": [{"id": 1, "question": "Find $x$ with $x+1=3$.", "final_answer": ["$2$"],
                            "is_multiple_answer": False, "unit": None, "error": None},
                           {"id": 2, "question": "Find $y$ with $2y=10$.", "final_answer": ["$5$"],
                            "is_multiple_answer": False, "unit": None, "error": None}],
    "leaf_humaneval_plus": [
        {"task_id": f"HumanEval/{i}", "entry_point": f"add{i}", "atol": 0, "test": "",
         "contract": "", "prompt": f'def add{i}(a: int, b: int) -> int:\n    """a + b"""\n',
         "canonical_solution": "    return a + b\n", "base_input": [[1, 2]],
         "plus_input": [[-3, 9]]} for i in range(2)],
    "leaf_leetcode": [{"task_id": f"lc-{i}", "prompt": "",
                       "test": "assert Solution().add(2, 3) == 5\n",
                       "prompt_sft": f"Problem {i}.\n```python\nclass Solution:\n    pass\n```"}
                      for i in range(2)],
}


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _lcb_record(qid: str, a: int, b: int) -> dict:
    tests = [{"input": f"{x}\n{y}", "output": json.dumps(x + y), "testtype": "functional"}
             for x, y in ((a, b), (b, a), (a, a))]
    return {"question_title": qid, "question_content": f"Add two numbers ({qid}).",
            "platform": "leetcode", "question_id": qid, "contest_id": "c1",
            "contest_date": "2023-06-01T00:00:00", "difficulty": "easy",
            "starter_code": "class Solution:\n    def addTwo(self, a: int, b: int) -> int:\n        ",
            "public_test_cases": json.dumps(tests[:1]), "private_test_cases": json.dumps(tests[1:]),
            "metadata": json.dumps({"func_name": "addTwo"})}


LCB_SOLUTION = "```python\nclass Solution:\n    def addTwo(self, a, b):\n        return a + b\n```"


@pytest.fixture(scope="module")
def data_files(tmp_path_factory) -> dict[str, Path]:
    """{task: its data}: the shared file when present, else a fixture written here."""
    root = tmp_path_factory.mktemp("schema_data")
    shared = shared_data_dir()
    files = {}
    for name, task in TASKS.items():
        if shared is not None and (shared / task.local_file).is_file():
            files[name] = shared / task.local_file
        elif name in FIXTURES:
            files[name] = _write_jsonl(root / task.local_file, FIXTURES[name])
    files["leaf_livecodebench"] = _write_jsonl(
        root / "livecodebench" / "test.jsonl", [_lcb_record("q0", 1, 2), _lcb_record("q1", 5, 7)]
    ).parent
    files["leaf_synthetic"] = _write_jsonl(root / "synthetic" / "test.jsonl", [
        {"id": f"t{i}", "instruction": f"What is {a} plus {b}?", "answer": str(a + b),
         "response": f"{a} plus {b} is {a + b}. The answer is {a + b}.", "distractor_spans": []}
        for i, (a, b) in enumerate([(3, 4), (5, 2)])])
    return files


def _records(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return [json.loads(line) for _, line in zip(range(LIMIT), fh, strict=False)]


GOLD = {  # a right response for an item, from the data
    "leaf_synthetic": lambda r: r["response"],
    "leaf_gsm8k": lambda r: r["answer"],
    "leaf_math500": lambda r: r["solution"],
    "leaf_olympiadbench": lambda r: "\\boxed{" + ",".join(
        a.replace("$", "") for a in r["final_answer"]) + "}",
    "leaf_humaneval_plus": lambda r: "```python\n" + r["prompt"] + r["canonical_solution"] + "```",
    "leaf_leetcode": lambda r: "I cannot solve this.",  # the file has no reference solutions
    "leaf_livecodebench": lambda r: LCB_SOLUTION,
}


@pytest.fixture(scope="module")
def replay_run(data_files, tmp_path_factory) -> Path:
    """Every task replayed: item 0 its gold, item 1 a wrong answer (two samples for code)."""
    from leafbench.evaluation.replay import run_replay

    root = tmp_path_factory.mktemp("schema_replay")
    lines = []
    for name, task in TASKS.items():
        path = data_files[name]
        records = _records(path if path.is_file() else path / "test.jsonl")
        lines.append({"task": name, "doc_id": 0, "response": GOLD[name](records[0])})
        wrong = "The answer is \\boxed{-99991}. ```python\nprint(0)\n```"
        key, value = (("responses", [wrong, GOLD[name](records[1])]) if task.engine == "code"
                      else ("response", wrong))
        lines.append({"task": name, "doc_id": 1, key: value})
    responses = _write_jsonl(root / "responses.jsonl", lines)
    run_replay(responses, ALL_TASKS, root / "out", data_files=data_files, limit=LIMIT,
               task_options={"leaf_livecodebench": {"release": "release_v1"},
                             "leaf_humaneval_plus": {"cache_dir": root / "he_cache"}})
    return root / "out"


@pytest.fixture(scope="module")
def model_run(tiny_pair, data_files, tmp_path_factory) -> Path:
    """Every task generated by the hf backend with a tiny random model (4 tokens a question)."""
    from leafbench.evaluation import run_evaluation

    out = tmp_path_factory.mktemp("schema_model") / "out"
    files = {t: p for t, p in data_files.items() if t != "leaf_livecodebench"}
    # LiveCodeBench's release is a builder option; the default (release_v4) wants test4.jsonl.
    release_v4 = data_files["leaf_livecodebench"]
    for shard in ("test2.jsonl", "test3.jsonl", "test4.jsonl"):
        (release_v4 / shard).touch()
    run_evaluation(tiny_pair[1], ALL_TASKS, out, data_files={**files,
                   "leaf_livecodebench": release_v4}, limit=LIMIT, max_gen_toks=4, batch_size=4)
    return out


def _load(out: Path) -> tuple[dict, dict[str, list[dict]]]:
    report = json.loads((out / "results.json").read_text())
    rows = {t: [json.loads(x) for x in (out / f"samples_{t}.jsonl").open()] for t in ALL_TASKS}
    return report, rows


def _check_schema(out: Path, backend: str) -> dict[str, list[dict]]:
    report, rows = _load(out)
    assert set(report["results"]) == set(ALL_TASKS)
    assert report["backend"] == backend and report["schema"] == 2
    for name, entry in report["results"].items():
        missing = [f for f in TASK_FIELDS if f not in entry]
        assert missing == [], (name, missing)
        assert entry["task"] == name and entry["backend"] == backend
        assert entry["metric"] == TASKS[name].metric and entry["grading"] == TASKS[name].grading
        assert entry["metric"] in entry and entry[entry["metric"]] == entry["score"]
        assert entry["model_fingerprint"] == report["model_fingerprint"]
        assert entry["versions"] == report["versions"] and entry["versions"]["torch"]
        assert sorted(entry["decoding"]) == sorted(DECODING_FIELDS)
        assert len(entry["docs_sha256"]) == 64 and len(entry["data_sha256"]) == 64
        low, high = entry["ci95"]
        assert 0.0 <= low <= entry["score"] <= high <= 1.0
        if TASKS[name].engine == "code":  # how the generated programs were contained
            assert {"mountns", "netns", "pidns", "ipcns"} <= set(entry["isolation"]), entry

        task_rows = rows[name]
        keys = [(r["doc_id"], r["sample"]) for r in task_rows]
        assert keys == sorted(set(keys)), name  # one row per (doc_id, sample), in order
        for row in task_rows:
            assert list(row)[: len(ROW_FIELDS)] == list(ROW_FIELDS), (name, list(row))
            assert isinstance(row["correct"], bool)
        per_item: dict[int, list[bool]] = {}
        for row in task_rows:
            per_item.setdefault(row["doc_id"], []).append(row["correct"])
        assert entry["n"] == len(per_item) == LIMIT and entry["samples"] == len(task_rows)
        assert entry["score"] == pytest.approx(
            sum(sum(v) / len(v) for v in per_item.values()) / len(per_item))
    return rows


def test_replay_of_every_task_writes_the_schema(replay_run):
    rows = _check_schema(replay_run, "replay")
    report, _ = _load(replay_run)
    for name, task in TASKS.items():
        entry = report["results"][name]
        assert entry["model_fingerprint"].startswith("responses:sha256:")
        assert entry["decoding"]["do_sample"] is None  # stored responses: decoded elsewhere
        verdicts = {(r["doc_id"], r["sample"]): r["correct"] for r in rows[name]}
        if name != "leaf_leetcode":  # no reference solution there
            assert verdicts[0, 0] is True, (name, rows[name][0])
        assert verdicts[1, 0] is False, (name, rows[name])
        if task.engine == "code":  # two samples: the second is the gold (0.5 for the item)
            assert entry["decoding"]["samples_per_item"] == 2
            assert verdicts[1, 1] is (name != "leaf_leetcode")
    math = rows["leaf_math500"][0]  # each task's own details follow the key fields
    assert math["correct"] == math["correct_strict"] and "extracted_flexible" in math
    humaneval = rows["leaf_humaneval_plus"][0]
    assert humaneval["correct_base"] and humaneval["status"] == {"base": "pass", "plus": "pass"}


def test_a_model_run_of_every_task_writes_the_schema_and_lines_up_with_replay(
    model_run, replay_run
):
    _check_schema(model_run, "hf")
    report, rows = _load(model_run)
    _, replayed = _load(replay_run)
    for name, entry in report["results"].items():
        assert entry["model_fingerprint"].startswith("sha256:")
        decoding = entry["decoding"]
        assert decoding["do_sample"] is False and decoding["max_gen_toks"] == 4
        assert decoding["chat_template"] is True and decoding["samples_per_item"] == 1
        # Item by item: the model's (doc_id, sample) keys are among the replay's.
        mine = {(r["doc_id"], r["sample"]) for r in rows[name]}
        assert mine <= {(r["doc_id"], r["sample"]) for r in replayed[name]}, name


def test_summary_table_shows_every_tasks_headline_score(replay_run):
    """The evaluate stage flattens results.json into `<role>.<task>.<metric>`; the end-of-run
    table shows each task's headline score for each role, code tasks included."""
    from types import SimpleNamespace

    from rich.console import Console

    from leafbench.evaluation.stage import _flatten
    from leafbench.report import print_summary

    report = json.loads((replay_run / "results.json").read_text())
    metrics = {**_flatten("teacher", report), **_flatten("student_after", report)}
    console = Console(record=True, width=200)
    exp = SimpleNamespace(name="schema", mining=SimpleNamespace(
        threshold=SimpleNamespace(mode="absolute")))
    print_summary(exp, [SimpleNamespace(name="evaluate", status="done", seconds=1.0, key="k",
                                        metrics=metrics)], console=console)
    lines = console.export_text().splitlines()
    for name in ALL_TASKS:
        entry = report["results"][name]
        for role in ("teacher", "student_after"):
            cells = (role, name, entry["metric"], f"{entry['score']:.3f}")
            assert any(all(c in line for c in cells) for line in lines), (cells, lines)


def test_a_machine_that_cannot_contain_code_refuses_before_generating(
        tiny_pair, data_files, tmp_path, monkeypatch):
    """No sandbox, no opt-in: the code engine stops before the model generates a token, with
    the sandbox's one-line reason, and writes no results."""
    from leafbench.evaluation import run_evaluation, sandbox
    from leafbench.evaluation.code import generation

    def must_not_generate(*args, **kwargs):
        raise AssertionError("generated although the code could not be contained")

    monkeypatch.setattr(sandbox, "_FORCE_NO_CONTAINMENT", True)
    monkeypatch.delenv(sandbox.UNSAFE_OPT_IN, raising=False)
    monkeypatch.setattr(generation, "generate_responses", must_not_generate)
    out = tmp_path / "out"
    with pytest.raises(sandbox.SandboxUnavailable, match=sandbox.UNSAFE_OPT_IN):
        run_evaluation(tiny_pair[1], ["leaf_humaneval_plus"], out,
                       data_files={"leaf_humaneval_plus": data_files["leaf_humaneval_plus"]},
                       limit=LIMIT, max_gen_toks=4, batch_size=4)
    assert not (out / "results.json").exists()


def test_the_cli_refuses_in_one_line_and_records_the_explicit_opt_in(
        tiny_pair, data_files, tmp_path, monkeypatch, capsys):
    """`leafbench eval` on a machine without containment: exit 2 with the sandbox's one line;
    with --unsafe-run-generated-code-unsandboxed it runs, and results.json says so."""
    from leafbench import cli
    from leafbench.evaluation import sandbox

    monkeypatch.setattr(sandbox, "_FORCE_NO_CONTAINMENT", True)
    monkeypatch.delenv(sandbox.UNSAFE_OPT_IN, raising=False)
    local = data_files["leaf_humaneval_plus"]
    data_dir = str(local)[: -len(TASKS["leaf_humaneval_plus"].local_file)]
    argv = ["eval", "--model", str(tiny_pair[1]), "--tasks", "leaf_humaneval_plus",
            "--data-dir", data_dir, "--limit", str(LIMIT), "--max-gen-toks", "4", "--no-cache",
            "--out", str(tmp_path / "refused")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to run generated code" in err[0], err
    assert "--unsafe-run-generated-code-unsandboxed" in err[0], err
    assert not (tmp_path / "refused" / "results.json").exists()

    opted = [*argv[:-1], str(tmp_path / "opted"), "--unsafe-run-generated-code-unsandboxed"]
    assert cli.main(opted) == 0
    entry = json.loads((tmp_path / "opted" / "results.json").read_text())["results"][
        "leaf_humaneval_plus"]
    assert "UNSAFE_no_sandbox" in entry["isolation"], entry["isolation"]
    assert "UNSAFE_no_sandbox" in capsys.readouterr().err
