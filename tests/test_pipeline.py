"""The pipeline spine end to end on a small synthetic testbed: caching, resume after SIGKILL,
and the MLflow run tree read back from the sqlite store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import small_experiment
from safetensors.torch import load_file

from leafbench.config import load_experiment
from leafbench.determinism import cpu_class
from leafbench.pipeline import STAGE_NAMES, planned_stages, run_experiment
from leafbench.tracking.mlflow_run import Tracker, tracking_uri


@pytest.fixture(scope="module")
def small_yaml(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    path = root / "small.yaml"
    path.write_text(small_experiment(root / "ws", name="small", experiment="pipeline-test",
                                     n_pretrain=1500, n_train=40, n_test=24, teacher_steps=120,
                                     student_steps=60, max_gen_toks=20))
    return path


@pytest.fixture(scope="module")
def first_run(small_yaml):
    exp = load_experiment(small_yaml)
    with Tracker(exp) as tracker:
        results = run_experiment(exp, tracker=tracker)
    return exp, results, tracker.run_id


def test_every_stage_runs_and_reports_the_demo_figures(first_run):
    exp, results, _ = first_run
    names = [r.name for r in results]
    assert names == ["testbed", "mine", "prune", "teach", "distill", "evaluate", "interpret"]
    assert all(r.status == "computed" for r in results)
    prune = next(r for r in results if r.name == "prune").metrics
    for method in ("gradient", "random"):
        assert 0.0 <= prune[f"{method}_precision"] <= 1.0
        assert 0.0 <= prune[f"{method}_recall"] <= 1.0
    evaluated = next(r for r in results if r.name == "evaluate").metrics
    for role in ("teacher", "student_before", "student_after"):
        for flt in ("strict-match", "flexible-extract"):
            assert 0.0 <= evaluated[f"{role}.leaf_synthetic.exact_match.{flt}"] <= 1.0
    distill = next(r for r in results if r.name == "distill")
    steps = [json.loads(line) for line in (distill.path / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == distill.metrics["steps"] and all(s["loss"] >= 0 for s in steps)
    assert (distill.path / "student" / "config.json").is_file()
    assert not (distill.path / "checkpoints").exists()
    # The teacher ran once per distinct item, in the teach stage; never during the epochs.
    teach = next(r for r in results if r.name == "teach")
    prune_dir = next(r for r in results if r.name == "prune").path
    n_items = len((prune_dir / "counterfactuals.jsonl").read_text().splitlines())
    assert teach.metrics["teacher_forward_items"] == n_items
    assert distill.metrics["teacher_forward_passes"] == 0 and exp.distill.epochs > 1


def test_identical_rerun_recomputes_nothing(first_run):
    exp, _, _ = first_run
    start = time.perf_counter()
    again = run_experiment(exp)
    assert {r.status for r in again} == {"cached"} and len(again) == len(planned_stages(exp)) + 1
    assert len(planned_stages(exp)) == len(STAGE_NAMES) - 1  # all but the preliminary experiment
    assert time.perf_counter() - start < 30


def test_changing_tau_reuses_the_mining_pass(first_run, small_yaml):
    exp = load_experiment(small_yaml, ["mining.threshold.tau=0.05"])
    results = {r.name: r.status for r in run_experiment(exp, until="prune")}
    assert results["mine"] == "cached"
    assert results["prune"] == "computed"


def test_changing_lambda_or_the_loss_mode_reuses_the_teacher_cache(first_run, small_yaml):
    for override in ("distill.loss.lambda=0.3", "distill.loss={mode: mixed}"):
        exp = load_experiment(small_yaml, [override, "evaluate.models=[teacher]"])
        results = {r.name: r.status for r in run_experiment(exp, until="distill")}
        assert results["mine"] == results["prune"] == results["teach"] == "cached", override
        assert results["distill"] == "computed", override


def test_a_new_seed_reprunes_but_reuses_the_teacher_pass(first_run, small_yaml):
    """The seed moves the random baseline (prune's key) but not the counterfactuals, and the
    teach stage is keyed by their content."""
    exp = load_experiment(small_yaml, ["seed=7", "evaluate.models=[teacher]"])
    results = {r.name: r.status for r in run_experiment(exp, until="teach")}
    assert results == {"testbed": "cached", "mine": "cached", "prune": "computed",
                       "teach": "cached"}


def test_validation_keeps_exactly_the_counterfactuals_both_models_answer(first_run, small_yaml):
    exp = load_experiment(small_yaml, ["pruning.validation=true"])
    results = {r.name: r for r in run_experiment(exp, until="prune")}
    assert results["mine"].status == "cached" and results["prune"].status == "computed"
    out = results["prune"].path
    outcomes = [json.loads(x) for x in (out / "validation.jsonl").read_text().splitlines()]
    items = [json.loads(x) for x in (out / "counterfactuals.jsonl").read_text().splitlines()]
    assert outcomes, "the small testbed mines at least one span"
    for o in outcomes:
        assert o["kept"] == (o["teacher_correct"] and o["student_correct"])
    kept = {o["id"] for o in outcomes if o["kept"]}
    assert {it["id"] for it in items if it["kind"] != "original"} == kept
    assert results["prune"].metrics["validation_kept_fraction"] == pytest.approx(
        len(kept) / len(outcomes))


def test_without_student_after_nothing_is_trained_and_evaluate_needs_no_distillation(
        first_run, small_yaml):
    """A Pre-KD or teacher row: only the testbed and evaluate run; the scores are the full
    run's for the same roles; the evaluate key ignores every training setting."""
    _, full, _ = first_run
    roles = "evaluate.models=[teacher, student_before]"
    results = run_experiment(load_experiment(small_yaml, [roles]))
    assert [r.name for r in results] == ["testbed", "evaluate"]
    evaluated = results[-1]
    assert evaluated.status == "computed"
    scores = next(r for r in full if r.name == "evaluate").metrics
    for name, value in evaluated.metrics.items():
        assert name.split(".")[0] in ("teacher", "student_before") and scores[name] == value
    retrained = load_experiment(small_yaml, [roles, "mining.threshold.tau=0.3", "distill.lr=0.5",
                                             "pruning.mask=random"])
    again = run_experiment(retrained)
    assert [(r.name, r.key, r.status) for r in again][1:] == [
        ("evaluate", evaluated.key, "cached")]
    # an experiment that does evaluate the distilled student keeps its stage chain and keys
    assert [s.name for s in planned_stages(first_run[0])] == [
        "mine", "prune", "teach", "distill", "evaluate", "interpret"]


def test_mlflow_run_tree_reads_back_from_the_sqlite_store(first_run):
    from mlflow.tracking import MlflowClient

    exp, results, run_id = first_run
    uri = tracking_uri(exp)
    assert uri.startswith("sqlite:///") and Path(uri.removeprefix("sqlite:///")).is_file()
    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(run_id)
    assert parent.data.params["mining.threshold.tau"] == "0.1"
    assert parent.data.params["distill.loss.lambda"] == "0.5"
    assert parent.data.tags["cpu_class"] == cpu_class()  # CPU figures are exact per class
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    assert sorted(c.data.tags["stage"] for c in children) == sorted(r.name for r in results)
    by_stage = {c.data.tags["stage"]: c for c in children}

    distill_steps = next(r for r in results if r.name == "distill").metrics["steps"]
    history = client.get_metric_history(by_stage["distill"].info.run_id, "loss")
    assert len(history) == distill_steps
    assert sorted(m.step for m in history) == list(range(1, int(distill_steps) + 1))
    for key in ("l_kd", "l_cd", "lr", "grad_norm", "tokens_per_s"):
        assert client.get_metric_history(by_stage["distill"].info.run_id, key)
    student = [a.path for a in client.list_artifacts(by_stage["distill"].info.run_id,
                                                       "distill/student")]
    assert {"distill/student/README.md", "distill/student/config.json",
            "distill/student/model.safetensors"} <= set(student)
    card = client.download_artifacts(by_stage["distill"].info.run_id, "distill/student/README.md")
    assert "τ = 0.1" in Path(card).read_text(encoding="utf-8")
    shown = [a.path for a in client.list_artifacts(by_stage["interpret"].info.run_id, "interpret")]
    assert {"interpret/attention.json", "interpret/delta_view.html"} <= set(shown)
    assert "attention_mass_before" in by_stage["interpret"].data.metrics

    evaluated = next(r for r in results if r.name == "evaluate").metrics
    for name, value in evaluated.items():
        assert parent.data.metrics[f"evaluate.{name}"] == pytest.approx(value)
    assert "prune.gradient_precision" in parent.data.metrics

    top = [a.path for a in client.list_artifacts(run_id)]
    assert "resolved_config.yaml" in top
    records = client.list_artifacts(by_stage["evaluate"].info.run_id, "evaluate/student_after")
    assert any(a.path.endswith(".jsonl") for a in records)
    spans = client.list_artifacts(by_stage["prune"].info.run_id, "prune")
    assert {Path(a.path).name for a in spans} >= {"spans_sample.jsonl", "detection.json"}


def _deterministic(summary: dict) -> dict:
    """Everything but wall-clock figures."""
    return {k: v for k, v in summary.items() if k != "tokens_per_s"}


def test_sigkill_during_distillation_then_rerun_matches_uninterrupted(first_run, small_yaml):
    exp, results, _ = first_run
    distill = next(r for r in results if r.name == "distill")
    reference_summary = _deterministic(json.loads((distill.path / "summary.json").read_text()))
    reference_weights = load_file(distill.path / "student" / "model.safetensors")
    reference_steps = (distill.path / "steps.jsonl").read_text()

    cmd = [sys.executable, "-m", "leafbench.cli", "run", str(small_yaml), "--no-tracking",
           "--force", "distill"]
    env = {**os.environ, "LEAFBENCH_PROGRESS": "0"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial = distill.path.with_name(distill.path.name + ".partial")
    checkpoints = partial / "checkpoints"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        steps = partial / "steps.jsonl"
        if any(checkpoints.glob("step-*")) and steps.is_file() and len(
                steps.read_text().splitlines()) >= exp.distill.save_every + 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read()!r}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not distill.path.exists() and partial.is_dir()

    resumed = subprocess.run(cmd[:-2], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert _deterministic(json.loads((distill.path / "summary.json").read_text())) == reference_summary
    assert (distill.path / "steps.jsonl").read_text() == reference_steps
    weights = load_file(distill.path / "student" / "model.safetensors")
    assert weights.keys() == reference_weights.keys()
    for name, tensor in reference_weights.items():
        assert torch.equal(weights[name], tensor), name


def test_the_tracker_leaves_mlflow_tracking_uri_as_the_user_set_it(small_yaml, tmp_path,
                                                                    monkeypatch):
    """MLflow exports the URI it is pointed at; left there, a second experiment in the same
    process (a sweep's trials) and every child process would log into the first one's store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    exp = load_experiment(small_yaml, [f"workspace={tmp_path / 'ws'}"])
    with Tracker(exp):
        pass
    assert "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mine.db'}")
    assert tracking_uri(exp) == f"sqlite:///{tmp_path / 'mine.db'}"  # the user's choice wins
