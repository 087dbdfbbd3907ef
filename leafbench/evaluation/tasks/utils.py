"""Python for what the task YAMLs cannot say: gold targets, answer filters, verdicts.

lm-eval loads this file by path (`!function utils.X`), so it imports the real logic from the
installed package instead of holding any: the pipeline, the replay backend and the tests all
score with the same `leafbench.evaluation.answers` (numeric tasks) and
`leafbench.evaluation.math_check` (competition math) code.

Every filter and verdict comes from `leafbench.evaluation.grading.GRADERS` (one per grading
mode): the shipped YAMLs name the `strict` functions, the `_<mode>_<task>.yaml` overlays the
others. The numeric tasks compare normalised numbers with lm-eval's own `exact_match` under
strict. The math tasks, and every task under `paper`, need the doc to judge (OlympiadBench's
multi-answer flag, tolerance and unit; the toolkit's gold), which a metric function never sees,
so they score in `process_results` and report the verdict under the same name, `exact_match`,
for both filters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from leafbench.evaluation.answers import NO_ANSWER
from leafbench.evaluation.grading import GRADERS, gsm8k_gold, olympiad_gold, synthetic_gold
from leafbench.evaluation.math_fewshot import FEWSHOT_EXAMPLES


def gsm8k_target(doc: dict) -> str:
    """The number after "####" in the GSM8K rationale, normalised."""
    return gsm8k_gold(doc)


def synthetic_target(doc: dict) -> str:
    """The synthetic record's `answer` (an integer, as a string or a number), normalised."""
    return synthetic_gold(doc)


def olympiad_target(doc: dict) -> str:
    """OlympiadBench's gold: the `final_answer` list, comma-joined (parts of a multi-answer)."""
    return olympiad_gold(doc)


def _extracting(mode: str, task: str, filter_name: str):
    """An lm-eval `custom` filter function: every response of every doc -> the answer that
    `filter_name` extracts under grading `mode` (lm-eval's "[invalid]" when there is none)."""
    extract: Callable[[str], str | None] = GRADERS[mode].rules(task).extract[filter_name]

    def filter_fn(resps: Iterable[Sequence[str]], docs: Sequence[dict]) -> list[list[str]]:
        return [[extract(r) or NO_ANSWER for r in doc_resps] for doc_resps in resps]

    filter_fn.__name__ = f"{mode}_{task}_{filter_name.replace('-', '_')}_filter"
    return filter_fn


def _judging(mode: str, task: str):
    """A `process_results`: the filtered answer of one doc judged under grading `mode`."""
    grader = GRADERS[mode]

    def process_results(doc: dict, results: Sequence[str]) -> dict[str, float]:
        return {"exact_match": float(grader.judge(task, doc, _answer(results)))}

    process_results.__name__ = f"{mode}_{task}_process_results"
    return process_results


# strict (the shipped YAMLs). The numeric tasks compare with lm-eval's exact_match on the
# normalised strings; the math tasks need the doc, so they judge in process_results.
strict_filter = _extracting("strict", "leaf_gsm8k", "strict-match")
flexible_filter = _extracting("strict", "leaf_gsm8k", "flexible-extract")
boxed_filter = _extracting("strict", "leaf_math500", "strict-match")
boxed_or_math_filter = _extracting("strict", "leaf_math500", "flexible-extract")
math500_process_results = _judging("strict", "leaf_math500")
olympiad_process_results = _judging("strict", "leaf_olympiadbench")

# paper (the _paper_<task>.yaml overlays; `grading.py` says what the mode is).
paper_strict_filter = _extracting("paper", "leaf_gsm8k", "strict-match")
paper_gsm8k_flexible_filter = _extracting("paper", "leaf_gsm8k", "flexible-extract")
paper_math_flexible_filter = _extracting("paper", "leaf_math500", "flexible-extract")
paper_gsm8k_process_results = _judging("paper", "leaf_gsm8k")
paper_math500_process_results = _judging("paper", "leaf_math500")
paper_olympiad_process_results = _judging("paper", "leaf_olympiadbench")


def math_fewshot_samples() -> list[dict]:
    """Worked examples for `num_fewshot > 0` (fields `problem`, `solution`)."""
    return [dict(example) for example in FEWSHOT_EXAMPLES]


def _answer(results: Sequence[str]) -> str | None:
    extracted = results[0] if results else None
    return None if extracted in (None, NO_ANSWER) else extracted
