"""A self-contained HTML page of the saliency store: every context token coloured by Δ.

Δ = minmax(ĝ^T − ĝ^S) is low where the student leans on a token the teacher ignores, so low Δ
gets the strongest colour: confounder candidates stand out at a glance. Tokens the current
threshold marks (`mark_confounders`, the rule pruning uses) are boxed and underlined; tokens
inside a ground-truth distractor span (rows with `distractor_spans`, e.g. the synthetic
testbed) get a dotted blue overline, so misses and false alarms are visible side by side.
Hovering a token shows Δ, ĝ^T and ĝ^S. A "token" is a store unit: a student token, or a piece
of the common segmentation when teacher and student tokenizers differ (the row's offsets say
which characters either covers, so the page reads both alike).

One file, inline CSS, no script and no external resource: it opens from an MLflow artifact
view or a mail attachment as it is. Every piece of data text is HTML-escaped — instructions are
user data and may contain markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from leafbench.mining import mark_confounders, token_in_spans

RULES = {
    "absolute": "Δ ≤ τ (the paper)",
    "quantile": "Δ ≤ min(0.5, the ⌊n·τ⌋-th smallest Δ of the sample) (the official code)",
}

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
.legend { border: 1px solid #ccc; padding: 0.6em 1em; margin-bottom: 1.2em; }
.sample { border-top: 1px solid #ddd; padding: 0.6em 0; }
.sample h2 { font-size: 0.95em; margin: 0 0 0.3em 0; color: #555; }
.text { font-family: ui-monospace, monospace; white-space: pre-wrap; line-height: 1.9; }
.source { display: block; color: #888; font-size: 0.8em; margin-top: 0.4em; }
.tok, .swatch { border-radius: 2px; }
.marked { outline: 1.5px solid #000; text-decoration: underline; }
.truth { border-top: 3px dotted #1f5fbf; }
.truth-list { font-size: 0.85em; color: #1f5fbf; margin-top: 0.3em; }
"""


def delta_colour(delta: float) -> str:
    """Red with opacity (1 − Δ)²: Δ = 0 is solid, Δ = 1 blank; squaring keeps the mass of
    mid-range tokens pale so that the low-Δ tail stands out."""
    strength = (1.0 - min(max(delta, 0.0), 1.0)) ** 2
    return f"rgba(214, 39, 40, {0.85 * strength:.3f})"


def render_delta_view(rows: Sequence[dict[str, Any]], mode: str, tau: float, limit: int = 50,
                      title: str = "LeaF confounder mining: Δ per context token") -> str:
    """The page for the first `limit` saliency-store rows, marked with threshold (`mode`, τ)."""
    if mode not in RULES:
        raise ValueError(f"threshold mode {mode!r} unknown; expected one of {sorted(RULES)}")
    shown = list(rows[:limit])
    samples = "\n".join(_sample_html(row, mode, tau) for row in shown)
    swatches = " ".join(
        f'<span class="swatch" style="background:{delta_colour(d)}">&nbsp;Δ={d:g}&nbsp;</span>'
        for d in (0.0, 0.25, 0.5, 0.75, 1.0))
    legend = (
        '<div class="legend">'
        f"<p><b>Threshold:</b> mode <code>{escape(mode)}</code>, τ = {tau:g} — a token is "
        f"marked when {escape(RULES[mode])}; whitespace-only tokens never are.</p>"
        f"<p><b>Colour:</b> {swatches} — low Δ (the student leans on a token the teacher "
        "ignores) is a confounder candidate.</p>"
        '<p><span class="marked">marked</span> boxed and underlined: marked by the '
        'threshold. <span class="truth">distractor</span> dotted overline: inside a '
        "ground-truth distractor span. Hover a token for Δ, ĝ^T and ĝ^S.</p>"
        f"<p>{len(shown)} of {len(rows)} rows shown.</p></div>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>\n{legend}\n{samples}\n</body></html>\n"
    )


def _sample_html(row: dict[str, Any], mode: str, tau: float) -> str:
    tokens, offsets, sources = row["tokens"], row["offsets"], row["sources"]
    marked = mark_confounders(row["delta"], tokens, mode, tau)
    truth_spans = row.get("distractor_spans")
    parts: list[str] = []
    previous: str | None = None
    cursor = 0
    for i, (text, (start, end), source) in enumerate(zip(tokens, offsets, sources, strict=True)):
        if source != previous:
            if previous is not None or source != "instruction":
                parts.append(f'<span class="source">{escape(source)}:</span>')
            previous, cursor = source, 0
        source_text = row.get(source)
        if isinstance(source_text, str) and start > cursor:
            parts.append(escape(source_text[cursor:start]))  # characters no token covers
        cursor = max(cursor, end)
        classes = ["tok"]
        if marked[i]:
            classes.append("marked")
        if truth_spans and source == "instruction" and token_in_spans(text, (start, end),
                                                                      truth_spans):
            classes.append("truth")
        hover = (f"Δ {row['delta'][i]:.3f} | ĝ^T {row['teacher_norm'][i]:.3f} | "
                 f"ĝ^S {row['student_norm'][i]:.3f}")
        parts.append(f'<span class="{" ".join(classes)}" '
                     f'style="background:{delta_colour(row["delta"][i])}" '
                     f'title="{escape(hover)}">{escape(text)}</span>')
    header = (f"<h2>{escape(str(row.get('id', '')))} · level {escape(str(row.get('level', '')))}"
              f" · {len(tokens)} tokens · {sum(marked)} marked</h2>")
    truth = ""
    if truth_spans:
        texts = ", ".join(f"«{escape(row['instruction'][s:e])}» [{s}, {e})"
                          for s, e in truth_spans)
        truth = f'<div class="truth-list">ground-truth distractor spans: {texts}</div>'
    return f'<div class="sample">{header}<div class="text">{"".join(parts)}</div>{truth}</div>'
