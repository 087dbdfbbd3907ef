"""Evaluation: every task in `registry.TASKS` (leaf_synthetic, leaf_gsm8k, leaf_math500,
leaf_olympiadbench through lm-evaluation-harness; leaf_humaneval_plus, leaf_leetcode,
leaf_livecodebench in leafbench's sandbox), generated with a backend from `BACKENDS`
(`run_evaluation(..., backend="hf" | "vllm")`, with a generation cache) or scored from stored
responses (`run_replay`). Every run writes the one result schema that `results` documents.

`run_replay` is imported on first use: it subclasses lm-eval's `LM`, and importing lm-eval
costs about half a second that config validation, which imports this package, does not need.
Likewise the math checker (`extract_boxed`, `is_equivalent`), which loads sympy. Other stages
use evaluation only through these names (pruning's validation checks answers with them).
"""

from leafbench.evaluation.answers import (
    extract_flexible,
    extract_strict,
    is_correct,
    normalize_number,
)
from leafbench.evaluation.backends import BACKENDS, get_backend
from leafbench.evaluation.harness import evaluate, resolve_sources, run_evaluation
from leafbench.evaluation.registry import KNOWN_TASKS, TASKS, get_task

__all__ = [
    "BACKENDS",
    "KNOWN_TASKS",
    "TASKS",
    "evaluate",
    "extract_boxed",
    "extract_flexible",
    "extract_strict",
    "get_backend",
    "get_task",
    "is_correct",
    "is_equivalent",
    "normalize_number",
    "resolve_sources",
    "run_evaluation",
    "run_replay",
]


def __getattr__(name: str):
    if name == "run_replay":
        from leafbench.evaluation.replay import run_replay

        return run_replay
    if name in ("extract_boxed", "is_equivalent"):
        from leafbench.evaluation import math_check

        return getattr(math_check, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
