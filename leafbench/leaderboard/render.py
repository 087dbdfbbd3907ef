"""A board rendered for people: ``board.md`` for a README, ``board.html`` for a browser.

What both show, per entry (one row each, sorted by label) and per task (columns sorted by name):
the score in points with its 95% interval and item count, "71.3 [68.8, 73.7] (1319)" (the
interval is the one the evaluation recorded; a reference entry has published numbers only, so
usually none), an overall column, the LiveCodeBench release and contest date window each entry
was scored on (its `TaskScore.options`: two LiveCodeBench scores on different windows are scores
on different problems), and which rows are published references and where they come from.

The overall score is the unweighted mean of the entry's task scores over every task on the
board, shown only for entries that have every task. Unweighted, because each benchmark is one
question asked of the model (the paper's "Avg" column is the same): weighting by n would make
the overall mostly a GSM8K score (1,319 items against MATH-500's 500 and HumanEval+'s 164).
Only complete entries, because a mean over fewer tasks is a different number, and ranking it
beside full means would reward skipping a hard task. It has no interval: the gate, not this
column, decides whether two models differ.

The page is one self-contained file: inline CSS, an inline SVG chart drawn here (so it needs no
script), and a short inline script that only sorts table rows by the ``data-value`` of their
cells (no data is ever embedded as script). Nothing is loaded from anywhere; a
Content-Security-Policy that admits exactly this page's style and script (by hash) and nothing
else enforces it, and stops any markup that slipped through from running or fetching.

Entries and verdicts arrive from many branches, so every string in them is untrusted: each is
escaped where it is written (`html.escape` in the page, `md_text` in the markdown), never
trusted because a schema admitted it.

Rendering is a function of the board's files alone: no clock (dates are the entries'), every
collection sorted, numbers formatted to fixed decimals, so rendering twice gives the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from leafbench.errors import ConfigError
from leafbench.leaderboard.board import entries, replace_file
from leafbench.leaderboard.entry import Entry, TaskScore
from leafbench.leaderboard.verdict import Report, TaskVerdict, reports

LIVECODEBENCH = "leaf_livecodebench"
MISSING = "—"

NOTES = (
    "Scores are in points (percent of items judged correct; pass@1 for code). "
    "[lo, hi] is the entry's 95% interval as its evaluation recorded it; (n) is the number of "
    "items.",
    "Overall is the unweighted mean of the entry's task scores over all {tasks} tasks on this "
    "board, shown only for entries that have every task: each benchmark counts once (weighting "
    "by n would let the largest test set dominate), and a mean over fewer tasks is not "
    "comparable. It has no interval; the gate decides whether two models differ.",
    "Reference entries are published numbers, named with their source; they hold no item "
    "verdicts, so the gate never compares against them and they usually have no interval.",
)


# ------------------------------------------------------------------------------ the board
@dataclass(frozen=True)
class View:
    """What is rendered: the board's entries and verdicts, and the columns they make."""

    name: str
    entries: list[Entry]
    reports: list[Report]
    tasks: list[str]

    @property
    def shows_window(self) -> bool:
        return LIVECODEBENCH in self.tasks


def view(board: Path) -> View:
    """The board's entries (sorted by label) and latest verdicts (sorted by candidate), each
    checked by its loader, and its tasks: every task any entry has, sorted by name."""
    found = entries(board)
    tasks = sorted({name for entry in found for name in entry.tasks})
    return View(name=board.resolve().name, entries=found, reports=reports(board), tasks=tasks)


def render(board: Path) -> tuple[Path, Path]:
    """Write ``board.md`` and ``board.html`` into `board` and return their paths. A board that
    is not there is an error, not an empty page: a mistyped path would otherwise create one."""
    if not board.is_dir():
        raise ConfigError(str(board), "--board", str(board), "no such board folder")
    shown = view(board)
    md, page = board / "board.md", board / "board.html"
    replace_file(md, markdown(shown))
    replace_file(page, html_page(shown))
    return md, page


def overall(entry: Entry, tasks: Sequence[str]) -> float | None:
    """The entry's overall score (the module docstring): the unweighted mean of its scores over
    `tasks`, None unless it has every one of them."""
    if not tasks or any(name not in entry.tasks for name in tasks):
        return None
    return math.fsum(entry.tasks[name].score for name in tasks) / len(tasks)


def lcb_window(entry: Entry) -> str | None:
    """The LiveCodeBench release and contest date window the entry was scored on, in words;
    None when it has no LiveCodeBench score."""
    task = entry.tasks.get(LIVECODEBENCH)
    if task is None:
        return None
    options = task.options
    if not options:
        return "not recorded"
    release = plain(options["release"]) if options.get("release") is not None \
        else "release not recorded"
    start, end = options.get("start_date"), options.get("end_date")
    if start is None and end is None:
        dates = "all contest dates"
    elif end is None:
        dates = f"contests from {plain(start)}"
    elif start is None:
        dates = f"contests up to {plain(end)}"
    else:
        dates = f"contests {plain(start)} to {plain(end)}"
    return f"{release}, {dates}"


def plain(value: Any, limit: int = 60) -> str:
    """An option value as text: a string as it is, anything else as sorted JSON, cut at `limit`
    characters (options are free-form JSON, unbounded by the entry schema)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ------------------------------------------------------------------------------ numbers
def points(x: float) -> str:
    """A fraction in points with one decimal ("0.7134" -> "71.3"), never "-0.0"."""
    text = f"{100 * x:.1f}"
    return "0.0" if text == "-0.0" else text


def signed_points(x: float) -> str:
    text = points(x)
    return text if text.startswith("-") or text == "0.0" else f"+{text}"


def interval(ci: tuple[float, float] | None, signed: bool = False) -> str:
    if ci is None:
        return ""
    fmt = signed_points if signed else points
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def p_value(p: float) -> str:
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def score_text(task: TaskScore) -> str:
    """ "71.3 [68.8, 73.7] (1319)"; without an interval "71.3 (1319)"."""
    parts = [points(task.score), interval(task.ci95), f"({task.n})"]
    return " ".join(p for p in parts if p)


def kind_text(entry: Entry) -> str:
    return f"reference: {entry.source}" if entry.kind == "reference" else "evaluation"


def metrics(view: View, task: str) -> str:
    """The metric(s) the board's entries report for `task`, for its column header."""
    return ", ".join(sorted({e.tasks[task].metric for e in view.entries if task in e.tasks}))


# ------------------------------------------------------------------------------ markdown
MD_SPECIAL = set("\\`*_[]<>|&~$")


def md_text(text: str) -> str:
    """`text` safe in a GitHub markdown table cell: line breaks and other control characters
    become spaces (a line break ends the row) and every character that is markup inside a cell
    (``|`` ends a cell; ``<``, ``&``, ``[``, ``*``, ``_``, `````, ``~``, ``$`` make HTML, links,
    emphasis, code or math; ``\\`` escapes) is backslash-escaped, which CommonMark allows for
    any ASCII punctuation, so the cell shows exactly the text."""
    out = []
    for char in text:
        if not char.isprintable():
            out.append(" ")
        elif char in MD_SPECIAL:
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(view: View) -> str:
    """The board as a markdown table with its footnotes, and the gate's verdicts as a list."""
    lines = [f"# Leaderboard: {md_text(view.name)}", ""]
    if not view.entries:
        return "\n".join([*lines, "No entries yet.", ""])
    header = ["Entry", "Kind", "Date", *(md_text(t) for t in view.tasks), "Overall"]
    align = [":---", ":---", ":---", *("---:" for _ in view.tasks), "---:"]
    if view.shows_window:
        header.append("LiveCodeBench window")
        align.append(":---")
    lines += [md_row(header), md_row(align)]
    for entry in view.entries:
        lines.append(md_row(md_cells(view, entry)))
    lines.append("")
    lines += ["Notes:", ""]
    lines += [f"{i}. {note.format(tasks=len(view.tasks))}" for i, note in enumerate(NOTES, 1)]
    lines += md_verdicts(view.reports)
    return "\n".join(lines) + "\n"


def md_cells(view: View, entry: Entry) -> list[str]:
    cells = [md_text(entry.label), md_text(kind_text(entry)), md_text(entry.date[:10])]
    for name in view.tasks:
        task = entry.tasks.get(name)
        cells.append(MISSING if task is None else md_text(score_text(task)))
    mean = overall(entry, view.tasks)
    cells.append(MISSING if mean is None else points(mean))
    if view.shows_window:
        cells.append(md_text(lcb_window(entry) or MISSING))
    return cells


def md_verdicts(found: Sequence[Report]) -> list[str]:
    if not found:
        return []
    lines = ["", "## Gate verdicts", ""]
    for report in found:
        outcome = "PASS" if report.passed else "FAIL"
        failed = sorted(name for name, t in report.tasks.items() if t.failed)
        why = f" (failed: {', '.join(failed)})" if failed else ""
        lines.append(f"- **{outcome}** {md_text(report.candidate)} vs "
                     f"{md_text(report.baseline)}, {md_text(report.date[:10])}{md_text(why)}")
    return lines


# ------------------------------------------------------------------------------ the page
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5rem; color: #1d1d1f; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; }
th, td { padding: .3rem .6rem; border-bottom: 1px solid #ddd; vertical-align: top; }
th { text-align: left; background: #f4f4f6; }
th button { font: inherit; font-weight: 600; border: 0; background: none; padding: 0;
  cursor: pointer; text-align: left; color: inherit; }
th[aria-sort=ascending] button::after { content: " \\25B2"; }
th[aria-sort=descending] button::after { content: " \\25BC"; }
th .metric { display: block; font-weight: normal; font-size: .8em; color: #666; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td .ci, td .n, .muted { color: #666; font-size: .9em; }
td.label { font-weight: 600; overflow-wrap: break-word; min-width: 8rem; max-width: 22rem; }
td.date { white-space: nowrap; }
tr.reference td { background: #fbf7ee; }
.notes { color: #444; font-size: .9em; max-width: 60rem; }
svg.panel { display: block; margin: .5rem 0 1rem; }
svg text { font: 12px system-ui, sans-serif; fill: #1d1d1f; }
svg .title { font-weight: 600; }
svg .tick line { stroke: #ddd; }
svg .tick text, svg .absent { fill: #888; }
svg .whisker, svg .cap { stroke: #2a5db0; stroke-width: 1.5; }
svg .point { fill: #2a5db0; }
svg .reference .point { fill: #c77800; }
.verdict { border: 1px solid #ddd; border-radius: 6px; padding: .4rem 1rem; margin: 1rem 0; }
.verdict.pass { border-left: 6px solid #2e8540; } .verdict.fail { border-left: 6px solid #c62828; }
.badge { display: inline-block; padding: 0 .5rem; border-radius: 4px; color: #fff; }
.pass .badge { background: #2e8540; } .fail .badge { background: #c62828; }
tr.failed td { background: #fdecea; }
"""

# Sorts the score table by the clicked column, using each cell's data-value (a number for score
# columns, text otherwise; "" is a missing value and always sorts last). A score column sorts
# highest first on its first click, a text column A to Z; each further click reverses. Ties keep
# the rendered (label) order, so a sort is deterministic.
SCRIPT = """
(function () {
  "use strict";
  var table = document.getElementById("scores");
  if (!table) { return; }
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  heads.forEach(function (th, column) {
    var button = th.querySelector("button");
    if (button) { button.addEventListener("click", function () { sortBy(th, column); }); }
  });
  function sortBy(th, column) {
    var numeric = th.getAttribute("data-sort") === "number";
    var current = th.getAttribute("aria-sort");
    var descending = current ? current === "ascending" : numeric;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[column].getAttribute("data-value");
      var y = b.cells[column].getAttribute("data-value");
      var order = Number(a.getAttribute("data-order")) - Number(b.getAttribute("data-order"));
      if (x === "" || y === "") { return x === y ? order : (x === "" ? 1 : -1); }
      var c = numeric ? Number(x) - Number(y) : (x < y ? -1 : (x > y ? 1 : 0));
      return (descending ? -c : c) || order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    heads.forEach(function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }
})();
"""


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def content_policy() -> str:
    """Nothing may load from anywhere; only this page's own style and script may apply (by their
    hashes), so markup that escaped escaping could neither run nor fetch."""
    return (f"default-src 'none'; style-src {csp_hash(STYLE)}; script-src {csp_hash(SCRIPT)}; "
            "img-src 'none'; base-uri 'none'; form-action 'none'")


def page_head(title: str, style: str, policy: str) -> list[str]:
    """The opening of a self-contained page, up to <body>: its content policy travels in the
    page itself (a file:// page has no server to send the header), its style inline."""
    return [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{escape(policy)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{style}</style>",
        "</head>",
        "<body>",
    ]


def html_page(view: View) -> str:
    """The whole page: header, the sortable score table with its notes, the interval chart,
    the gate's verdicts."""
    counts = summary(view)
    parts = [
        *page_head(f"Leaderboard: {view.name}", STYLE, content_policy()),
        f"<header><h1>Leaderboard: {escape(view.name)}</h1><p>{escape(counts)}</p></header>",
        "<main>",
        scores_section(view),
        chart_section(view),
        verdicts_section(view.reports),
        "</main>",
        f"<script>{SCRIPT}</script>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def summary(view: View) -> str:
    references = sum(e.kind == "reference" for e in view.entries)
    latest = max((e.date[:10] for e in view.entries), default=None)
    text = (f"{counted(len(view.entries) - references, 'evaluation')} and "
            f"{counted(references, 'reference')} on {counted(len(view.tasks), 'task')}")
    return text + (f"; latest entry dated {latest}." if latest else ".")


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def scores_section(view: View) -> str:
    if not view.entries:
        return '<section id="scores-section"><h2>Scores</h2><p>No entries yet.</p></section>'
    head = [header_cell("Entry", "text"), header_cell("Kind", "text"),
            header_cell("Date", "text")]
    head += [header_cell(name, "number", metrics(view, name)) for name in view.tasks]
    head.append(header_cell("Overall", "number", "mean of task scores"))
    if view.shows_window:
        head.append(header_cell("LiveCodeBench window", "text"))
    rows = [score_row(view, entry, order) for order, entry in enumerate(view.entries)]
    notes = "".join(f"<li>{escape(n.format(tasks=len(view.tasks)))}</li>" for n in NOTES)
    return "\n".join([
        '<section id="scores-section"><h2>Scores</h2>',
        "<p>Click a column header to sort by it; click again to reverse.</p>",
        '<div class="scroll"><table id="scores">',
        f"<thead><tr>{''.join(head)}</tr></thead>",
        "<tbody>", *rows, "</tbody></table></div>",
        f'<ol class="notes">{notes}</ol></section>',
    ])


def header_cell(title: str, sort: str, detail: str = "") -> str:
    sub = f'<span class="metric">{escape(detail)}</span>' if detail else ""
    return (f'<th scope="col" data-sort="{sort}"><button type="button">{escape(title)}</button>'
            f"{sub}</th>")


def score_row(view: View, entry: Entry, order: int) -> str:
    """One entry's table row; every cell carries the data-value the sort script compares."""
    cells = [
        text_cell(entry.label, "label", provenance(entry)),
        kind_cell(entry),
        text_cell(entry.date[:10], "date", entry.date),
    ]
    cells += [task_cell(entry.tasks.get(name)) for name in view.tasks]
    mean = overall(entry, view.tasks)
    cells.append(number_cell(mean, escape(points(mean)) if mean is not None else MISSING,
                             "overall"))
    if view.shows_window:
        cells.append(text_cell(lcb_window(entry) or "", "window"))
    return (f'<tr class="{escape(entry.kind)}" data-order="{order}" '
            f'data-label="{escape(entry.label)}">{"".join(cells)}</tr>')


def provenance(entry: Entry) -> str:
    """The label cell's tooltip: what was evaluated, how, and from which commit."""
    facts = [("model", entry.model), ("backend", entry.backend), ("commit", entry.git_commit),
             ("leafbench", entry.leafbench_version), ("config", entry.config_hash)]
    return "; ".join(f"{key}: {value}" for key, value in facts if value)


def text_cell(text: str, css: str, title: str = "") -> str:
    tip = f' title="{escape(title)}"' if title else ""
    shown = escape(text) if text else MISSING
    return f'<td class="{css}" data-value="{escape(text)}"{tip}>{shown}</td>'


def kind_cell(entry: Entry) -> str:
    if entry.kind != "reference":
        return '<td class="kind" data-value="evaluation">evaluation</td>'
    source = escape(entry.source or "")
    return (f'<td class="kind" data-value="reference {source}">reference'
            f'<br><span class="muted">source: {source}</span></td>')


def task_cell(task: TaskScore | None) -> str:
    if task is None:
        return number_cell(None, MISSING, "task")
    parts = [f'<span class="score">{points(task.score)}</span>']
    if task.ci95 is not None:
        parts.append(f'<span class="ci">{escape(interval(task.ci95))}</span>')
    parts.append(f'<span class="n">({task.n})</span>')
    return number_cell(task.score, " ".join(parts), "task")


def number_cell(value: float | None, inner: str, css: str) -> str:
    """A right-aligned cell sorting by `value` (repr: exact and deterministic; "" if missing).
    `inner` is markup already escaped."""
    data = "" if value is None else repr(value)
    return f'<td class="num {css}" data-value="{data}">{inner}</td>'


# ------------------------------------------------------------------------------ the chart
@dataclass(frozen=True)
class Scale:
    """Points on a panel's x axis: [lo, hi] points drawn over [left, left + width] pixels."""

    lo: float
    hi: float
    left: float
    width: float

    def x(self, pts: float) -> float:
        clamped = min(max(pts, self.lo), self.hi)
        return self.left + (clamped - self.lo) / (self.hi - self.lo) * self.width

    def ticks(self) -> list[int]:
        """Gridlines every 10 points, or 20 on a wide axis; `domain` ends on one at each end."""
        return list(range(int(self.lo), int(self.hi) + 1, tick_step(self.hi - self.lo)))


def tick_step(span: float) -> int:
    return 10 if span <= 50 else 20


LABEL_WIDTH, PLOT_WIDTH, RIGHT = 230.0, 480.0, 20.0
ROW, TOP, BOTTOM = 22.0, 34.0, 30.0
LABEL_CHARS = 30


def num(x: float) -> str:
    """An SVG coordinate, to a hundredth of a pixel (fixed decimals: deterministic bytes)."""
    return f"{x:.2f}"


def domain(values: Iterable[float]) -> tuple[float, float]:
    """A panel's x range in points: the values' span widened to whole ticks (every 10 points,
    or 20 past a 50-point span), at least 10 points wide, within [0, 100]. Each task gets its
    own range so that close scores stay distinguishable."""
    shown = [min(max(v, 0.0), 100.0) for v in values] or [0.0, 100.0]

    def widened(step: int) -> tuple[float, float]:
        return math.floor(min(shown) / step) * step, math.ceil(max(shown) / step) * step

    lo, hi = widened(10)
    if hi - lo > 50:
        lo, hi = widened(tick_step(hi - lo))
    elif hi - lo < 10:
        lo, hi = (lo, lo + 10) if lo + 10 <= 100 else (90, 100)
    return float(lo), float(hi)


def task_values(view: View, name: str) -> list[float]:
    """Every number the `name` panel draws, in points: scores, and interval ends of
    evaluation entries (references are drawn without their interval)."""
    values = []
    for entry in view.entries:
        task = entry.tasks.get(name)
        if task is None:
            continue
        values.append(100 * task.score)
        if entry.kind == "evaluation" and task.ci95 is not None:
            values += [100 * task.ci95[0], 100 * task.ci95[1]]
    return values


def chart_section(view: View) -> str:
    if not view.entries:
        return ""
    panels = [task_panel(view, name) for name in view.tasks]
    return "\n".join([
        '<section id="chart-section"><h2>Scores with 95% intervals</h2>',
        '<p>Per task, one row per entry: a dot at the score with a whisker over its 95% '
        'interval; an orange diamond is a reference entry\'s published score (no interval). '
        'Each panel has its own axis in points. Hover a mark for its numbers.</p>',
        '<div id="chart">', *panels, "</div></section>",
    ])


def task_panel(view: View, name: str) -> str:
    """One task's forest plot: entries as rows (label order), a mark for each that has the
    task, an axis with gridlines every 10 or 20 points."""
    scale = Scale(*domain(task_values(view, name)), left=LABEL_WIDTH, width=PLOT_WIDTH)
    height = TOP + ROW * len(view.entries) + BOTTOM
    width = LABEL_WIDTH + PLOT_WIDTH + RIGHT
    parts = [
        f'<svg class="panel" data-task="{escape(name)}" width="{num(width)}" '
        f'height="{num(height)}" viewBox="0 0 {num(width)} {num(height)}" role="img">',
        f"<title>{escape(name)}: scores in points with 95% intervals</title>",
        f'<text class="title" x="0" y="16">{escape(name)}</text>',
        axis(scale, height),
    ]
    for row, entry in enumerate(view.entries):
        y = TOP + ROW * row + ROW / 2
        parts.append(row_label(entry.label, y))
        task = entry.tasks.get(name)
        parts.append(mark(entry, task, scale, y) if task is not None
                     else f'<text class="absent" x="{num(scale.left)}" y="{num(y + 4)}">'
                          "no score</text>")
    parts.append("</svg>")
    return "\n".join(parts)


def axis(scale: Scale, height: float) -> str:
    ticks = []
    for value in scale.ticks():
        x = num(scale.x(value))
        ticks.append(
            f'<g class="tick" data-value="{value}"><line x1="{x}" x2="{x}" y1="{num(TOP - 6)}" '
            f'y2="{num(height - BOTTOM + 4)}"/><text x="{x}" y="{num(height - 10)}" '
            f'text-anchor="middle">{value}</text></g>')
    return '<g class="axis">' + "".join(ticks) + "</g>"


def row_label(label: str, y: float) -> str:
    """The entry's label left of its row, shortened to fit (the mark's tooltip has it whole)."""
    shown = label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "…"
    return (f'<text class="row-label" x="{num(LABEL_WIDTH - 10)}" y="{num(y + 4)}" '
            f'text-anchor="end">{escape(shown)}</text>')


def mark(entry: Entry, task: TaskScore, scale: Scale, y: float) -> str:
    """An evaluation: a dot at the score and a whisker with caps over its interval. A
    reference: a diamond at the published score, no whisker. The tooltip says it in words."""
    x = scale.x(100 * task.score)
    tip = f"{entry.label} ({kind_text(entry)}): {score_text(task)}"
    parts = [f'<g class="mark {escape(entry.kind)}" data-label="{escape(entry.label)}" '
             f'data-score="{points(task.score)}"><title>{escape(tip)}</title>']
    if entry.kind == "evaluation" and task.ci95 is not None:
        lo, hi = (100 * v for v in task.ci95)
        x1, x2 = num(scale.x(lo)), num(scale.x(hi))
        parts.append(
            f'<line class="whisker" data-lo="{points(task.ci95[0])}" '
            f'data-hi="{points(task.ci95[1])}" x1="{x1}" x2="{x2}" y1="{num(y)}" y2="{num(y)}"/>'
            f'<line class="cap" x1="{x1}" x2="{x1}" y1="{num(y - 5)}" y2="{num(y + 5)}"/>'
            f'<line class="cap" x1="{x2}" x2="{x2}" y1="{num(y - 5)}" y2="{num(y + 5)}"/>')
    if entry.kind == "reference":
        diamond = " ".join(f"{num(x + dx)},{num(y + dy)}"
                           for dx, dy in ((0, -6), (6, 0), (0, 6), (-6, 0)))
        parts.append(f'<polygon class="point" points="{diamond}"/>')
    else:
        parts.append(f'<circle class="point" cx="{num(x)}" cy="{num(y)}" r="4"/>')
    parts.append("</g>")
    return "".join(parts)


# ------------------------------------------------------------------------------ verdicts
def verdicts_section(found: Sequence[Report]) -> str:
    body = [verdict_article(r) for r in found] or ["<p>No gate verdicts recorded yet.</p>"]
    return "\n".join([
        '<section id="verdicts"><h2>Gate verdicts</h2>',
        "<p>The latest check of each candidate against its baseline, item by item: difference "
        "in points (candidate minus baseline) with its 95% interval, the one-sided p-value for "
        "a drop and its Holm adjustment over the tasks checked.</p>",
        *body, "</section>",
    ])


def verdict_article(report: Report) -> str:
    outcome = "pass" if report.passed else "fail"
    settings = (f"{report.date} · rule: {report.rule} · alpha {report.alpha:g} · margin "
                f"{points(report.margin)} points · "
                f"{'tasks both entries have' if report.intersect else 'all tasks'}")
    rows = [verdict_row(name, report.tasks[name]) for name in sorted(report.tasks)]
    skipped = [f"<li>{escape(name)}: {escape(report.not_compared[name])}</li>"
               for name in sorted(report.not_compared)]
    parts = [
        f'<article class="verdict {outcome}" data-candidate="{escape(report.candidate)}" '
        f'data-passed="{str(report.passed).lower()}">',
        f'<h3><span class="badge">{outcome.upper()}</span> {escape(report.candidate)} '
        f'<span class="muted">vs baseline</span> {escape(report.baseline)}</h3>',
        f'<p class="muted">{escape(settings)}</p>',
        '<div class="scroll"><table class="verdict-tasks"><thead><tr>'
        + "".join(f"<th>{h}</th>" for h in ("Task", "n", "Baseline", "Candidate",
                                            "Difference [95%]", "p (drop)", "Holm p",
                                            "Flips ✓→✗ / ✗→✓", "Test", "Result", "Reason"))
        + "</tr></thead><tbody>",
        *rows, "</tbody></table></div>",
    ]
    if skipped:
        parts.append(f"<p>Not compared:</p><ul>{''.join(skipped)}</ul>")
    parts.append("</article>")
    return "\n".join(parts)


def verdict_row(name: str, task: TaskVerdict) -> str:
    n = f"{task.n}" + (f" × {task.samples_per_item}" if task.samples_per_item > 1 else "")
    cells = [escape(name), n, points(task.baseline), points(task.candidate),
             f"{signed_points(task.difference)} {interval(task.ci95, signed=True)}",
             p_value(task.p_drop), p_value(task.p_holm),
             f"{task.right_to_wrong} / {task.wrong_to_right}", escape(task.test),
             "fail" if task.failed else "pass", escape(task.reason)]
    css = "failed" if task.failed else "passed"
    return f'<tr class="{css}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
