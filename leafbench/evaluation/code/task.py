"""What a code benchmark is, in one place: how it is loaded, prompted, extracted and checked.

Each benchmark module (`humaneval_plus`, `leetcode`, `livecodebench`) builds its own `CodeTask`
with `task()`, as its reference harness does it; `registry.TASKS` names the builder, and the
scorer (`scoring`) and the generator (`generation`) are generic over it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leafbench.evaluation.code.execution import JobResult
from leafbench.evaluation.registry import get_task
from leafbench.evaluation.sandbox import Limits


@dataclass
class CodeTask:
    """How one benchmark is loaded, prompted, extracted and checked; the scorer is generic.
    Each benchmark module builds its own (`task()`), as its reference harness does it."""

    name: str
    suites: tuple[str, ...]
    load: Callable[[Path | None], list[dict[str, Any]]]
    problem_id: Callable[[dict[str, Any]], str]
    prompt: Callable[[dict[str, Any]], str]
    extract: Callable[[str, dict[str, Any]], str | None]
    check_job: Callable[[dict[str, Any], str], tuple[dict[str, Any], Limits]]
    verdict: Callable[[JobResult], dict[str, Any]]
    prepare: Callable[[Sequence[dict[str, Any]], int], None] = lambda docs, workers: None
    system: str | None = None  # a system message, for backends that build chat prompts
    response_prefix: str = ""  # the start of the assistant turn, when the reference pre-fills one
    max_gen_toks: int = 1024  # the reference harness's generation budget
    stop: tuple[str, ...] = ()  # stop strings the reference generates with, besides end-of-turn

    def messages(self, doc: dict[str, Any]) -> list[dict[str, str]]:
        """The chat turns to generate from (system, user)."""
        turns = [{"role": "system", "content": self.system}] if self.system else []
        return [*turns, {"role": "user", "content": self.prompt(doc)}]


def code_task(name: str, **options: Any) -> CodeTask:
    """The code task `name`, built with its options (each benchmark module's `task`)."""
    spec = get_task(name)
    if spec.engine != "code":
        raise ValueError(f"{name} is an lm-eval task, not a code task")
    return spec.build(**options)


# ------------------------------------------------------------------------------ the engine
