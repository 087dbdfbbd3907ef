"""Tracking: MLflow runs for experiments (and, through the same helpers, for sweeps)."""

from leafbench.tracking.mlflow_run import Tracker, ensure_experiment, tracking_uri

__all__ = ["Tracker", "ensure_experiment", "tracking_uri"]
