"""The rendered board page as a person sees it: opened from file:// in real headless Chromium.

Run with ``-m browser`` (excluded from the default run). Needs the ``playwright`` package and a
Chromium binary (Debian's ``chromium`` at /usr/bin/chromium, or LEAFBENCH_CHROMIUM); the
module is skipped, saying which is missing, only when one of them is. What is checked is what
the page shows and does: rows in label order, sorting by clicking a header, the chart's marks
and whiskers where its axis says, markup in labels shown as text with nothing run, the
LiveCodeBench windows, the verdicts, and that the page asks for nothing but itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from leafbench.leaderboard.render import render

CHROMIUM = Path(os.environ.get("LEAFBENCH_CHROMIUM", "/usr/bin/chromium"))
try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    pytest.skip("playwright is not installed (pip install leafbench[browser])",
                allow_module_level=True)
if not CHROMIUM.exists():  # pragma: no cover - depends on the environment
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set "
                "LEAFBENCH_CHROMIUM)", allow_module_level=True)

from test_leaderboard_render import (  # noqa: E402  (after the skips, which need no board)
    EVIL_REASON,
    IMG_LABEL,
    LABELS,
    SCRIPT_LABEL,
    sample_board,
)

pytestmark = pytest.mark.browser

# The sample board's intervals and published scores, in points: (score, lo, hi); lo and hi are
# None for the reference entry, which the chart draws without a whisker.
EXPECTED: dict[str, dict[str, tuple[float, float | None, float | None]]] = {
    "leaf_gsm8k": {IMG_LABEL: (60, 40, 80), SCRIPT_LABEL: (50, 30, 70), "Base-7B": (70, 50, 85),
                   "LeaF paper": (85, None, None), "LeaF-7B": (80, 60, 93)},
    "leaf_livecodebench": {"Base-7B": (30, 10, 60), "LeaF paper": (35, None, None),
                           "LeaF-7B": (40, 15, 70)},
    "leaf_math500": {"Base-7B": (50, 20, 80), "LeaF paper": (60, None, None),
                     "LeaF-7B": (70, 40, 90)},
}

# Record, from before the page's own script runs, every Content-Security-Policy violation: the
# page's style and script must be admitted by its policy (their hashes), nothing else.
WATCH_POLICY = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__violations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@dataclass
class Opened:
    page: Page
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    _, page = render(sample_board(tmp_path_factory.mktemp("board")))
    return page.resolve().as_uri()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def opened(browser: Browser, page_url: str) -> Iterator[Opened]:
    """The page, freshly loaded, with every request, dialog and script error it causes
    recorded (a dialog is dismissed, so a test never hangs on one)."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    seen = Opened(page)
    page.on("request", lambda request: seen.requests.append(request.url))
    page.on("pageerror", lambda error: seen.errors.append(str(error)))

    def dialog(d: Any) -> None:
        seen.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    page.add_init_script(WATCH_POLICY)
    page.goto(page_url)
    yield seen
    page.close()


def labels(page: Page) -> list[str]:
    """The entry labels as the table shows them, top to bottom."""
    cells = page.locator("#scores tbody td.label")
    assert all(cells.nth(i).is_visible() for i in range(cells.count()))
    return cells.all_inner_texts()


def click_header(page: Page, title: str) -> None:
    page.locator("#scores thead th button").filter(
        has_text=re.compile(f"^{re.escape(title)}$")).click()


def row(page: Page, label: str) -> Any:
    return page.locator(f'#scores tbody tr[data-label="{label}"]')


# ------------------------------------------------------------------------------ the table
def test_rows_show_every_label_in_label_order(opened: Opened) -> None:
    assert labels(opened.page) == LABELS
    assert "4 evaluations and 1 reference on 3 tasks" in opened.page.locator("header").inner_text()


def test_cells_show_scores_with_intervals_and_n(opened: Opened) -> None:
    base = row(opened.page, "Base-7B").locator("td")
    texts = [t.strip() for t in base.all_inner_texts()]
    assert texts[3:7] == ["70.0 [50.0, 85.0] (20)", "30.0 [10.0, 60.0] (10)",
                          "50.0 [20.0, 80.0] (10)", "50.0"]
    paper = row(opened.page, "LeaF paper")
    kind = paper.locator("td.kind").inner_text()
    assert kind.startswith("reference") and "source: LeaF paper, Table 2" in kind
    assert paper.locator("td.task").first.inner_text().strip() == "85.0 (1319)"


def test_clicking_a_score_header_sorts_by_it_and_again_reverses(opened: Opened) -> None:
    page = opened.page
    click_header(page, "leaf_gsm8k")
    by_gsm8k = ["LeaF paper", "LeaF-7B", "Base-7B", IMG_LABEL, SCRIPT_LABEL]  # 85 80 70 60 50
    assert labels(page) == by_gsm8k
    header = page.locator("#scores thead th").nth(3)
    assert header.get_attribute("aria-sort") == "descending"
    click_header(page, "leaf_gsm8k")
    assert labels(page) == by_gsm8k[::-1]
    assert header.get_attribute("aria-sort") == "ascending"

    click_header(page, "leaf_livecodebench")  # entries without a score stay last either way
    assert labels(page) == ["LeaF-7B", "LeaF paper", "Base-7B", IMG_LABEL, SCRIPT_LABEL]
    assert header.get_attribute("aria-sort") is None
    click_header(page, "leaf_livecodebench")
    assert labels(page) == ["Base-7B", "LeaF paper", "LeaF-7B", IMG_LABEL, SCRIPT_LABEL]

    click_header(page, "Overall")
    assert labels(page)[:3] == ["LeaF-7B", "LeaF paper", "Base-7B"]  # 63.3 60.0 50.0


def test_clicking_the_entry_header_sorts_labels_as_text(opened: Opened) -> None:
    page = opened.page
    click_header(page, "leaf_math500")
    assert labels(page) != LABELS
    click_header(page, "Entry")
    assert labels(page) == LABELS
    click_header(page, "Entry")
    assert labels(page) == LABELS[::-1]


def test_livecodebench_window_is_shown_per_entry(opened: Opened) -> None:
    page = opened.page
    header = page.locator("#scores thead th").last
    assert header.inner_text().strip() == "LiveCodeBench window"
    window = row(page, "LeaF-7B").locator("td.window")
    assert window.is_visible()
    assert window.inner_text() == "release_v6, contests 2024-08-01 to 2025-02-01"
    assert row(page, "Base-7B").locator("td.window").inner_text() \
        == "release_v4, all contest dates"
    assert row(page, "LeaF paper").locator("td.window").inner_text() == "not recorded"


# ------------------------------------------------------------------------------ the chart
def x_scale(panel: Any) -> tuple[float, float, float, float]:
    """(first tick in points, its x in pixels, last tick, its x) read off the drawn axis."""
    ticks = panel.locator("g.tick")
    values, xs = [], []
    for i in range(ticks.count()):
        box = ticks.nth(i).locator("line").bounding_box()
        assert box is not None
        values.append(float(ticks.nth(i).get_attribute("data-value")))
        xs.append(box["x"] + box["width"] / 2)
    return values[0], xs[0], values[-1], xs[-1]


def test_chart_has_a_mark_per_entry_and_task_with_whiskers_over_the_intervals(
        opened: Opened) -> None:
    page = opened.page
    for task, expected in EXPECTED.items():
        panel = page.locator(f'#chart svg.panel[data-task="{task}"]')
        assert panel.is_visible()
        v0, x0, v1, x1 = x_scale(panel)

        def at(points: float, v0: float = v0, x0: float = x0, v1: float = v1,
               x1: float = x1) -> float:
            return x0 + (points - v0) / (v1 - v0) * (x1 - x0)

        marks = panel.locator("g.mark")
        assert marks.count() == len(expected)
        for i in range(marks.count()):
            mark = marks.nth(i)
            score, lo, hi = expected[mark.get_attribute("data-label") or ""]
            point = mark.locator(".point").bounding_box()
            assert point is not None
            assert point["x"] + point["width"] / 2 == pytest.approx(at(score), abs=1.0)
            whiskers = mark.locator("line.whisker")
            if lo is None:
                assert whiskers.count() == 0 and "reference" in (mark.get_attribute("class") or "")
                continue
            box = whiskers.bounding_box()
            assert box is not None and hi is not None
            assert box["x"] == pytest.approx(at(lo), abs=1.0)
            assert box["x"] + box["width"] == pytest.approx(at(hi), abs=1.0)


# ------------------------------------------------------------------------------ untrusted text
def test_markup_in_labels_shows_as_text_and_runs_nothing(opened: Opened) -> None:
    page = opened.page
    for label in (SCRIPT_LABEL, IMG_LABEL):
        cell = page.locator("#scores td.label").filter(has_text=label)
        assert cell.count() == 1 and cell.is_visible() and cell.inner_text() == label
    reason = page.locator("#verdicts tr.failed td").last
    assert reason.is_visible() and reason.inner_text() == EVIL_REASON
    source = row(page, "LeaF paper").locator("td.kind")
    assert "</td><script>alert(3)</script>" in source.inner_text()
    assert page.evaluate("document.querySelectorAll('script, img').length") == 1
    mark = page.locator("#chart g.mark").first
    mark.locator(".point").hover()  # its tooltip: the label as text, with the numbers
    assert mark.locator("title").text_content() == \
        f"{IMG_LABEL} (evaluation): 60.0 [40.0, 80.0] (20)"
    click_header(page, "Entry")
    assert opened.dialogs == [] and opened.errors == []


def test_verdicts_show_pass_and_fail(opened: Opened) -> None:
    page = opened.page
    passed = page.locator('#verdicts article[data-passed="true"]')
    failed = page.locator('#verdicts article[data-passed="false"]')
    assert passed.count() == 1 and failed.count() == 1
    assert passed.locator(".badge").inner_text() == "PASS"
    assert failed.locator(".badge").inner_text() == "FAIL"
    assert passed.locator("h3").inner_text() == "PASS LeaF-7B vs baseline Base-7B"
    assert failed.locator("h3").inner_text() == f"FAIL {SCRIPT_LABEL} vs baseline Base-7B"
    cells = [t.strip() for t in failed.locator("tr.failed td").all_inner_texts()]
    assert cells[:8] == ["leaf_gsm8k", "20", "70.0", "50.0", "-20.0 [-40.0, -5.0]", "0.0100",
                         "0.0200", "5 / 1"]
    assert cells[9] == "fail"
    assert "leaf_math500: the candidate has no score" in failed.inner_text()
    assert passed.locator("tr.passed td").nth(4).inner_text() == "+10.0 [-5.0, +25.0]"


# ------------------------------------------------------------------------------ self-contained
def test_page_requests_nothing_but_itself_and_its_policy_admits_its_own_code(
        opened: Opened, page_url: str) -> None:
    page = opened.page
    assert page.evaluate("window.__violations") == []
    background = page.evaluate(
        "getComputedStyle(document.querySelector('#scores th')).backgroundColor")
    assert background == "rgb(244, 244, 246)"  # the style applied (its hash is admitted)
    click_header(page, "leaf_gsm8k")  # the script ran (its hash is admitted)
    assert labels(page)[0] == "LeaF paper"
    assert opened.requests == [page_url]
    assert all(url.startswith("file://") for url in opened.requests)
    assert opened.dialogs == [] and opened.errors == []
