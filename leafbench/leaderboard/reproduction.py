"""Reproduced vs published: does our run of a paper's model land on the paper's number?

`compare` pairs each reproduced entry (an evaluation, item by item) with a published one (a
reference: the paper's score and n per task) and, per task both have, sets the published score
beside the reproduced score and its 95% interval. `render_report` writes that as ``report.md``
and ``report.html``.

Which entries pair up. `pairs` maps a reproduced label to a published label. Without it, the
board convention decides: the paper's rows are on ``leaderboards/paper/`` labelled ``"paper: "``
followed by the row's name (``"paper: LLaMA3.2-1B-Instruct Pre-KD"``), so a reproduced entry
labelled with the row's name (``"LLaMA3.2-1B-Instruct Pre-KD"``) matches the reference labelled
``"paper: " + its label``. Reproduced entries with no such reference are left out (a board of
runs may hold ablations the paper never printed); none matching at all is an error, since an
empty report is always a mistake.

What "inside" means. The published number is one figure with no interval; our run is a sample
of the model's behaviour (and of an evaluation set the paper may have drawn differently), so the
question asked is whether the published figure lies inside the reproduced score's 95% interval
(bounds included). The interval used is the one the evaluation recorded (`TaskScore.ci95`,
its bootstrap over items) when there is one; otherwise a Wilson score interval. The Wilson
interval is also reported on its own, for every task, as a second check that does not rest
on the run's own bootstrap: it needs only k = round(score * n) and n, so anyone can recompute
it from the published table's kind of numbers. With several samples per item, k counts the
item means rounded to a total, which makes Wilson an approximation (flagged in the notes).

This is not a test of equality. A published number inside the interval says the two agree
within the run's sampling noise; outside says they differ by more than noise, from any cause:
another prompt, grader, checkpoint, item set, or a misprinted table.

Item counts. A published figure is k / n_published. When the two n differ the scores are over
different item sets, so the row is still compared but flagged. OlympiadBench is the known case:
the paper's figures are k/674 while the usual release has 675 items, and the item the authors
dropped is not documented, so a reproduced run on 675 items is compared with that said.

Entries are untrusted (they arrive from many branches): the report escapes every string the
way the board page does (`render.md_text`, `html.escape`), its page is self-contained with a
Content-Security-Policy that admits only its own style and no script at all, and rendering is
a function of the rows alone (no clock, fixed decimals), so it gives the same bytes twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from statistics import NormalDist
from typing import Literal

from leafbench.errors import ConfigError
from leafbench.leaderboard.board import replace_file
from leafbench.leaderboard.entry import Entry
from leafbench.leaderboard.render import (
    LIVECODEBENCH,
    STYLE,
    counted,
    csp_hash,
    lcb_window,
    md_row,
    md_text,
    page_head,
)

PUBLISHED_PREFIX = "paper: "
OLYMPIADBENCH = "leaf_olympiadbench"
OLYMPIADBENCH_NOTE = "published k/674, reproduced on 675 items; the dropped item is unknown"
Z95 = NormalDist().inv_cdf(0.975)  # 1.95996...: the two-sided 95% normal quantile
MISSING = "—"


# ------------------------------------------------------------------------------ the rows
@dataclass(frozen=True)
class TaskComparison:
    """One task of one pair. Scores, intervals and `delta` are fractions of items, as entries
    keep them (`delta_points` is the same in points)."""

    task: str
    published: float
    published_n: int
    reproduced: float
    reproduced_n: int
    recorded_ci95: tuple[float, float] | None  # the reproduced evaluation's own interval
    k: int  # round(reproduced * reproduced_n): what the Wilson interval is computed from
    wilson_ci95: tuple[float, float]
    delta: float  # reproduced - published
    interval_source: Literal["recorded", "wilson"]  # which interval decides `inside`
    inside: bool  # published within that interval, bounds included
    inside_wilson: bool  # published within the Wilson interval, bounds included
    notes: tuple[str, ...]  # n mismatches, metric or LiveCodeBench window differences

    @property
    def interval(self) -> tuple[float, float]:
        """The interval `inside` was decided on."""
        if self.interval_source == "recorded" and self.recorded_ci95 is not None:
            return self.recorded_ci95
        return self.wilson_ci95

    @property
    def delta_points(self) -> float:
        return 100 * self.delta


@dataclass(frozen=True)
class ReportRow:
    """A reproduced entry against the published entry it reproduces: every task both have
    (sorted by name), and the tasks only one of them has, each with why."""

    reproduced_label: str
    published_label: str
    published_source: str
    reproduced_model: str | None
    reproduced_date: str
    published_date: str
    tasks: tuple[TaskComparison, ...]
    not_compared: tuple[tuple[str, str], ...]  # (task, why), sorted by task


# ------------------------------------------------------------------------------ comparing
def wilson(k: int, n: int) -> tuple[float, float]:
    """The Wilson score 95% interval of k successes in n trials. Chosen over the normal
    (Wald) interval because it stays inside [0, 1] and keeps its coverage near 0 and 1, where
    the paper's weakest rows sit (OlympiadBench at 5.79, LeetCode at 7.22)."""
    p = k / n
    denominator = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denominator
    # At k = 0 (k = n) the lower (upper) bound is exactly 0 (1); computed, it is off by an ulp.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def compare(published: Sequence[Entry], reproduced: Sequence[Entry],
            pairs: Mapping[str, str] | None = None) -> list[ReportRow]:
    """One row per (reproduced, published) pair, sorted by reproduced label (each reproduced
    entry is compared with one published entry; one published entry may serve several).

    `pairs` maps reproduced labels to published labels; None pairs each reproduced entry with
    the published entry labelled ``"paper: " + its label`` (the module docstring). A label
    in `pairs` that is not among its entries, a pair of the wrong kinds (the reproduced side
    must be an evaluation, the published side a reference), or no pair at all is a
    ConfigError (a ValueError) naming the label."""
    by_published = _by_label(published, "published")
    by_reproduced = _by_label(reproduced, "reproduced")
    if pairs is None:
        matched = {label: PUBLISHED_PREFIX + label for label in by_reproduced
                   if PUBLISHED_PREFIX + label in by_published}
        if not matched:
            raise ConfigError("reproduced entries", "label", sorted(by_reproduced),
                              f"none has a published entry labelled {PUBLISHED_PREFIX!r} + its "
                              f"label; the published entries are {sorted(by_published)}")
    else:
        matched = dict(pairs)
        for repro, paper in sorted(matched.items()):
            if repro not in by_reproduced:
                raise ConfigError("reproduced entries", "pairs", repro,
                                  f"no reproduced entry has this label; there are "
                                  f"{sorted(by_reproduced)}")
            if paper not in by_published:
                raise ConfigError("published entries", "pairs", paper,
                                  f"no published entry has this label; there are "
                                  f"{sorted(by_published)}")
    return [compare_pair(by_published[paper], by_reproduced[repro])
            for repro, paper in sorted(matched.items())]


def _by_label(found: Sequence[Entry], side: str) -> dict[str, Entry]:
    """Entries by label; a label twice is an error (a board holds one file per label, so two
    means entries from two boards were mixed up)."""
    out: dict[str, Entry] = {}
    for entry in found:
        if entry.label in out:
            raise ConfigError(f"{side} entries", "label", entry.label, "appears twice")
        out[entry.label] = entry
    return out


def compare_pair(published: Entry, reproduced: Entry) -> ReportRow:
    """Every task of `reproduced` against `published`; both kinds checked first, because a
    reference has no interval to test against and an evaluation is no published figure."""
    if reproduced.kind != "evaluation":
        raise ConfigError("reproduced entries", "kind", reproduced.label,
                          f"a reproduced entry must be an evaluation, not a {reproduced.kind}")
    if published.kind != "reference":
        raise ConfigError("published entries", "kind", published.label,
                          f"a published entry must be a reference, not an {published.kind}")
    shared = sorted(set(published.tasks) & set(reproduced.tasks))
    only = [(name, "only the published entry has it") for name in published.tasks
            if name not in reproduced.tasks]
    only += [(name, "the published entry has no score for it") for name in reproduced.tasks
             if name not in published.tasks]
    return ReportRow(
        reproduced_label=reproduced.label, published_label=published.label,
        published_source=published.source or "", reproduced_model=reproduced.model,
        reproduced_date=reproduced.date, published_date=published.date,
        tasks=tuple(compare_task(name, published, reproduced) for name in shared),
        not_compared=tuple(sorted(only)))


def compare_task(name: str, published_entry: Entry, reproduced_entry: Entry) -> TaskComparison:
    """Task `name`'s published score against the reproduced one's intervals (the module
    docstring)."""
    published, reproduced = published_entry.tasks[name], reproduced_entry.tasks[name]
    k = round(reproduced.score * reproduced.n)
    wilson_ci = wilson(k, reproduced.n)
    source: Literal["recorded", "wilson"] = "wilson" if reproduced.ci95 is None else "recorded"
    decisive = reproduced.ci95 if reproduced.ci95 is not None else wilson_ci
    return TaskComparison(
        task=name, published=published.score, published_n=published.n,
        reproduced=reproduced.score, reproduced_n=reproduced.n,
        recorded_ci95=reproduced.ci95, k=k, wilson_ci95=wilson_ci,
        delta=reproduced.score - published.score, interval_source=source,
        inside=decisive[0] <= published.score <= decisive[1],
        inside_wilson=wilson_ci[0] <= published.score <= wilson_ci[1],
        notes=task_notes(name, published_entry, reproduced_entry))


def task_notes(name: str, published_entry: Entry, reproduced_entry: Entry) -> tuple[str, ...]:
    """What makes the two numbers not quite the same measurement: a different item count,
    metric or LiveCodeBench window (two windows are two sets of problems, worded as the board
    words them), several samples per item (Wilson then approximates), or no recorded
    interval."""
    published, reproduced = published_entry.tasks[name], reproduced_entry.tasks[name]
    notes = []
    if name == OLYMPIADBENCH and (published.n, reproduced.n) == (674, 675):
        notes.append(OLYMPIADBENCH_NOTE)
    elif published.n != reproduced.n:
        notes.append(f"n differs: published on {published.n} items, reproduced on "
                     f"{reproduced.n}; the scores are over different item sets")
    if published.metric != reproduced.metric:
        notes.append(f"metric differs: published {published.metric}, "
                     f"reproduced {reproduced.metric}")
    if name == LIVECODEBENCH:
        windows = lcb_window(published_entry), lcb_window(reproduced_entry)
        if windows[0] != windows[1]:
            notes.append(f"window differs: published {windows[0]}, reproduced {windows[1]}")
    if reproduced.samples_per_item > 1:
        notes.append(f"{reproduced.samples_per_item} samples per item: the Wilson interval "
                     "treats the mean as k of n verdicts (approximate)")
    if reproduced.ci95 is None:
        notes.append("no recorded interval: decided on the Wilson interval")
    return tuple(notes)


# ------------------------------------------------------------------------------ numbers
def pts(x: float) -> str:
    """A fraction in points with two decimals ("0.4488" -> "44.88"), never "-0.00". Two, not
    the board's one (`render.points`): the paper prints two, and one would show 44.88 as 44.9
    and hide deltas under a tenth of a point."""
    text = f"{100 * x:.2f}"
    return "0.00" if text == "-0.00" else text


def signed_pts(x: float) -> str:
    text = pts(x)
    return text if text.startswith("-") or text == "0.00" else f"+{text}"


def span(ci: tuple[float, float]) -> str:
    return f"[{pts(ci[0])}, {pts(ci[1])}]"


def summary(rows: Sequence[ReportRow]) -> str:
    """How many published numbers lie inside the reproduced intervals, and the mean absolute
    delta in points, over every compared task of every row."""
    compared = [t for row in rows for t in row.tasks]
    if not compared:
        return f"{counted(len(rows), 'pair')}, no task in common: nothing compared."
    inside = sum(t.inside for t in compared)
    inside_wilson = sum(t.inside_wilson for t in compared)
    flagged = sum(bool(t.notes) for t in compared)
    mad = math.fsum(abs(t.delta) for t in compared) / len(compared)
    return (f"Published numbers inside the reproduced 95% intervals: {inside} of "
            f"{len(compared)} ({inside_wilson} inside the Wilson intervals); mean absolute "
            f"delta {100 * mad:.2f} points over {counted(len(compared), 'task')} in "
            f"{counted(len(rows), 'pair')}; {flagged} flagged.")


NOTES = (
    "Scores are in points (percent of items judged correct; pass@1 for code), (n) the number "
    "of items. Delta is reproduced minus published.",
    "Inside? asks whether the published number lies within the reproduced score's 95% "
    "interval, bounds included: the interval the evaluation recorded (its bootstrap over "
    "items) when it has one, else the Wilson interval. Inside Wilson? asks the same of the "
    "Wilson score interval from k = round(score × n) and n alone.",
    "Inside means the two agree within the reproduced run's sampling noise; it does not show "
    "they are equal. A flagged row compares numbers over different item sets or metrics.",
)
HEADER = ("Task", "Published (n)", "Reproduced [95%] (n)", "Wilson [95%] (k/n)", "Delta",
          "Inside?", "Inside Wilson?", "Note")


def cells(t: TaskComparison) -> list[str]:
    """A task's row as plain text; each renderer escapes it for its format."""
    return [t.task, f"{pts(t.published)} ({t.published_n})",
            f"{pts(t.reproduced)} {span(t.interval)} ({t.reproduced_n})",
            f"{span(t.wilson_ci95)} ({t.k}/{t.reproduced_n})", signed_pts(t.delta),
            "yes" if t.inside else "no", "yes" if t.inside_wilson else "no",
            "; ".join(t.notes) or MISSING]


# ------------------------------------------------------------------------------ rendering
def render_report(rows: Sequence[ReportRow], out_dir: Path, *, title: str) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into `out_dir` (created if missing) and return
    their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, page = out_dir / "report.md", out_dir / "report.html"
    replace_file(md, markdown(rows, title))
    replace_file(page, html_page(rows, title))
    return md, page


def markdown(rows: Sequence[ReportRow], title: str) -> str:
    lines = [f"# {md_text(title)}", "", md_text(summary(rows)), ""]
    for row in rows:
        lines += [f"## {md_text(row.reproduced_label)} vs {md_text(row.published_label)}", "",
                  md_text(provenance(row)), ""]
        if row.tasks:
            lines += [md_row(md_text(h) for h in HEADER),
                      md_row([":---", "---:", "---:", "---:", "---:", ":---", ":---", ":---"])]
            lines += [md_row(md_text(c) for c in cells(t)) for t in row.tasks]
            lines.append("")
        if row.not_compared:
            lines += ["Not compared:", ""]
            lines += [f"- {md_text(name)}: {md_text(why)}" for name, why in row.not_compared]
            lines.append("")
    lines += ["Notes:", ""]
    lines += [f"{i}. {md_text(note)}" for i, note in enumerate(NOTES, 1)]
    return "\n".join(lines) + "\n"


def provenance(row: ReportRow) -> str:
    model = f" of {row.reproduced_model}" if row.reproduced_model else ""
    return (f"Reproduced: evaluation{model}, dated {row.reproduced_date[:10]}. Published "
            f"({row.published_date[:10]}): {row.published_source}")


# The board page's style (so both pages look alike) and what only this page needs.
REPORT_STYLE = STYLE + """
tr.outside td { background: #fdecea; }
tr.flagged td.note { color: #8a5300; }
p.summary { font-weight: 600; }
"""


def content_policy() -> str:
    """Nothing may load from anywhere and nothing may run (the page has no script); only its
    own style applies, by hash. Markup that escaped escaping could neither run nor fetch."""
    return (f"default-src 'none'; style-src {csp_hash(REPORT_STYLE)}; script-src 'none'; "
            "img-src 'none'; base-uri 'none'; form-action 'none'")


def html_page(rows: Sequence[ReportRow], title: str) -> str:
    parts = [
        *page_head(title, REPORT_STYLE, content_policy()),
        f'<header><h1>{escape(title)}</h1><p class="summary">{escape(summary(rows))}</p>'
        "</header>",
        "<main>",
        *(row_section(row) for row in rows),
        "</main>",
        "<footer><ol class=\"notes\">"
        + "".join(f"<li>{escape(note)}</li>" for note in NOTES) + "</ol></footer>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def row_section(row: ReportRow) -> str:
    parts = [
        f'<section class="pair" data-reproduced="{escape(row.reproduced_label)}" '
        f'data-published="{escape(row.published_label)}">',
        f"<h2>{escape(row.reproduced_label)} <span class=\"muted\">vs</span> "
        f"{escape(row.published_label)}</h2>",
        f'<p class="muted">{escape(provenance(row))}</p>',
    ]
    if row.tasks:
        head = "".join(f'<th scope="col">{escape(h)}</th>' for h in HEADER)
        parts += ['<div class="scroll"><table class="report">',
                  f"<thead><tr>{head}</tr></thead><tbody>",
                  *(task_row(t) for t in row.tasks), "</tbody></table></div>"]
    if row.not_compared:
        items = "".join(f"<li>{escape(name)}: {escape(why)}</li>" for name, why in row.not_compared)
        parts.append(f"<p>Not compared:</p><ul>{items}</ul>")
    parts.append("</section>")
    return "\n".join(parts)


def task_row(t: TaskComparison) -> str:
    css = " ".join(c for c in ("inside" if t.inside else "outside",
                               "flagged" if t.notes else "") if c)
    classes = ["task", "num", "num", "num", "num", "inside", "inside-wilson", "note"]
    body = "".join(f'<td class="{c}">{escape(text)}</td>'
                   for c, text in zip(classes, cells(t), strict=True))
    return (f'<tr class="{css}" data-task="{escape(t.task)}" '
            f'data-inside="{str(t.inside).lower()}">{body}</tr>')
