r"""Grading modes: how a response is judged, chosen by name (`GRADERS`), recorded in results.

- ``strict`` (the default): leafbench's own verdicts. Numeric tasks: `answers` (the number after
  the last answer marker; flexible: the last number). Competition math: `math_check` (the last
  `\boxed{}` equivalent to the gold; flexible: box, else inline math, else the last number).
  A right answer in any notation is right; a rounded value, a wrong base or a wrong list is
  wrong.
- ``paper``: the Qwen2.5-Math evaluation toolkit's rules (`paper_grading`), the toolkit the LeaF
  paper's math numbers come from, so a reproduction can be compared with published figures:
  relative tolerance 1e-4, percentages retried x100 and /100, ordered lists, unit words
  stripped. Its `strict-match` filter is the toolkit's own extraction (last `\boxed{}`, then
  "the answer is", then the last number); its `flexible-extract` filter is leafbench's flexible
  extraction judged by the toolkit's equality. It covers GSM8K, MATH-500 and OlympiadBench; the
  synthetic test set and the code tasks have one grading only and keep ``strict``
  (`Grader.mode_for` says which mode a task was actually judged by; results record it).

Both metric names stay (`exact_match,strict-match`, `exact_match,flexible-extract`): the mode
is a field of every results entry (`grading_mode`), never part of a metric name.

lm-eval runs a mode through the task YAMLs: ``strict`` is the shipped YAML as it is; any other
mode layers `overlay_yaml(task, mode)` (filters and `process_results`, no `task:` key, so
lm-eval's index skips it) over it in the YAML the harness writes for the run. The functions
those YAMLs name (`tasks/utils.py`) call `Grader.extract` and `Grader.judge` below, and so does
the answer-variant suite: the verdicts it measures are the ones a run gives.

This module loads no sympy on import (config validation imports the evaluation package).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leafbench.evaluation import answers, paper_grading
from leafbench.evaluation.registry import TASKS_DIR, lookup

FILTERS = ("strict-match", "flexible-extract")
DEFAULT_GRADING = "strict"

Extractor = Callable[[str], "str | None"]
Judge = Callable[[Mapping[str, Any], "str | None"], bool]  # (doc, extracted answer) -> verdict


@dataclass(frozen=True)
class TaskGrading:
    """One task under one mode: an extraction per filter, and the verdict on an extraction."""

    extract: Mapping[str, Extractor]  # filter name -> extraction (None: no answer)
    judge: Judge


@dataclass(frozen=True)
class Grader:
    """A grading mode: its rules per task it covers, and how results describe it."""

    name: str
    description: str  # results.json's `grading` for the tasks this mode covers
    tasks: Mapping[str, TaskGrading]

    def mode_for(self, task: str) -> str:
        """The mode `task` is judged by under this grader: this one, or strict if not covered."""
        return self.name if task in self.tasks else DEFAULT_GRADING

    def rules(self, task: str) -> TaskGrading:
        return GRADERS[self.mode_for(task)].tasks[task]

    def extract(self, task: str, response: str, filter_name: str = FILTERS[0]) -> str | None:
        return self.rules(task).extract[filter_name](response)

    def judge(self, task: str, doc: Mapping[str, Any], extracted: str | None) -> bool:
        return extracted is not None and self.rules(task).judge(doc, extracted)

    def verdict(self, task: str, doc: Mapping[str, Any], response: str,
                filter_name: str = FILTERS[0]) -> bool:
        """The verdict a run under this mode gives `response` to `doc` under `filter_name`."""
        return self.judge(task, doc, self.extract(task, response, filter_name))


# ---------------------------------------------------------------- golds
def gsm8k_gold(doc: Mapping[str, Any]) -> str:
    return answers.gold_from_gsm8k(doc["answer"])


def synthetic_gold(doc: Mapping[str, Any]) -> str:
    gold = answers.normalize_number(str(doc["answer"]))
    if gold is None:
        raise ValueError(
            f"leaf_synthetic record {doc.get('id')!r}: answer {doc['answer']!r} is not a number"
        )
    return gold


def olympiad_gold(doc: Mapping[str, Any]) -> str:
    """OlympiadBench's gold: the `final_answer` list, comma-joined (parts of a multi-answer)."""
    return ",".join(doc["final_answer"])


# ---------------------------------------------------------------- strict rules
def _numeric(gold: Callable[[Mapping[str, Any]], str]) -> TaskGrading:
    return TaskGrading(
        extract={"strict-match": answers.extract_strict,
                 "flexible-extract": answers.extract_flexible},
        judge=lambda doc, extracted: answers.is_correct(extracted, gold(doc)),
    )


def _boxed(response: str) -> str | None:
    from leafbench.evaluation.math_check import extract_boxed

    return extract_boxed(response)


def _boxed_or_math(response: str) -> str | None:
    from leafbench.evaluation.math_check import extract_boxed_or_math

    return extract_boxed_or_math(response)


def _math500_judge(doc: Mapping[str, Any], extracted: str | None) -> bool:
    from leafbench.evaluation.math_check import is_equivalent

    return is_equivalent(extracted, doc["answer"])


def _olympiad_judge(doc: Mapping[str, Any], extracted: str | None) -> bool:
    """Honours the item's multi-answer flag, numeric tolerance (`error`) and `unit`."""
    from leafbench.evaluation.math_check import is_equivalent, parse_tolerance

    return is_equivalent(
        extracted,
        olympiad_gold(doc),
        multiple=bool(doc.get("is_multiple_answer")) or len(doc["final_answer"]) > 1,
        tolerance=parse_tolerance(doc.get("error")),
        unit=doc.get("unit"),
    )


_MATH_EXTRACT = {"strict-match": _boxed, "flexible-extract": _boxed_or_math}

STRICT = Grader(
    name="strict",
    description="",  # each task's own (`registry.Task.grading`)
    tasks={
        "leaf_synthetic": _numeric(synthetic_gold),
        "leaf_gsm8k": _numeric(gsm8k_gold),
        "leaf_math500": TaskGrading(_MATH_EXTRACT, _math500_judge),
        "leaf_olympiadbench": TaskGrading(_MATH_EXTRACT, _olympiad_judge),
    },
)


# ---------------------------------------------------------------- paper rules
def _paper_extract(response: str) -> str | None:
    return paper_grading.extract_answer(response) or None


def _paper(task: str, flexible: Extractor) -> TaskGrading:
    """The toolkit's extraction (strict-match) or leafbench's (flexible-extract), then the
    toolkit's normalisation and equality; predictions are normalised once more before the
    comparison, as the toolkit does after extracting."""

    def judge(doc: Mapping[str, Any], extracted: str | None) -> bool:
        gold = paper_grading.gold_answer(task, dict(doc))
        return paper_grading.answers_equal(paper_grading.normalize(extracted or ""), gold)

    return TaskGrading({"strict-match": _paper_extract, "flexible-extract": flexible}, judge)


PAPER = Grader(
    name="paper",
    description=(
        "qwen2.5-math toolkit rules (leafbench.evaluation.paper_grading): last \\boxed{}, "
        "else 'the answer is', else the last number; relative tolerance 1e-4, percentages "
        "x100 and /100, ordered lists, unit words stripped (strict-match)"
    ),
    tasks={
        "leaf_gsm8k": _paper("leaf_gsm8k", answers.extract_flexible),
        "leaf_math500": _paper("leaf_math500", _boxed_or_math),
        "leaf_olympiadbench": _paper("leaf_olympiadbench", _boxed_or_math),
    },
)

GRADERS: dict[str, Grader] = {grader.name: grader for grader in (STRICT, PAPER)}


def get_grader(name: str) -> Grader:
    return lookup(GRADERS, name, "grading mode")


def overlay_yaml(task: str, mode: str) -> Path | None:
    """The YAML layered over `task`'s shipped YAML to grade it in `mode`; None: as shipped."""
    if get_grader(mode).mode_for(task) == DEFAULT_GRADING:
        return None
    return TASKS_DIR / f"_{mode}_{task}.yaml"


def grading_description(task: str, mode: str, shipped: str) -> str:
    """results.json's `grading` of `task` under `mode`; `shipped` is the task's own."""
    grader = get_grader(mode)
    return shipped if grader.mode_for(task) == DEFAULT_GRADING else grader.description
