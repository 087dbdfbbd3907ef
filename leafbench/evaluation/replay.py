"""The `replay` backend: score stored responses without a model.

A responses file is JSONL, one line per (task, question), for any task leafbench ships:

    {"task": "leaf_math500", "doc_id": 17, "response": "... \\boxed{3}"}
    {"task": "leaf_leetcode", "doc_id": 3, "responses": ["...", "..."]}   (n samples; code tasks)

`doc_id` is the position of the question in the task's test split (what the `doc_id` of
`samples_<task>.jsonl` from any leafbench run is). `run_replay` scores them through
`harness.evaluate`, exactly the engines, checkers, metrics and files a model run uses: for the
lm_eval tasks `ReplayLM` is the lm-eval `LM` whose `generate_until` answers each request with
the stored response for its (task, doc id); the code engine takes the stored samples as they
are. So a checker change re-scores old generations, responses from another harness are scored
the leafbench way, and the gold self-checks in the tests feed gold solutions through the real
pipeline. results.json names the backend "replay" and, as the model fingerprint, the sha256 of
the responses file.

Mistakes fail before anything is scored, naming the file and line: a line that is not a JSON
object with task, doc_id and response (or responses), a task leafbench does not ship, a
(task, doc id) given twice, several samples for an lm-eval task (lm-eval scores one response per
question), a doc id the task's test set does not have; and a task being evaluated that has no
responses, or has none for some of the docs being scored (the message lists them; `limit`
scores only the first N docs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval.api.model import LM

from leafbench.evaluation.backends import GenerationOnlyError
from leafbench.evaluation.fingerprint import sha256_file
from leafbench.evaluation.grading import DEFAULT_GRADING
from leafbench.evaluation.harness import evaluate, resolve_sources
from leafbench.evaluation.registry import TASKS, get_task, task_list
from leafbench.evaluation.results import EvalRun


@dataclass(frozen=True)
class StoredResponse:
    """One line of a responses file: a question's response, or its n samples."""

    task: str
    doc_id: int
    responses: tuple[str, ...]
    line: int  # 1-based line number in the file, for error messages

    @property
    def response(self) -> str:
        return self.responses[0]


def read_responses(path: str | Path) -> dict[str, dict[int, StoredResponse]]:
    """Parse a responses JSONL into {task: {doc_id: StoredResponse}}, validating every line."""
    path = Path(path)
    by_task: dict[str, dict[int, StoredResponse]] = {}
    with path.open(encoding="utf-8") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            stored = _parse_line(raw, f"{path}:{number}", number)
            seen = by_task.setdefault(stored.task, {})
            if stored.doc_id in seen:
                raise ValueError(
                    f"{path}:{number}: {stored.task} doc_id {stored.doc_id} already has a "
                    f"response on line {seen[stored.doc_id].line}; give each question once"
                )
            seen[stored.doc_id] = stored
    return by_task


def _parse_line(raw: str, where: str, number: int) -> StoredResponse:
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object with task, doc_id, response")
    missing = [k for k in ("task", "doc_id") if k not in record]
    if "response" not in record and "responses" not in record:
        missing.append("response")
    if missing:
        raise ValueError(
            f"{where}: missing field(s) {missing}; each line needs task, doc_id, response "
            f"(or responses, a list of samples)"
        )
    task, doc_id = record["task"], record["doc_id"]
    if task not in TASKS:
        raise ValueError(f"{where}: unknown task {task!r}; expected one of {sorted(TASKS)}")
    if isinstance(doc_id, bool) or not isinstance(doc_id, int) or doc_id < 0:
        raise ValueError(f"{where}: doc_id must be a non-negative integer, got {doc_id!r}")
    if "response" in record and "responses" in record:
        raise ValueError(f"{where}: give exactly one of response (a string) or responses")
    if "response" in record:
        if not isinstance(record["response"], str):
            raise ValueError(f"{where}: response must be a string, got "
                             f"{type(record['response']).__name__}")
        values = [record["response"]]
    else:
        values = record["responses"]
        if not isinstance(values, list) or not values or not all(
            isinstance(v, str) for v in values
        ):
            raise ValueError(f"{where}: responses must be a non-empty list of strings")
    if len(values) > 1 and get_task(task).engine != "code":
        raise ValueError(f"{where}: {task} scores one response per question (lm-eval); "
                         f"got {len(values)} samples")
    return StoredResponse(task, doc_id, tuple(values), number)


class ReplayLM(LM):
    """An lm-eval model that returns stored responses instead of generating."""

    def __init__(
        self,
        responses: Mapping[str, Mapping[int, StoredResponse]],
        *,
        source: str = "responses",
        limit: int | None = None,
    ) -> None:
        super().__init__()
        self.responses = responses
        self.source = source
        self.limit = limit

    def check_tasks(self, tasks: Mapping[str, Any]) -> None:
        """Every stored doc id exists in its task's test set, and every doc to be scored has a
        response. Called by the lm_eval engine with lm-eval's loaded tasks."""
        for name, task in tasks.items():
            stored = self.responses.get(name, {})
            n_docs = len(task.eval_docs)
            for doc_id in sorted(stored):
                if doc_id >= n_docs:
                    raise ValueError(
                        f"{self.source}:{stored[doc_id].line}: {name} has no doc_id {doc_id}; "
                        f"its test set has {n_docs} docs (ids 0-{n_docs - 1})"
                    )
            n_scored = n_docs if self.limit is None else min(self.limit, n_docs)
            self._require(name, range(n_scored))

    def samples(self) -> dict[str, dict[int, tuple[str, ...]]]:
        """{task: {doc_id: samples}}: what the code engine scores."""
        return {task: {d: s.responses for d, s in stored.items()}
                for task, stored in self.responses.items()}

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        wanted: dict[str, list[int]] = {}
        for req in requests:
            wanted.setdefault(req.task_name, []).append(req.doc_id)
        for task, doc_ids in wanted.items():
            self._require(task, doc_ids)
        return [self.responses[req.task_name][req.doc_id].response for req in requests]

    def _require(self, task: str, doc_ids: Sequence[int] | range) -> None:
        stored = self.responses.get(task, {})
        missing = [d for d in doc_ids if d not in stored]
        if missing:
            shown = ", ".join(str(d) for d in missing[:10]) + (", ..." if len(missing) > 10 else "")
            raise ValueError(
                f"{self.source}: {task} has no stored response for {len(missing)} of the "
                f"{len(doc_ids)} docs being scored (doc ids {shown}); add them, or pass "
                f"limit=N to score only the first N docs"
            )

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise GenerationOnlyError("replay")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise GenerationOnlyError("replay")


def run_replay(
    responses_jsonl: str | Path,
    tasks: Sequence[str] | str | None,
    out_dir: str | Path,
    *,
    data_files: Mapping[str, str | Path] | None = None,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    num_fewshot: int | None = None,
    task_options: Mapping[str, Mapping[str, Any]] | None = None,
    grading: str = DEFAULT_GRADING,
) -> dict[str, dict[str, float]]:
    """Score the stored responses in `responses_jsonl` on `tasks` (None or empty: every task
    the file has responses for); responses for other tasks are ignored. Data options, the
    return value and the files written to `out_dir` are those of `run_evaluation`;
    `num_fewshot` rebuilds the prompts the responses answered (lm_eval tasks), `task_options`
    passes a code task's builder options (e.g. {"leaf_livecodebench": {"release": "v2"}})."""
    path = Path(responses_jsonl).expanduser().resolve()
    responses = read_responses(path)
    names = task_list(tasks) or [t for t in TASKS if t in responses]
    if not names:
        raise ValueError(f"{path}: no responses in the file")
    for task in names:
        if not responses.get(task):
            raise ValueError(
                f"{path}: no responses for task {task!r}; the file has responses for "
                f"{sorted(responses) or 'no task'}"
            )
    sources = resolve_sources(names, data_files=data_files, data_dir=data_dir)
    lm = ReplayLM({t: responses[t] for t in names}, source=str(path), limit=limit)
    run = EvalRun(
        lm=lm, out=Path(out_dir), model=f"replay:{path}", backend="replay",
        fingerprint=f"responses:sha256:{sha256_file(path)}", stored=lm.samples(), limit=limit,
        num_fewshot=num_fewshot, chat=False, check_tasks=lm.check_tasks,
        task_options=dict(task_options or {}), settings={"backend": "replay", "responses": str(path)},
        grading=grading,
    )
    return evaluate(run, sources)
