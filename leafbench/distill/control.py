"""The stop handshake between a distillation run and whoever watches it (a sweep's trial).

Distillation may run in other processes (`accelerate launch`, launch.py), where no callback of
the watcher can reach it, so the two talk through files in a control directory named by the
environment variable `LEAFBENCH_DISTILL_CONTROL`. After scoring epoch e on the validation
split, the trainer's main process

  1. removes a stale `<control>/epoch-<e>.verdict` (left by an earlier attempt of this run),
  2. writes `<control>/epoch-<e>.json` = {"epoch": e, "score": s} atomically (tmp + rename),
  3. polls every 0.1 s, up to `LEAFBENCH_DISTILL_CONTROL_TIMEOUT` seconds (default 600), for
     `<control>/epoch-<e>.verdict` holding `continue` or `stop` (the watcher should write it
     atomically too; an empty file is taken as not yet written).

On `stop` every process ends its training and the stage raises `DistillationStopped`; on
timeout the run continues, with a warning (a dead watcher must not hang a run). Without the
variable nothing waits. The variable is deliberately not part of the stage's cache key: it
changes whether a run is finished, never what a finished run contains.

This module imports nothing heavy, so a watcher can use `DistillationStopped` without torch.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

CONTROL_ENV = "LEAFBENCH_DISTILL_CONTROL"
TIMEOUT_ENV = "LEAFBENCH_DISTILL_CONTROL_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
POLL_S = 0.1
VERDICTS = ("continue", "stop")


class DistillationStopped(Exception):
    """The watcher answered `stop` after `epoch` (1-based), whose validation score was
    `score`. The stage's partial directory is discarded: a stopped run is never cached."""

    def __init__(self, epoch: int, score: float) -> None:
        super().__init__(f"distillation stopped by its watcher after epoch {epoch} "
                         f"(validation score {score:.4f})")
        self.epoch = epoch
        self.score = score

    def __reduce__(self) -> tuple[type, tuple[int, float]]:  # picklable across processes
        return (type(self), (self.epoch, self.score))


def control_dir() -> Path | None:
    """The control directory when the variable is set (created if missing), else None."""
    value = os.environ.get(CONTROL_ENV)
    if not value:
        return None
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path


def control_timeout() -> float:
    """Seconds to wait for a verdict; the variable, else DEFAULT_TIMEOUT_S."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None or raw == "":
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds") from None
    if value < 0:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds >= 0")
    return value


def request_path(control: Path, epoch: int) -> Path:
    return control / f"epoch-{epoch}.json"


def verdict_path(control: Path, epoch: int) -> Path:
    return control / f"epoch-{epoch}.verdict"


def ask_to_continue(control: Path, epoch: int, score: float, timeout: float) -> bool:
    """Report epoch `epoch`'s score and wait for the verdict: False means stop."""
    verdict_path(control, epoch).unlink(missing_ok=True)
    _write_atomically(request_path(control, epoch), json.dumps({"epoch": epoch, "score": score}))
    verdict = _await_verdict(verdict_path(control, epoch), timeout)
    if verdict is None:
        print(f"leafbench: no verdict in {verdict_path(control, epoch)} after {timeout:g} s; "
              "continuing distillation", file=sys.stderr, flush=True)
        return True
    return verdict == "continue"


def _await_verdict(path: Path, timeout: float) -> str | None:
    """The verdict once the file holds one, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        verdict = _read_verdict(path)
        if verdict is not None:
            return verdict
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_S)


def _read_verdict(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    if not text:  # created but not yet written
        return None
    if text not in VERDICTS:
        raise ValueError(f"{path}: verdict {text!r}; expected one of {', '.join(VERDICTS)}")
    return text


def _write_atomically(path: Path, text: str) -> None:
    """Write a sibling temporary file and rename it over `path`: a reader sees all or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
