"""Every evaluation task leafbench ships, in one table, and where each one's data comes from.

One `Task` row per task names everything a run needs to find it: which engine scores it, where
its prompt, checker and metrics are defined, where its test data lives, its headline metric and
its grading mode. There is no other table of task names: config validation, the CLI, the
harness, the replay backend and the code scorer all look names up here (`get_task`).

Engines (`Task.engine`):

- ``lm_eval``: an lm-evaluation-harness YAML task in `TASKS_DIR` (`Task.definition` is its
  file); the YAML declares the prompt, the answer filters and the metric, and `tasks/utils.py`
  holds the Python it names. lm-eval runs it, as a plain ``lm_eval --include_path`` run would.
- ``code``: a code-generation task whose programs run in leafbench's sandbox
  (`leafbench.evaluation.code` says why these are not lm-eval tasks); `Task.definition` names
  the function that builds its `CodeTask` (loader, prompt, extraction, checker), in the module
  that mirrors the benchmark's reference harness.

A task's test data is found, first match wins (`resolve_data`):

1. an explicit file (folder) (`data_files={"leaf_gsm8k": "/path/test.jsonl"}`),
2. `local_file` inside a benchmark data dir (`--data-dir` / `LEAFBENCH_DATA_DIR`, laid out like
   ../shared/data: gsm8k/test.jsonl, ...),
3. the task's default source (`Task.default`: the hub dataset its YAML names, evalplus' release
   download, the LiveCodeBench hub repo); a task without one (the synthetic test set is generated
   per run, LeetCode has no hub copy) needs 1 or 2.

This module imports nothing heavy: config validation imports it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
DATA_DIR_ENV = "LEAFBENCH_DATA_DIR"
V = TypeVar("V")


@dataclass(frozen=True)
class Task:
    """One evaluation task: how it is scored, where it is defined, where its data lives."""

    name: str
    engine: str  # "lm_eval" or "code" (the module docstring)
    definition: str  # lm_eval: the YAML in TASKS_DIR; code: "module:function" -> CodeTask
    local_file: str  # the test data (a file, or a folder of shards), relative to a data dir
    default: str | None  # where the data comes from without a local copy; None: nowhere
    metric: str  # the headline metric: results.json's `score`, and each sample row's `correct`
    grading: str  # how a response is judged, as results.json records it

    @property
    def yaml_path(self) -> Path:
        return TASKS_DIR / self.definition

    @property
    def hub(self) -> str | None:
        """The "owner/name[:config]" hub dataset an lm_eval task's YAML loads by default."""
        return self.default.removeprefix("hub:") if self.default else None

    def build(self, **options: Any) -> Any:
        """A code task's `CodeTask`, built with its options (e.g. LiveCodeBench's release)."""
        module, function = self.definition.split(":")
        return getattr(importlib.import_module(module), function)(**options)


_NUMERIC = "numeric: the normalised number after the answer marker equals the gold (strict-match)"
_MATH = "math_verify: the last \\boxed{} is equivalent to the gold (strict-match)"
_HEADLINE_EXACT = "exact_match,strict-match"

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("leaf_synthetic", "lm_eval", "leaf_synthetic.yaml", "synthetic/test.jsonl", None,
             _HEADLINE_EXACT, _NUMERIC),
        Task("leaf_gsm8k", "lm_eval", "leaf_gsm8k.yaml", "gsm8k/test.jsonl",
             "hub:openai/gsm8k:main", _HEADLINE_EXACT, _NUMERIC),
        Task("leaf_math500", "lm_eval", "leaf_math500.yaml", "math500/test.jsonl",
             "hub:HuggingFaceH4/MATH-500", _HEADLINE_EXACT, _MATH),
        # The benchmark authors' release (674 items, split "train"); the local file is
        # Qwen2.5-Math's 675-item copy of the same subset. leaf_olympiadbench.yaml says more.
        Task("leaf_olympiadbench", "lm_eval", "leaf_olympiadbench.yaml",
             "olympiadbench/test.jsonl", "hub:Hothan/OlympiadBench:OE_TO_maths_en_COMP",
             _HEADLINE_EXACT, _MATH),
        Task("leaf_humaneval_plus", "code", "leafbench.evaluation.code.humaneval_plus:task",
             "humaneval_plus/HumanEvalPlus-v0.1.10.jsonl.gz",
             "evalplus release v0.1.10 (downloaded and cached by evalplus)",
             "pass@1", "evalplus: base and plus tests pass in the sandbox"),
        # DeepSeek-Coder's Evaluation/LeetCode/data/20240121-Jul.jsonl; no hub copy.
        Task("leaf_leetcode", "code", "leafbench.evaluation.code.leetcode:task",
             "leetcode/20240121-Jul.jsonl", None,
             "pass@1", "DeepSeek-Coder: the record's asserts pass in the sandbox"),
        Task("leaf_livecodebench", "code", "leafbench.evaluation.code.livecodebench:task",
             "livecodebench",  # test.jsonl, test2.jsonl, ... as in the hub repo
             "hub:livecodebench/code_generation_lite",
             "pass@1", "lcb_runner: every public and private test passes in the sandbox"),
    )
}
ENGINES = ("lm_eval", "code")

# Config validation imports this name.
KNOWN_TASKS = frozenset(TASKS)


def lookup(table: Mapping[str, V], name: str, what: str) -> V:
    """`table[name]`, or a ValueError naming what was asked for and what exists."""
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; expected one of {sorted(table)}") from None


def get_task(name: str) -> Task:
    return lookup(TASKS, name, "evaluation task")


def task_list(tasks: Sequence[str] | str | None) -> list[str]:
    """Task names as a list without repeats; a string is the CLI's "a,b,c"."""
    if tasks is None:
        return []
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",")]
    return list(dict.fromkeys(t for t in tasks if t))


def resolve_data(
    task: str, *, data_file: str | Path | None = None, data_dir: str | Path | None = None
) -> Path | None:
    """The local test data of `task`, or None for its default source (the module docstring).

    A named local source that does not exist is an error, not a silent fall-back to the default:
    a user who names a local source means it; so is a task with neither.
    """
    spec = get_task(task)
    if data_file is not None:
        path = Path(data_file).expanduser().resolve()
        if not path.exists():
            raise FileNotFoundError(f"{task}: data {path} does not exist")
        return path
    data_dir = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    if data_dir is not None:
        path = (Path(data_dir).expanduser() / spec.local_file).resolve()
        if not path.exists():
            raise FileNotFoundError(
                f"{task}: data dir {data_dir} has no {spec.local_file}; lay it out like "
                f"../shared/data or pass data_files={{{task!r}: PATH}}"
            )
        return path
    if spec.default is None:
        raise ValueError(
            f"{task}: no data given and the task has no default source (hub dataset); pass "
            f"data_files={{{task!r}: PATH}} or a data dir holding {spec.local_file}"
        )
    return None


def data_label(task: str, data: Path | None) -> str:
    """What results.json's `data` says: the local path, or the default source."""
    return str(data) if data is not None else str(get_task(task).default)
