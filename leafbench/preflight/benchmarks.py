"""The benchmark data each evaluation task reads is there: a `--data-dir` file, or the hub.

`leafbench.evaluation.registry.resolve_data` decides where a task's data comes from; a local
source that is missing is named with the file it lacks. A task whose data comes from a hub
dataset is probed (or, offline, looked up in the caches); evalplus' own release download is
not checked (it is not served by the hub).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from leafbench.config import Experiment
from leafbench.errors import ConfigError
from leafbench.evaluation.registry import get_task, resolve_data
from leafbench.preflight import hub

if TYPE_CHECKING:
    from leafbench.preflight import Context

TESTBED_TASK = "leaf_synthetic"  # its test set is generated with the testbed, per run


def check_experiment(exp: Experiment, ctx: Context) -> list[ConfigError]:
    if not ctx.runs("evaluate") or exp.evaluate.split == "validation":
        return []  # scored on data.validation's files, which the data check read
    testbed = "synthetic" in (exp.data.train, exp.models.teacher.split(":")[0],
                              exp.models.student.split(":")[0])
    found = []
    for i, task in enumerate(exp.evaluate.tasks):
        if task == TESTBED_TASK and testbed:
            continue
        problem = task_problem(task, exp.evaluate.data_dir, ctx.hub_timeout_s)
        if problem:
            field, text = problem
            where = {"data_dir": ("evaluate.data_dir", exp.evaluate.data_dir),
                     "task": (f"evaluate.tasks.{i}", task)}[field]
            found.append(ConfigError(ctx.source, *where, text))
    return found


def check_tasks(tasks: list[str], data_dir: str | None, source: str,
                timeout_s: float) -> list[ConfigError]:
    """The same for `leafbench eval --tasks ... --data-dir ...`."""
    found = []
    for task in tasks:
        problem = task_problem(task, data_dir, timeout_s)
        if problem:
            field, text = problem
            where = ("--data-dir", data_dir) if field == "data_dir" else ("--tasks", task)
            found.append(ConfigError(source, *where, text))
    return found


def task_problem(task: str, data_dir: str | None, timeout_s: float) -> tuple[str, str] | None:
    """(which setting is at fault: 'data_dir' or 'task', what is wrong) or None."""
    try:
        local = resolve_data(task, data_dir=data_dir)
    except FileNotFoundError as err:
        return "data_dir", str(err)
    except ValueError as err:
        return "task", str(err)
    if local is not None:
        return None
    spec = get_task(task)
    if spec.default is None or not spec.default.startswith("hub:"):
        return None  # downloaded by its own harness (evalplus), not checked here
    repo_id = spec.default.removeprefix("hub:").split(":")[0]
    if hub.offline():
        if hub.dataset_cached(repo_id):
            return None
        return "task", (f"its data is the hub dataset {repo_id}, HF_HUB_OFFLINE is set and it "
                        f"is not cached; pass a data dir holding {spec.local_file} "
                        "(--data-dir / evaluate.data_dir) or download it once online")
    problem = hub.probe(repo_id, repo_type="dataset", filename="README.md", timeout_s=timeout_s)
    if problem is None or hub.dataset_cached(repo_id):
        return None
    return "task", (f"its data is the hub dataset {repo_id}: {problem}; or pass a data dir "
                    f"holding {spec.local_file}")
