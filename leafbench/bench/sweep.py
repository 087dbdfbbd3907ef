"""Sweep benchmark: what sharing the stage cache saves, and what pruning saves.

Part 1 — an 8-trial TPE sweep over τ ∈ {0.05, 0.075, …, 0.20} × λ ∈ [0, 1] against 8
independent `leafbench run`s of the very same configurations, each in a fresh workspace seeded
with the prebuilt testbed (so neither side pays for building it). Printed: the per-trial table
of stage timings (computed or cached), how often each stage was computed, and the wall-time
ratio, all measured in this run.

Part 2 — a 16-trial sweep with the median pruner and the same sweep without pruning (same
sampler seed): the share of distillation epochs saved and the best objective of each.

Run: `nox -s bench` or `python -m leafbench.bench.sweep [--scale demo|small] [--skip-pruning]`.
`demo` is the demo experiment itself (tens of minutes on 2 CPU cores); `small` shrinks the
testbed and the step counts so both parts take a few minutes.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "experiments" / "demo.yaml"
SMALL = {
    "synthetic": {"n_pretrain": 1500, "n_train": 48, "n_test": 40, "n_validation": 40,
                  "teacher": {"layers": 1, "hidden": 48, "heads": 2, "steps": 200},
                  "student": {"layers": 1, "hidden": 32, "heads": 2, "steps": 150}},
    "distill": {"epochs": 4, "batch_size": 8},
    "evaluate": {"max_gen_toks": 12},
}
DIMENSIONS = {
    "mining.threshold.tau": {"type": "float", "low": 0.05, "high": 0.20, "step": 0.025},
    "distill.loss.lambda": {"type": "float", "low": 0.0, "high": 1.0},
}


def write_experiment(folder: Path, workspace: Path, scale: str) -> Path:
    raw: dict[str, Any] = {"base": str(DEMO), "workspace": str(workspace),
                           "tracking": {"experiment": "bench-sweep"}}
    if scale == "small":
        raw.update(SMALL)
    path = folder / f"exp-{workspace.name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def write_sweep(folder: Path, experiment: Path, name: str, trials: int, pruner: str) -> Path:
    body = {"experiment": experiment.name, "study": name, "dimensions": DIMENSIONS,
            "sampler": "tpe", "pruner": pruner, "max_trials": trials, "seed": 0}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def run_sweep(path: Path, trials: int) -> tuple[float, Any]:
    from leafbench.sweep import load_sweep, open_study, run_worker, storage_url

    sweep = load_sweep(path)
    url = storage_url(sweep, None)
    start = time.perf_counter()
    run_worker(sweep, url, trials, tracking=False)
    return time.perf_counter() - start, open_study(sweep, url)


def independent_runs(folder: Path, scale: str, trials: list[Any], testbed: Path) -> float:
    """Each trial's configuration as its own `leafbench run` in a fresh workspace (the
    prebuilt testbed copied in), one after another; evaluation split as in the sweep."""
    from leafbench.config import load_experiment
    from leafbench.pipeline import run_experiment

    total = 0.0
    for trial in trials:
        workspace = folder / f"independent-{trial.number}"
        (workspace / "synthetic").mkdir(parents=True)
        shutil.copytree(testbed, workspace / "synthetic" / testbed.name)
        path = write_experiment(folder, workspace, scale)
        overrides = [f"{k}={v}" for k, v in trial.params.items()]
        exp = load_experiment(path, [*overrides, "evaluate.split=validation"])
        start = time.perf_counter()
        run_experiment(exp, until="evaluate")
        total += time.perf_counter() - start
    return total


def stage_table(study: Any) -> None:
    trials = [t for t in study.trials if "stages" in t.user_attrs]
    stages = list(trials[0].user_attrs["stages"]) if trials else []
    print("trial  τ      λ      " + "  ".join(f"{s:>16}" for s in stages) + "   objective")
    for t in trials:
        cells = [f"{t.user_attrs['stages'][s]['status'][:8]:>8} {t.user_attrs['stages'][s]['seconds']:6.1f}s"
                 for s in stages]
        print(f"#{t.number:<5} {t.params['mining.threshold.tau']:<6.3f} "
              f"{t.params['distill.loss.lambda']:<6.3f} " + "  ".join(cells) + f"   {t.value:.3f}")
    for stage in stages:
        computed = sum(t.user_attrs["stages"][stage]["status"] == "computed" for t in trials)
        print(f"  {stage}: computed in {computed} of {len(trials)} trials")


def part_one(folder: Path, scale: str) -> None:
    workspace = folder / "sweep-ws"
    experiment = write_experiment(folder, workspace, scale)
    from leafbench.config import load_experiment
    from leafbench.pipeline import resolve_models

    start = time.perf_counter()
    refs, _ = resolve_models(load_experiment(experiment), workspace)  # build the testbed once
    print(f"testbed built in {time.perf_counter() - start:.1f} s (not counted on either side)")
    testbed = workspace / "synthetic" / str(refs.identity["testbed"])
    seconds, study = run_sweep(write_sweep(folder, experiment, "bench-tpe", 8, "none"), 8)
    stage_table(study)
    alone = independent_runs(folder, scale, study.trials, testbed)
    print(f"8-trial sweep {seconds:.1f} s; 8 independent runs {alone:.1f} s; "
          f"ratio (independent / sweep) {alone / seconds:.2f}x")


def part_two(folder: Path, scale: str) -> None:
    results = {}
    for pruner in ("none", "median"):
        workspace = folder / f"prune-{pruner}"
        experiment = write_experiment(folder, workspace, scale)
        seconds, study = run_sweep(write_sweep(folder, experiment, f"bench-{pruner}", 16, pruner),
                                   16)
        epochs = sum(len(t.intermediate_values) for t in study.trials)
        pruned = sum(t.state.name == "PRUNED" for t in study.trials)
        results[pruner] = (seconds, epochs, pruned, study.best_value)
    full = results["none"][1]
    for pruner, (seconds, epochs, pruned, best) in results.items():
        print(f"pruner {pruner:6}: {seconds:7.1f} s, distillation epochs {epochs} "
              f"({1 - epochs / full:.0%} saved), pruned trials {pruned}, best objective {best:.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", choices=["demo", "small"], default="small")
    parser.add_argument("--skip-pruning", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="leafbench-bench-sweep-") as tmp:
        part_one(Path(tmp), args.scale)
        if not args.skip_pruning:
            part_two(Path(tmp), args.scale)


if __name__ == "__main__":
    main()
