"""Where do the paper's claims hold on the testbed? A map of claim verdicts against settings.

Each cell is `leafbench claims` (leafbench.claims) on the demo experiment with one setting of
the testbed's generator or of distillation changed, over a few seeds, **scored on the
validation split** (`evaluate.split=validation`): the map chooses settings, so it must never
look at the test split. Printed: one row per setting with each claim's verdict and effect,
and the wall time the cell cost (testbed build included when the setting needs a new one).
The table and the JSON are logged to MLflow (a run named `testbed-map`).

The settings (`SETTINGS`, each a list of `-s` overrides on experiments/demo.yaml) cover what
plausibly decides whether counterfactual distillation adds anything over plain KD: several
distractors per problem, the distractor's form (facts, a quantity of the same items held by
someone else, a measurement with units) and position, longer contexts (number-free filler),
harder arithmetic, the train split's correlation, data size and the distillation budget.

Run: `python -m leafbench.bench.testbed_map [--seeds 3] [--settings a,b,...]
[--workspace DIR] [--json PATH]`. One cell on the demo's scale costs minutes on 2 CPU cores
(a testbed build ~1-2 min, then per seed three distillations and their evaluations).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from leafbench.claims.claims import judge
from leafbench.claims.collect import collect
from leafbench.claims.commands import to_report
from leafbench.determinism import cpu_class

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "experiments" / "demo.yaml"

SETTINGS: dict[str, list[str]] = {
    "default": [],
    "distractors-3": ["synthetic.n_distractors=3"],
    "form-quantity": ["synthetic.distractor_form=quantity"],
    "form-unit": ["synthetic.distractor_form=unit"],
    "mixed-3": ["synthetic.n_distractors=3", "synthetic.distractor_form=mixed"],
    "position-first": ["synthetic.distractor_position=first"],
    "long-context": ["synthetic.filler_sentences=4"],
    "harder-arithmetic": ["synthetic.max_operand=19"],
    "train-correlation-0.5": [],  # TRAIN_VARIANTS: the train split only, same models
    "train-correlation-1.0": [],
    "train-1024": [],
    "epochs-1": ["distill.epochs=1"],
    "epochs-6": ["distill.epochs=6"],
    "lr-3e-4": ["distill.lr=3.0e-4"],
    # Not the testbed but mining: a looser threshold marks more of each distractor clause.
    "tau-0.3": ["mining.threshold.tau=0.3"],
}
VALIDATION = ["evaluate.split=validation"]
# Settings that change only the train split (mining and distillation data): the testbed's
# models and its validation and test splits stay as they are, so instead of rebuilding the
# testbed (pretraining both models again) the split is generated with the changed settings
# into a file and given as `data.train`. Its records are the testbed's own generator's.
TRAIN_VARIANTS: dict[str, dict[str, Any]] = {
    "train-correlation-0.5": {"train_correlation": 0.5},
    "train-correlation-1.0": {"train_correlation": 1.0},
    "train-1024": {"n_train": 1024},
}


def run_cell(name: str, seeds: int, workspace: Path, experiment: Path = DEMO,
             resamples: int = 2000) -> dict[str, Any]:
    overrides = [f"workspace={workspace}", *VALIDATION, *SETTINGS[name]]
    if name in TRAIN_VARIANTS:
        overrides.append(f"data.train={train_variant(name, experiment, workspace)}")
    started = time.perf_counter()
    ev, diagnostics = collect(experiment, overrides, list(range(seeds)), "pipeline",
                              resamples=resamples)
    seconds = time.perf_counter() - started
    report = to_report(name, "pipeline", ev.seeds, judge(ev), diagnostics, seconds)
    report["setting"] = {"name": name, "overrides": SETTINGS[name], "split": "validation"}
    return report


def train_variant(name: str, experiment: Path, workspace: Path) -> Path:
    """The train split of the experiment's testbed with TRAIN_VARIANTS[name] applied, as JSONL
    (test problems excluded, as in the testbed itself)."""
    from leafbench.config import load_experiment
    from leafbench.samples import write_jsonl
    from leafbench.synthetic import generate_split

    cfg = load_experiment(experiment, [f"workspace={workspace}"]).synthetic
    changed = cfg.model_copy(update=TRAIN_VARIANTS[name])
    seen = frozenset(r["instruction"] for r in generate_split(cfg, "test"))
    path = workspace / "train-variants" / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, generate_split(changed, "train", exclude=seen))
    return path.resolve()


def render_map(cells: list[dict[str, Any]]) -> str:
    claims = [c["claim"] for c in cells[0]["claims"]] if cells else []
    lines = ["| setting | " + " | ".join(f"({c})" for c in claims)
             + " | LeaF acc | KD acc | wall s |",
             "|---|" + "---|" * len(claims) + "---|---|---|"]
    for cell in cells:
        row = []
        for c in cell["claims"]:
            effect = next(iter(c["effects"].values()), None)
            row.append(c["verdict"] + (f" {effect['estimate']:+.3f}" if effect else ""))
        acc = cell["diagnostics"].get("summary", {}).get("accuracy", {})
        lines.append(f"| {cell['setting']['name']} | " + " | ".join(row)
                     + f" | {_num(acc.get('leaf'))} | {_num(acc.get('kd'))} | "
                     f"{cell['wall_seconds']:.0f} |")
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def log_map(cells: list[dict[str, Any]], table: str, experiment: Path, workspace: Path) -> None:
    import mlflow

    from leafbench.config import load_experiment
    from leafbench.tracking.mlflow_run import ensure_experiment, tracking_uri

    exp = load_experiment(experiment, [f"workspace={workspace}"])
    ensure_experiment(exp, tracking_uri(exp))
    mlflow.set_experiment(exp.tracking.experiment)
    with mlflow.start_run(run_name="testbed-map"):
        mlflow.set_tag("cpu_class", cpu_class())
        mlflow.log_text(table, "testbed_map.md")
        mlflow.log_dict({"cells": cells}, "testbed_map.json")
        for cell in cells:
            mlflow.log_metric(f"wall_seconds.{cell['setting']['name']}", cell["wall_seconds"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"comma-separated, of {list(SETTINGS)}")
    parser.add_argument("--workspace", type=Path, default=Path("leafbench-runs") / "testbed-map")
    parser.add_argument("--experiment", type=Path, default=DEMO)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-tracking", action="store_true")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting {unknown[0]!r}; accepted: {list(SETTINGS)}")
    cells = []
    for name in names:  # each cell is printed as soon as it is done: a long map can be cut
        cells.append(run_cell(name, args.seeds, args.workspace, args.experiment))
        print(render_map(cells[-1:]).splitlines()[-1], flush=True)
        if args.json is not None:
            args.json.write_text(json.dumps({"cells": cells}, indent=2))
    table = render_map(cells)
    print(table)
    print(f"CPU class: {cpu_class()} (figures are exact per class: leafbench.determinism)")
    if not args.no_tracking:
        log_map(cells, table, args.experiment, args.workspace)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
