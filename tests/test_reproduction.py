"""Reproduced vs published (`leafbench.leaderboard.reproduction`): the numbers of each row
against the entries they come from, which published numbers count as inside, the item-count
flags (OlympiadBench's 674 vs 675), how entries pair up, the errors, and the rendered report's
determinism, escaping and self-containment. One test reads the real paper board."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from leafbench.errors import ConfigError
from leafbench.leaderboard import board as boards
from leafbench.leaderboard.entry import Entry, parse_entry, reference
from leafbench.leaderboard.reproduction import (
    OLYMPIADBENCH_NOTE,
    TaskComparison,
    compare,
    render_report,
    wilson,
)

PAPER_BOARD = Path(__file__).resolve().parents[1] / "leaderboards" / "paper"
SCRIPT_LABEL = "<script>alert(1)"  # a label cannot hold "/", so no closing tag
EVIL_SOURCE = 'Table 2 | </td><script>alert(2)</script> "x"'
LCB_V4 = {"release": "release_v4", "start_date": None, "end_date": None, "timeout": 6}

# Wilson 95% for 60/100, by hand: p = 0.6, z = 1.959964, z^2 = 3.841459;
# centre = (0.6 + z^2/200) / (1 + z^2/100) = 0.619207 / 1.038415 = 0.596301;
# half = z * sqrt(0.0024 + z^2/40000) / 1.038415 = 1.959964 * 0.0499604 / 1.038415 = 0.094298.
WILSON_60_100 = (0.502003, 0.690599)


def task(correct: int, n: int, ci: tuple[float, float] | None,
         options: dict[str, Any] | None = None, metric: str = "exact_match,strict-match",
         samples: int = 1) -> dict[str, Any]:
    """An evaluation entry's task: `correct` of `n` items right (every sample alike)."""
    return {"metric": metric, "score": correct / n, "n": n,
            "ci95": None if ci is None else list(ci), "grading_mode": "strict",
            "data_sha256": "sha256:" + "a" * 64, "docs_sha256": "sha256:" + "b" * 64,
            "decoding": {"temperature": 0.0}, "options": options,
            "doc_ids": list(range(n)),
            "correct": [[1] * samples if i < correct else [0] * samples for i in range(n)]}


def evaluation(label: str, tasks: dict[str, Any], fingerprint: str = "fp") -> Entry:
    return parse_entry({"schema": 1, "kind": "evaluation", "label": label,
                        "date": "2025-09-01T10:00:00Z", "model": f"models/{label}",
                        "model_fingerprint": fingerprint, "backend": "hf", "tasks": tasks},
                       "test")


def published_board(root: Path) -> list[Entry]:
    """Two published rows, written to a board and read back as `leafbench report` will."""
    board = root / "paper"
    boards.add(board, reference("paper: Student-1B", "LeaF, Table 1 (test)", "2025-06-09", {
        "leaf_gsm8k": {"score": 0.62, "n": 100, "metric": "exact_match,strict-match"},
        "leaf_math500": {"score": 0.75, "n": 100, "metric": "exact_match,strict-match"},
        "leaf_olympiadbench": {"score": 0.0579, "n": 674, "metric": "exact_match,strict-match"},
        "leaf_humaneval_plus": {"score": 0.3, "n": 164, "metric": "pass@1"}}))
    boards.add(board, reference("paper: Teacher-70B", EVIL_SOURCE, "2025-06-09", {
        "leaf_gsm8k": {"score": 0.9, "n": 100, "metric": "exact_match,strict-match"}}))
    return boards.entries(board)


def student(label: str = "Student-1B") -> Entry:
    """60/100 on GSM8K and MATH-500 (one published number inside its interval, one outside),
    39/675 on OlympiadBench, and LeetCode, which the paper's row lacks."""
    return evaluation(label, {
        "leaf_gsm8k": task(60, 100, (0.5, 0.7)),
        "leaf_math500": task(60, 100, (0.5, 0.7)),
        "leaf_olympiadbench": task(39, 675, (0.042, 0.0756)),
        "leaf_leetcode": task(10, 180, (0.03, 0.09), metric="pass@1")})


def by_task(tasks: tuple[TaskComparison, ...]) -> dict[str, TaskComparison]:
    return {t.task: t for t in tasks}


# ------------------------------------------------------------------------------ the numbers
def test_rows_hold_the_entries_numbers(tmp_path: Path) -> None:
    published = published_board(tmp_path)
    [row] = compare(published, [student()])
    assert (row.reproduced_label, row.published_label) == ("Student-1B", "paper: Student-1B")
    assert row.published_source == "LeaF, Table 1 (test)"
    tasks = by_task(row.tasks)
    assert list(tasks) == ["leaf_gsm8k", "leaf_math500", "leaf_olympiadbench"]  # sorted

    gsm8k = tasks["leaf_gsm8k"]
    assert (gsm8k.published, gsm8k.published_n) == (0.62, 100)
    assert (gsm8k.reproduced, gsm8k.reproduced_n, gsm8k.k) == (0.6, 100, 60)
    assert gsm8k.recorded_ci95 == (0.5, 0.7) and gsm8k.interval == (0.5, 0.7)
    assert gsm8k.delta == pytest.approx(-0.02) and gsm8k.delta_points == pytest.approx(-2.0)
    assert gsm8k.interval_source == "recorded"
    assert gsm8k.inside and gsm8k.inside_wilson and gsm8k.notes == ()

    math500 = tasks["leaf_math500"]
    assert math500.delta == pytest.approx(-0.15)
    assert not math500.inside and not math500.inside_wilson  # 75 > 70 and > 69.06


def test_wilson_bounds_match_hand_computed_values() -> None:
    low, high = wilson(60, 100)
    assert low == pytest.approx(WILSON_60_100[0], abs=1e-6)
    assert high == pytest.approx(WILSON_60_100[1], abs=1e-6)
    assert wilson(0, 10) == (0.0, pytest.approx(0.277533, abs=1e-6))  # 3.84/(10+3.84)
    assert wilson(10, 10) == (pytest.approx(0.722467, abs=1e-6), 1.0)


def test_every_task_carries_its_wilson_interval(tmp_path: Path) -> None:
    [row] = compare(published_board(tmp_path), [student()])
    gsm8k = by_task(row.tasks)["leaf_gsm8k"]
    assert gsm8k.wilson_ci95 == pytest.approx(WILSON_60_100, abs=1e-6)


def test_the_recorded_interval_decides_and_wilson_is_the_fallback(tmp_path: Path) -> None:
    """72 lies inside a wide recorded interval [45, 75] but outside Wilson's [50.2, 69.1]:
    `inside` follows the recorded interval, `inside_wilson` Wilson's. Without a recorded
    interval Wilson decides both."""
    published = [reference("paper: A", "t", "2025-06-09", {
        "leaf_gsm8k": {"score": 0.72, "n": 100}, "leaf_math500": {"score": 0.72, "n": 100}})]
    repro = evaluation("A", {"leaf_gsm8k": task(60, 100, (0.45, 0.75), metric="score"),
                             "leaf_math500": task(60, 100, None, metric="score")})
    [row] = compare(published, [repro])
    recorded, fallback = by_task(row.tasks)["leaf_gsm8k"], by_task(row.tasks)["leaf_math500"]
    assert recorded.interval_source == "recorded"
    assert recorded.inside and not recorded.inside_wilson
    assert fallback.interval_source == "wilson"
    assert fallback.interval == pytest.approx(WILSON_60_100, abs=1e-6)
    assert not fallback.inside and not fallback.inside_wilson
    assert "no recorded interval: decided on the Wilson interval" in fallback.notes


def test_bounds_count_as_inside() -> None:
    published = [reference("paper: A", "t", "2025-06-09",
                           {"leaf_gsm8k": {"score": 0.5, "n": 100}})]
    [row] = compare(published, [evaluation("A", {"leaf_gsm8k": task(60, 100, (0.5, 0.7),
                                                                     metric="score")})])
    assert row.tasks[0].inside


# ------------------------------------------------------------------------------ flags
def test_olympiadbench_674_vs_675_is_compared_and_flagged(tmp_path: Path) -> None:
    [row] = compare(published_board(tmp_path), [student()])
    olympiad = by_task(row.tasks)["leaf_olympiadbench"]
    assert (olympiad.published_n, olympiad.reproduced_n) == (674, 675)
    assert olympiad.notes == (OLYMPIADBENCH_NOTE,)
    assert OLYMPIADBENCH_NOTE == ("published k/674, reproduced on 675 items; "
                                  "the dropped item is unknown")
    assert olympiad.k == 39 and olympiad.inside  # 5.79 inside [4.2, 7.56]


def test_any_other_n_mismatch_is_flagged() -> None:
    published = [reference("paper: A", "t", "2025-06-09", {
        "leaf_gsm8k": {"score": 0.6, "n": 1319, "metric": "score"},
        "leaf_olympiadbench": {"score": 0.06, "n": 675, "metric": "score"}})]
    repro = evaluation("A", {"leaf_gsm8k": task(60, 100, (0.5, 0.7), metric="score"),
                             "leaf_olympiadbench": task(4, 674, (0.0, 0.012), metric="score")})
    [row] = compare(published, [repro])
    gsm8k, olympiad = row.tasks
    assert gsm8k.notes == ("n differs: published on 1319 items, reproduced on 100; "
                           "the scores are over different item sets",)
    assert olympiad.notes == ("n differs: published on 675 items, reproduced on 674; "
                              "the scores are over different item sets",)


def test_metric_window_and_samples_are_flagged() -> None:
    published = [reference("paper: A", "t", "2025-06-09", {
        "leaf_livecodebench": {"score": 0.3, "n": 10, "metric": "pass@1",
                               "options": {"release": "release_v4"}},
        "leaf_gsm8k": {"score": 0.6, "n": 100, "metric": "exact_match"}})]
    v6 = {"release": "release_v6", "start_date": "2024-08-01", "end_date": None}
    repro = evaluation("A", {
        "leaf_livecodebench": task(3, 10, (0.1, 0.6), v6, "pass@1"),
        "leaf_gsm8k": task(60, 100, (0.5, 0.7), metric="exact_match", samples=4)})
    [row] = compare(published, [repro])
    tasks = by_task(row.tasks)
    assert tasks["leaf_livecodebench"].notes == (
        "window differs: published release_v4, all contest dates, reproduced release_v6, "
        "contests from 2024-08-01",)
    assert tasks["leaf_gsm8k"].notes == ("4 samples per item: the Wilson interval treats the "
                                         "mean as k of n verdicts (approximate)",)

    same_window = evaluation("A", {"leaf_livecodebench": task(3, 10, (0.1, 0.6), LCB_V4,
                                                              "pass@1")})
    [row] = compare(published, [same_window])
    assert row.tasks[0].notes == ()


def test_tasks_in_one_entry_only_are_listed_not_compared(tmp_path: Path) -> None:
    [row] = compare(published_board(tmp_path), [student()])
    assert row.not_compared == (
        ("leaf_humaneval_plus", "only the published entry has it"),
        ("leaf_leetcode", "the published entry has no score for it"))


# ------------------------------------------------------------------------------ pairing
def test_default_pairing_is_the_paper_prefix(tmp_path: Path) -> None:
    """"Student-1B" pairs with "paper: Student-1B"; an entry without a published row (an
    ablation) is left out; a published row nobody reproduced is not a row."""
    published = published_board(tmp_path)
    ablation = evaluation("Student-1B ablation", {"leaf_gsm8k": task(50, 100, (0.4, 0.6))},
                          fingerprint="fp:ablation")
    rows = compare(published, [ablation, student()])
    assert [(r.reproduced_label, r.published_label) for r in rows] == [
        ("Student-1B", "paper: Student-1B")]


def test_explicit_pairs(tmp_path: Path) -> None:
    published = published_board(tmp_path)
    mine = student("my run")
    other = evaluation("teacher run", {"leaf_gsm8k": task(88, 100, (0.8, 0.94))},
                       fingerprint="fp:teacher")
    rows = compare(published, [other, mine],
                   {"teacher run": "paper: Teacher-70B", "my run": "paper: Student-1B"})
    assert [(r.reproduced_label, r.published_label) for r in rows] == [
        ("my run", "paper: Student-1B"), ("teacher run", "paper: Teacher-70B")]
    teacher = rows[1].tasks[0]
    assert teacher.delta == pytest.approx(-0.02) and teacher.inside
    assert rows[1].not_compared == ()


def test_unknown_labels_and_wrong_kinds_are_errors(tmp_path: Path) -> None:
    published = published_board(tmp_path)
    mine = student()
    with pytest.raises(ValueError, match="no such run"):
        compare(published, [mine], {"no such run": "paper: Student-1B"})
    with pytest.raises(ConfigError, match="paper: Nobody"):
        compare(published, [mine], {"Student-1B": "paper: Nobody"})
    with pytest.raises(ConfigError, match="none has a published entry"):
        compare(published, [student("Unrelated")])
    with pytest.raises(ConfigError, match="must be an evaluation"):
        compare(published, published, {"paper: Teacher-70B": "paper: Student-1B"})
    with pytest.raises(ConfigError, match="must be a reference"):
        compare([mine], [mine], {"Student-1B": "Student-1B"})
    with pytest.raises(ConfigError, match="appears twice"):
        compare(published, [mine, mine])


# ------------------------------------------------------------------------------ the report
def evil_rows(tmp_path: Path) -> list[Any]:
    published = [*published_board(tmp_path),
                 reference(f"paper: {SCRIPT_LABEL}", EVIL_SOURCE, "2025-06-09",
                           {"leaf_gsm8k": {"score": 0.62, "n": 100}})]
    script = evaluation(SCRIPT_LABEL, {"leaf_gsm8k": task(60, 100, (0.5, 0.7), metric="score")},
                        fingerprint="fp:script")
    return compare(published, [student(), script])


def test_rendering_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    rows = evil_rows(tmp_path)
    first = render_report(rows, tmp_path / "a", title="LeaF reproduction")
    second = render_report(rows, tmp_path / "b" / "nested", title="LeaF reproduction")
    assert [p.name for p in first] == ["report.md", "report.html"]
    for one, two in zip(first, second, strict=True):
        assert one.read_bytes() == two.read_bytes()


def test_report_shows_rows_summary_and_notes(tmp_path: Path) -> None:
    md_path, page_path = render_report(evil_rows(tmp_path), tmp_path, title="LeaF reproduction")
    md, page = md_path.read_text(encoding="utf-8"), page_path.read_text(encoding="utf-8")
    # 4 compared tasks: GSM8K (twice) and OlympiadBench inside, MATH-500 outside;
    # |delta| = 2, 15, 0.0122 (39/675 = 5.7778 vs 5.79) and 2 points: mean 4.753.
    summary = ("Published numbers inside the reproduced 95% intervals: 3 of 4 (3 inside the "
               "Wilson intervals); mean absolute delta 4.75 points over 4 tasks in 2 pairs; "
               "1 flagged.")
    assert summary in page and summary in md
    assert ("| leaf\\_gsm8k | 62.00 (100) | 60.00 \\[50.00, 70.00\\] (100) | "
            "\\[50.20, 69.06\\] (60/100) | -2.00 | yes | yes | — |") in md
    assert "| leaf\\_math500 | 75.00 (100) | 60.00 \\[50.00, 70.00\\] (100) |" in md
    assert ("<td class=\"num\">60.00 [50.00, 70.00] (100)</td>"
            "<td class=\"num\">[50.20, 69.06] (60/100)</td>") in page
    assert "| -15.00 | no | no |" in md
    assert OLYMPIADBENCH_NOTE in md and OLYMPIADBENCH_NOTE in page
    assert "- leaf\\_leetcode: the published entry has no score for it" in md
    assert 'data-task="leaf_math500" data-inside="false"' in page
    assert '<tr class="outside" data-task="leaf_math500"' in page


def test_report_escapes_untrusted_strings(tmp_path: Path) -> None:
    md_path, page_path = render_report(evil_rows(tmp_path), tmp_path, title="<b>title</b>")
    md, page = md_path.read_text(encoding="utf-8"), page_path.read_text(encoding="utf-8")
    assert "<script" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)" in page
    assert "&lt;/td&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert 'data-reproduced="&lt;script&gt;alert(1)"' in page and '"x"' not in page
    assert re.search(r"(?<!\\)<", md) is None  # every "<" backslash-escaped
    assert "\\<script\\>alert(1)" in md and "\\| \\</td\\>" in md


def test_page_is_self_contained_with_a_policy_for_its_own_style(tmp_path: Path) -> None:
    _, page_path = render_report(evil_rows(tmp_path), tmp_path, title="t")
    page = page_path.read_text(encoding="utf-8")
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert policy is not None and style is not None
    text = policy.group(1).replace("&#x27;", "'")
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert "default-src 'none'" in text and "script-src 'none'" in text
    assert f"style-src 'sha256-{digest}'" in text and "unsafe" not in text
    without_policy = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    for needle in ("src=", "href=", "url(", "@import", "http:", "https:", "//"):
        assert needle not in without_policy


# ------------------------------------------------------------------------------ the real board
def test_against_the_paper_board() -> None:
    """LLaMA3.2-1B-Instruct Pre-KD on GSM8K: the paper prints 44.88 over 1,319 items; a run
    with 592/1319 = 44.88% right (Wilson [42.22, 47.58]) holds it."""
    published = boards.entries(PAPER_BOARD)
    repro = evaluation("LLaMA3.2-1B-Instruct Pre-KD", {
        "leaf_gsm8k": task(592, 1319, (0.4223, 0.4761))})
    [row] = compare(published, [repro])
    assert row.published_label == "paper: LLaMA3.2-1B-Instruct Pre-KD"
    [gsm8k] = row.tasks
    assert (gsm8k.published, gsm8k.published_n) == (0.4488, 1319)
    assert gsm8k.reproduced == pytest.approx(0.448825, abs=1e-6) and gsm8k.k == 592
    assert gsm8k.delta_points == pytest.approx(0.0025, abs=1e-4)
    assert gsm8k.inside and gsm8k.inside_wilson and gsm8k.notes == ()
    assert gsm8k.wilson_ci95 == pytest.approx((0.422170, 0.475777), abs=1e-6)
    assert [name for name, _ in row.not_compared] == [
        "leaf_humaneval_plus", "leaf_leetcode", "leaf_livecodebench", "leaf_math500",
        "leaf_olympiadbench"]


# ------------------------------------------------------------------------------ end to end
def test_report_on_smoke_runs_of_two_paper_rows(tmp_path: Path, capsys) -> None:
    """Two rows of one pair (Pre-KD, evaluate-only; LeaF Instr Mask, trained) run at smoke
    scale, their evaluations added to a board with `leafbench leaderboard add`, and
    `leafbench report --reproduced BOARD`: the report's reproduced score, n and delta are the
    added entries' against the published ones. GSM8K from the shared data when this machine
    has it (then against the paper's own board), else the testbed's task against references
    this test writes."""
    from conftest import shared_data_dir

    from leafbench.cli import main
    from leafbench.leaderboard.render import md_text
    from leafbench.leaderboard.reproduction import pts, signed_pts

    repo = Path(__file__).resolve().parents[1]
    data = shared_data_dir()
    labels = {"pre_kd": "LLaMA3.2-1B-Instruct Pre-KD",
              "math_instr_paper": "LLaMA3.2-1B-Instruct LeaF (Instr Mask)"}
    if data is not None and (data / "gsm8k").is_dir():
        task, published_board, extra = "leaf_gsm8k", PAPER_BOARD, [f"evaluate.data_dir={data}"]
    else:
        task, published_board, extra = "leaf_synthetic", tmp_path / "published", []
        for label, score in zip(labels.values(), (0.3, 0.4), strict=True):
            boards.add(published_board, reference(f"paper: {label}", "test", "2025-06-09", {
                task: {"score": score, "n": 20, "metric": "exact_match,strict-match"}}))
    workspace = tmp_path / "ws"
    board = tmp_path / "reproduced"
    for row, role in (("pre_kd", "student_before"), ("math_instr_paper", "student_after")):
        # The profile, then a smaller testbed still: its scores mean nothing here, only that
        # the report carries them (the testbed build dominates this test's time).
        overrides = [f"workspace={workspace}", f"evaluate.tasks=[{task}]", "data.validation={}",
                     "evaluate.limit=20", "synthetic.n_pretrain=600", "synthetic.n_train=16",
                     "synthetic.teacher.steps=40", "synthetic.student.steps=30", *extra]
        argv = ["run", str(repo / "experiments/paper/llama3.2-1b" / f"{row}.yaml"),
                "--profile", str(repo / "experiments/profiles/smoke.yaml"), "--no-tracking",
                "--until", "evaluate"]
        assert main([*argv, *(x for o in overrides for x in ("-s", o))]) == 0
        [results] = (workspace / "artifacts" / "evaluate").glob(f"*/{role}/results.json")
        assert main(["leaderboard", "add", str(results.parent), "--board", str(board),
                     "--model", labels[row]]) == 0
    out = tmp_path / "report"
    assert main(["report", "--published", str(published_board), "--reproduced", str(board),
                 "--out", str(out)]) == 0
    assert "Published numbers inside" in capsys.readouterr().out

    markdown = (out / "report.md").read_text()
    added = {e.label: e for e in boards.entries(board)}
    published = {e.label: e for e in boards.entries(published_board)}
    assert set(added) == set(labels.values())
    for label, entry in added.items():
        mine, theirs = entry.tasks[task], published[f"paper: {label}"].tasks[task]
        assert mine.n == 20
        section = markdown[markdown.index(f"## {md_text(label)} vs"):]
        line = next(x for x in section.splitlines() if x.startswith(f"| {md_text(task)} "))
        cells = [re.sub(r"\\(.)", r"\1", c.strip()) for c in line.strip("|").split("|")]
        assert cells[1] == f"{pts(theirs.score)} ({theirs.n})"
        assert cells[2].startswith(f"{pts(mine.score)} [") and cells[2].endswith(f"({mine.n})")
        assert cells[4] == signed_pts(mine.score - theirs.score)
