"""A leaderboard entry: one model's evaluation, kept item by item, in one untrusted JSON file.

Two kinds (`Entry.kind`):

- ``evaluation``: built by `from_results` from an evaluation directory (`leafbench eval`, a
  replay, or a pipeline run's ``artifacts/evaluate/<key>/<role>``). Per task it keeps the score
  with its 95% interval and n, and each item's verdicts (`TaskScore.doc_ids` and
  `TaskScore.correct`, one list of 0/1 per item: several when the item was sampled several
  times), the data and document hashes, the grading mode and the decoding: everything the gate
  needs to compare two models item by item, and to refuse comparing what does not line up.
- ``reference``: published numbers only (score and n per task, `Entry.source` naming where
  they were published), e.g. the paper's table. The gate never compares against one item by
  item; the page shows it for orientation.

Entries arrive from many branches, so a file is data to check, never to trust: `load_entry`
reads at most `MAX_FILE_BYTES`, parses JSON (nothing is ever executed or unpickled), and
validates every field against this strict schema: types, sizes, a label that cannot be a path,
item lists whose length is n and whose verdicts average to the score. Its errors name the file
and the field.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from leafbench.errors import ConfigError

SCHEMA_VERSION = 1
MAX_FILE_BYTES = 64 * 2**20   # a board entry for every shipped task at 16 samples is ~10 MB
MAX_ITEMS = 100_000           # items per task (the largest shipped test set has 1,319)
MAX_SAMPLES = 1_000           # samples per item
SCORE_TOLERANCE = 1e-6        # stored score vs the mean of the stored verdicts

Text = Annotated[str, StringConstraints(max_length=500)]
Hash = Annotated[str, StringConstraints(max_length=200, pattern=r"^[A-Za-z0-9:_.\-]+$")]


def check_label(label: str) -> str:
    """A label is shown on the page and named on the command line; it must never be a path.
    Any printable text up to 100 characters, without path separators, not starting with a dot."""
    if not 1 <= len(label) <= 100:
        raise ValueError("a label has 1 to 100 characters")
    if any(c in label for c in "/\\") or label.startswith(".") or not label.isprintable():
        raise ValueError("a label may not contain / or \\, start with a dot, or hold control "
                         "characters (it must not look like a path)")
    return label


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class TaskScore(_Strict):
    """One task of an entry. Evaluation entries have every field; reference entries only the
    score, n and metric."""

    metric: Text
    score: Annotated[float, Field(ge=0.0, le=1.0)]
    n: Annotated[int, Field(ge=1, le=MAX_ITEMS)]
    ci95: tuple[float, float] | None = None
    grading_mode: Text | None = None
    data_sha256: Hash | None = None
    docs_sha256: Hash | None = None
    decoding: dict[str, Any] | None = None
    options: dict[str, Any] | None = None  # a code task's builder options (LiveCodeBench window)
    doc_ids: list[Annotated[int, Field(ge=0)]] | None = None
    correct: list[list[Literal[0, 1]]] | None = None

    @field_validator("doc_ids")
    @classmethod
    def _distinct(cls, ids: list[int] | None) -> list[int] | None:
        if ids is not None and len(set(ids)) != len(ids):
            raise ValueError("doc ids repeat")
        return ids

    @model_validator(mode="after")
    def _items_explain_score(self) -> TaskScore:
        if (self.doc_ids is None) != (self.correct is None):
            raise ValueError("doc_ids and correct come together")
        if self.correct is None:
            return self
        assert self.doc_ids is not None
        if len(self.doc_ids) != self.n or len(self.correct) != self.n:
            raise ValueError(f"n is {self.n} but there are {len(self.doc_ids)} doc ids and "
                             f"{len(self.correct)} item verdict lists")
        if any(not 1 <= len(v) <= MAX_SAMPLES for v in self.correct):
            raise ValueError(f"every item has 1 to {MAX_SAMPLES} verdicts")
        mean = sum(sum(v) / len(v) for v in self.correct) / self.n
        if abs(mean - self.score) > SCORE_TOLERANCE:
            raise ValueError(f"score is {self.score} but the item verdicts average {mean}")
        if self.ci95 is not None and not self.ci95[0] <= self.score <= self.ci95[1]:
            raise ValueError(f"ci95 {list(self.ci95)} does not contain the score {self.score}")
        return self

    @property
    def samples_per_item(self) -> int:
        return max((len(v) for v in self.correct or []), default=1)

    def verdicts(self) -> dict[int, list[int]]:
        """{doc_id: that item's verdicts}."""
        return {d: list(v) for d, v in zip(self.doc_ids or [], self.correct or [], strict=True)}


class Entry(_Strict):
    schema_version: Literal[1] = Field(1, alias="schema")
    kind: Literal["evaluation", "reference"]
    label: Text
    date: Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}(T[0-9:.+\-Z]{0,40})?$")]
    source: Text | None = None
    model: Text | None = None
    model_fingerprint: Hash | None = None
    config_hash: Hash | None = None
    leafbench_version: Text | None = None
    git_commit: Hash | None = None
    backend: Text | None = None
    versions: dict[Text, Text | None] = {}
    tasks: Annotated[dict[Text, TaskScore], Field(min_length=1, max_length=100)]

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False,
                              populate_by_name=True)

    @field_validator("label")
    @classmethod
    def _label(cls, label: str) -> str:
        return check_label(label)

    @model_validator(mode="after")
    def _kind(self) -> Entry:
        for name, task in self.tasks.items():
            if self.kind == "evaluation" and task.correct is None:
                raise ValueError(f"tasks.{name}: an evaluation entry keeps every item's verdicts")
            if self.kind == "reference" and task.correct is not None:
                raise ValueError(f"tasks.{name}: a reference entry holds published numbers only")
        if self.kind == "reference" and not self.source:
            raise ValueError("a reference entry names its source")
        return self

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True, mode="json"), indent=1,
                          sort_keys=True) + "\n"


def file_name(label: str) -> str:
    """The entry's file in its board: readable, safe on every file system, one per label."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_.")[:60] or "entry"
    return f"{slug}-{hashlib.sha256(label.encode()).hexdigest()[:10]}.json"


def load_entry(path: Path) -> Entry:
    """The entry in `path`, checked (the module docstring); a ConfigError names the file and
    the field otherwise."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ConfigError(str(path), "<file>", f"{size} bytes",
                          f"an entry file holds at most {MAX_FILE_BYTES} bytes")
    try:
        raw = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(str(path), "<file>", path.name, f"not valid JSON: {err}") from None
    return parse_entry(raw, str(path))


def parse_entry(raw: Any, source: str) -> Entry:
    if not isinstance(raw, dict):
        raise ConfigError(source, "<root>", type(raw).__name__, "expected a JSON object")
    try:  # JSON mode: strict types as JSON has them (a list is a pair, an int no string)
        return Entry.model_validate_json(json.dumps(raw))
    except ValidationError as err:
        raise schema_error(source, err) from None


def schema_error(source: str, err: ValidationError) -> ConfigError:
    """The first thing pydantic objected to, as the one-line error that names file and field."""
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "<root>"
    value = first.get("input")
    shown = value if isinstance(value, (int, float, str, bool)) or value is None \
        else type(value).__name__
    return ConfigError(source, field, shown, first["msg"])


# ------------------------------------------------------------------ from an evaluation folder
def from_results(folder: Path, label: str) -> Entry:
    """An evaluation entry from `folder`'s results.json and samples files (the result schema,
    `leafbench.evaluation.results`)."""
    results_file = folder / "results.json"
    if not results_file.is_file():
        roles = sorted(p.name for p in folder.glob("*/results.json"))
        hint = (f"; it holds the evaluations of {[Path(r).parent.name for r in roles]}: name one"
                if roles else "")
        raise ConfigError(str(folder), "RESULTS", str(folder),
                          f"expected an evaluation directory holding results.json{hint}")
    run = json.loads(results_file.read_text())
    replay = run.get("backend") == "replay"
    tasks = {name: _task_score(folder, name, body) for name, body in run["results"].items()}
    raw = {
        "schema": SCHEMA_VERSION, "kind": "evaluation", "label": label,
        "date": _evaluation_date(results_file),
        "source": None,
        "model": str(run.get("model")),
        "model_fingerprint": None if replay else run.get("model_fingerprint"),
        "config_hash": None if replay else _config_hash(folder, run),
        "leafbench_version": (run.get("versions") or {}).get("leafbench"),
        "git_commit": git_commit(),
        "backend": run.get("backend"),
        "versions": {k: None if v is None else str(v) for k, v in (run.get("versions") or {}).items()},
        "tasks": tasks,
    }
    return parse_entry(raw, str(results_file))


def _task_score(folder: Path, name: str, body: dict[str, Any]) -> dict[str, Any]:
    by_item: dict[int, list[int]] = {}
    samples = folder / f"samples_{name}.jsonl"
    with open(samples, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            by_item.setdefault(int(row["doc_id"]), []).append(int(bool(row["correct"])))
    doc_ids = sorted(by_item)
    _check_data_unchanged(folder, name, body)
    return {
        "metric": body["metric"], "score": float(body["score"]), "n": int(body["n"]),
        "ci95": [float(x) for x in body["ci95"]],
        "grading_mode": body.get("grading_mode", "strict"),
        "data_sha256": body.get("data_sha256"), "docs_sha256": body.get("docs_sha256"),
        "decoding": body.get("decoding"), "options": body.get("task_options"),
        "doc_ids": doc_ids, "correct": [by_item[d] for d in doc_ids],
    }


def _check_data_unchanged(folder: Path, name: str, body: dict[str, Any]) -> None:
    """The task's data file, when it is still on this machine, must be the one evaluated: an
    entry whose items no longer match its data hash would be compared with the wrong items."""
    from leafbench.evaluation.results import data_sha256

    recorded, data = body.get("data_sha256"), Path(str(body.get("data")))
    if recorded is None or not data.exists():
        return
    if data_sha256(data) != recorded:
        raise ConfigError(str(folder / "results.json"), f"results.{name}.data_sha256", recorded,
                          f"the data file {data} has changed since this evaluation "
                          f"(its sha256 is now {data_sha256(data)}): evaluate again")


def _evaluation_date(results_file: Path) -> str:
    """When the evaluation was written (results.json's time, UTC): the entry's date, so that
    rendering a board never depends on when it is rendered."""
    stamp = datetime.fromtimestamp(results_file.stat().st_mtime, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _config_hash(folder: Path, run: dict[str, Any]) -> str | None:
    """What configured the evaluation: a pipeline run's evaluation stage key (the folder above
    the role's, which hashes every setting and upstream artifact that decides the scores), or
    for `leafbench eval` the sha256 of results.json's settings."""
    key = folder.parent.name
    if folder.parent.parent.name == "evaluate" and re.fullmatch(r"[0-9a-f]{16}", key):
        return f"stage:{key}"
    settings = run.get("settings")
    if not settings:
        return None
    text = json.dumps(settings, sort_keys=True, default=str)
    return "settings:sha256:" + hashlib.sha256(text.encode()).hexdigest()


def git_commit() -> str | None:
    """The commit of the leafbench checkout in use; None for an installed copy."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def reference(label: str, source: str, date: str, tasks: dict[str, dict[str, Any]]) -> Entry:
    """A reference entry: published `{task: {score, n, metric, options}}` from `source`
    (`options`: what decided the items, e.g. LiveCodeBench's release and date window)."""
    raw = {"schema": SCHEMA_VERSION, "kind": "reference", "label": label, "date": date,
           "source": source,
           "tasks": {name: {"metric": str(t.get("metric", "score")), "score": t["score"],
                            "n": t["n"], "options": t.get("options")}
                     for name, t in tasks.items()}}
    return parse_entry(raw, f"reference {label!r}")

