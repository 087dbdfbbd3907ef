"""The paper's optional validation of mined spans.

A span is kept only if, with it removed, *both* teacher and student answer correctly (greedy
generation, then the answer checker). The reasoning: a true confounder misleads the student and
carries nothing the answer needs, so removing it must not make the problem unsolvable; a span
whose removal breaks the teacher was information, not distraction. Every span's outcome is
recorded, kept or not, so the filter can be audited.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from leafbench.evaluation import extract_flexible, extract_strict, is_correct
from leafbench.models import greedy_generate
from leafbench.samples import render_prompt


def _numeric(response: str, gold: str) -> bool:
    """The strict marker answer if present, else the last number (GSM8K-style checking)."""
    extracted = extract_strict(response) or extract_flexible(response)
    return is_correct(extracted, gold)


def _boxed(response: str, gold: str) -> bool:
    from leafbench.evaluation import extract_boxed, is_equivalent

    answer = extract_boxed(response)
    return answer is not None and is_equivalent(answer, gold)


CHECKERS: dict[str, Callable[[str, str], bool]] = {"numeric": _numeric, "boxed": _boxed}


def greedy_answers(model: Any, tokenizer: Any, instructions: list[str], max_new_tokens: int,
                   batch_size: int = 32) -> list[str]:
    """Greedy responses to the rendered prompts, left-padded batches; generation stops at EOS."""
    prompts = [render_prompt(tokenizer, inst)[0] for inst in instructions]
    return greedy_generate(model, tokenizer, prompts, max_new_tokens, batch_size)


def validate_counterfactuals(items: Sequence[Mapping[str, Any]], golds: dict[str, str], teacher: Any,
                             student: Any, tokenizer: Any, checker: str,
                             max_new_tokens: int, teacher_tokenizer: Any = None
                             ) -> list[dict[str, Any]]:
    """Per counterfactual item: did teacher and student answer it correctly; is it kept?
    Each model generates through its own tokenizer (`teacher_tokenizer` when they differ)."""
    check = CHECKERS[checker]
    instructions = [it["instruction"] for it in items]
    t_resp = greedy_answers(teacher, teacher_tokenizer or tokenizer, instructions, max_new_tokens)
    s_resp = greedy_answers(student, tokenizer, instructions, max_new_tokens)
    outcomes = []
    for it, tr, sr in zip(items, t_resp, s_resp, strict=True):
        gold = golds[it["sample_id"]]
        t_ok, s_ok = check(tr, gold), check(sr, gold)
        outcomes.append({"id": it["id"], "teacher_correct": t_ok, "student_correct": s_ok,
                         "kept": t_ok and s_ok, "teacher_response": tr, "student_response": sr})
    return outcomes
