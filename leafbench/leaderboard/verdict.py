"""The gate's report: what `leafbench leaderboard check` prints as JSON and keeps on the board.

A board's ``verdicts/`` folder holds the latest report per candidate, and the page shows them;
like entries they arrive from other branches, so `load_report` checks them as strictly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from leafbench.errors import ConfigError
from leafbench.leaderboard.entry import MAX_ITEMS, Text, check_label, schema_error

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Signed = Annotated[float, Field(ge=-1.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class TaskVerdict(_Strict):
    n: Annotated[int, Field(ge=1, le=MAX_ITEMS)]
    samples_per_item: Annotated[int, Field(ge=1)]
    baseline: Unit
    candidate: Unit
    difference: Signed             # candidate - baseline
    ci95: tuple[Signed, Signed]    # paired bootstrap over items
    p_drop: Unit                   # one-sided, this task alone
    p_holm: Unit                   # Holm-adjusted over the tasks checked
    test: Text
    right_to_wrong: Annotated[int, Field(ge=0)]
    wrong_to_right: Annotated[int, Field(ge=0)]
    failed: bool
    reason: Text


class Report(_Strict):
    schema_version: Literal[1] = Field(1, alias="schema")
    date: Annotated[str, StringConstraints(max_length=40)]
    baseline: Text
    candidate: Text
    rule: Text
    alpha: Unit
    margin: Unit
    intersect: bool
    passed: bool
    tasks: Annotated[dict[Text, TaskVerdict], Field(max_length=100)]
    not_compared: Annotated[dict[Text, Text], Field(max_length=100)] = {}

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False,
                              populate_by_name=True)

    def labels_ok(self) -> Report:
        check_label(self.baseline)
        check_label(self.candidate)
        return self

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True, mode="json"), indent=1,
                          sort_keys=True) + "\n"


def load_report(path: Path) -> Report:
    if path.stat().st_size > 2**20:
        raise ConfigError(str(path), "<file>", path.name, "a verdict file holds at most 1 MiB")
    try:
        return Report.model_validate_json(path.read_bytes()).labels_ok()
    except ValidationError as err:
        raise schema_error(str(path), err) from None
    except ValueError as err:
        raise ConfigError(str(path), "baseline/candidate", path.name, str(err)) from None


def reports(board: Path) -> list[Report]:
    """The board's latest verdicts, each checked, sorted by candidate."""
    folder = board / "verdicts"
    found = [load_report(p) for p in sorted(folder.glob("[!.]*.json"))] if folder.is_dir() else []
    return sorted(found, key=lambda r: r.candidate)
