"""The one error a user is shown for a bad definition or argument (exit status 2).

It lives apart from `config` so that core modules which check definitions against the world
(`vocabulary`) can raise it without importing the schema, and the schema can call them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A definition is invalid. `str()` is the one message a user sees (exit status 2)."""

    def __init__(self, source: str, field: str, value: Any, accepted: str):
        self.source, self.field, self.value, self.accepted = source, field, value, accepted
        super().__init__(f"{source}: field '{field}': got {value!r}; {accepted}")



@dataclass(frozen=True)
class FailedStage:
    """Where a pipeline run stopped on an exception: the stage, its key and the workspace. The
    stage's `<key>.partial/` directory is kept, so a re-run resumes it."""

    stage: str
    key: str
    workspace: str


_STAGE_ATTRIBUTE = "_leafbench_failed_stage"


def mark_failed_stage(err: BaseException, where: FailedStage) -> None:
    """Attach where the run stopped to the exception itself, keeping its type: callers that
    catch a particular exception (a sweep's pruned trial, a stopped distillation) still do."""
    with contextlib.suppress(AttributeError, TypeError):
        setattr(err, _STAGE_ATTRIBUTE, where)


def failed_stage(err: BaseException) -> FailedStage | None:
    """The stage an exception escaped from, if it came out of the pipeline."""
    return getattr(err, _STAGE_ATTRIBUTE, None)
