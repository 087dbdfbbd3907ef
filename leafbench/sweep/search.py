"""How a study searches: the sampler and pruner registries, and the trial cap.

Registries rather than if-chains, so a new sampler is one entry. ``grid`` is not Optuna's
GridSampler: with several workers that visits points twice, so the grid is enqueued once into
the study instead (see :mod:`leafbench.sweep.study`) and a random sampler stands behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from leafbench.sweep.definition import SweepConfig

SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "grid": lambda seed: optuna.samplers.RandomSampler(seed=seed),  # the grid is enqueued
}

PRUNERS: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
    "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    "none": optuna.pruners.NopPruner,
    "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1),
}

# What counts toward `max_trials`: a running trial does (else N workers overshoot by N - 1), a
# failed one does not (it is retried with the same parameters), an enqueued one not yet.
COUNTED = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)


def suggest(trial: optuna.Trial, config: SweepConfig) -> dict[str, Any]:
    """The trial's value for every dimension (fixed ones for enqueued trials)."""
    return {name: dim.suggest(trial, name) for name, dim in config.dimensions.items()}


def counted(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=COUNTED))


def waiting(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
