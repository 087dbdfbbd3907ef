"""Per-epoch validation in the distill stage and the stop handshake through files.

The pipeline runs up to distillation on a small synthetic testbed with a validation split; a
watcher thread plays the sweep's part of the handshake (control.py): it reads each epoch's
report and answers `continue` or `stop`, as a trial's pruner would.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import small_experiment
from safetensors.torch import load_file

from leafbench.config import load_experiment, validate_dict
from leafbench.contract import ARTIFACTS, ModelRefs, StageContext
from leafbench.distill import CONTROL_ENV, TIMEOUT_ENV, DistillationStopped
from leafbench.distill.control import ask_to_continue
from leafbench.distill.validation import EpochValidation, exact_match
from leafbench.pipeline import run_experiment


@pytest.fixture(scope="module")
def validating_yaml(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill_validation")
    raw = yaml.safe_load(small_experiment(
        root / "ws", name="validating", experiment="distill-validation-test", n_pretrain=500,
        n_train=24, n_test=8, teacher_steps=50, student_steps=25, max_gen_toks=16))
    raw["synthetic"]["n_validation"] = 8
    raw["distill"].update(validate_each_epoch=True, epochs=2)
    path = root / "validating.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _rows(directory: Path) -> list[dict]:
    return [json.loads(x) for x in (directory / "validation.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def first_run(validating_yaml):
    """One uncontrolled run; returns the distill result and its validation rows (copied: a
    later test forces the same key and replaces the directory)."""
    distill = _distill(run_experiment(load_experiment(validating_yaml), until="distill"))
    return distill, _rows(distill.path)


def _distill(results):
    return next(r for r in results if r.name == "distill")


class Watcher(threading.Thread):
    """The sweep's side of the handshake: answers each epoch's report with `answers[epoch]`
    (default `continue`), writing the verdict atomically, and keeps what it was told."""

    def __init__(self, control: Path, answers: dict[int, str] | None = None) -> None:
        super().__init__(daemon=True)
        self.control, self.answers = control, answers or {}
        self.reports: list[dict] = []
        self.done = threading.Event()

    def run(self) -> None:
        epoch = 1
        while not self.done.wait(0.05):
            report = self.control / f"epoch-{epoch}.json"
            if not report.is_file():
                continue
            self.reports.append(json.loads(report.read_text()))
            tmp = self.control / f".epoch-{epoch}.verdict.tmp"
            tmp.write_text(self.answers.get(epoch, "continue"))
            os.replace(tmp, self.control / f"epoch-{epoch}.verdict")
            epoch += 1


@pytest.fixture
def watched(tmp_path, monkeypatch):
    """Start a watcher on a fresh control directory named in the environment."""
    started: list[Watcher] = []

    def start(answers: dict[int, str] | None = None) -> Watcher:
        control = tmp_path / "control"
        control.mkdir()
        monkeypatch.setenv(CONTROL_ENV, str(control))
        monkeypatch.setenv(TIMEOUT_ENV, "60")
        watcher = Watcher(control, answers)
        watcher.start()
        started.append(watcher)
        return watcher

    yield start
    for watcher in started:
        watcher.done.set()
        watcher.join()


def test_every_epoch_is_scored_on_the_validation_split(first_run):
    distill, rows = first_run
    assert distill.status == "computed"
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(0.0 <= r["score"] <= 1.0 and r["n"] == 8 and r["seconds"] > 0 for r in rows)
    assert distill.metrics["validation_score"] == rows[-1]["score"]
    summary = json.loads((distill.path / "summary.json").read_text())
    assert summary["validation_score"] == rows[-1]["score"]
    assert "validation.jsonl" in ARTIFACTS["distill"].logged  # so MLflow keeps it


def test_validating_leaves_training_bit_identical(first_run, validating_yaml):
    """Greedy decoding draws no random numbers: the same run without validation logs the
    same losses and ends with the same weights."""
    validated, _ = first_run
    plain = _distill(run_experiment(
        load_experiment(validating_yaml, ["distill.validate_each_epoch=false"]), until="distill"))
    assert "validation_score" not in plain.metrics
    assert not (plain.path / "validation.jsonl").exists()
    assert (plain.path / "steps.jsonl").read_text() == (validated.path / "steps.jsonl").read_text()
    weights = [load_file(p / "student" / "model.safetensors") for p in (plain.path, validated.path)]
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name


def test_the_score_is_the_strict_match_exact_match_of_the_final_answer():
    records = [{"answer": "8"}, {"answer": 12}, {"response": "3 + 4 = 7. The answer is 7."},
               {"answer": "5"}]
    responses = ["8 + 0 = 8. The answer is 8.",
                 "The answer is 12.\n\nQuestion: Tom has 3. The answer is 3.",  # cut at the stop
                 "3 + 4 = 7. The answer is 7.",
                 "5 + 0 = 5. So 5."]  # no "The answer is": strict-match finds nothing
    assert exact_match(responses, records) == 0.75


def test_a_watcher_answering_continue_sees_every_epoch_and_changes_nothing(
        first_run, validating_yaml, watched):
    _, uncontrolled = first_run
    watcher = watched()
    distill = _distill(run_experiment(load_experiment(validating_yaml), until="distill",
                                      force=("distill",)))
    assert distill.status == "computed"
    # The reports are the logged scores, and a watched run trains exactly like an unwatched one.
    assert [(r["epoch"], r["score"]) for r in watcher.reports] == \
        [(r["epoch"], r["score"]) for r in _rows(distill.path)]
    assert [r["score"] for r in _rows(distill.path)] == [r["score"] for r in uncontrolled]


def test_stop_ends_the_run_after_that_epoch_and_nothing_is_cached(
        first_run, validating_yaml, watched, monkeypatch):
    exp = load_experiment(validating_yaml, ["distill.lr=2.0e-3"])  # a key of its own
    stages = Path(exp.workspace) / "artifacts" / "distill"
    before = set(os.listdir(stages))
    watcher = watched({1: "stop"})
    with pytest.raises(DistillationStopped) as stopped:
        run_experiment(exp, until="distill")
    assert stopped.value.epoch == 1 and stopped.value.score == watcher.reports[0]["score"]
    assert [r["epoch"] for r in watcher.reports] == [1]  # epoch 2 never reported: never ran
    # Neither a finished directory nor a partial one is left behind (leases are released).
    assert {n for n in os.listdir(stages) if not n.endswith(".lease")} == before

    monkeypatch.delenv(CONTROL_ENV)
    distill = _distill(run_experiment(exp, until="distill"))
    assert distill.status == "computed"
    assert [r["epoch"] for r in _rows(distill.path)] == [1, 2]


def test_without_a_verdict_the_run_continues_after_the_timeout(tmp_path, capsys):
    assert ask_to_continue(tmp_path, 3, 0.5, timeout=0.2)
    assert json.loads((tmp_path / "epoch-3.json").read_text()) == {"epoch": 3, "score": 0.5}
    assert "no verdict" in capsys.readouterr().err


def test_a_stale_verdict_is_ignored_and_an_unknown_one_is_refused(tmp_path):
    (tmp_path / "epoch-1.verdict").write_text("stop")  # an earlier attempt's answer
    assert ask_to_continue(tmp_path, 1, 0.0, timeout=0.2)
    threading.Timer(0.1, (tmp_path / "epoch-2.verdict").write_text, ["halt"]).start()
    with pytest.raises(ValueError, match="continue, stop"):
        ask_to_continue(tmp_path, 2, 0.0, timeout=5)


def test_stop_reaches_every_process_of_a_launched_run(first_run, validating_yaml, watched):
    """Two processes under torchrun (DDP over gloo): the main process asks, the verdict is
    broadcast, both stop after epoch 1 and the stage raises in the pipeline's process."""
    exp = load_experiment(validating_yaml,
                          ["distill.launch={num_processes: 2, launcher: torchrun}"])
    stages = Path(exp.workspace) / "artifacts" / "distill"
    before = {n for n in os.listdir(stages) if not n.endswith(".lease")}
    watcher = watched({1: "stop"})
    with pytest.raises(DistillationStopped) as stopped:
        run_experiment(exp, until="distill")
    assert stopped.value.epoch == 1 and [r["epoch"] for r in watcher.reports] == [1]
    assert {n for n in os.listdir(stages) if not n.endswith(".lease")} == before


def test_resume_cuts_the_validation_log_back_to_the_checkpoint(tmp_path):
    """A run killed after epoch 2's row but before a checkpoint at or past that epoch's last
    step resumes from epoch 1's checkpoint: epoch 2 is trained and scored again, once."""
    ctx = StageContext(validate_dict({"distill": {"validate_each_epoch": True}}), tmp_path, {},
                       ModelRefs("t", "s", tmp_path / "train.jsonl", None, {}), tmp_path)
    log = tmp_path / "validation.jsonl"
    log.write_text("".join(json.dumps({"epoch": e, "score": 0.5, "n": 8, "seconds": 1.0}) + "\n"
                           for e in (1, 2)) + '{"epoch": 3, "sco')  # torn by the kill
    validation = EpochValidation(ctx, [], None, SimpleNamespace(is_main_process=True))
    validation.cut_back(1)
    assert [r["epoch"] for r in _rows(tmp_path)] == [1]
