"""Boards and the gate, end to end through the CLI on real evaluations.

Evaluations here are real `leafbench eval --backend replay` runs (lm-eval scores stored
responses on a GSM8K-format file written here), so every entry comes from the result schema as
users produce it; the planted differences between "models" are known item by item.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from conftest import small_experiment

from leafbench.cli import main
from leafbench.leaderboard import board as boards
from leafbench.leaderboard.entry import file_name, load_entry

N_ITEMS = 80


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    rows = [{"question": f"Item {i}: Ann has {i} apples and buys {i + 3} more. How many apples?",
             "answer": f"{i} + {i + 3} = {2 * i + 3}\n#### {2 * i + 3}"} for i in range(N_ITEMS)]
    (root / "gsm8k").mkdir()
    (root / "gsm8k" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def evaluate(data_dir: Path, out: Path, right: set[int], limit: int | None = None) -> Path:
    """A replay evaluation answering exactly the items in `right` correctly."""
    out.mkdir(parents=True, exist_ok=True)
    lines = [{"task": "leaf_gsm8k", "doc_id": i,
              "response": f"So the total is {2 * i + 3 if i in right else -1}.\n#### "
                          f"{2 * i + 3 if i in right else -1}"}
             for i in range(limit or N_ITEMS)]
    responses = out / "responses.jsonl"
    responses.write_text("".join(json.dumps(r) + "\n" for r in lines))
    args = ["eval", "--backend", "replay", "--responses", str(responses), "--tasks",
            "leaf_gsm8k", "--data-dir", str(data_dir), "--out", str(out / "eval")]
    if limit is not None:
        args += ["--limit", str(limit)]
    assert main(args) == 0
    return out / "eval"


@pytest.fixture(scope="module")
def evaluations(data_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evals")
    return {
        "baseline": evaluate(data_dir, root / "baseline", set(range(60))),
        "same": evaluate(data_dir, root / "same", set(range(60))),
        # 3 right->wrong, 3 wrong->right: a wash
        "noisy": evaluate(data_dir, root / "noisy", set(range(3, 63))),
        # 20 right->wrong, nothing gained: 25 points down
        "worse": evaluate(data_dir, root / "worse", set(range(40))),
        "short": evaluate(data_dir, root / "short", set(range(40)), limit=50),
    }


def run(*args: str) -> int:
    return main(["leaderboard", *map(str, args)])


def test_an_entry_keeps_every_item_its_hashes_and_provenance(evaluations, tmp_path):
    board = tmp_path / "board"
    assert run("add", evaluations["baseline"], "--board", board, "--model", "base-v1") == 0
    entry = load_entry(board / "entries" / file_name("base-v1"))
    task = entry.tasks["leaf_gsm8k"]
    assert entry.kind == "evaluation" and entry.label == "base-v1"
    assert task.n == N_ITEMS and task.doc_ids == list(range(N_ITEMS))
    assert [v[0] for v in task.correct or []] == [1] * 60 + [0] * 20
    assert task.score == pytest.approx(0.75) and task.ci95[0] < 0.75 < task.ci95[1]
    results = json.loads((evaluations["baseline"] / "results.json").read_text())
    assert task.data_sha256 == results["results"]["leaf_gsm8k"]["data_sha256"]
    assert task.grading_mode == "strict"
    # a replay has no model and no configuration of its own
    assert entry.model_fingerprint is None and entry.config_hash is None
    assert entry.versions["lm_eval"] and entry.leafbench_version
    assert entry.date.startswith(("20", "19"))


def test_a_duplicate_label_or_the_same_evaluation_again_is_refused(evaluations, tmp_path,
                                                                    capsys):
    board = tmp_path / "board"
    assert run("add", evaluations["baseline"], "--board", board, "--model", "a") == 0
    assert run("add", evaluations["worse"], "--board", board, "--model", "a") == 2
    assert "already has this label" in capsys.readouterr().err
    assert run("add", evaluations["baseline"], "--board", board, "--model", "b") == 2
    err = capsys.readouterr().err
    assert "already on the board as 'a'" in err and file_name("a") in err
    assert [e.label for e in boards.entries(board)] == ["a"]


def test_data_changed_since_the_evaluation_is_refused(data_dir, tmp_path, capsys):
    copy = tmp_path / "data"
    (copy / "gsm8k").mkdir(parents=True)
    (copy / "gsm8k" / "test.jsonl").write_text((data_dir / "gsm8k" / "test.jsonl").read_text())
    folder = evaluate(copy, tmp_path / "e", set(range(10)))
    with open(copy / "gsm8k" / "test.jsonl", "a") as fh:
        fh.write(json.dumps({"question": "A new item?", "answer": "#### 1"}) + "\n")
    assert run("add", folder, "--board", tmp_path / "b", "--model", "m") == 2
    err = capsys.readouterr().err
    assert "results.leaf_gsm8k.data_sha256" in err and "has changed" in err


@pytest.fixture()
def board(evaluations, tmp_path) -> Path:
    board = tmp_path / "board"
    assert run("add", evaluations["baseline"], "--board", board, "--model", "base") == 0
    return board


def test_the_same_model_again_passes(evaluations, board, tmp_path, capsys):
    report = tmp_path / "r.json"
    assert run("check", "--board", board, "--baseline", "base", "--candidate",
               evaluations["same"], "--json", report) == 0
    result = json.loads(report.read_text())
    task = result["tasks"]["leaf_gsm8k"]
    assert result["passed"] and task["difference"] == 0
    assert task["right_to_wrong"] == task["wrong_to_right"] == 0 and task["p_drop"] == 1.0
    assert "PASS" in capsys.readouterr().out


def test_symmetric_flips_pass_and_a_planted_drop_fails_with_its_flips(evaluations, board,
                                                                      tmp_path, capsys):
    assert run("check", "--board", board, "--baseline", "base", "--candidate",
               evaluations["noisy"], "--label", "noisy") == 0
    report = tmp_path / "worse.json"
    assert run("check", "--board", board, "--baseline", "base", "--candidate",
               evaluations["worse"], "--label", "worse", "--json", report) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "FAIL" in out
    task = json.loads(report.read_text())["tasks"]["leaf_gsm8k"]
    assert (task["right_to_wrong"], task["wrong_to_right"]) == (20, 0)
    assert task["difference"] == pytest.approx(-0.25)
    assert task["p_drop"] == pytest.approx(0.5 ** 20) and task["test"] == "mcnemar-exact"
    assert task["ci95"][1] < 0
    # the latest verdict of each candidate is kept on the board for the page
    kept = {p.name for p in (board / "verdicts").glob("*.json")}
    assert kept == {file_name("noisy"), file_name("worse")}


def test_a_drop_within_the_margin_passes(evaluations, board):
    assert run("check", "--board", board, "--baseline", "base", "--candidate",
               evaluations["worse"], "--margin", "0.3") == 0
    assert run("check", "--board", board, "--baseline", "base", "--candidate",
               evaluations["worse"], "--margin", "0.3", "--rule", "non-inferiority") == 1


def test_different_items_are_refused_unless_intersect(evaluations, board, tmp_path, capsys):
    assert run("check", "--board", board, "--baseline", "base", "--candidate",
               evaluations["short"]) == 2
    assert "30 items only in the baseline" in capsys.readouterr().err
    report = tmp_path / "r.json"
    assert run("check", "--board", board, "--baseline", "base", "--candidate",
               evaluations["short"], "--intersect", "--json", report) == 1
    task = json.loads(report.read_text())["tasks"]["leaf_gsm8k"]
    assert task["n"] == 50 and task["right_to_wrong"] == 10


def test_usage_errors_exit_2_naming_what_was_wrong(evaluations, board, tmp_path, capsys):
    spec = tmp_path / "paper.yaml"
    spec.write_text("label: paper-1B\nsource: LeaF paper, Table 1\ndate: '2025-06-09'\n"
                    "tasks: {leaf_gsm8k: {score: 0.5, n: 1319}}\n")
    assert run("add-reference", spec, "--board", board) == 0
    cases = [
        (["--baseline", "nobody", "--candidate", evaluations["same"]], "no entry with this label"),
        (["--baseline", "paper-1B", "--candidate", evaluations["same"]], "published numbers only"),
        (["--baseline", "base", "--candidate", evaluations["same"], "--alpha", "1.5"], "--alpha"),
        (["--baseline", "base", "--candidate", evaluations["same"], "--rule", "vibes"],
         "non-inferiority"),
        (["--baseline", "base", "--candidate", evaluations["same"], "--label", "../up"],
         "must not look like a path"),
    ]
    for args, words in cases:
        assert run("check", "--board", board, *args) == 2, args
        assert words in capsys.readouterr().err


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda e: e.update(label="../../etc/passwd"), "label"),
    (lambda e: e["tasks"]["leaf_gsm8k"].update(n="80"), "tasks.leaf_gsm8k.n"),
    (lambda e: e["tasks"]["leaf_gsm8k"].update(n=10**9), "tasks.leaf_gsm8k.n"),
    (lambda e: e["tasks"]["leaf_gsm8k"]["correct"].pop(), "tasks.leaf_gsm8k"),
    (lambda e: e["tasks"]["leaf_gsm8k"].update(score=0.9), "tasks.leaf_gsm8k"),
    (lambda e: e.update(date="<script>"), "date"),
    (lambda e: e.update(extra={"__class__": "os.system"}), "extra"),
])
def test_an_untrusted_entry_file_is_refused_naming_file_and_field(board, capsys, mutate, field):
    path = board / "entries" / file_name("base")
    raw = json.loads(path.read_text())
    mutate(raw)
    path.write_text(json.dumps(raw))
    assert run("render", "--board", board) == 2
    err = capsys.readouterr().err
    assert str(path) in err and f"field '{field}'" in err


def test_an_entry_file_renamed_to_another_labels_name_is_refused(board, capsys):
    (board / "entries" / file_name("base")).rename(board / "entries" / file_name("other"))
    assert run("render", "--board", board) == 2
    assert "an entry labelled so lives in" in capsys.readouterr().err


def _add_in_child(args: list[str], codes) -> None:
    codes.put(main(["leaderboard", *args]))


def test_concurrent_adds_keep_every_entry_and_one_winner_per_label(evaluations, tmp_path):
    board = tmp_path / "board"
    ctx = multiprocessing.get_context("fork")
    codes = ctx.Queue()
    distinct = [ctx.Process(target=_add_in_child, args=(
        ["add", str(evaluations[name]), "--board", str(board), "--model", f"m-{name}"], codes))
        for name in ("baseline", "noisy", "worse", "short")]
    same = [ctx.Process(target=_add_in_child, args=(
        ["add", str(evaluations["same"]), "--board", str(board), "--model", "contested"], codes))
        for _ in range(4)]
    for p in distinct + same:
        p.start()
    for p in distinct + same:
        p.join(60)
    results = sorted(codes.get(timeout=5) for _ in range(8))
    assert results == [0] * 5 + [2] * 3
    labels = [e.label for e in boards.entries(board)]
    assert labels == ["contested", "m-baseline", "m-noisy", "m-short", "m-worse"]
    assert not list((board / "entries").glob(".adding-*"))


def test_a_pipeline_run_evaluation_becomes_an_entry_with_its_stage_key(tmp_path):
    from leafbench.config import load_experiment
    from leafbench.pipeline import run_experiment

    path = tmp_path / "exp.yaml"
    path.write_text(small_experiment(tmp_path / "ws", name="lb", experiment="lb",
                                     n_pretrain=300, n_train=16, n_test=12, teacher_steps=30,
                                     student_steps=30, max_gen_toks=6))
    run_experiment(load_experiment(path, ["mining.baselines=[]"]), until="evaluate")
    evaluated = next((tmp_path / "ws" / "artifacts" / "evaluate").iterdir())
    board = tmp_path / "board"
    assert run("add", evaluated / "student_before", "--board", board, "--model", "before") == 0
    assert run("add", evaluated, "--board", board, "--model", "x") == 2  # the parent folder
    entry = load_entry(board / "entries" / file_name("before"))
    assert entry.config_hash == f"stage:{evaluated.name}"
    assert entry.model_fingerprint and entry.model_fingerprint.startswith("sha256:")
    assert entry.tasks["leaf_synthetic"].n == 12
    code = run("check", "--board", board, "--baseline", "before", "--candidate",
               evaluated / "student_after", "--label", "after")
    assert code in (0, 1)


def test_report_compares_a_reproduced_board_with_the_papers(evaluations, tmp_path, capsys):
    board = tmp_path / "reproduced"
    label = "LLaMA3.2-1B-Instruct Pre-KD"
    assert run("add", evaluations["baseline"], "--board", board, "--model", label) == 0
    assert run("add", evaluations["worse"], "--board", board, "--model", "an ablation") == 0
    paper = Path(__file__).resolve().parents[1] / "leaderboards" / "paper"
    out = tmp_path / "report"
    assert main(["report", "--published", str(paper), "--reproduced", str(board),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "not in the report (no published row matches): ['an ablation']" in printed
    markdown = (out / "report.md").read_text()
    assert "44.88" in markdown and "75.00" in markdown and "n differs" in markdown
    assert (out / "report.html").is_file()
    assert main(["report", "--reproduced", str(tmp_path / "absent"), "--out", str(out)]) == 2
