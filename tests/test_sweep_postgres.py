"""Distributed sweeps on a real PostgreSQL server: two `leafbench sweep` worker processes on
one study, one of them SIGKILLed mid-trial, and a grid shared by two workers.

What must hold: the study completes with its trial cap respected; the killed trial ends FAIL
and is retried once with identical parameters; no trial is lost or duplicated; no trial and no
MLflow run is left RUNNING (the killed trial's run ends KILLED); each grid point is taken
exactly once. Marked ``postgres`` (``nox -s postgres``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import small_experiment
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from postgres_server import fresh_database, pg_server, postgres_url  # noqa: F401

pytestmark = pytest.mark.postgres
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """A tiny experiment whose testbed and mining are built before the workers start (so the
    workers race on trials, not on building the testbed)."""
    root = tmp_path_factory.mktemp("pg_sweep")
    raw = yaml.safe_load(small_experiment(
        root / "ws", name="tiny", experiment="pg-sweep", n_pretrain=400, n_train=16, n_test=8,
        teacher_steps=30, student_steps=20, max_gen_toks=8))
    raw["synthetic"]["n_validation"] = 8
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(raw))
    built = subprocess.run([sys.executable, "-m", "leafbench.cli", "run", str(path), "--until",
                            "mine", "--no-tracking"], env=_env(), capture_output=True, text=True,
                           timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "LEAFBENCH_PROGRESS": "0", **extra}
    env.pop("MLFLOW_TRACKING_URI", None)
    return {**env, **extra}


def _sweep_file(experiment: Path, name: str, **fields) -> Path:
    body = {"experiment": experiment.name, "study": name, "heartbeat_s": 1, "grace_s": 3,
            "pruner": "none", **fields}
    path = experiment.parent / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def _worker(sweep: Path, storage: str, mlflow_uri: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "leafbench.cli", "sweep", str(sweep), "--storage", storage],
        env=_env(MLFLOW_TRACKING_URI=mlflow_uri), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True, cwd=REPO)


def _running_trial_of(study: optuna.Study, pid: int) -> optuna.trial.FrozenTrial | None:
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("worker_pid") == pid:
            return trial
    return None


def _wait_for_trial_of(worker: subprocess.Popen, storage: str, name: str
                       ) -> tuple[optuna.Study, optuna.trial.FrozenTrial]:
    """Wait until `worker` is running a trial with its MLflow run started; the study and it."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert worker.poll() is None, worker.communicate()[0][-3000:]
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            time.sleep(0.5)
            continue
        trial = _running_trial_of(study, worker.pid)
        if trial is not None and trial.user_attrs.get("mlflow_run_id"):
            return study, trial
        time.sleep(0.3)
    pytest.fail(f"worker {worker.pid} never started a trial of {name}")


def test_a_killed_worker_s_trial_is_failed_retried_once_and_nothing_is_left_running(
        experiment, postgres_url):  # noqa: F811
    storage, mlflow_uri = fresh_database(postgres_url), fresh_database(postgres_url)
    MlflowClient(mlflow_uri).search_experiments()  # the store's tables, as `mlflow db upgrade`
    sweep = _sweep_file(experiment, "killed", sampler="tpe", max_trials=4, dimensions={
        "mining.threshold.tau": {"type": "categorical", "choices": [0.05, 0.15]},
        "distill.loss.lambda": {"type": "float", "low": 0.0, "high": 1.0}})
    victim = _worker(sweep, storage, mlflow_uri)
    survivor = _worker(sweep, storage, mlflow_uri)
    try:
        _wait_for_trial_of(victim, storage, "killed")
        time.sleep(1.0)  # mid-trial
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        output, _ = survivor.communicate(timeout=600)
        assert survivor.returncode == 0, output[-4000:]
    finally:
        for proc in (victim, survivor):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)

    trials = optuna.load_study(study_name="killed", storage=storage).trials
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(complete) == 4, states  # the cap, across both workers
    assert len(failed) == 1 and failed[0].user_attrs["worker_pid"] == victim.pid, states
    retries = [t for t in complete
               if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t)
               == failed[0].number]
    assert len(retries) == 1 and retries[0].params == failed[0].params  # retried once, same
    assert [t.number for t in trials] == list(range(len(trials)))  # none lost
    keys = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(keys)) == len(keys)  # none duplicated

    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("pg-sweep")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    by_trial = {r.data.tags.get("optuna.trial_number"): r.info.status for r in runs}
    assert by_trial[str(failed[0].number)] == "KILLED"
    assert sorted(by_trial[str(t.number)] for t in complete) == ["FINISHED"] * 4


def test_two_workers_take_each_grid_point_exactly_once(experiment, postgres_url):  # noqa: F811
    storage, mlflow_uri = fresh_database(postgres_url), fresh_database(postgres_url)
    MlflowClient(mlflow_uri).search_experiments()
    sweep = _sweep_file(experiment, "grid", sampler="grid", dimensions={
        "mining.threshold.tau": {"type": "categorical", "choices": [0.05, 0.10, 0.15]}})
    workers = [_worker(sweep, storage, mlflow_uri) for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [o[-3000:] for o in outputs]
    trials = optuna.load_study(study_name="grid", storage=storage).trials
    assert sorted(t.params["mining.threshold.tau"] for t in trials) == [0.05, 0.10, 0.15]
    assert {t.state for t in trials} == {TrialState.COMPLETE}


def test_a_worker_paused_past_the_grace_period_has_its_late_result_refused(
        experiment, postgres_url):  # noqa: F811
    """SIGSTOP a worker mid-trial for longer than the grace period: the other worker fails its
    trial and retries it; when the paused worker resumes, its late result is refused with a
    message, and it carries on without crashing the sweep."""
    storage, mlflow_uri = fresh_database(postgres_url), fresh_database(postgres_url)
    MlflowClient(mlflow_uri).search_experiments()
    sweep = _sweep_file(experiment, "paused", sampler="tpe", max_trials=3, dimensions={
        "mining.threshold.tau": {"type": "categorical", "choices": [0.05, 0.15]},
        "distill.loss.lambda": {"type": "float", "low": 0.0, "high": 1.0}})
    paused = _worker(sweep, storage, mlflow_uri)
    other = None
    try:
        study, victim = _wait_for_trial_of(paused, storage, "paused")
        os.killpg(paused.pid, signal.SIGSTOP)
        other = _worker(sweep, storage, mlflow_uri)
        # Resume only once the other worker, starting a trial past the grace period, has
        # failed the paused worker's trial.
        deadline = time.monotonic() + 300
        while study._storage.get_trial(victim._trial_id).state != TrialState.FAIL:
            assert time.monotonic() < deadline, "the paused worker's trial was never failed"
            assert other.poll() is None, other.communicate()[0][-3000:]
            time.sleep(0.5)
        os.killpg(paused.pid, signal.SIGCONT)
        outputs = [p.communicate(timeout=600)[0] for p in (paused, other)]
        assert [paused.returncode, other.returncode] == [0, 0], outputs[0][-6000:]
    finally:
        for proc in (paused, other):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    trials = optuna.load_study(study_name="paused", storage=storage).trials
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states
    assert states.count(TrialState.COMPLETE) == 3, states
    first = next(t for t in trials if t.user_attrs.get("worker_pid") == paused.pid)
    assert first.state == TrialState.FAIL, states  # its late result did not overwrite the FAIL
    assert "late result was refused" in outputs[0], outputs[0][-3000:]
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("pg-sweep").experiment_id],
                              filter_string=f"tags.`optuna.trial_number` = '{first.number}'")
    assert [r.info.status for r in runs] == ["KILLED"]  # the late worker did not end it FAILED
