"""The data files an experiment names, read through line by line.

Mining reads `data.train` only after the testbed and both models are loaded, and stops at the
first bad line with a traceback; here every line is checked up front, and the first problem is
named with its line number. What a line needs is what `leafbench.samples.load_pairs` and the
stages read: a JSON object with `instruction` and `response` strings, an optional `id` (string
or integer) unique in the file — ids default to the line's position among the items, exactly as
`load_pairs` fills them in — and an `answer` when the pruning stage validates counterfactuals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leafbench.config import Experiment
from leafbench.errors import ConfigError

if TYPE_CHECKING:
    from leafbench.preflight import Context

Fields = dict[str, tuple[type, ...]]
PAIR_FIELDS: Fields = {"instruction": (str,), "response": (str,)}
ANSWER_FIELD: Fields = {"answer": (str, int, float)}
ID_TYPES = (str, int)


def check_experiment(exp: Experiment, ctx: Context) -> list[ConfigError]:
    found = []
    if exp.data.train != "synthetic":
        fields = PAIR_FIELDS | (ANSWER_FIELD if exp.pruning.validation else {})
        problem = first_problem(Path(exp.data.train), fields)
        if problem:
            found.append(ConfigError(ctx.source, "data.train", exp.data.train, problem))
    for task, file in exp.data.validation.items():
        problem = first_problem(Path(file), {})
        if problem:
            found.append(ConfigError(ctx.source, f"data.validation.{task}", file, problem))
    # Planned stages name it when it runs (`--until preliminary` too); without a plan (a
    # sweep's base experiment) it runs only when enabled.
    if "preliminary" in (ctx.stages or ()) or (ctx.stages is None and exp.preliminary.enabled):
        found += _preliminary_problems(exp, ctx)
    return found


def _preliminary_problems(exp: Experiment, ctx: Context) -> list[ConfigError]:
    """The preliminary experiment removes mined *instruction* tokens and grades answers: both
    must exist, or it would fail only after mining and pruning have run."""
    found = []
    if exp.mining.level == "response":
        found.append(ConfigError(ctx.source, "mining.level", exp.mining.level,
                                 "the preliminary experiment removes mined instruction tokens; "
                                 "use 'instruction' or 'both'"))
    if exp.data.train != "synthetic" and not _any_answer(Path(exp.data.train)):
        found.append(ConfigError(ctx.source, "data.train", exp.data.train,
                                 "the preliminary experiment grades answers and no line has an "
                                 "'answer' field; add one, or leave preliminary off"))
    return found


def _any_answer(path: Path) -> bool:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip() and json.loads(line).get("answer") not in (None, ""):
                return True
    return False


def first_problem(path: Path, fields: dict[str, tuple[type, ...]]) -> str | None:
    """What is wrong with a JSONL file of items (None: nothing): the first bad line, by number."""
    try:
        with open(path, encoding="utf-8") as fh:
            return _first_bad_line(fh, fields)
    except UnicodeDecodeError as err:
        return f"not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8"
    except OSError as err:
        return f"cannot be read: {err.strerror or err}"


def _first_bad_line(lines: Any, fields: dict[str, tuple[type, ...]]) -> str | None:
    seen: dict[str, int] = {}
    items = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            return (f"line {number} is not JSON ({err.msg}, column {err.colno}); every line must "
                    "be one JSON object")
        if not isinstance(row, dict):
            return f"line {number} is a JSON {type(row).__name__}, not an object"
        for name, types in fields.items():
            if name not in row:
                return (f"line {number} has no '{name}' field; every line needs "
                        f"{_listing(fields)}")
            if not isinstance(row[name], types) or isinstance(row[name], bool):
                return (f"line {number}: '{name}' is a {type(row[name]).__name__}; expected "
                        f"{' or '.join(t.__name__ for t in types)}")
        item_id = row.get("id", str(items))
        if not isinstance(item_id, ID_TYPES) or isinstance(item_id, bool):
            return f"line {number}: 'id' is a {type(item_id).__name__}; expected a string or integer"
        if str(item_id) in seen:
            return (f"line {number} repeats id {str(item_id)!r} of line {seen[str(item_id)]}; "
                    "ids must be unique (items without an id get their position)")
        seen[str(item_id)] = number
        items += 1
    if items == 0:
        return "the file holds no items; expected one JSON object per line"
    return None


def _listing(fields: dict[str, tuple[type, ...]]) -> str:
    return ", ".join(f"'{name}' ({' or '.join(t.__name__ for t in types)})"
                     for name, types in fields.items())
