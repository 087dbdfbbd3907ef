"""The contract between stages: what a stage receives, what it writes, and the rows in it.

Every stage is a function `run(ctx: StageContext) -> dict[str, float]`. The context is the
experiment, the stage's own output directory (a `<key>.partial/` the runner renames into place),
the finished directories of its upstream stages and the resolved models. What a stage writes
into its directory is declared here once, in `ARTIFACTS`: the stage modules write these names,
the next stage reads them, tracking logs the ones marked `logged`, and nobody else spells a file
name. The rows of the JSONL files that cross a stage boundary are the TypedDicts below.

This module is the shared core: it imports no stage and nothing heavy (no torch), so every
layer may depend on it (the layer contracts in `pyproject.toml`, checked by `nox -s lint`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from leafbench.config import Experiment

SUMMARY = "summary.json"  # every stage: the metrics its run returned


@dataclass(frozen=True)
class ModelRefs:
    """What the stages load: model references and data files, plus what identifies them."""

    teacher: str
    student: str
    train_jsonl: Path
    test_jsonl: Path | None
    identity: dict[str, Any]
    validation_jsonl: Path | None = None  # the tuning split, where there is one


@dataclass(frozen=True)
class StageContext:
    """What one stage run receives. `inputs` maps each upstream stage to its finished artifact
    directory; `out` is where this stage writes (renamed into place when it returns)."""

    exp: Experiment
    out: Path
    inputs: dict[str, Path]
    refs: ModelRefs
    workspace: Path


@dataclass
class StageResult:
    """One row of the end-of-run table (stage | status | seconds | cache key) and what the
    stage returned; `path` is its finished artifact directory (files named in `ARTIFACTS`)."""

    name: str
    key: str
    status: str  # "computed" | "cached"
    seconds: float
    path: Path
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Artifacts:
    """The files a stage writes, by role. `logged` are glob patterns, relative to the stage's
    directory, of the small human-readable files that go to MLflow with the stage's run;
    `series` are JSONL logs whose rows (with a `step`) become MLflow metric series."""

    files: dict[str, str]
    logged: tuple[str, ...] = ()
    series: tuple[str, ...] = ()

    def __getitem__(self, role: str) -> str:
        return self.files[role]


ARTIFACTS: dict[str, Artifacts] = {
    "testbed": Artifacts({"metrics": "metrics.json", "config": "config.json"},
                         logged=("*.json",)),
    # τ-independent: g, ĝ and Δ per context unit of every mined sample (`SaliencyRow`).
    "mine": Artifacts({"store": "saliency.jsonl"}),
    "prune": Artifacts({
        "counterfactuals": "counterfactuals.jsonl",  # `CounterfactualItem`, originals included
        "spans": "spans.jsonl",                      # `SpanRecord`, every mined span
        "spans_sample": "spans_sample.jsonl",        # the first spans, for people to read
        "detection": "detection.json",               # P/R/F1 vs true distractors, per τ
        "validation": "validation.jsonl",            # kept/dropped counterfactuals
    }, logged=("spans_sample.jsonl", "detection.json", "validation.jsonl")),
    # The paper's preliminary experiment: per item, correct before / after removing the mined
    # tokens / after removing as many random ones (`leafbench.preliminary`).
    "preliminary": Artifacts({"items": "items.jsonl"}, logged=("items.jsonl",)),
    "teach": Artifacts({"index": "index.json"}),
    "distill": Artifacts({
        "student": "student",                # HF directory with a model card
        "steps": "steps.jsonl",              # loss, l_kd, l_cd, lr, grad_norm per step
        "timing": "timing.jsonl",            # tokens/s per step
        "launch_spec": "launch.json",        # what a launched (multi-process) run reads
        "launch_metrics": "launch_metrics.json",
        "launch_stopped": "launch_stopped.json",  # a launched run stopped by its verdict
        # {epoch, score, n, seconds} per epoch, when `distill.validate_each_epoch` is on
        "validation": "validation.jsonl",
        # {epoch, loss, weights} per epoch, when `distill.select` is `best_validation_loss`
        "selection": "selection.jsonl",
        "best_epoch": "best_epoch",          # the best epoch's weights so far (while training)
    }, logged=("steps.jsonl", "timing.jsonl", "validation.jsonl", "selection.jsonl", "student/*"),
        series=("steps.jsonl", "timing.jsonl")),
    # One directory per role (teacher, student_before, student_after), each an evaluation.
    "evaluate": Artifacts({"results": "results.json", "samples": "samples_{task}.jsonl"},
                          logged=("*/results.json", "*/samples_*.jsonl")),
    "interpret": Artifacts({"attention": "attention.json", "view": "delta_view.html"},
                           logged=("attention.json", "delta_view.html")),
}


def artifact(stage: str, role: str) -> str:
    """The file name a stage writes for `role`; a typo fails loudly here, not as a missing
    file three stages later."""
    return ARTIFACTS[stage][role]


class SaliencyRow(TypedDict, total=False):
    """One mined unit (an instruction, or one response segment with its context)."""

    id: str
    sample_id: str
    level: str                # "instruction" | "response"
    segment: int
    loss_from: int
    loss_to: int | None
    instruction: str
    response: str
    segmentation: str         # "tokens" | "common" (two tokenizers)
    tokens: list[str]
    offsets: list[list[int]]  # character offsets into `sources`' text
    sources: list[str]        # "instruction" | "response" per unit
    g_teacher: list[float]
    g_student: list[float]
    student_surprisal: list[float]
    teacher_norm: list[float]
    student_norm: list[float]
    delta: list[float]
    answer: str
    distractor_spans: list[list[int]]


class CounterfactualItem(TypedDict):
    """A distillation item: an original pair (`kind` "original") or a pruned one."""

    id: str
    original_id: str
    sample_id: str
    level: str
    kind: str                 # "original" | "span" | "collective"
    instruction: str
    response: str
    loss_from: int
    removed: list[list[Any]]  # (source, start, end) cut from the original


class SpanRecord(TypedDict):
    """A maximal run of marked units in one mined row."""

    sample_id: str
    level: str
    segment: int
    source: str
    token_range: list[int]
    char_range: list[int]
    text: str
    delta: float
    teacher_norm: float
    student_norm: float


def digest(payload: Any) -> str:
    """A short stable hash of a JSON-able payload (cache keys)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
