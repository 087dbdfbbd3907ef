"""What a sweep leaves to read: the trials table, the best trial as a ready experiment, plots.

Plots are Optuna's matplotlib ones written as PNG: plotly's static export needs a browser
download, and a PNG opens anywhere (MLflow shows it inline).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from leafbench.sweep.definition import Sweep


def best_experiment_yaml(sweep: Sweep, best: FrozenTrial) -> str:
    """The best trial's experiment as a YAML file `leafbench run` takes, scored on the test split
    again (the validation split was only for choosing)."""
    config = sweep.trial_experiment(dict(best.params), name=f"{sweep.config.study}-best").to_dict()
    config["evaluate"]["split"] = "test"
    header = (f"# best trial {best.number} of study {sweep.config.study}: "
              f"{sweep.config.objective.key} = {best.value} on the validation split\n")
    return header + yaml.safe_dump(config, sort_keys=False)


PLOTS = {
    "optimization_history": lambda study, names: optuna.visualization.matplotlib
    .plot_optimization_history(study),
    "contour": lambda study, names: optuna.visualization.matplotlib.plot_contour(
        study, params=names[:2]),
    "param_importances": lambda study, names: optuna.visualization.matplotlib
    .plot_param_importances(study),
    "intermediate_values": lambda study, names: optuna.visualization.matplotlib
    .plot_intermediate_values(study),
}


def write_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """Every plot the study's trials allow (a contour needs two parameters, importances two
    complete trials); a plot that cannot be drawn yet is left out, not faked."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    names = sorted({name for trial in complete for name in trial.params})
    written = []
    for name, draw in PLOTS.items():
        if not _drawable(name, study, complete, names):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            axes = draw(study, names)
        figure = _figure(axes)
        path = folder / f"{name}.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written


def _drawable(name: str, study: optuna.Study, complete: list[FrozenTrial], names: list[str]
              ) -> bool:
    needs = {
        "optimization_history": bool(complete),
        "contour": len(names) >= 2 and len(complete) >= 2,
        "param_importances": len(complete) >= 2 and bool(names),
        "intermediate_values": any(t.intermediate_values for t in study.trials),
    }
    return needs[name]


def _figure(axes: Any) -> Any:
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    return first.get_figure()


def status_lines(study: optuna.Study, sweep: Sweep) -> list[str]:
    """One line per trial (number, state, parameters, value, stages computed/cached), then the
    best trial."""
    names = list(sweep.config.dimensions)
    lines = [f"study {study.study_name}: {len(study.trials)} trial(s), objective "
             f"{sweep.config.objective.key} ({sweep.config.objective.direction})"]
    for trial in study.get_trials(deepcopy=False):
        params = ", ".join(f"{n}={trial.params.get(n, '-')}" for n in names)
        value = "-" if trial.value is None else f"{trial.value:.4f}"
        stages = trial.user_attrs.get("stages", {})
        computed = [s for s, info in stages.items() if info["status"] == "computed"]
        seconds = trial.user_attrs.get("seconds")
        timing = f" {seconds:.1f}s" if seconds is not None else ""
        lines.append(f"  #{trial.number:<3} {trial.state.name:8} {params}  value {value}{timing}"
                     f"  computed: {','.join(computed) or '-'}")
    if any(t.state == TrialState.COMPLETE for t in study.trials):
        best = study.best_trial
        lines.append(f"best: trial {best.number}, value {best.value:.4f}, params {best.params}")
    return lines
