"""Sweeps: Optuna studies over any experiment fields, sharing work through the stage cache."""

from leafbench.sweep.definition import Sweep, SweepConfig, load_sweep
from leafbench.sweep.report import status_lines
from leafbench.sweep.study import WorkerReport, open_study, run_worker, storage_url

__all__ = ["Sweep", "SweepConfig", "WorkerReport", "load_sweep", "open_study", "run_worker",
           "status_lines", "storage_url"]
