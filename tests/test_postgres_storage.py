"""Optuna's RDB storage and MLflow's tracking store on a real PostgreSQL server.

These are the storage facts a distributed sweep stands on, checked against the server the sweep
tests use (tests/postgres_server.py): heartbeats fail a SIGKILLed worker's trial and Optuna's
retry callback re-queues it with the same parameters; two worker processes on one study see each
other's trials while both run; MLflow keeps runs in a database of the same server. Marked
``postgres`` (outside the default run; ``nox -s postgres``), except the check that a missing
server installation fails loudly instead of skipping.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import postgres_server as pg
import pytest
from postgres_server import PostgresUnavailable, fresh_database, pg_server, postgres_url  # noqa: F401

HEARTBEAT, GRACE = 1, 2  # seconds: the smallest values Optuna accepts, so the test is quick

# A worker that records its pid on each trial and holds its first trial until the other worker
# has started one too: both run at the same time, and each must see the other's trials.
SHARING_WORKER = textwrap.dedent("""
    import json, os, sys, time
    import optuna

    url, name, n_trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True)

    def pids():
        return {t.user_attrs.get("pid") for t in study.get_trials(deepcopy=False)} - {None}

    def objective(trial):
        trial.set_user_attr("pid", os.getpid())
        deadline = time.monotonic() + 30
        while len(pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        return trial.suggest_float("x", -1.0, 1.0) ** 2

    study.optimize(objective, n_trials=n_trials)
    deadline = time.monotonic() + 30
    while (sum(t.state.is_finished() for t in study.get_trials(deepcopy=False)) < 2 * n_trials
           and time.monotonic() < deadline):
        time.sleep(0.1)
    trials = study.get_trials(deepcopy=False)
    print(json.dumps({"pid": os.getpid(), "seen": sorted(pids()),
                      "trials": [[t.number, t.state.name, t.user_attrs.get("pid")]
                                 for t in trials]}))
""")

# A worker that starts one trial under heartbeats, says so in a file, then hangs until killed.
HANGING_WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import optuna

    url, name, started = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=2)
    study = optuna.load_study(study_name=name, storage=storage)

    def objective(trial):
        trial.suggest_float("x", -1.0, 1.0)
        started.write_text(str(trial.number))
        time.sleep(600)

    study.optimize(objective, n_trials=1)
""")


def test_missing_server_binaries_fail_with_the_install_command(monkeypatch):
    """No PostgreSQL installed: the fixture fails (never skips) and names the package."""
    with pytest.raises(PostgresUnavailable, match="apt-get install postgresql"):
        pg.find_binaries(search=["/nonexistent/bin"])

    def missing(search: list[str] | None = None) -> Path:
        raise PostgresUnavailable(f"no binaries: {pg.INSTALL_HINT}")

    monkeypatch.setattr(pg, "find_binaries", missing)
    monkeypatch.setattr(pg, "_shared", None)
    monkeypatch.setattr(pg, "_users", 0)
    with pytest.raises(pytest.fail.Exception, match="apt-get install postgresql"):
        with pg.shared_server():
            pass


@pytest.mark.postgres
def test_server_runs_unprivileged_on_loopback_with_separate_databases(pg_server):  # noqa: F811
    from sqlalchemy import create_engine, text

    owner = os.stat(pg_server.data_dir).st_uid
    assert owner == (pg.ACCOUNT if os.geteuid() == 0 else os.geteuid())
    first, second = fresh_database(pg_server.url()), fresh_database(pg_server.url())
    assert first != second
    engine = create_engine(first)
    try:
        with engine.connect() as connection:
            listen = connection.execute(text("SHOW listen_addresses")).scalar()
            database = connection.execute(text("SELECT current_database()")).scalar()
    finally:
        engine.dispose()
    assert listen == "127.0.0.1"
    assert first.endswith(f"/{database}")


@pytest.mark.postgres
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # heartbeats, retry
def test_heartbeats_fail_a_killed_workers_trial_and_the_retry_keeps_its_parameters(
        postgres_url, tmp_path):  # noqa: F811
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    url = fresh_database(postgres_url)
    storage = optuna.storages.RDBStorage(
        url, heartbeat_interval=HEARTBEAT, grace_period=GRACE,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
    study = optuna.create_study(study_name="heartbeat", storage=storage)
    started = tmp_path / "started"
    worker = subprocess.Popen([sys.executable, "-c", HANGING_WORKER, url, "heartbeat",
                               str(started)])
    try:
        _wait_for(started.exists, timeout=60, what="the worker to start its trial")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    assert study.trials[0].state == TrialState.RUNNING  # nobody has noticed yet
    time.sleep(GRACE + HEARTBEAT + 0.5)

    # Stale trials are failed when some worker starts a trial: this one then runs the retry.
    study.optimize(lambda trial: trial.suggest_float("x", -1.0, 1.0) ** 2, n_trials=1)
    killed, retried = study.trials
    assert killed.state == TrialState.FAIL
    assert retried.state == TrialState.COMPLETE
    assert retried.params == killed.params
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retried) == killed.number


@pytest.mark.postgres
def test_two_worker_processes_on_one_study_see_each_others_trials(postgres_url):  # noqa: F811
    import optuna

    url, n_trials = fresh_database(postgres_url), 3
    # Tables first: two RDBStorage constructors racing on an empty database can both issue
    # CREATE TYPE, and PostgreSQL fails the loser (duplicate key in pg_type) rather than waiting.
    # Workers that may be the first to touch a database must retry or lock; not this test's
    # subject. Creating the study itself concurrently (load_if_exists) is, and is left to them.
    optuna.storages.RDBStorage(url).engine.dispose()
    workers = [subprocess.Popen([sys.executable, "-c", SHARING_WORKER, url, "shared",
                                 str(n_trials)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
               for _ in range(2)]
    reports = [json.loads(out.strip().splitlines()[-1]) for out in _outputs(workers, timeout=90)]

    pids = sorted(report["pid"] for report in reports)
    for report in reports:
        assert report["seen"] == pids  # each saw the other's trials while both ran
        numbers = [number for number, _, _ in report["trials"]]
        assert sorted(numbers) == list(range(2 * n_trials))  # none lost, none duplicated
        assert {state for _, state, _ in report["trials"]} == {"COMPLETE"}
        per_worker = [pid for _, _, pid in report["trials"]]
        assert sorted(per_worker) == sorted(pids * n_trials)


@pytest.mark.postgres
def test_mlflow_keeps_nested_runs_in_a_database_of_the_same_server(postgres_url, monkeypatch):  # noqa: F811
    import mlflow
    from mlflow.tracking import MlflowClient

    url = fresh_database(postgres_url)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    mlflow.set_tracking_uri(url)
    try:
        experiment = mlflow.set_experiment("sweep")
        with mlflow.start_run(run_name="study") as parent:
            with mlflow.start_run(run_name="trial-0", nested=True) as child:
                mlflow.log_param("tau", 0.1)
                mlflow.log_metric("objective", 0.5, step=1)
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # unset: later tests choose

    client = MlflowClient(tracking_uri=url)
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"study", "trial-0"}
    assert all(run.info.status == "FINISHED" for run in runs.values())
    trial = runs["trial-0"]
    assert trial.info.run_id == child.info.run_id
    assert trial.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert trial.data.params == {"tau": "0.1"}
    assert trial.data.metrics == {"objective": 0.5}


def _outputs(workers: list[subprocess.Popen], *, timeout: float) -> list[str]:
    """Each worker's stdout once all have exited 0. The first that fails or overruns ends the
    wait, kills the rest (a survivor would otherwise wait out its partner) and fails the test
    with its stderr."""
    deadline = time.monotonic() + timeout
    while any(worker.poll() is None for worker in workers) and time.monotonic() < deadline:
        if any(worker.poll() not in (None, 0) for worker in workers):
            break
        time.sleep(0.1)
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
    results = [worker.communicate() for worker in workers]
    for worker, (_, err) in zip(workers, results, strict=True):
        assert worker.returncode == 0, f"worker exited {worker.returncode}:\n{err[-3000:]}"
    return [out for out, _ in results]


def _wait_for(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)

