r"""Competition-math evaluation: the answer checker, the replay backend, and gold self-checks.

The self-checks replay gold solutions through the real lm-eval pipeline (task YAMLs, filters,
`process_results`, metrics, result files) with the replay backend: every gold must score as
correct, and every gold given to the *next* question must score (almost) never. The first
catches a checker or extraction that rejects right answers, the second one that accepts
anything. They run on ../shared/data (or $LEAFBENCH_DATA_DIR) when present: GSM8K (1319),
MATH-500 (500) and OlympiadBench (675) in about half a minute; else on a few fixture items
per task written here in the same formats (own wording).

math_verify's timeouts use SIGALRM, which works only in the main thread; lm-eval scores in
the main thread, and the checker switches the timeout off elsewhere (tested below).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from leafbench.evaluation.math_check import (
    boxed_contents,
    clean_answer,
    extract_boxed,
    extract_boxed_or_math,
    is_equivalent,
    parse_tolerance,
    split_answers,
)
from leafbench.evaluation.registry import TASKS, TASKS_DIR

MATH_TASKS = ("leaf_gsm8k", "leaf_math500", "leaf_olympiadbench")
LOCAL_FILES = {task: TASKS[task].local_file for task in MATH_TASKS}
# OlympiadBench golds the checker may fail to recognise (the brief: >= 673 of 675).
OLYMPIAD_ALLOWED_FAILURES = 2
# A gold answer given to the wrong question may still be right by coincidence (many answers
# are small integers); beyond this share the checker accepts too much.
SHIFTED_MAX_SCORE = 0.03


# ---------------------------------------------------------------- fixture data (own wording)
FIXTURE = {
    "leaf_gsm8k": [
        {"question": "Ann has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = 7\n#### 7"},
        {"question": "A pen costs $2. What do 6 pens cost?", "answer": "6 * 2 = 12\n#### 12"},
        {"question": "1,200 hens, 200 sold. How many left?", "answer": "1,000 left\n#### 1,000"},
        {"question": "15 pages a day for 4 days?", "answer": "15 * 4 = 60\n#### 60"},
    ],
    "leaf_math500": [
        {
            "problem": "What is $\\frac{1}{2} + \\frac{1}{4}$?",
            "solution": "With denominator 4: $\\frac{2}{4} + \\frac{1}{4} = \\boxed{\\dfrac{3}{4}}$.",
            "answer": "\\frac{3}{4}",
        },
        {
            "problem": "Give the point where $y = x + 3$ meets $y = 5$.",
            "solution": "Then $x = 2$, so the point is $\\boxed{(2, 5)}$.",
            "answer": "(2,5)",
        },
        {
            "problem": "Solve $x^2 < 9$ in interval notation.",
            "solution": "$|x| < 3$, that is $\\boxed{(-3, 3)}$.",
            "answer": "(-3,3)",
        },
        {
            "problem": "How many edges does a cube have?",
            "solution": "Four on top, four on the bottom, four upright: $\\boxed{12}$.",
            "answer": "12",
        },
    ],
    "leaf_olympiadbench": [
        {
            "id": 1,
            "question": "Find the smallest prime larger than 20.",
            "final_answer": ["$23$"],
            "is_multiple_answer": False,
            "unit": None,
            "answer_type": "Numerical",
            "error": None,
        },
        {
            "id": 2,
            "question": "Find all real $x$ with $x^2 + x - 6 = 0$.",
            "final_answer": ["$2$,$-3$"],
            "is_multiple_answer": True,
            "unit": None,
            "answer_type": "Numerical",
            "error": None,
        },
        {
            "id": 3,
            "question": "What share of 50 is 2.1, in percent?",
            "final_answer": ["4.2"],
            "is_multiple_answer": False,
            "unit": "%",
            "answer_type": "Numerical",
            "error": "1e-1",
        },
        {
            "id": 4,
            "question": "Find all positive integer pairs $(a, b)$ with $ab = 2$.",
            "final_answer": ["$(1,2),(2,1)$"],
            "is_multiple_answer": True,
            "unit": None,
            "answer_type": "Tuple",
            "error": None,
        },
    ],
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Nothing may come from the hub; the data dir is passed explicitly."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("LEAFBENCH_DATA_DIR", raising=False)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """../shared/data when it has all three test files, else the fixture written out."""
    if all((SHARED_DATA / f).is_file() for f in LOCAL_FILES.values()):
        return SHARED_DATA
    root = tmp_path_factory.mktemp("math_data")
    for task, rows in FIXTURE.items():
        _write_jsonl(root / LOCAL_FILES[task], rows)
    return root


def _write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _records(data_dir: Path, task: str) -> list[dict]:
    lines = (data_dir / LOCAL_FILES[task]).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def gold_response(task: str, record: dict) -> str:
    """What a perfect model would answer: the dataset's own solution text where it has one
    with the answer marked (GSM8K's "####", MATH's \\boxed{}), else a sentence boxing
    OlympiadBench's `final_answer` (its solutions box nothing)."""
    if task == "leaf_gsm8k":
        return record["answer"]
    if task == "leaf_math500":
        return record["solution"]
    parts = ",".join(a.replace("$", "").strip() for a in record["final_answer"])
    return f"The final answer is \\boxed{{{parts}}}."


def _replay(data_dir: Path, out: Path, shift: int) -> tuple[dict, dict[str, list[dict]], Path]:
    """Replay doc i's gold (shift 0) or doc (i + shift)'s gold on every doc of every task."""
    from leafbench.evaluation.replay import run_replay

    lines = []
    for task in MATH_TASKS:
        golds = [gold_response(task, r) for r in _records(data_dir, task)]
        for i in range(len(golds)):
            response = golds[(i + shift) % len(golds)]
            lines.append({"task": task, "doc_id": i, "response": response})
    responses = _write_jsonl(out / "responses.jsonl", lines)
    scores = run_replay(responses, list(MATH_TASKS), out / "eval", data_dir=data_dir)
    samples = {
        task: [json.loads(x) for x in (out / "eval" / f"samples_{task}.jsonl").open()]
        for task in MATH_TASKS
    }
    return scores, samples, out / "eval"


@pytest.fixture(scope="module")
def gold_run(data_dir, tmp_path_factory):
    return _replay(data_dir, tmp_path_factory.mktemp("gold"), shift=0)


@pytest.fixture(scope="module")
def shifted_run(data_dir, tmp_path_factory):
    return _replay(data_dir, tmp_path_factory.mktemp("shifted"), shift=1)


# ---------------------------------------------------------------- gold self-checks
@pytest.mark.parametrize("task", ["leaf_gsm8k", "leaf_math500"])
def test_gold_solutions_score_100_percent(gold_run, data_dir, task):
    scores, samples, _ = gold_run
    n = len(_records(data_dir, task))
    failures = [r for r in samples[task] if not (r["correct_strict"] and r["correct_flexible"])]
    assert failures == []
    assert scores[task] == {
        "exact_match,strict-match": 1.0,
        "exact_match,flexible-extract": 1.0,
        "n": n,
    }


def test_gold_olympiadbench_final_answers_score(gold_run, data_dir):
    scores, samples, _ = gold_run
    records = _records(data_dir, "leaf_olympiadbench")
    failed = [
        (records[r["doc_id"]].get("id"), r["target"], r["extracted_strict"])
        for r in samples["leaf_olympiadbench"]
        if not r["correct_strict"]
    ]
    allowed = OLYMPIAD_ALLOWED_FAILURES if data_dir == SHARED_DATA else 0
    assert len(failed) <= allowed, failed
    assert scores["leaf_olympiadbench"]["n"] == len(records)
    for name in ("strict-match", "flexible-extract"):
        score = scores["leaf_olympiadbench"][f"exact_match,{name}"]
        assert score >= (len(records) - allowed) / len(records)


@pytest.mark.parametrize("task", MATH_TASKS)
def test_another_items_gold_scores_low(shifted_run, task):
    scores, _, _ = shifted_run
    assert scores[task]["exact_match,strict-match"] <= SHIFTED_MAX_SCORE
    assert scores[task]["exact_match,flexible-extract"] <= SHIFTED_MAX_SCORE


def test_replay_records_prompts_and_extractions(gold_run, data_dir):
    """The samples files show the real prompt and the boxed content the verdict judged."""
    _, samples, eval_dir = gold_run
    first = _records(data_dir, "leaf_math500")[0]
    row = samples["leaf_math500"][0]
    assert first["problem"] in row["prompt"] and "\\boxed{}" in row["prompt"]
    assert row["response"] == first["solution"]
    assert row["extracted_strict"] == extract_boxed(first["solution"])
    assert row["target"] == first["answer"]
    report = json.loads((eval_dir / "results.json").read_text())
    assert report["settings"]["backend"] == "replay"
    assert report["settings"]["chat_template"] is False


# ---------------------------------------------------------------- replay errors
def _small_data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for task, rows in FIXTURE.items():
        _write_jsonl(root / LOCAL_FILES[task], rows)
    return root


def _run(tmp_path, lines, tasks=("leaf_math500",), **kwargs):
    from leafbench.evaluation.replay import run_replay

    path = tmp_path / "responses.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return run_replay(
        path, list(tasks), tmp_path / "eval", data_dir=_small_data(tmp_path), **kwargs
    )


def _lines(task="leaf_math500", n=4, response="\\boxed{0}"):
    return [{"task": task, "doc_id": i, "response": response} for i in range(n)]


def test_replay_unknown_task_names_the_line(tmp_path):
    lines = [*_lines(), {"task": "math500", "doc_id": 0, "response": "x"}]
    with pytest.raises(ValueError, match=r"responses\.jsonl:5: unknown task 'math500'"):
        _run(tmp_path, lines)


def test_replay_unknown_doc_id_names_the_line(tmp_path):
    lines = [
        *_lines(n=2),
        {"task": "leaf_math500", "doc_id": 99, "response": "x"},
        *_lines(n=4)[2:],
    ]
    with pytest.raises(ValueError, match=r"responses\.jsonl:3: leaf_math500 has no doc_id 99"):
        _run(tmp_path, lines)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "not valid JSON"),
        ({"task": "leaf_math500", "doc_id": 1}, r"missing field\(s\) \['response'\]"),
        ({"task": "leaf_math500", "doc_id": "1", "response": "x"}, "doc_id must be"),
        (
            {"task": "leaf_math500", "doc_id": 0, "response": "again"},
            "already has a response on line 1",
        ),
    ],
)
def test_replay_malformed_lines_name_the_line(tmp_path, bad, message):
    with pytest.raises(ValueError, match=rf"responses\.jsonl:5: .*{message}"):
        _run(tmp_path, [*_lines(), bad])


def test_replay_task_without_responses(tmp_path):
    with pytest.raises(ValueError, match="no responses for task 'leaf_olympiadbench'"):
        _run(tmp_path, _lines(), tasks=("leaf_math500", "leaf_olympiadbench"))


def test_replay_missing_docs_are_listed(tmp_path):
    with pytest.raises(
        ValueError, match=r"leaf_math500 has no stored response for 2 of the 4 .*2, 3"
    ):
        _run(tmp_path, _lines(n=2))


def test_replay_limit_scores_only_the_first_docs(tmp_path):
    answers = [r["answer"] for r in FIXTURE["leaf_math500"][:2]]
    lines = [
        {"task": "leaf_math500", "doc_id": 0, "response": f"\\boxed{{{answers[0]}}}"},
        {"task": "leaf_math500", "doc_id": 1, "response": "no box, so 7"},
    ]
    scores = _run(tmp_path, lines, limit=2)
    assert scores["leaf_math500"] == {
        "exact_match,strict-match": 0.5,
        "exact_match,flexible-extract": 0.5,
        "n": 2,
    }


def test_replay_without_tasks_scores_every_task_in_the_file(tmp_path):
    from leafbench.evaluation.replay import run_replay

    lines = [
        *_lines("leaf_olympiadbench", response="\\boxed{23}"),
        *_lines("leaf_math500", response="\\boxed{12}"),
    ]
    path = _write_jsonl(tmp_path / "r.jsonl", lines)
    scores = run_replay(path, None, tmp_path / "eval", data_dir=_small_data(tmp_path))
    assert list(scores) == ["leaf_math500", "leaf_olympiadbench"]
    assert scores["leaf_math500"]["exact_match,strict-match"] == 0.25
    assert scores["leaf_olympiadbench"]["exact_match,strict-match"] == 0.25


def test_math_tasks_offer_few_shot(tmp_path):
    """num_fewshot > 0 prepends leafbench's worked examples (the default stays zero-shot)."""
    from leafbench.evaluation.math_fewshot import FEWSHOT_EXAMPLES

    _run(tmp_path, _lines("leaf_olympiadbench", response="\\boxed{1}"),
         tasks=("leaf_olympiadbench",), num_fewshot=2)
    eval_dir = tmp_path / "eval"
    prompt = json.loads((eval_dir / "samples_leaf_olympiadbench.jsonl").open().readline())["prompt"]
    assert FEWSHOT_EXAMPLES[0]["problem"] in prompt and FEWSHOT_EXAMPLES[1]["solution"] in prompt
    assert FEWSHOT_EXAMPLES[2]["problem"] not in prompt
    assert prompt.rstrip().endswith("within \\boxed{}.")
    entry = json.loads((eval_dir / "results.json").read_text())["results"]["leaf_olympiadbench"]
    assert entry["decoding"]["num_fewshot"] == 2


# ---------------------------------------------------------------- task definitions
def test_math_tasks_are_registered_with_hub_defaults():
    import yaml

    assert TASKS["leaf_math500"].hub == "HuggingFaceH4/MATH-500"
    assert TASKS["leaf_olympiadbench"].hub == "Hothan/OlympiadBench:OE_TO_maths_en_COMP"
    for task in ("leaf_math500", "leaf_olympiadbench"):
        text = TASKS[task].yaml_path.read_text().replace("!function", "")
        config = yaml.safe_load(text)
        hub = config["dataset_path"] + (
            f":{config['dataset_name']}" if "dataset_name" in config else ""
        )
        assert hub == TASKS[task].hub
        assert config["task"] == task


def test_task_yamls_load_with_lm_eval_include_path():
    """What `lm_eval --include_path leafbench/evaluation/tasks --tasks leaf_math500` sees."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    assert {"leaf_math500", "leaf_olympiadbench"} <= set(manager.all_tasks)
    assert "_leaf_math" not in manager.all_tasks


# ---------------------------------------------------------------- the checker
@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("0.5", "\\frac{1}{2}"),
        ("\\dfrac12", "\\frac{1}{2}"),
        ("\\tfrac{1}{2}", "0.5"),
        ("$\\frac{1}{2}$.", "\\frac{1}{2}"),
        ("x = 5", "5"),
        ("\\sqrt{18}", "3\\sqrt{2}"),
        ("-q + p", "p - q"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("(3,\\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\left[\\frac12, 8\\right]", "[\\frac{1}{2}, 8]"),
        ("(-\\infty,0)\\cup\\{1\\}", "(-\\infty, 0) \\cup\\{1\\}"),
        ("1,000", "1000"),
        ("\\text{Evelyn}", "\\text{Evelyn}"),
    ],
)
def test_equivalent_forms(answer, gold):
    assert is_equivalent(answer, gold)


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("0.51", "\\frac{1}{2}"),
        ("(\\frac12, 8)", "[\\frac{1}{2}, 8]"),  # open vs closed interval
        ("[\\frac12, 8)", "[\\frac{1}{2}, 8]"),
        ("(3, 2)", "(2, 3)"),  # tuples are ordered
        ("\\text{Bob}", "\\text{Evelyn}"),
        ("", "5"),
        (None, "5"),
    ],
)
def test_different_answers(answer, gold):
    assert not is_equivalent(answer, gold)


def test_multi_answer_needs_every_part():
    gold = "$69$,$84$"
    assert is_equivalent("69, 84", gold, multiple=True)
    assert is_equivalent("84,69", gold, multiple=True)  # any order
    assert is_equivalent("\\{69, 84\\}", gold, multiple=True)
    assert not is_equivalent("69", gold, multiple=True)  # a part missing
    assert not is_equivalent("69, 84, 100", gold, multiple=True)  # an extra part
    assert not is_equivalent("69, 85", gold, multiple=True)  # a part wrong
    assert not is_equivalent("69, 69", gold, multiple=True)  # one part matched twice
    tuples = "(1,8,19), (2,7,13), (4,5,7)"
    assert is_equivalent("(4,5,7),(1,8,19),(2,7,13)", tuples, multiple=True)
    assert not is_equivalent("(1,8,19),(2,7,13)", tuples, multiple=True)
    functions = "$f(x)=-1$,$f(x)=x+1$"
    assert is_equivalent("f(x) = x + 1, f(x) = -1", functions, multiple=True)


def test_numeric_tolerance_from_the_error_field():
    tol = parse_tolerance("1e-1")
    assert tol == (0.1,)
    assert is_equivalent("4.25", "4.2", tolerance=tol, unit="%")
    assert is_equivalent("4.15\\%", "4.2", tolerance=tol, unit="%")
    assert not is_equivalent("4.35", "4.2", tolerance=tol, unit="%")
    assert not is_equivalent("4.25", "4.2")  # no tolerance: exact (to 6 decimals)
    assert parse_tolerance(None) is None and parse_tolerance("") is None
    assert parse_tolerance("1e-1,1e-2") == (0.1, 0.01)
    assert is_equivalent("1.05, 2.005", "1,2", multiple=True, tolerance=(0.1, 0.01))
    assert not is_equivalent("1.05, 2.05", "1,2", multiple=True, tolerance=(0.1, 0.01))


@pytest.mark.parametrize(
    ("answer", "unit"),
    [("45 \\text{ minutes}", "minutes"), ("45\\,\\mathrm{km}", "km"), ("45^\\circ", "^{\\circ}")],
)
def test_units_named_by_the_data_are_ignored(answer, unit):
    assert clean_answer(answer, unit) == "45"
    assert is_equivalent(answer, "45", unit=unit)


def test_extraction_takes_the_last_complete_box():
    assert extract_boxed("so \\boxed{1}, no: \\boxed{\\frac{2}{3}}.") == "\\frac{2}{3}"
    assert extract_boxed("\\boxed{\\left\\{1,2\\right\\}}") == "\\left\\{1,2\\right\\}"
    assert extract_boxed("\\fbox{7}") == "7"
    assert extract_boxed("first \\boxed{2}, then cut off \\boxed{3") == "2"
    assert boxed_contents("\\boxed{a} \\boxed {b}") == ["a", "b"]


def test_no_box_is_wrong_under_strict_and_flexible_falls_back():
    response = "Adding them, we get $x = \\frac{1}{2}$."
    assert extract_boxed(response) is None
    assert not is_equivalent(extract_boxed(response), "\\frac{1}{2}")
    assert extract_boxed_or_math(response) == "x = \\frac{1}{2}"
    assert is_equivalent(extract_boxed_or_math(response), "\\frac{1}{2}")
    assert extract_boxed_or_math("it costs \\$5, so 12 in total") == "12"
    assert extract_boxed_or_math("no answer") is None
    assert extract_boxed_or_math("\\boxed{3} and $4$") == "3"


def test_split_answers_respects_brackets():
    assert split_answers("(1,2), [3,4), \\{5,6\\}, 7") == ["(1,2)", "[3,4)", "\\{5,6\\}", "7"]
    assert split_answers("\\{1, 3, 5\\}") == ["1", "3", "5"]


def test_checker_works_outside_the_main_thread():
    """math_verify's SIGALRM timeout would raise in a worker thread; the checker turns it off."""
    results = []
    thread = threading.Thread(
        target=lambda: results.append(is_equivalent("\\frac{6}{8}", "0.75 + 0"))
    )
    thread.start()
    thread.join(timeout=60)
    assert results == [True]


# ---------------------------------------------------------------- issue 10: wrong verdicts fixed
@pytest.mark.parametrize(
    "response",
    [
        "Each costs \\$6, so 3 cost $\\boxed{\\$18}$.",
        "Three at \\$6 each. The answer is \\$18.",
        "The answer is $18.",
        "The answer is: $\\boxed{\\$18.00}$",
        "\\boxed{18 \\text{ dollars}}",
    ],
)
def test_gsm8k_strict_reads_escaped_dollars(response):
    from leafbench.evaluation.answers import extract_strict, is_correct

    assert extract_strict(response) == "18"
    assert is_correct(extract_strict(response), "18")


@pytest.mark.parametrize(
    ("response", "number"),
    [("\\boxed{1{,}000}", "1000"), ("The answer is \\$1\\,250.", "1250"),
     ("\\boxed{x = 7}", "7"), ("The answer is \\$18. Then \\boxed{\\$19}", "19")],
)
def test_gsm8k_strict_reads_latex_numbers(response, number):
    from leafbench.evaluation.answers import extract_strict

    assert extract_strict(response) == number


def test_percentage_answer_without_the_sign_is_right():
    """OlympiadBench golds carry "%" on percentage questions whose `unit` field is empty."""
    doc = {"final_answer": ["17.5%"], "is_multiple_answer": False, "unit": None, "error": None}
    from leafbench.evaluation.grading import GRADERS

    strict = GRADERS["strict"]
    assert strict.verdict("leaf_olympiadbench", doc, "so \\boxed{17.5}")
    assert strict.verdict("leaf_olympiadbench", doc, "so \\boxed{17.5\\%}")
    assert not strict.verdict("leaf_olympiadbench", doc, "so \\boxed{0.175}")
    assert is_equivalent("8", "8 \\%")


def test_spaces_inside_subscripts_do_not_matter():
    assert is_equivalent("m_{\\max}=n^{2}-n-1", "m_{\\max }=n^{2}-n-1")
    assert is_equivalent("m_{\\max }=n^{2}-n-1", "m_{\\max}=n^{2}-n-1")
    assert is_equivalent("\\frac{1 }{ 2}", "\\frac12")
    assert not is_equivalent("\\max x", "\\maxx")  # a space between letters separates them


@pytest.mark.parametrize(
    ("answer", "right"),
    [("52_8", True), ("52_{8}", True), ("{52}_{8}", True), ("52", True),
     ("52_9", False), ("52_{10}", False), ("42", False), ("53_8", False)],
)
def test_base_subscripts_are_compared(answer, right):
    assert is_equivalent(answer, "52_8") is right


def test_no_rounding_of_small_decimals():
    assert not is_equivalent(".000067", ".0000672")
    assert not is_equivalent("0.0000672", ".000067")
    assert is_equivalent("0.0000672", ".0000672")
    assert is_equivalent("6.72 \\times 10^{-5}", ".0000672")
    assert not is_equivalent("4.6667", "\\frac{14}{3}")


@pytest.mark.parametrize(
    ("answer", "gold"),
    [("1\\,000", "1000"), ("32348", "\\$32,\\!348"), ("90°", "90^\\circ"),
     ("90 \\text{ degrees}", "90^\\circ"), ("5.4", "5.4 \\text{ cents}"),
     ("45 minutes", "45"), ("\\mathrm{9.5}", "9.5"), ("10\\ \\%", "10"),
     ("\\frac{270}{7}", "\\frac{270}7\\text{ degrees}")],
)
def test_notation_never_decides(answer, gold):
    assert is_equivalent(answer, gold)
