"""Run a sweep: an Optuna study whose trials are `leafbench run`s in one shared workspace.

The stage cache is what makes a sweep cheap: τ is not in mining's key, so the study mines once;
pruning runs once per τ; the teacher pass once per counterfactual set; the teacher and the
undistilled student are evaluated once. Each trial records, per stage, whether it was computed
or taken from the cache and how long it took (``stages`` in the trial's user attributes and in
its MLflow run).

Storage: sqlite in the workspace by default (one worker); any SQLAlchemy URL (PostgreSQL for
many machines) with ``--storage``. On a server database, heartbeats are on and a trial whose
worker died is failed and retried once with the same parameters
(``RetryHeartbeatStaleTrialCallback``, Optuna 5's replacement for the deprecated
``RetryFailedTrialCallback``). Re-running the same command resumes the study by name.

MLflow: one parent run per study (its id kept in the study's user attributes, so every worker
and every resumption logs under it), one nested run per trial with the trial's parameters,
resolved config, objective, stage timings and state. A worker's inherited ``MLFLOW_RUN_ID``
is dropped first: MLflow would otherwise log every trial into that run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from leafbench.config import Experiment
from leafbench.contract import StageResult
from leafbench.sweep.definition import Sweep
from leafbench.sweep.epochs import EpochReporter
from leafbench.sweep.search import PRUNERS, SAMPLERS, counted, suggest, waiting

PARENT_RUN = "mlflow_parent_run_id"
GRID_DONE = "grid_enqueued"


@dataclass
class WorkerReport:
    """What one worker did: trials it finished, and why it stopped."""

    trials: int
    stopped: str


def storage_url(sweep: Sweep, url: str | None) -> str:
    """--storage, else sqlite in the experiment's workspace."""
    if url:
        return url
    workspace = Path(sweep.experiment.workspace).resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{workspace / 'optuna.db'}"


def open_study(sweep: Sweep, url: str) -> optuna.Study:
    """Create or resume the study named in the sweep (same name, same study)."""
    cfg = sweep.config

    def create() -> optuna.Study:
        return optuna.create_study(
            storage=_storage(url, cfg.heartbeat_s, cfg.grace_s), study_name=cfg.study, load_if_exists=True,
            direction=cfg.objective.direction, sampler=SAMPLERS[cfg.sampler](_seed(cfg.seed, url)),
            pruner=PRUNERS[cfg.pruner]())

    with _quiet_optuna():
        study = _create_or_load(create)
    if cfg.sampler == "grid" and not study.user_attrs.get(GRID_DONE):
        _enqueue_grid(study, sweep)
    return study


def _seed(seed: int, url: str) -> int:
    """The sampler's seed: the sweep's own for the one sqlite worker (reproducible), mixed with
    the worker's host and pid on a server storage — workers with one seed would all draw the
    same points (TPE's random start-up trials first), duplicating each other's work."""
    if url.startswith("sqlite"):
        return seed
    worker = f"{seed}/{socket.gethostname()}/{os.getpid()}".encode()
    return int.from_bytes(hashlib.sha256(worker).digest()[:4], "big")


def _storage(url: str, heartbeat_s: int, grace_s: int) -> optuna.storages.RDBStorage:
    """sqlite: one machine, no heartbeats (SQLite has no row locks to make retries safe).
    A server database: heartbeats, and a stale trial retried once with the same parameters."""
    if url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return optuna.storages.RDBStorage(
        url, heartbeat_interval=heartbeat_s, grace_period=grace_s,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=1),
    )


def _create_or_load(create: Callable[[], optuna.Study]) -> optuna.Study:
    """Two workers starting at once on an empty PostgreSQL database both create Optuna's tables
    and study, and the loser fails — on a unique constraint, or on a table or type that now
    exists (each creation is one transaction, so nothing is left half-made): try again, which
    then finds what the winner created."""
    import sqlalchemy.exc

    for attempt in range(5):
        try:
            return create()
        except sqlalchemy.exc.DBAPIError:  # IntegrityError, ProgrammingError (DuplicateObject)
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def run_worker(sweep: Sweep, url: str, n_trials: int | None, tracking: bool = True
               ) -> WorkerReport:
    """Run trials of the study until this worker's count, the study's cap or the grid is
    exhausted, or the timeout passes."""
    os.environ.pop("MLFLOW_RUN_ID", None)
    study = open_study(sweep, url)
    cfg = sweep.config
    logger = _TrialLogger(sweep, study) if tracking else None
    deadline = time.monotonic() + cfg.timeout_s if cfg.timeout_s else None
    done = 0
    while True:
        stopped = _why_stop(study, sweep, done, n_trials, deadline)
        if stopped and not _stale_work_appeared(study, sweep, logger, done, n_trials):
            break
        if stopped:
            continue  # a dead worker's trial came back to be retried: take it
        try:
            study.optimize(lambda trial: _objective(trial, sweep, logger), n_trials=1,
                           catch=(Exception,), gc_after_trial=False)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as err:
            # Paused past the grace period: another worker failed this trial as stale and a
            # retry has taken its place; the storage refuses the late result ("Cannot tell a
            # FAIL trial"). Discard it and carry on. Any other ValueError is a real error.
            if not isinstance(err, optuna.exceptions.UpdateFinishedTrialError) and \
                    not str(err).startswith("Cannot tell a"):
                raise
            print(f"leafbench sweep: a late result was refused and discarded ({err})",
                  file=sys.stderr)
        done += 1
    if logger is not None:
        logger.end_killed(study)
        logger.finish(study)
    return WorkerReport(done, stopped)


def _stale_work_appeared(study: optuna.Study, sweep: Sweep, logger: _TrialLogger | None,
                         done: int, n_trials: int | None) -> bool:
    """Before leaving: Optuna fails a dead worker's trial only when some worker starts a trial,
    so the last one of a study would stay RUNNING forever. Wait out the grace period while
    other trials are running, fail the stale ones (each retried once, as a waiting trial), end
    their MLflow runs as KILLED; True when a retry is now waiting and this worker may run it."""
    storage = study._storage
    if not isinstance(storage, optuna.storages.RDBStorage) or storage.grace_period is None:
        return False
    cfg = sweep.config
    if n_trials is not None and done >= n_trials:
        return False
    mine = {os.getpid()}
    deadline = time.monotonic() + cfg.grace_s + 2 * cfg.heartbeat_s
    while time.monotonic() < deadline:
        running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if t.user_attrs.get("worker_pid") not in mine]
        optuna.storages.fail_stale_trials(study)
        if logger is not None:
            logger.end_killed(study)
        if waiting(study) and (cfg.max_trials is None or counted(study) < cfg.max_trials):
            return True
        if not running:
            return False
        time.sleep(min(cfg.heartbeat_s, 1.0))
    return False


def _why_stop(study: optuna.Study, sweep: Sweep, done: int, n_trials: int | None,
              deadline: float | None) -> str:
    cfg = sweep.config
    if n_trials is not None and done >= n_trials:
        return f"ran the {n_trials} trial(s) asked of this worker"
    if cfg.max_trials is not None and counted(study) >= cfg.max_trials:
        return f"the study has its {cfg.max_trials} trial(s) (running, complete or pruned)"
    if cfg.sampler == "grid" and waiting(study) == 0:
        return "every grid point has been taken"
    if deadline is not None and time.monotonic() >= deadline:
        return f"timeout of {cfg.timeout_s} s"
    return ""


def _objective(trial: optuna.Trial, sweep: Sweep, logger: _TrialLogger | None) -> float:
    """One trial: the base experiment with the trial's values, run in the shared workspace up to
    its evaluation, its distillation answering to the pruner after every epoch."""
    values = suggest(trial, sweep.config)
    trial.set_user_attr("worker_pid", os.getpid())
    trial.set_user_attr("worker_host", socket.gethostname())
    exp = sweep.trial_experiment(values, name=f"{sweep.config.study}-trial-{trial.number}")
    run = logger.start(trial, values, exp.to_dict()) if logger else None
    state = "FAILED"
    try:
        start = time.perf_counter()
        results = _run_answering_epochs(
            trial, exp, logger.epoch_logger(run) if logger and run else None)
        stages = {r.name: {"status": r.status, "seconds": round(r.seconds, 3)} for r in results}
        metrics = next(r.metrics for r in results if r.name == "evaluate")
        key = sweep.config.objective.key
        if key not in metrics:
            raise KeyError(f"the evaluation reported no {key} (it has {sorted(metrics)})")
        value = float(metrics[key])
        trial.set_user_attr("stages", stages)
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
        state = "FINISHED"
        if logger and run:
            logger.trial_metrics(run, value, metrics, stages)
        return value
    except optuna.TrialPruned:
        state = "FINISHED"  # pruned is a normal end; the run's tag says which
        if logger and run:
            logger.client.set_tag(run, "optuna.state", "PRUNED")
        raise
    except optuna.exceptions.UpdateFinishedTrialError:
        state = "KILLED"  # paused past the grace period: another worker failed it as stale
        if logger and run:
            logger.client.set_tag(run, "optuna.state", "FAIL (worker lost)")
        raise
    finally:
        if logger and run:
            logger.end(run, state)


def _run_answering_epochs(trial: optuna.Trial, exp: Experiment,
                          on_report: Callable[[int, float], None] | None = None
                          ) -> list[StageResult]:
    """Run the pipeline up to evaluation while a thread answers distillation's per-epoch
    handshake (`leafbench.sweep.epochs`); a stop there becomes this trial's pruning."""
    from leafbench.distill import CONTROL_ENV, DistillationStopped
    from leafbench.pipeline import run_experiment

    control = Path(tempfile.mkdtemp(prefix=f"leafbench-trial-{trial.number}-"))
    reporter = EpochReporter(trial, control, on_report)
    reporter.start()
    os.environ[CONTROL_ENV] = str(control)
    try:
        return run_experiment(exp, until="evaluate")  # interpretation is not the objective
    except DistillationStopped as stopped:
        if reporter.failure is not None:  # e.g. the trial was taken from this worker
            raise reporter.failure from stopped
        trial.set_user_attr("epochs_run", reporter.epochs)
        raise optuna.TrialPruned(f"pruned after epoch {reporter.pruned_at}") from stopped
    finally:
        os.environ.pop(CONTROL_ENV, None)
        reporter.stop()
        shutil.rmtree(control, ignore_errors=True)


def _enqueue_grid(study: optuna.Study, sweep: Sweep) -> None:
    """Put every grid point into the study once, under a lock, so several workers take each
    point exactly once (Optuna's GridSampler would let two workers draw the same point)."""
    with _study_lock(study, sweep):
        if study.user_attrs.get(GRID_DONE):  # another worker got here first
            return
        for point in sweep.grid():
            study.enqueue_trial(point, skip_if_exists=True)
        study.set_user_attr(GRID_DONE, True)


@contextlib.contextmanager
def _study_lock(study: optuna.Study, sweep: Sweep) -> Iterator[None]:
    """One worker at a time: a lease file in the workspace (workers sharing a workspace), or a
    PostgreSQL advisory lock (workers on several machines)."""
    storage = study._storage
    url = str(getattr(storage, "url", ""))
    if url.startswith("postgresql"):
        import sqlalchemy

        engine = sqlalchemy.create_engine(url)
        key = int.from_bytes(sweep.config.study.encode()[:8].ljust(8, b"\0"), "big") >> 1
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        engine.dispose()
        return
    from leafbench.lease import acquire, lease_path

    workspace = Path(sweep.experiment.workspace).resolve()
    lease = acquire(lease_path(workspace / f"sweep-{sweep.config.study}"),
                    label=f"sweep {sweep.config.study}")
    assert lease is not None  # without `done`, acquire only returns once it holds the lease
    with lease:
        yield


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


class _TrialLogger:
    """MLflow: the study's parent run and one nested run per trial, through MlflowClient (no
    active-run state, so nothing an environment variable says can redirect it)."""

    def __init__(self, sweep: Sweep, study: optuna.Study):
        from mlflow.tracking import MlflowClient

        from leafbench.tracking import ensure_experiment, tracking_uri

        self.sweep = sweep
        uri = tracking_uri(sweep.experiment)
        self.client = MlflowClient(tracking_uri=uri)
        self.experiment_id = ensure_experiment(sweep.experiment, uri)
        self.parent = self._parent(study)

    def _parent(self, study: optuna.Study) -> str:
        existing = study.user_attrs.get(PARENT_RUN)
        if existing:
            return existing
        with _study_lock(study, self.sweep):
            study_now = optuna.load_study(study_name=study.study_name, storage=study._storage)
            existing = study_now.user_attrs.get(PARENT_RUN)
            if existing:
                return existing
            run = self.client.create_run(self.experiment_id, run_name=f"sweep {study.study_name}",
                                         tags={"leafbench.sweep": study.study_name})
            cfg = self.sweep.config
            self.client.log_text(run.info.run_id, yaml.safe_dump(cfg.model_dump(mode="json"),
                                                                 sort_keys=False), "sweep.yaml")
            study.set_user_attr(PARENT_RUN, run.info.run_id)
            return run.info.run_id

    def start(self, trial: optuna.Trial, values: dict[str, Any], config: dict[str, Any]) -> str:
        run = self.client.create_run(
            self.experiment_id, run_name=f"trial {trial.number}",
            tags={"mlflow.parentRunId": self.parent, "leafbench.sweep": self.sweep.config.study,
                  "optuna.trial_number": str(trial.number)})
        run_id = run.info.run_id
        trial.set_user_attr("mlflow_run_id", run_id)
        for name, value in values.items():
            self.client.log_param(run_id, name, value)
        self.client.log_text(run_id, yaml.safe_dump(config, sort_keys=False),
                             "resolved_config.yaml")
        return run_id

    def trial_metrics(self, run_id: str, value: float, metrics: dict[str, float],
                      stages: dict[str, dict[str, Any]]) -> None:
        self.client.log_metric(run_id, "objective", value)
        for name, number in metrics.items():
            self.client.log_metric(run_id, name, float(number))
        for stage, info in stages.items():
            self.client.log_metric(run_id, f"seconds.{stage}", info["seconds"])
            self.client.set_tag(run_id, f"stage.{stage}", info["status"])

    def epoch_logger(self, run_id: str) -> Callable[[int, float], None]:
        """Each epoch's validation score as the trial run's `validation_score` at that step."""
        def log(epoch: int, score: float) -> None:
            self.client.log_metric(run_id, "validation_score", score, step=epoch)
        return log

    def end(self, run_id: str, state: str) -> None:
        self.client.set_terminated(run_id, state)

    def end_killed(self, study: optuna.Study) -> None:
        """End as KILLED the MLflow runs of trials that failed without their worker (stale)."""
        for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            run_id = trial.user_attrs.get("mlflow_run_id")
            if run_id and self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_tag(run_id, "optuna.state", "FAIL (worker lost)")
                self.client.set_terminated(run_id, "KILLED")

    def finish(self, study: optuna.Study) -> None:
        """The best trial, its config as a ready experiment, and the plots, on the parent run."""
        from leafbench.sweep.report import best_experiment_yaml, write_plots

        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        # Each worker ends the parent when it leaves (a later worker's trials still nest under
        # it): a study's run is never left RUNNING by a sweep that has stopped.
        self.client.set_terminated(self.parent, "FINISHED")
        if not complete:
            return
        best = study.best_trial
        self.client.log_metric(self.parent, "best_objective", float(best.value or 0.0))
        self.client.set_tag(self.parent, "best_trial", str(best.number))
        self.client.log_text(self.parent, best_experiment_yaml(self.sweep, best),
                             "best_experiment.yaml")
        folder = Path(self.sweep.experiment.workspace).resolve() / "sweeps" / study.study_name
        for path in write_plots(study, folder):
            self.client.log_artifact(self.parent, str(path), "plots")
