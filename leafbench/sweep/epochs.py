"""The trial's side of distillation's per-epoch handshake: report, ask the pruner, answer.

Distillation (``distill.validate_each_epoch``) scores the student on the validation split after
every epoch, writes ``epoch-<e>.json`` into the directory ``LEAFBENCH_DISTILL_CONTROL`` names
and waits for ``epoch-<e>.verdict`` (``continue`` or ``stop``). Files, not callbacks: under
``accelerate launch`` the trainer lives in other processes. This thread answers: it reports the
score to the trial as the intermediate value of step e, asks the study's pruner, and says stop
when the trial should be pruned — so a pruned trial's distillation ends at that epoch.

Whatever goes wrong in answering, the thread answers stop and keeps the error for the trial to
raise: a dead thread would leave the trainer waiting out its timeout for a verdict that never
comes, then training on unreported. The common case: a trial taken from its worker while it runs
(paused past the grace period, another worker fails it as stale and retries it), whose report
the storage refuses with `UpdateFinishedTrialError` — its training's result would be refused
anyway. Another is the tracking server gone when an epoch's score is logged.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import optuna


class EpochReporter(threading.Thread):
    """Answers each epoch's question until stopped; remembers the epoch it pruned at."""

    def __init__(self, trial: optuna.Trial, control: Path,
                 on_report: Callable[[int, float], None] | None = None):
        super().__init__(daemon=True, name=f"epochs-trial-{trial.number}")
        self.trial, self.control, self.on_report = trial, control, on_report
        self.pruned_at: int | None = None
        self.failure: Exception | None = None  # what stopped the answering, if anything did
        self.epochs = 0
        self._asked = 1  # the epoch whose question is being answered
        self._done = threading.Event()

    def run(self) -> None:
        try:
            self._answer()
        except Exception as failure:  # noqa: BLE001 — kept, and raised by the trial
            self.failure = failure
            _write(self.control / f"epoch-{self._asked}.verdict", "stop")

    def _answer(self) -> None:
        epoch = 1
        while not self._done.is_set():
            question = self.control / f"epoch-{epoch}.json"
            if not question.is_file() and (self.control / f"epoch-{epoch - 1}.json").is_file() \
                    and not (self.control / f"epoch-{epoch - 1}.verdict").is_file():
                epoch -= 1  # the distillation asked again (resumed within the trial): answer it
            if not question.is_file():
                self._done.wait(0.1)
                continue
            self._asked = epoch
            score = float(json.loads(question.read_text())["score"])
            self.trial.report(score, epoch)
            self.epochs = epoch
            if self.on_report is not None:
                self.on_report(epoch, score)
            prune = self.trial.should_prune()
            if prune:
                self.pruned_at = epoch
            _write(self.control / f"epoch-{epoch}.verdict", "stop" if prune else "continue")
            epoch += 1

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)


def _write(path: Path, text: str) -> None:
    """Atomically: the trainer polls for the file and must never read half of it."""
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)
