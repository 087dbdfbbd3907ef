"""`leafbench sweep`: validation before anything runs, shared work through the stage cache,
resumption by name, the trial cap, a grid taken point by point, and MLflow parent/trial runs.

One tiny testbed, built once for the module; every sweep runs in that workspace (as the trials
of a real sweep do), each with its own study name.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from conftest import small_experiment
from mlflow.tracking import MlflowClient

from leafbench import cli
from leafbench.errors import ConfigError
from leafbench.sweep import load_sweep
from leafbench.sweep.study import PARENT_RUN

STAGES_BEFORE_DISTILL = ("mine", "prune", "teach")


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    path = root / "exp.yaml"
    text = small_experiment(root / "ws", name="tiny", experiment="sweep-test", n_pretrain=400,
                            n_train=16, n_test=8, teacher_steps=30, student_steps=20,
                            max_gen_toks=8)
    raw = yaml.safe_load(text)
    raw["synthetic"]["n_validation"] = 8
    path.write_text(yaml.safe_dump(raw))
    return path


def write_sweep(experiment: Path, name: str, **fields) -> Path:
    body = {"experiment": experiment.name, "study": name,
            "dimensions": {"mining.threshold.tau": {"type": "categorical",
                                                    "choices": [0.05, 0.15]}},
            **fields}
    path = experiment.parent / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def study_of(experiment: Path, name: str) -> optuna.Study:
    db = experiment.parent / "ws" / "optuna.db"
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


@pytest.mark.parametrize("fields, field, words", [
    ({"dimensions": {"mining.threshold.tua": {"type": "float", "low": 0.0, "high": 0.2}}},
     "dimensions.mining.threshold.tua", "not a field of the experiment schema"),
    ({"dimensions": {"mining.threshold.tau": {"type": "float", "low": 0.2, "high": 0.1}}},
     "dimensions.mining.threshold.tau", "low must be below high"),
    ({"dimensions": {"mining.threshold.tau": {"type": "float", "low": 0.1, "high": 1.5}}},
     "dimensions.mining.threshold.tau", "mining.threshold.tau"),
    ({"dimensions": {"distill.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}},
     "dimensions.distill.lr", "a log range needs low > 0"),
    ({"samplr": "tpe"}, "samplr", "Extra inputs are not permitted"),
    ({"objective": {"task": "leaf_gsm8k"}}, "objective.task", "evaluates"),
    ({"dimensions": {"evaluate.split": {"type": "categorical", "choices": ["test"]}}},
     "dimensions.evaluate.split", "cannot vary"),
    ({"sampler": "grid", "dimensions": {"distill.lr": {"type": "float", "low": 0.001,
                                                       "high": 0.01}}},
     "dimensions.distill.lr", "needs 'step'"),
    ({"overrides": {"evaluate.tasks": ["leaf_synthetic", "leaf_gsm8k"]}},
     "data.validation.leaf_gsm8k", "never the test set"),
])
def test_a_bad_sweep_exits_2_naming_file_and_field(experiment, capsys, fields, field, words):
    path = write_sweep(experiment, "bad", **fields)
    assert cli.main(["sweep", str(path), "--no-tracking"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and f"'{field}'" in err and words in err, err
    assert not (experiment.parent / "ws" / "optuna.db").exists() or "bad" not in \
        optuna.get_all_study_names(f"sqlite:///{experiment.parent / 'ws' / 'optuna.db'}")


def test_trials_share_the_stage_cache_and_log_under_one_parent_run(
        experiment, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_RUN_ID", "0" * 32)  # a worker's inherited run must not capture
    path = write_sweep(experiment, "tpe", sampler="tpe", max_trials=3, dimensions={
        "mining.threshold.tau": {"type": "categorical", "choices": [0.05, 0.15]},
        "distill.loss.lambda": {"type": "float", "low": 0.0, "high": 1.0}})
    assert cli.main(["sweep", str(path), "--n-trials", "3"]) == 0
    study = study_of(experiment, "tpe")
    trials = study.trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    computed = {stage: [t.number for t in trials if t.user_attrs["stages"][stage]["status"]
                        == "computed"] for stage in trials[0].user_attrs["stages"]}
    assert len(computed["mine"]) <= 1, computed  # τ is not in mining's key: mined once at most
    taus = [t.params["mining.threshold.tau"] for t in trials]
    assert len(computed["prune"]) <= len(set(taus)), (computed, taus)  # once per τ
    assert len(computed["distill"]) == 3  # λ differs in every trial

    # Resuming by name: the cap (3) is reached, so this worker runs nothing.
    assert cli.main(["sweep", str(path), "--n-trials", "2"]) == 0
    out = capsys.readouterr().out
    assert "ran 0 trial(s)" in out and "has its 3 trial(s)" in out, out
    assert len(study_of(experiment, "tpe").trials) == 3
    assert "best: trial" in out and "computed: " in out

    uri = f"sqlite:///{experiment.parent / 'ws' / 'mlflow.db'}"
    client = MlflowClient(uri)
    parent_id = study.user_attrs[PARENT_RUN]
    exp = client.get_experiment_by_name("sweep-test")
    assert exp.tags.get("mlflow.experimentKind") == "custom_model_development"
    children = client.search_runs([exp.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(r.data.tags["optuna.trial_number"] for r in children) == ["0", "1", "2"]
    assert {r.info.status for r in children} == {"FINISHED"}
    for run in children:
        trial = trials[int(run.data.tags["optuna.trial_number"])]
        assert run.data.metrics["objective"] == pytest.approx(trial.value)
        assert float(run.data.params["distill.loss.lambda"]) == pytest.approx(
            trial.params["distill.loss.lambda"])
        assert {"seconds.mine", "seconds.distill"} <= set(run.data.metrics)
        history = client.get_metric_history(run.info.run_id, "validation_score")
        assert sorted(m.step for m in history) == [1, 2]  # every epoch, as the pruner saw it
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == [
            trial.intermediate_values[1], trial.intermediate_values[2]]
    artifacts = [a.path for a in client.list_artifacts(parent_id)]
    assert "best_experiment.yaml" in artifacts and "plots" in artifacts
    plots = {Path(a.path).name for a in client.list_artifacts(parent_id, "plots")}
    assert {"optimization_history.png", "contour.png"} <= plots, plots
    best = yaml.safe_load(mlflow.artifacts.load_text(
        f"{client.get_run(parent_id).info.artifact_uri}/best_experiment.yaml"))
    assert best["evaluate"]["split"] == "test"  # validation chose it; test reports it
    assert best["distill"]["loss"]["lambda"] == pytest.approx(study.best_params[
        "distill.loss.lambda"])


def test_a_grid_is_taken_point_by_point_exactly_once(experiment):
    path = write_sweep(experiment, "grid", sampler="grid", pruner="none")
    assert cli.main(["sweep", str(path), "--n-trials", "5", "--no-tracking"]) == 0
    trials = study_of(experiment, "grid").trials
    assert sorted(t.params["mining.threshold.tau"] for t in trials) == [0.05, 0.15]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # Every trial read the validation split, never the test split.
    for trial in trials:
        assert trial.user_attrs["stages"]["evaluate"]["status"] in ("computed", "cached")
    sweep = load_sweep(path)
    assert sweep.experiment.evaluate.split == "validation"
    config = json.loads(json.dumps(sweep.trial_experiment({"mining.threshold.tau": 0.05},
                                                          name="x").to_dict()))
    assert config["evaluate"]["split"] == "validation"


def test_every_shipped_sweep_validates():
    shipped = sorted((Path(__file__).parents[1] / "experiments" / "sweeps").glob("*.yaml"))
    assert shipped
    for path in shipped:
        sweep = load_sweep(path)
        assert sweep.experiment.evaluate.split == "validation", path


def test_a_pruned_trial_stops_its_distillation_after_the_epoch_the_pruner_rejects(experiment):
    """The handshake end to end: distillation scores epoch 1 on the validation split, the
    trial reports it, a pruner that rejects anything below 2.0 says stop, and distillation ends
    there — no second epoch, nothing cached, the trial PRUNED with one intermediate value."""
    from leafbench.sweep.study import _run_answering_epochs

    path = write_sweep(experiment, "pruned", pruner="median")
    sweep = load_sweep(path)
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    trial = study.ask()
    # a λ no other test distils with: a cached distillation would run no epoch at all
    exp = sweep.trial_experiment({"mining.threshold.tau": 0.05, "distill.loss.lambda": 0.123},
                                 name="pruned")
    assert exp.distill.validate_each_epoch and exp.distill.epochs == 2
    with pytest.raises(optuna.TrialPruned, match="after epoch 1"):
        _run_answering_epochs(trial, exp)
    frozen = study._storage.get_trial(trial._trial_id)
    assert list(frozen.intermediate_values) == [1]
    assert 0.0 <= frozen.intermediate_values[1] <= 1.0
    distilled = Path(exp.workspace) / "artifacts" / "distill"
    assert not list(distilled.glob("*.partial")), "a stopped distillation left its partial run"


def test_a_trial_taken_from_its_worker_stops_its_distillation_and_raises_the_refusal(
        experiment, monkeypatch):
    """Paused past the grace period, a worker finds its trial failed by another (a stale trial,
    retried elsewhere): the storage refuses the epoch's report, the handshake answers stop at
    once instead of leaving distillation waiting out its 600 s timeout, and the refusal — not a
    pruning — is what the trial raises, with nothing cached."""
    from leafbench.distill import TIMEOUT_ENV
    from leafbench.sweep.study import _run_answering_epochs

    monkeypatch.setenv(TIMEOUT_ENV, "60")  # without the fix: a minute's wait, then no raise
    sweep = load_sweep(write_sweep(experiment, "taken", pruner="none"))
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    exp = sweep.trial_experiment({"mining.threshold.tau": 0.05, "distill.loss.lambda": 0.321},
                                 name="taken")
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        _run_answering_epochs(trial, exp)
    assert study._storage.get_trial(trial._trial_id).intermediate_values == {}
    distilled = Path(exp.workspace) / "artifacts" / "distill"
    assert not list(distilled.glob("*.partial")), "a stopped distillation left its partial run"


def test_an_error_while_answering_an_epoch_stops_the_distillation_and_is_kept(tmp_path):
    """The trainer's side of the handshake against the real thread: when logging an epoch's
    score fails (a tracking server gone), the thread answers stop at once and keeps the error
    for the trial — it does not die and leave the trainer waiting out its timeout."""
    from leafbench.distill.control import ask_to_continue
    from leafbench.sweep.epochs import EpochReporter

    def log(epoch: int, score: float) -> None:
        if epoch == 2:
            raise ConnectionError("tracking server gone")

    trial = optuna.create_study(direction="maximize").ask()
    reporter = EpochReporter(trial, tmp_path, log)
    reporter.start()
    try:
        assert ask_to_continue(tmp_path, 1, 0.5, timeout=20) is True
        assert ask_to_continue(tmp_path, 2, 0.6, timeout=20) is False  # no 20 s wait, a stop
    finally:
        reporter.stop()
    assert isinstance(reporter.failure, ConnectionError) and reporter.epochs == 2
    assert (tmp_path / "epoch-2.verdict").read_text() == "stop"


def test_a_real_task_is_tuned_on_the_validation_file_the_experiment_names(experiment, tmp_path):
    held_out = tmp_path / "gsm8k_validation.jsonl"
    held_out.write_text('{"question": "What is 2 + 2?", "answer": "4\\n#### 4"}\n')
    path = write_sweep(experiment, "real", overrides={
        "evaluate.tasks": ["leaf_synthetic", "leaf_gsm8k"],
        "data.validation": {"leaf_gsm8k": str(held_out)}})
    sweep = load_sweep(path)
    assert sweep.experiment.data.validation == {"leaf_gsm8k": str(held_out)}
    missing = write_sweep(experiment, "real-missing", overrides={
        "data.validation": {"leaf_gsm8k": str(tmp_path / "absent.jsonl")}})
    with pytest.raises(ConfigError, match="data.validation.leaf_gsm8k"):
        load_sweep(missing)
