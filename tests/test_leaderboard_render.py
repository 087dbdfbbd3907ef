"""Rendering a board (`leafbench.leaderboard.render`): the markdown table, the static page's
content, escaping of untrusted strings, self-containment and byte-for-byte determinism.

`sample_board` is shared with the browser tests (test_leaderboard_browser.py), which check
the same page as a person sees it in Chromium.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from leafbench.errors import ConfigError
from leafbench.leaderboard import board as boards
from leafbench.leaderboard.entry import parse_entry
from leafbench.leaderboard.render import (
    domain,
    html_page,
    lcb_window,
    md_text,
    overall,
    render,
    view,
)
from leafbench.leaderboard.verdict import Report

SCRIPT_LABEL = "<script>alert(1)"          # a label cannot hold "/", so no closing tag
IMG_LABEL = "<img src=x onerror=alert(2)>"
EVIL_SOURCE = 'LeaF paper, Table 2 | "x" \\| </td><script>alert(3)</script>'
EVIL_REASON = "drop beyond the margin </td></tr><script>alert(4)</script>"
LABELS = [IMG_LABEL, SCRIPT_LABEL, "Base-7B", "LeaF paper", "LeaF-7B"]  # sorted by code point
TASKS = ["leaf_gsm8k", "leaf_livecodebench", "leaf_math500"]
LCB_V6 = {"release": "release_v6", "start_date": "2024-08-01", "end_date": "2025-02-01",
          "timeout": 6}
LCB_V4 = {"release": "release_v4", "start_date": None, "end_date": None, "timeout": 6}


def task(correct: int, n: int, ci: tuple[float, float], options: dict[str, Any] | None = None,
         metric: str = "exact_match,strict-match") -> dict[str, Any]:
    """An evaluation entry's task: `correct` of `n` items right, one sample each."""
    verdicts = [[1] if i < correct else [0] for i in range(n)]
    return {"metric": metric, "score": correct / n, "n": n, "ci95": list(ci),
            "grading_mode": "strict", "data_sha256": "sha256:" + "a" * 64,
            "docs_sha256": "sha256:" + "b" * 64, "decoding": {"temperature": 0.0},
            "options": options, "doc_ids": list(range(n)), "correct": verdicts}


def evaluation(label: str, day: str, fingerprint: str, tasks: dict[str, Any]) -> dict[str, Any]:
    return {"schema": 1, "kind": "evaluation", "label": label, "date": f"{day}T10:00:00Z",
            "model": f"models/{label}", "model_fingerprint": fingerprint, "backend": "hf",
            "leafbench_version": "0.1.0", "tasks": tasks}


def verdict(candidate: str, passed: bool, difference: float, ci: tuple[float, float],
            reason: str) -> dict[str, Any]:
    raw = {"schema": 1, "date": "2025-03-02T09:00:00Z", "baseline": "Base-7B",
           "candidate": candidate, "rule": "one-sided paired test, Holm, margin", "alpha": 0.05,
           "margin": 0.02, "intersect": True, "passed": passed,
           "tasks": {"leaf_gsm8k": {
               "n": 20, "samples_per_item": 1, "baseline": 0.7, "candidate": 0.7 + difference,
               "difference": difference, "ci95": list(ci), "p_drop": 0.01 if not passed else 0.9,
               "p_holm": 0.02 if not passed else 1.0, "test": "mcnemar-exact",
               "right_to_wrong": 5 if not passed else 1, "wrong_to_right": 1 if not passed else 3,
               "failed": not passed, "reason": reason}},
           "not_compared": {} if passed else {"leaf_math500": "the candidate has no score"}}
    Report.model_validate_json(json.dumps(raw))  # the gate's report shape, exactly
    return raw


def sample_board(root: Path) -> Path:
    """A board with three evaluations on every task (two of them on LiveCodeBench windows),
    a published reference, two entries with markup for labels on GSM8K only, and two gate
    verdicts (one pass, one fail)."""
    board = root / "demo"
    raws = [
        evaluation("Base-7B", "2025-01-10", "fp:base", {
            "leaf_gsm8k": task(14, 20, (0.5, 0.85)),
            "leaf_math500": task(5, 10, (0.2, 0.8)),
            "leaf_livecodebench": task(3, 10, (0.1, 0.6), LCB_V4, "pass@1")}),
        evaluation("LeaF-7B", "2025-02-20", "fp:leaf", {
            "leaf_gsm8k": task(16, 20, (0.6, 0.93)),
            "leaf_math500": task(7, 10, (0.4, 0.9)),
            "leaf_livecodebench": task(4, 10, (0.15, 0.7), LCB_V6, "pass@1")}),
        evaluation(SCRIPT_LABEL, "2025-03-01", "fp:script", {
            "leaf_gsm8k": task(10, 20, (0.3, 0.7))}),
        evaluation(IMG_LABEL, "2025-01-05", "fp:img", {
            "leaf_gsm8k": task(12, 20, (0.4, 0.8))}),
        {"schema": 1, "kind": "reference", "label": "LeaF paper", "date": "2025-01-01",
         "source": EVIL_SOURCE,
         "tasks": {"leaf_gsm8k": {"metric": "exact_match", "score": 0.85, "n": 1319},
                   "leaf_math500": {"metric": "exact_match", "score": 0.6, "n": 500},
                   "leaf_livecodebench": {"metric": "pass@1", "score": 0.35, "n": 713}}},
    ]
    for raw in raws:
        boards.add(board, parse_entry(raw, "test"))
    boards.record_verdict(board, "LeaF-7B",
                          verdict("LeaF-7B", True, 0.1, (-0.05, 0.25), "no drop"))
    boards.record_verdict(board, SCRIPT_LABEL,
                          verdict(SCRIPT_LABEL, False, -0.2, (-0.4, -0.05), EVIL_REASON))
    return board


@pytest.fixture
def rendered(tmp_path: Path) -> tuple[str, str]:
    md, page = render(sample_board(tmp_path))
    return md.read_text(encoding="utf-8"), page.read_text(encoding="utf-8")


def md_cells(line: str) -> list[str]:
    """A markdown table row's cells as GitHub splits them: at every `|` not escaped by a
    backslash (an escaped backslash does not escape what follows)."""
    cells, current, escaped = [], "", False
    for char in line.strip()[1:-1]:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            current, escaped = current + char, True
        elif char == "|":
            cells.append(current.strip())
            current = ""
        else:
            current += char
    return [*cells, current.strip()]


def table_rows(md: str) -> list[list[str]]:
    return [md_cells(line) for line in md.splitlines() if line.startswith("| ")]


# ------------------------------------------------------------------------------ determinism
def test_rendering_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    board = sample_board(tmp_path)
    first = [p.read_bytes() for p in render(board)]
    second = [p.read_bytes() for p in render(board)]
    assert first == second
    copy = tmp_path / "elsewhere" / board.name  # the same board at another path
    shutil.copytree(board, copy)
    assert [p.read_bytes() for p in render(copy)] == first


def test_no_render_time_in_the_output(rendered: tuple[str, str]) -> None:
    today = date.today()
    for text in rendered:
        for day in (today - timedelta(days=1), today, today + timedelta(days=1)):
            assert day.isoformat() not in text
        assert "2025-03-01" in text  # the dates shown are the entries'


def test_render_returns_the_written_paths(tmp_path: Path) -> None:
    board = sample_board(tmp_path)
    md, page = render(board)
    assert (md, page) == (board / "board.md", board / "board.html")


# ------------------------------------------------------------------------------ markdown
def test_markdown_has_one_row_per_entry_in_label_order(rendered: tuple[str, str]) -> None:
    md, _ = rendered
    header, align, *rows = table_rows(md)
    assert header == ["Entry", "Kind", "Date", md_text("leaf_gsm8k"),
                      md_text("leaf_livecodebench"), md_text("leaf_math500"), "Overall",
                      "LiveCodeBench window"]
    assert len(align) == len(header)
    assert all(len(row) == len(header) for row in rows)  # no label or source broke a row
    assert [row[0] for row in rows] == [md_text(label) for label in LABELS]


def test_markdown_cells_show_score_interval_n_and_overall(rendered: tuple[str, str]) -> None:
    md, _ = rendered
    rows = {row[0]: row for row in table_rows(md)[2:]}
    base = rows["Base-7B"]
    assert base[1:4] == ["evaluation", "2025-01-10", "70.0 \\[50.0, 85.0\\] (20)"]
    assert base[5:7] == ["50.0 \\[20.0, 80.0\\] (10)", "50.0"]  # overall: (70 + 30 + 50) / 3
    assert base[7] == "release\\_v4, all contest dates"
    leaf = rows["LeaF-7B"]
    assert leaf[6] == "63.3"
    assert leaf[7] == "release\\_v6, contests 2024-08-01 to 2025-02-01"
    script = rows[md_text(SCRIPT_LABEL)]
    assert script[4:8] == ["—", "—", "—", "—"]  # no overall without every task
    paper = rows["LeaF paper"]
    assert paper[1] == md_text(f"reference: {EVIL_SOURCE}")
    assert paper[3:7] == ["85.0 (1319)", "35.0 (713)", "60.0 (500)", "60.0"]
    assert paper[7] == "not recorded"


def test_markdown_escapes_markup_and_states_its_conventions(rendered: tuple[str, str]) -> None:
    md, _ = rendered
    assert re.search(r"(?<!\\)[<>]", md) is None  # every angle bracket is escaped
    assert "\\<script\\>alert(1)" in md
    assert "Overall is the unweighted mean" in md and "every task" in md
    assert "Reference entries are published numbers" in md
    assert "**PASS** LeaF-7B vs Base-7B" in md
    assert "**FAIL** \\<script\\>alert(1) vs Base-7B" in md


def test_md_text_keeps_a_cell_one_cell() -> None:
    assert md_text("a|b") == "a\\|b"
    assert md_text("a\nb\r\tc") == "a b  c"
    assert md_text("\\|") == "\\\\\\|"
    assert md_text("[x](javascript:alert(1)) *b* _i_ `c` $m$ ~s~ &amp;") == (
        "\\[x\\](javascript:alert(1)) \\*b\\* \\_i\\_ \\`c\\` \\$m\\$ \\~s\\~ \\&amp;")
    assert md_text("LeaF-Qwen2.5-7B (v2)") == "LeaF-Qwen2.5-7B (v2)"


# ------------------------------------------------------------------------------ the page
def test_page_escapes_every_untrusted_string(rendered: tuple[str, str]) -> None:
    _, page = rendered
    assert "<script>alert" not in page
    assert "<img" not in page and "onerror=alert" not in page.replace("onerror=alert(2)&gt;", "")
    assert "</td><script>" not in page and "</td></tr><script>" not in page
    assert page.count("<script") == 1 and page.count("</script>") == 1  # the sort script only
    assert "&lt;script&gt;alert(1)" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "&lt;/td&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in page
    assert "&lt;/td&gt;&lt;/tr&gt;&lt;script&gt;alert(4)&lt;/script&gt;" in page
    # attributes: no value can end its quotes early
    assert 'data-label="&lt;script&gt;alert(1)"' in page
    assert "&quot;x&quot;" in page and '"x"' not in page


class Tags(HTMLParser):
    """Every element and attribute of a page, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def test_page_is_self_contained(rendered: tuple[str, str]) -> None:
    _, page = rendered
    parser = Tags()
    parser.feed(page)
    names = {tag for tag, _ in parser.tags}
    assert names.isdisjoint({"img", "link", "iframe", "object", "embed", "base", "image",
                             "use", "audio", "video", "source", "form", "a"})
    attributes = {name for _, attrs in parser.tags for name, _ in attrs}
    assert attributes.isdisjoint({"src", "href", "xlink:href", "action", "srcset", "poster",
                                  "data", "background", "formaction"})
    assert not any(name.startswith("on") for name in attributes)  # no inline handlers
    assert [tag for tag in names if tag == "script"] == ["script"]
    assert "@import" not in page and "url(" not in page
    without_hashes = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    assert "http:" not in page and "https:" not in page and "//" not in without_hashes


def test_page_policy_admits_exactly_its_own_style_and_script(rendered: tuple[str, str]) -> None:
    _, page = rendered
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy is not None
    text = policy.group(1).replace("&#x27;", "'")
    assert "default-src 'none'" in text and "unsafe" not in text

    def digest(body: str) -> str:
        return base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()

    script = re.search(r"<script>(.*?)</script>", page, re.S)
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert script and style
    assert f"script-src 'sha256-{digest(script.group(1))}'" in text
    assert f"style-src 'sha256-{digest(style.group(1))}'" in text


def test_page_table_chart_and_verdicts(rendered: tuple[str, str]) -> None:
    _, page = rendered
    rows = re.findall(r'<tr class="(evaluation|reference)" data-order="(\d+)"', page)
    assert [int(order) for _, order in rows] == list(range(len(LABELS)))
    assert [kind for kind, _ in rows].count("reference") == 1
    assert '<span class="ci">[50.0, 85.0]</span>' in page
    assert "release_v6, contests 2024-08-01 to 2025-02-01" in page
    assert page.count('<svg class="panel"') == len(TASKS)
    assert page.count('<g class="mark ') == 3 * 3 + 2  # entries x the tasks each has
    assert page.count('<line class="whisker"') == 3 + 3 + 1 + 1  # evaluations only
    assert page.count('<g class="mark reference"') == 3
    assert 'data-candidate="LeaF-7B" data-passed="true"' in page
    assert 'data-candidate="&lt;script&gt;alert(1)" data-passed="false"' in page
    assert "+10.0 [-5.0, +25.0]" in page and "-20.0 [-40.0, -5.0]" in page
    assert "leaf_math500: the candidate has no score" in page


def test_whiskers_sit_where_the_axis_says(rendered: tuple[str, str]) -> None:
    _, page = rendered
    panel = page.split('<svg class="panel" data-task="leaf_gsm8k"')[1].split("</svg>")[0]
    ticks = {int(v): float(x) for v, x in re.findall(
        r'<g class="tick" data-value="(\d+)"><line x1="([\d.]+)"', panel)}
    (v0, x0), (v1, x1) = min(ticks.items()), max(ticks.items())

    def at(points: float) -> float:
        return x0 + (points - v0) / (v1 - v0) * (x1 - x0)

    whiskers = re.findall(r'data-lo="([\d.-]+)" data-hi="([\d.-]+)" x1="([\d.]+)" '
                          r'x2="([\d.]+)"', panel)
    assert len(whiskers) == 4
    for lo, hi, left, right in whiskers:
        assert float(left) == pytest.approx(at(float(lo)), abs=0.01)
        assert float(right) == pytest.approx(at(float(hi)), abs=0.01)


def test_empty_board_renders_and_a_missing_one_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such board folder"):
        render(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    md, page = render(tmp_path / "empty")
    assert "No entries yet." in md.read_text()
    assert "No entries yet." in page.read_text() and "No gate verdicts" in page.read_text()


# ------------------------------------------------------------------------------ conventions
def test_overall_is_unweighted_and_needs_every_task(tmp_path: Path) -> None:
    shown = view(sample_board(tmp_path))
    by_label = {e.label: e for e in shown.entries}
    assert shown.tasks == TASKS
    assert overall(by_label["LeaF paper"], shown.tasks) == pytest.approx((0.85 + 0.6 + 0.35) / 3)
    assert overall(by_label[SCRIPT_LABEL], shown.tasks) is None
    assert lcb_window(by_label[SCRIPT_LABEL]) is None
    assert html_page(shown) == html_page(view(tmp_path / "demo"))


def test_window_wording() -> None:
    def window(options: dict[str, Any] | None) -> str | None:
        raw = evaluation("x", "2025-01-01", "fp", {
            "leaf_livecodebench": task(1, 2, (0.0, 1.0), options, "pass@1")})
        return lcb_window(parse_entry(raw, "test"))

    assert window(None) == "not recorded"
    assert window({"release": "release_v5", "start_date": "2024-09-01", "end_date": None}) \
        == "release_v5, contests from 2024-09-01"
    assert window({"release": "v2_v4", "end_date": "2024-06-30"}) \
        == "v2_v4, contests up to 2024-06-30"
    assert window({"start_date": None}) == "release not recorded, all contest dates"
    assert window({"release": ["v1", "x" * 100], "end_date": 20240630}) == (
        '["v1", "' + "x" * 51 + "…, contests up to 20240630")


def test_chart_domain() -> None:
    assert domain([71.3, 68.8, 73.7]) == (60.0, 80.0)
    assert domain([70.0]) == (70.0, 80.0)
    assert domain([100.0]) == (90.0, 100.0)
    assert domain([31.0, 93.0]) == (20.0, 100.0)  # past 50 points: ticks every 20, ends on one
    assert domain([-5.0, 130.0]) == (0.0, 100.0)  # a reference's odd interval stays on axis
    assert domain([]) == (0.0, 100.0)
