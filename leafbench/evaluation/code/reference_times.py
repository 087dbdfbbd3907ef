"""How HumanEval+ reference run times are measured, so that the limits derived from them do not
depend on how busy the machine was when they were measured.

evalplus times each call of a canonical solution with the wall clock, once, and derives every
input's limit from it (``max(1 s, 4 × t)``). Those times are cached indefinitely, so a cache
built while the machine was loaded keeps limits that are too generous for good: at load 7 the
heavy inputs of HumanEval/15, /36, /59, /83 and /139 measured 1.4–5× their quiet times, limits
reached 3.4 s instead of about 1 s, and a program 4× slower than the reference passed.

What we measure instead (`TimingPolicy`, sent with every ground-truth job):

* the clock is the sandboxed child's own CPU time (``time.process_time``: what ``getrusage``
  reports, at nanosecond resolution). Time spent waiting for a core is not counted, and that
  is what load adds; the canonical solutions are single-threaded and never sleep.
* an input whose first measurement reaches ``repeat_from`` (0.1 s) is run ``repeats`` (3)
  times in all, each on a fresh deep copy, and the fastest run kept: what is left of load in
  CPU time (caches and memory bandwidth shared with neighbours, frequency changes) only ever
  adds. Lighter inputs are measured once: any reading under 0.25 s gives the 1 s floor, so
  repeating them could not change a limit.
* a fixed pure-Python workload is timed, CPU and wall, before and after every batch
  (``calibration``): it records how fast the machine ran and how contended it was (wall / CPU)
  while the batch was measured, so two entries can be compared.

Where a time was measured is part of the cache key (`machine_key`: architecture, CPU model,
Python implementation and version): times from another machine or interpreter are never
reused. The conditions — machine, CPU count, load averages before and after, clock, repeats,
calibration, date — go into every cache entry (`conditions`).

``TimingPolicy(clock="wall", repeats=1)`` is evalplus' own measurement; the reference-times
benchmark (`leafbench.bench.reference_times`) uses it to show the difference.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

CLOCKS = ("cpu", "wall")  # the harness's clock registry has the same names


@dataclass(frozen=True)
class TimingPolicy:
    """How the ground-truth run times each canonical-solution call (see the module docstring)."""

    clock: str = "cpu"
    repeats: int = 3
    repeat_from: float = 0.1  # seconds: limits leave their 1 s floor at 0.25 s

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, got {self.clock!r}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")

    def job_fields(self) -> dict[str, Any]:
        """What the sandbox harness needs to time the calls this way."""
        return asdict(self)

    def key(self) -> str:
        """A short name for the cache path: times measured differently are kept apart."""
        return f"{self.clock}-min{self.repeats}"


DEFAULT_POLICY = TimingPolicy()
EVALPLUS_POLICY = TimingPolicy(clock="wall", repeats=1)


def machine() -> dict[str, str]:
    """What makes reference times comparable: the same CPU model and the same interpreter."""
    return {
        "arch": platform.machine(),
        "cpu": _cpu_model(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }


def machine_key(description: dict[str, str] | None = None) -> str:
    """A short digest of `machine()`, part of the cache path."""
    blob = json.dumps(description or machine(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                if name.strip() in ("model name", "Processor", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages ([] where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return []


def conditions(
    policy: TimingPolicy,
    *,
    load_before: Sequence[float],
    calibration: Sequence[dict[str, float]],
) -> dict[str, Any]:
    """The record stored with every cached entry: where, when and how its times were taken."""
    return {
        "machine": machine(),
        "cpu_count": os.cpu_count() or 0,
        "policy": policy.job_fields(),
        "load_before": list(load_before),
        "load_after": load_average(),
        "calibration": [dict(c) for c in calibration],
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
