"""MLflow logging: one parent run per experiment, one nested run per stage.

The parent carries the flattened experiment as params, the resolved config as an artifact and
the headline scores as metrics. Each stage's nested run carries its own config, its summary
metrics, its per-step series (distillation losses) and its artifacts (mined spans, evaluation
records). Cached stages are logged too, tagged `status=cached`, so every run is complete on its
own.

Default store: sqlite in the workspace (MLflow 3 refuses a plain file store unless told to);
MLFLOW_TRACKING_URI or `tracking.tracking_uri` override it.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import yaml

from leafbench.config import Experiment
from leafbench.contract import ARTIFACTS, Artifacts, StageResult
from leafbench.determinism import cpu_class
from leafbench.samples import read_jsonl

MAX_PARAM = 500
SERIES = ("loss", "l_kd", "l_cd", "lr", "grad_norm", "tokens_per_s")  # per-step metric names


def tracking_uri(exp: Experiment) -> str:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if exp.tracking.tracking_uri:
        return exp.tracking.tracking_uri
    db = Path(exp.workspace).resolve() / "mlflow.db"
    return f"sqlite:///{db}"


def _setup_lock(uri: str) -> Any:
    """Serialise creating a sqlite store and its experiment across processes: MLflow creates
    the tables and runs its migrations on first use, and two processes doing it at once fail
    ("table runs already exists", "duplicate column name"), as do two `create_experiment` calls.
    Servers and database backends handle concurrency themselves."""
    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    from leafbench.lease import acquire, lease_path

    db = Path(uri.removeprefix("sqlite:///"))
    return acquire(lease_path(db), label=f"MLflow store {db}")


def _set_tracking_uri(uri: str) -> None:
    """Point MLflow at `uri` for this process only. MLflow also exports the URI as
    MLFLOW_TRACKING_URI, which `tracking_uri` reads as the user's own choice: a second experiment
    in the same process (a sweep's trials, a test) and every child process would log into the
    first experiment's store. Put the environment back as the user left it."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


# MLflow 3 opens an experiment on the GenAI overview unless its kind says otherwise; leafbench's
# runs are model-development runs, best read in the runs table.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def ensure_experiment(exp: Experiment, uri: str) -> str:
    """Point this process at `uri` and make sure the experiment exists (created once, with its
    artifacts in the workspace and its kind set); return its id."""
    import mlflow

    _set_tracking_uri(uri)
    name = exp.tracking.experiment
    with _setup_lock(uri):
        found = mlflow.get_experiment_by_name(name)  # creates the store's tables
        if found is None:
            artifacts = (Path(exp.workspace).resolve() / "mlflow-artifacts").as_uri()
            try:
                return mlflow.create_experiment(name, artifact_location=artifacts,
                                                tags=EXPERIMENT_KIND)
            except mlflow.exceptions.MlflowException:
                # A server store is not under our lock: another worker created it first.
                found = mlflow.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.tags.get("mlflow.experimentKind") != EXPERIMENT_KIND["mlflow.experimentKind"]:
            mlflow.tracking.MlflowClient(uri).set_experiment_tag(found.experiment_id,
                                                                 *next(iter(EXPERIMENT_KIND.items())))
        return found.experiment_id


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = str(value)[:MAX_PARAM]
    return out


class Tracker:
    """Context manager around the parent run; `log_stage` adds one nested run per stage."""

    def __init__(self, exp: Experiment, stage_configs: dict[str, dict[str, Any]] | None = None):
        self.exp = exp
        self.stage_configs = stage_configs or {}
        self.run_id: str | None = None

    def __enter__(self) -> Tracker:
        import mlflow

        uri = tracking_uri(self.exp)
        ensure_experiment(self.exp, uri)
        mlflow.set_experiment(self.exp.tracking.experiment)
        run = mlflow.start_run(run_name=self.exp.name)
        self.run_id = run.info.run_id
        config = self.exp.to_dict()
        mlflow.log_params(flatten(config))
        # CPU figures are exact per CPU class (leafbench.determinism): record it with them.
        mlflow.set_tag("cpu_class", cpu_class())
        mlflow.log_text(yaml.safe_dump(config, sort_keys=False), "resolved_config.yaml")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        import mlflow

        mlflow.end_run(status="FAILED" if exc_type else "FINISHED")

    def log_stage(self, result: StageResult) -> None:
        import mlflow

        with mlflow.start_run(run_name=result.name, nested=True):
            mlflow.set_tags({"stage": result.name, "status": result.status,
                             "cache_key": result.key})
            params = flatten(self.stage_configs.get(result.name, {}))
            if params:
                mlflow.log_params(params)
            metrics = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
            mlflow.log_metrics({**metrics, "seconds": result.seconds})
            declared = ARTIFACTS.get(result.name, Artifacts({}))
            for log in declared.series:
                self._log_steps(result.path / log)
            for pattern in declared.logged:
                for path in sorted(result.path.glob(pattern)):
                    rel = path.parent.relative_to(result.path)
                    mlflow.log_artifact(str(path), f"{result.name}/{rel}".rstrip("/."))
        mlflow.log_metrics({f"{result.name}.{k}": v for k, v in metrics.items()})

    @staticmethod
    def _log_steps(path: Path) -> None:
        import mlflow
        from mlflow.entities import Metric

        if not path.is_file():
            return
        rows = read_jsonl(path)
        client = mlflow.tracking.MlflowClient()
        run = mlflow.active_run()
        if run is None:  # only called inside log_stage's nested run
            raise RuntimeError("no active MLflow run to log steps to")
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        batch = [
            Metric(key, float(row[key]), now, int(row["step"]))
            for row in rows for key in SERIES
            if key in row
        ]
        for i in range(0, len(batch), 1000):
            client.log_batch(run_id, metrics=batch[i:i + 1000])
