"""Per-epoch validation: the distilled student's greedy score on the validation split.

With `distill.validate_each_epoch` and a validation split (the testbed's `validation.jsonl`, or
a run's own), the trainer calls `EpochValidation.after_epoch` at the end of every epoch. The
main process generates greedily for every validation record (left-padded batches of
`evaluate.batch_size`, at most `evaluate.max_gen_toks` new tokens, else the numeric tasks' own
budget), cuts each response at the tasks' stop strings, and counts exact matches of the final
answer the way the `leaf_synthetic` task's strict-match filter does (`extract_strict`, then
`is_correct` against the record's `answer`). It appends {epoch, score, n, seconds} to the
stage's `validation.jsonl`, then, when a watcher is attached (control.py), reports the score
and waits for its verdict; the verdict is broadcast so every process stops together.

No generation cache: the weights change every epoch, so no generation could ever be reused.
Greedy decoding draws no random numbers, so validating leaves training bit-identical.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from leafbench.contract import StageContext, artifact
from leafbench.distill.control import (
    DistillationStopped,
    ask_to_continue,
    control_dir,
    control_timeout,
)
from leafbench.evaluation import extract_strict, is_correct
from leafbench.models import greedy_generate, load_causal_lm
from leafbench.samples import chat_prompt, read_jsonl

VALIDATION_LOG = artifact("distill", "validation")
# The numeric tasks' own budget and stop strings (evaluation/tasks/_leaf_numeric.yaml), used
# when the experiment sets no `evaluate.max_gen_toks`; the tokenizer's eos also ends a response.
TASK_BUDGET = 512
STOP_STRINGS = ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>", "</s>",
                "\n\nQuestion:")


def gold_answer(record: Mapping[str, Any]) -> str:
    """The record's `answer`; for records without one, the final answer of its reference
    response (real validation files hold instruction/response pairs)."""
    if "answer" in record:
        return str(record["answer"])
    found = extract_strict(str(record.get("response", "")))
    if found is None:
        raise ValueError(f"validation record {record.get('id')!r} has no `answer` and its "
                         "response states none (expected 'The answer is N' or '#### N')")
    return found


def truncate(response: str) -> str:
    """The response up to the first stop string, as lm-eval's `until` cuts it."""
    cut = min((i for i in (response.find(s) for s in STOP_STRINGS) if i >= 0), default=None)
    return response if cut is None else response[:cut]


def exact_match(responses: Sequence[str], records: Sequence[Mapping[str, Any]]) -> float:
    """Share of responses whose strict-match answer equals the record's gold answer."""
    hits = sum(is_correct(extract_strict(truncate(r)), gold_answer(rec))
               for r, rec in zip(responses, records, strict=True))
    return hits / max(len(records), 1)


def greedy_responses(model: Any, tokenizer: Any, instructions: Sequence[str],
                     max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy continuations of the chat prompts (`models.greedy_generate`)."""
    prompts = [chat_prompt(tokenizer, x) for x in instructions]
    return greedy_generate(model, tokenizer, prompts, max_new_tokens, batch_size)


class EpochValidation:
    """Scores the student after each epoch, logs the row, and asks the watcher (if any)."""

    def __init__(self, ctx: StageContext, records: list[dict[str, Any]], tokenizer: Any,
                 accelerator: Any) -> None:
        self.ctx, self.records, self.tokenizer, self.acc = ctx, records, tokenizer, accelerator
        evaluate = ctx.exp.evaluate
        self.max_new_tokens = evaluate.max_gen_toks or TASK_BUDGET
        self.batch_size = evaluate.batch_size
        self.path = ctx.out / VALIDATION_LOG
        self.control = control_dir()
        self.timeout = control_timeout()  # read once, so a bad value fails before training

    @classmethod
    def for_run(cls, ctx: StageContext, tokenizer: Any, accelerator: Any
                ) -> EpochValidation | None:
        """The validator when the experiment asks for one and the run has a validation split."""
        if not ctx.exp.distill.validate_each_epoch:
            return None
        split = ctx.refs.validation_jsonl
        if split is None:
            if accelerator.is_main_process:
                print("leafbench: distill.validate_each_epoch is on but this run has no "
                      "validation split; no per-epoch validation", file=sys.stderr, flush=True)
            return None
        return cls(ctx, read_jsonl(split), tokenizer, accelerator)

    def cut_back(self, epochs_done: int) -> None:
        """On resume: drop rows of epochs the restored checkpoint has not finished."""
        if self.acc.is_main_process and self.path.exists():
            kept = [r for r in read_jsonl(self.path, torn_tail_ok=True) if r["epoch"] <= epochs_done]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def after_epoch(self, epoch: int, model: Any) -> None:
        """Score epoch `epoch` (1-based), log it, and stop every process if told to."""
        student = self._student(model)
        carry_on, score = True, 0.0
        if self.acc.is_main_process:
            score = self._score(student, epoch)
            if self.control is not None:
                carry_on = ask_to_continue(self.control, epoch, score, self.timeout)
        carry_on, score = self._share(carry_on, score)
        if not carry_on:
            raise DistillationStopped(epoch, score)

    def last_score(self) -> float | None:
        rows = read_jsonl(self.path) if self.path.exists() else []
        return float(rows[-1]["score"]) if rows else None

    def _score(self, student: Any, epoch: int) -> float:
        start = time.perf_counter()
        was_training = student.training
        student.eval()
        try:
            with self.acc.autocast():
                responses = greedy_responses(student, self.tokenizer,
                                             [r["instruction"] for r in self.records],
                                             self.max_new_tokens, self.batch_size)
        finally:
            student.train(was_training)
        score = exact_match(responses, self.records)
        row = {"epoch": epoch, "score": score, "n": len(self.records),
               "seconds": time.perf_counter() - start}
        with open(self.path, "a") as log:
            log.write(json.dumps(row) + "\n")
        return score

    def _student(self, model: Any) -> Any:
        """The HF student to generate with, on the main process (None elsewhere). Sharded
        wrappers (FSDP, DeepSpeed) hold a slice of each weight per process: gather the full
        state (every process takes part) into a fresh copy on the main process."""
        from accelerate.utils import DistributedType

        if self.acc.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            return self.acc.unwrap_model(model).student if self.acc.is_main_process else None
        state = self.acc.get_state_dict(model)
        if not self.acc.is_main_process:
            return None
        copy = load_causal_lm(self.ctx.refs.student, "float32", str(self.acc.device), shard=False)
        copy.load_state_dict({k.removeprefix("student."): v for k, v in state.items()})
        return copy

    def _share(self, carry_on: bool, score: float) -> tuple[bool, float]:
        """The main process's verdict and score, on every process."""
        if self.acc.num_processes == 1:
            return carry_on, score
        from accelerate.utils import broadcast

        sent = torch.tensor([float(carry_on), score], dtype=torch.float32, device=self.acc.device)
        got = broadcast(sent, from_process=0).cpu()
        return bool(got[0].item()), float(got[1].item())

