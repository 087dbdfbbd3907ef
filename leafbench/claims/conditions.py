"""The experiments the claims need: each condition is the experiment plus overrides, per seed.

A condition is data (a name, the overrides that make it, the last stage it needs); running one
is `run_experiment` on the overridden experiment, so every stage another condition or an
earlier invocation already computed comes from the cache (mining once per testbed, the
teacher and the undistilled student evaluated once).

What a seed varies (`vary`):
  pipeline  Experiment.seed only: pruning's random baseline and distillation's initial order
            and shuffling. The testbed (data and the two pretrained models) is fixed, so every
            seed scores the same test items (a crossed seed × item design).
  testbed   synthetic.seed as well: the data and both models are rebuilt per seed (a testbed
            build each), so a claim must hold across testbeds, not only across training runs;
            items differ per seed (a nested design).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from leafbench.config import Experiment, load_experiment
from leafbench.contract import StageResult
from leafbench.errors import ConfigError

VARIES = ("pipeline", "testbed")


@dataclass(frozen=True)
class Condition:
    name: str
    overrides: tuple[str, ...]
    until: str  # the last pipeline stage the claims read
    meaning: str


# LeaF as the experiment defines it; plain KD = the same hybrid loss with λ = 1 (no
# counterfactual term, "KD w/o mask" in the paper's tables); collective pruning.
CONDITIONS: dict[str, Condition] = {c.name: c for c in (
    Condition("leaf", (), "evaluate", "the experiment as defined"),
    Condition("kd", ("distill.loss.mode=hybrid", "distill.loss.lambda=1.0"), "evaluate",
              "KD without mask: hybrid loss, λ = 1"),
    Condition("collective", ("pruning.strategy=collective",), "evaluate",
              "collective pruning: one counterfactual with every marked token removed"),
    Condition("preliminary", (), "preliminary",
              "the preliminary experiment: the undistilled student on pruned instructions"),
)}


def seed_overrides(seed: int, vary: str) -> list[str]:
    if vary not in VARIES:
        raise ConfigError("--vary", "--vary", vary, f"expected one of {list(VARIES)}")
    return [f"seed={seed}", *([f"synthetic.seed={seed}"] if vary == "testbed" else [])]


def experiment_for(path: Path, overrides: Sequence[str], condition: Condition, seed: int,
                   vary: str) -> Experiment:
    return load_experiment(path, [*overrides, *condition.overrides, *seed_overrides(seed, vary)])


Runner = Callable[[Experiment, str], list[StageResult]]


def run_condition(exp: Experiment, condition: Condition, runner: Runner
                  ) -> dict[str, StageResult]:
    """The condition's stages (computed or cached), by stage name."""
    return {r.name: r for r in runner(exp, condition.until)}
