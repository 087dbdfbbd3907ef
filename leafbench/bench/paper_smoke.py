"""Every definition of the paper catalog, end to end at smoke scale: does each one still run?

For each row file of experiments/paper/ (not the shared bases: common, base, math, code) and
each file of experiments/ablations/, the smoke profile (experiments/profiles/smoke.yaml: the
testbed's tiny models and train split instead of the hub, the hf backend, 20 items per task) is
applied and the pipeline runs to the end in one shared workspace, so the testbed is built once.
A task whose data is not on this machine (`--data-dir`, default ../shared/data) is replaced by
the testbed's own task, and said so. A sweep of the catalog runs 2 of its grid points on the
testbed's validation split. Printed: the wall time of each definition and what it evaluated.

`--sample N` runs N definitions chosen from the current git commit (printed), so CI covers the
whole catalog over successive commits within its time budget; `--all` runs every one.

Run: `python -m leafbench.bench.paper_smoke [--sample N | --all] [--data-dir DIR]`.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "experiments" / "profiles" / "smoke.yaml"
BASES = {"common.yaml", "base.yaml", "math.yaml", "code.yaml"}
SWEEP_TRIALS = 2


def definitions() -> list[Path]:
    paper = [p for p in sorted((REPO / "experiments" / "paper").rglob("*.yaml"))
             if p.name not in BASES]
    return paper + sorted((REPO / "experiments" / "ablations").glob("*.yaml"))


def commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                             text=True, check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "0" * 40


def choose(paths: list[Path], sample: int | None) -> list[Path]:
    if sample is None or sample >= len(paths):
        return paths
    head = commit()
    chosen = sorted(random.Random(int(head[:12], 16)).sample(paths, sample))
    print(f"commit {head[:12]}: {sample} of {len(paths)} definitions, chosen from its hash")
    return chosen


def local_tasks(tasks: list[str], data_dir: Path | None) -> tuple[list[str], list[str]]:
    """The tasks whose data this machine has, and the ones it does not."""
    from leafbench.evaluation.registry import get_task, resolve_data

    kept: list[str] = []
    dropped: list[str] = []
    for task in tasks:
        if task == "leaf_synthetic":  # the testbed makes its own test split
            kept.append(task)
            continue
        try:
            path = resolve_data(task, data_dir=data_dir) if data_dir is not None else None
            found = path is not None
            if found and get_task(task).engine == "code":  # a folder can lack its shards
                get_task(task).build().load(path)
        except (FileNotFoundError, ValueError):
            found = False
        (kept if found else dropped).append(task)
    return kept, dropped


def experiment_overrides(path: Path, data_dir: Path | None, workspace: Path) -> tuple[list[str],
                                                                                       str]:
    """The smoke profile for `path`, with its tasks cut to what this machine has."""
    from leafbench.config import load_experiment, profile_overrides

    profile = [*profile_overrides(PROFILE), f"workspace={workspace}"]
    declared = load_experiment(path, [*profile, "data.validation={}"]).evaluate.tasks
    kept, dropped = local_tasks(declared, data_dir)
    tasks = kept or ["leaf_synthetic"]
    overrides = [*profile, f"evaluate.tasks=[{', '.join(tasks)}]", "data.validation={}"]
    if data_dir is not None and kept:
        overrides.append(f"evaluate.data_dir={data_dir}")
    note = ",".join(tasks) + (f" (no local data: {','.join(dropped)})" if dropped else "")
    return overrides, note


def run_definition(path: Path, data_dir: Path | None, workspace: Path, folder: Path) -> str:
    """Run one definition (an experiment, or a sweep's first grid points); what it evaluated."""
    raw = yaml.safe_load(path.read_text())
    if "study" in raw:
        return run_sweep(path, raw, workspace, folder)
    from leafbench.config import load_experiment
    from leafbench.pipeline import run_experiment

    overrides, note = experiment_overrides(path, data_dir, workspace)
    run_experiment(load_experiment(path, overrides))
    return note


def run_sweep(path: Path, raw: dict[str, Any], workspace: Path, folder: Path) -> str:
    """A catalog sweep on the testbed: its objective moved to the testbed's validation split."""
    from leafbench.config import profile_overrides
    from leafbench.sweep import load_sweep, run_worker, storage_url

    raw = {**raw, "experiment": str((path.parent / raw["experiment"]).resolve()),
           "study": f"smoke-{raw['study']}", "max_trials": SWEEP_TRIALS,
           "objective": {**raw["objective"], "task": "leaf_synthetic"},
           "overrides": {k: v for k, v in (raw.get("overrides") or {}).items()
                         if k not in ("evaluate.tasks", "data.validation")}}
    smoke = folder / path.name
    smoke.write_text(yaml.safe_dump(raw, sort_keys=False))
    overrides = [*profile_overrides(PROFILE), f"workspace={workspace}",
                 "evaluate.tasks=[leaf_synthetic]"]
    sweep = load_sweep(smoke, overrides)
    run_worker(sweep, storage_url(sweep, None), SWEEP_TRIALS, tracking=False)
    return f"sweep, {SWEEP_TRIALS} trials on leaf_synthetic (validation split)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--sample", type=int, default=None)
    group.add_argument("--all", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=Path(
        os.environ.get("LEAFBENCH_DATA_DIR") or REPO.parent / "shared" / "data"))
    parser.add_argument("--workspace", type=Path, default=None)
    args = parser.parse_args(argv)
    data_dir = args.data_dir if args.data_dir.is_dir() else None
    print(f"benchmark data: {data_dir or 'none on this machine (the testbed task only)'}")
    chosen = choose(definitions(), None if args.all else (args.sample or 3))
    failures = 0
    with tempfile.TemporaryDirectory(prefix="leafbench-smoke-") as tmp:
        workspace = args.workspace or Path(tmp) / "ws"
        for path in chosen:
            name = str(path.relative_to(REPO))
            start = time.perf_counter()
            try:
                note = run_definition(path, data_dir, workspace, Path(tmp))
                status = "ok"
            except Exception as err:  # report every definition, then fail  # noqa: BLE001
                note, status = f"{type(err).__name__}: {err}", "FAILED"
                failures += 1
            print(f"{status:6} {time.perf_counter() - start:7.1f} s  {name}  {note}", flush=True)
    print(f"{len(chosen) - failures} of {len(chosen)} definitions ran end to end")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
