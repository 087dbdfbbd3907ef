"""The one error a user is shown for a bad definition or argument (exit status 2).

It lives apart from `config` so that core modules which check definitions against the world
(`vocabulary`) can raise it without importing the schema, and the schema can call them.
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Callable
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


class PreflightFailed(ConfigError):
    """Several problems found before anything ran; each is a ConfigError of its own and the
    command line prints each as one line (exit status 2). `str()` is the first."""

    def __init__(self, problems: list[ConfigError]):
        first = problems[0]
        super().__init__(first.source, first.field, first.value, first.accepted)
        self.problems = problems


# ---------------------------------------------------------------- faults during a run
@dataclass(frozen=True)
class Fault:
    """A kind of failure a run can meet through no fault of its definition, and what to do.
    Matched on the exception and its causes by errno, class name or message, so that this
    core module imports neither torch nor the hub client."""

    what: str
    matches: Callable[[BaseException], bool]
    advice: str


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _errno(*codes: int) -> Callable[[BaseException], bool]:
    return lambda err: any(isinstance(e, OSError) and e.errno in codes for e in _chain(err))


def _named(*names: str, text: str | None = None,
           modules: tuple[str, ...] = ()) -> Callable[[BaseException], bool]:
    """An exception in the chain whose class (or a base) has one of `names` — defined in one of
    `modules` when given — or whose message holds `text`."""
    def named(e: BaseException) -> bool:
        return any(c.__name__ in names and (not modules or c.__module__.startswith(modules))
                   for c in type(e).__mro__)

    def matches(err: BaseException) -> bool:
        return any(named(e) or (text is not None and text in str(e)) for e in _chain(err))
    return matches


def _any(*tests: Callable[[BaseException], bool]) -> Callable[[BaseException], bool]:
    return lambda err: any(test(err) for test in tests)


FAULTS: tuple[Fault, ...] = (
    # safetensors (Rust) reports a full disk as a SafetensorError carrying the OS message
    Fault("disk full (ENOSPC)", _any(_errno(errno.ENOSPC),
                                     _named(text="No space left on device")),
          "free space on the workspace's disk (or move `workspace`)"),
    Fault("disk quota exceeded (EDQUOT)", _errno(errno.EDQUOT),
          "free space within your quota (or move `workspace`)"),
    Fault("CUDA out of memory", _named("OutOfMemoryError", text="CUDA out of memory"),
          "lower the stage's batch size (mining.batch_size, distill.batch_size, "
          "evaluate.batch_size) or spread the model over more GPUs"),
    Fault("host memory exhausted", _named("MemoryError"),
          "lower the stage's batch size or run where more memory is"),
    # httpx's TransportError covers refused, reset and cut-off connections; the hub client
    # wraps one it cannot fall back from in LocalEntryNotFoundError. Only the hub client's own
    # stack counts: a ConnectionError from an MLflow server is no hub fault.
    Fault("the hub connection dropped", _named(
        "TransportError", "LocalEntryNotFoundError", "ConnectionError", "TimeoutError",
        "ChunkedEncodingError", "ProtocolError",
        modules=("huggingface_hub", "httpx", "httpcore")),
        "check the connection (HF_ENDPOINT); downloads already finished are kept in the hub "
        "cache"),
    Fault("the hub refused a request", _named("HfHubHTTPError"),
          "check the model id, revision and HF_TOKEN (`leafbench validate --preflight EXP.yaml` "
          "names the field)"),
)


@dataclass(frozen=True)
class RankReport:
    """What one launched rank failed with: its exception in one line and, when it is a known
    fault, that fault's `what`."""

    rank: int
    count: int
    error: str
    fault: str | None


class RankFailed(subprocess.CalledProcessError):
    """A launched process (a rank of mine, teach or distill) failed. The parent sees only the
    launcher's exit status, so each failing rank reports what it failed with, classified on its
    side (`RankReport`), and this carries those reports: the one-line fault then names the
    rank's real cause (CUDA out of memory, a full disk) instead of the launcher's status. It
    stays a `CalledProcessError` for callers that catch that."""

    def __init__(self, failed: subprocess.CalledProcessError, reports: list[RankReport]):
        super().__init__(failed.returncode, failed.cmd, failed.output, failed.stderr)
        self.reports = sorted(reports, key=lambda r: r.rank)
        self.reported_fault = next((r.fault for r in self.reports if r.fault), None)

    def __str__(self) -> str:
        if not self.reports:
            return f"a launched process died without reporting why ({super().__str__()})"
        first = self.reports[0]
        others = f" (and {len(self.reports) - 1} other ranks)" if len(self.reports) > 1 else ""
        return f"rank {first.rank} of {first.count} failed{others}: {first.error}"


def classify(err: BaseException) -> Fault | None:
    """The first fault an exception is an instance of (None: none of the known ones). A failed
    launch is classified by what its ranks reported."""
    for e in _chain(err):
        reported = getattr(e, "reported_fault", None)
        if reported is not None:
            return next((f for f in FAULTS if f.what == reported), None)
    return next((f for f in FAULTS if f.matches(err)), None)
