"""Preflight: everything past the YAML checked before a stage runs, each problem one line.

`leafbench.config` validates what a definition *says*; the preflight checks it against the
world: the data files' contents, the models the references name (a local directory or the
hub), the packages the backends and launchers need, the devices asked for, the benchmark data
each task reads, and the disk the teacher cache will fill. A LeaF run spends hours before its
evaluation stage imports vllm or its teacher pass fills the disk; a check that costs seconds
and names the field turns each of those late tracebacks into a one-line error (exit 2).

A check is a function `(Experiment, Context) -> list[ConfigError]` in `CHECKS`, cheapest
first. No check loads weights or writes into the workspace: reading a model's config.json and
tokenizer files (from a directory or downloading config.json from the hub) is as far as it goes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from leafbench.config import Experiment
from leafbench.errors import ConfigError, PreflightFailed
from leafbench.preflight import benchmarks, data, devices, disk, packages, refs


@dataclass(frozen=True)
class Context:
    """What the checks know beyond the experiment: where it came from (every message starts
    with it), the stages that will run (`run --until prune` needs no benchmark data; None:
    all), the sweep storage URL if a sweep runs it, and the hub timeout."""

    source: str
    stages: frozenset[str] | None = None
    storage_url: str | None = None
    hub_timeout_s: float = field(
        default_factory=lambda: float(os.environ.get("LEAFBENCH_HUB_TIMEOUT", "10")))

    def runs(self, stage: str) -> bool:
        return self.stages is None or stage in self.stages


Check = Callable[[Experiment, Context], list[ConfigError]]

# Cheapest first: a missing package or device is found before a hub round trip.
CHECKS: dict[str, Check] = {
    "packages": packages.check_experiment,
    "devices": devices.check_experiment,
    "data": data.check_experiment,
    "models": refs.check_experiment,
    "benchmarks": benchmarks.check_experiment,
    "disk": disk.check_experiment,
}


def problems(exp: Experiment, ctx: Context, checks: Sequence[str] | None = None) -> list[ConfigError]:
    """Every problem every check finds (a user fixes them all in one go)."""
    found: list[ConfigError] = []
    for name in checks or CHECKS:
        found += CHECKS[name](exp, ctx)
    return found


def preflight(exp: Experiment, ctx: Context) -> None:
    """Raise PreflightFailed (a ConfigError: exit 2) if any check finds a problem."""
    found = problems(exp, ctx)
    if found:
        raise PreflightFailed(found)


__all__ = ["CHECKS", "Context", "PreflightFailed", "preflight", "problems"]
