"""A sweep definition: which experiment, which objective, which dimensions, how to search.

Validated like an experiment, and completely before anything runs: unknown keys, bad ranges, a
dimension whose path is not a field of the experiment schema (or whose values that field would
reject), an objective the experiment does not evaluate, an objective on a test split — each
raises :class:`ConfigError` naming the sweep file and the field (the CLI exits 2).

A trial's experiment is the base experiment with the sweep's ``overrides``, the command line's
``-s`` and the trial's values applied in that order, plus ``evaluate.split=validation``: the
objective is always a validation score, so the test split stays unseen by the tuning.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, PositiveFloat, PositiveInt, ValidationError

from leafbench.config import Experiment, Strict, load_experiment
from leafbench.errors import ConfigError

ROLES = ("teacher", "student_before", "student_after")
VALIDATION = "evaluate.split=validation"
# Every trial's distillation scores the validation split after each epoch: the pruner's signal.
EPOCHS = "distill.validate_each_epoch=true"


class FloatRange(Strict):
    """A float dimension: [low, high], uniform or log-uniform, optionally on a step grid."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: PositiveFloat | None = None

    def values(self) -> list[Any]:
        """The grid points (a grid sampler needs a step)."""
        if self.step is None:
            raise ValueError("a grid over a float range needs 'step'")
        count = int(round((self.high - self.low) / self.step)) + 1
        return [round(self.low + i * self.step, 10) for i in range(count)]

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)


class IntRange(Strict):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: PositiveInt = 1

    def values(self) -> list[Any]:
        return list(range(self.low, self.high + 1, self.step))

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step)


class Choice(Strict):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)

    def values(self) -> list[Any]:
        return list(self.choices)

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, self.choices)


Dimension = Annotated[FloatRange | IntRange | Choice, Field(discriminator="type")]


class Objective(Strict):
    """The number a trial returns: `role`'s `metric` on `task`, on the validation split."""

    role: Literal["teacher", "student_before", "student_after"] = "student_after"
    task: str = "leaf_synthetic"
    metric: str = "exact_match,strict-match"
    direction: Literal["maximize", "minimize"] = "maximize"

    @property
    def key(self) -> str:
        """The name the evaluate stage gives this number in its metrics."""
        return f"{self.role}.{self.task}.{self.metric.replace(',', '.')}"


class SweepConfig(Strict):
    """One Optuna study over one experiment. `max_trials` caps the whole study, across workers:
    trials that are running, complete or pruned count; failed ones do not (they are retried)."""

    experiment: str
    study: str
    objective: Objective = Objective()
    dimensions: dict[str, Dimension] = Field(min_length=1)
    overrides: dict[str, Any] = {}
    sampler: Literal["tpe", "grid", "random"] = "tpe"
    pruner: Literal["median", "none", "hyperband"] = "median"
    max_trials: PositiveInt | None = None
    timeout_s: PositiveFloat | None = None
    seed: int = 0  # the sampler's seed (one sqlite worker; mixed with each worker's identity on a server)
    # Server storages only: a trial whose worker sent no heartbeat for `grace_s` is failed and
    # retried once with the same parameters.
    heartbeat_s: PositiveInt = 10
    grace_s: PositiveInt = 60


class Sweep(BaseModel):
    """A validated sweep: its definition, where it came from, and the base experiment."""

    config: SweepConfig
    path: Path
    base: Path
    overrides: list[str]  # the sweep's own, then the command line's
    experiment: Experiment

    def trial_overrides(self, values: dict[str, Any]) -> list[str]:
        return [*self.overrides, *(f"{k}={_yaml(v)}" for k, v in values.items()), VALIDATION,
                EPOCHS]

    def trial_experiment(self, values: dict[str, Any], name: str) -> Experiment:
        return load_experiment(self.base, [*self.trial_overrides(values), f"name={name}"])

    def grid(self) -> list[dict[str, Any]]:
        """Every point of the grid, in a fixed order."""
        names = list(self.config.dimensions)
        axes = [self.config.dimensions[n].values() for n in names]
        return [dict(zip(names, point, strict=True)) for point in itertools.product(*axes)]


def load_sweep(path: str | Path, cli_overrides: list[str] | tuple[str, ...] = ()) -> Sweep:
    """Read and check a sweep definition; ConfigError naming file and field on any problem."""
    path = Path(path)
    source = str(path)
    raw = _read(path)
    try:
        config = SweepConfig.model_validate(raw)
    except ValidationError as err:
        problem = err.errors()[0]
        field = ".".join(str(p) for p in problem["loc"])
        raise ConfigError(source, field, problem.get("input"), problem["msg"]) from None
    base = (path.parent / config.experiment).resolve()
    if not base.is_file():
        raise ConfigError(source, "experiment", config.experiment, f"{base} does not exist")
    overrides = [*(f"{k}={_yaml(v)}" for k, v in config.overrides.items()), *cli_overrides]
    experiment = _load(base, [*overrides, VALIDATION], source, "overrides")
    sweep = Sweep(config=config, path=path, base=base, overrides=overrides,
                  experiment=experiment)
    _check_dimensions(sweep, source)
    _check_objective(sweep, source)
    return sweep


def _check_dimensions(sweep: Sweep, source: str) -> None:
    """Each dimension names an experiment field, accepts its extreme values, and is searchable."""
    for name, dim in sweep.config.dimensions.items():
        field = f"dimensions.{name}"
        if not _is_field(Experiment, name.split(".")):
            raise ConfigError(source, field, name, "not a field of the experiment schema")
        if name in ("evaluate.split", "name", "workspace"):
            raise ConfigError(source, field, name, "a sweep cannot vary this field")
        if isinstance(dim, (FloatRange, IntRange)):
            if dim.low >= dim.high:
                raise ConfigError(source, field, [dim.low, dim.high], "low must be below high")
            if dim.log and dim.low <= 0:
                raise ConfigError(source, field, dim.low, "a log range needs low > 0")
            extremes: list[Any] = [dim.low, dim.high]
        else:
            extremes = dim.choices
        for value in extremes:
            _load(sweep.base, [*sweep.overrides, f"{name}={_yaml(value)}", VALIDATION],
                  source, field)
        if sweep.config.sampler == "grid":
            try:
                dim.values()
            except ValueError as err:
                raise ConfigError(source, field, name, str(err)) from None


def _check_objective(sweep: Sweep, source: str) -> None:
    objective, exp = sweep.config.objective, sweep.experiment
    if objective.task not in exp.evaluate.tasks:
        raise ConfigError(source, "objective.task", objective.task,
                          f"the experiment evaluates {exp.evaluate.tasks}")
    if objective.role not in exp.evaluate.models:
        raise ConfigError(source, "objective.role", objective.role,
                          f"the experiment evaluates {exp.evaluate.models}")
    # Trials score the validation split: every evaluated task needs one (a test set is never
    # tuned on). The testbed has its own; any other task needs `data.validation.<task>`.
    testbed = "synthetic" in (exp.data.train, exp.models.teacher.split(":")[0])
    for task in exp.evaluate.tasks:
        if task in exp.data.validation or (task == "leaf_synthetic" and testbed):
            continue
        raise ConfigError(source, f"data.validation.{task}", None,
                          "trials are scored on a validation split and this task has none: "
                          "name a JSONL of held-out items (never the test set) in the "
                          "experiment's data.validation")


def _is_field(model: type[BaseModel], parts: list[str]) -> bool:
    field = next((f for name, f in model.model_fields.items()
                  if parts[0] in (name, f.alias)), None)
    if field is None:
        return False
    if len(parts) == 1:
        return True
    annotation = field.annotation
    return (isinstance(annotation, type) and issubclass(annotation, BaseModel)
            and _is_field(annotation, parts[1:]))


def _load(base: Path, overrides: list[str], source: str, field: str) -> Experiment:
    """The base experiment under `overrides`; its problems reported against the sweep's field."""
    try:
        return load_experiment(base, overrides)
    except ConfigError as err:
        raise ConfigError(source, field, err.value, f"{err.field}: {err.accepted}") from None


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(str(path), "<file>", str(path), "the sweep file does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(str(path), "<file>", None, f"not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "<file>", type(raw).__name__, "expected a mapping")
    return raw


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()
