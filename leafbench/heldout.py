"""A validation file is only worth tuning on if it is held out.

`data.validation.<task>` names the items a sweep's objective scores. Two leaks would make that
score a lie, and neither shows up in any number afterwards, so they are refused when the
experiment is loaded, before anything runs:

- an item that is also in the training data (`data.train`): mining and distillation have seen
  it, so the validation score rewards memorising it;
- an item that is also in the task's test set (when that set is on this machine, from
  `evaluate.data_dir` or `LEAFBENCH_DATA_DIR`): tuning on it leaks the very numbers the results
  report.

An item is its question text (the first of `QUESTION_FIELDS` a row has), compared after
lower-casing and collapsing whitespace. A training instruction counts as containing the item
when the item's text occurs anywhere in it, since training sets wrap questions in templates.
Texts shorter than `MIN_CHARS` are too generic to call a leak and are not compared.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

QUESTION_FIELDS = ("question", "problem", "prompt", "question_content", "instruction", "input")
MIN_CHARS = 20
SEPARATOR = "\x00"


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def question_text(row: dict) -> str | None:
    """The row's question, as `normalise` writes it; None when it has none (or a short one)."""
    text = next((row[f] for f in QUESTION_FIELDS if isinstance(row.get(f), str)), None)
    if text is None:
        return None
    text = normalise(text)
    return text if len(text) >= MIN_CHARS else None


def rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, row) of a JSONL file, a gzipped one, or every JSONL in a folder of shards.
    Lines that are not JSON objects are passed over: what the file means is the loader's
    business, this check only needs the questions."""
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    for file in files:
        opener = gzip.open if file.suffix == ".gz" else open
        with opener(file, "rt", encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict):
                    yield number, row


def leaked(validation: Path, held: Path, field: str | None) -> tuple[int, int, int] | None:
    """(leaked items, line of the first one, items compared) when some of `validation`'s
    questions occur in `held`: inside its rows' `field` (training instructions), or, with
    `field` None, as one of its questions (a test set); None when none do."""
    held_rows = (row for _, row in rows(held))
    if field is None:
        questions = {question_text(row) for row in held_rows} - {None}
        def found_in(text: str) -> bool:
            return text in questions
    else:
        haystack = SEPARATOR.join(normalise(row[field]) for row in held_rows
                                  if isinstance(row.get(field), str))
        def found_in(text: str) -> bool:
            return text in haystack
    found, first, compared = 0, 0, 0
    for number, row in rows(validation):
        text = question_text(row)
        if text is None:
            continue
        compared += 1
        if found_in(text):
            found += 1
            first = first or number
    return (found, first, compared) if found else None
