"""A quick greedy-decoding check of a testbed model: does it add, or copy the distractor?

Not the project's evaluation (that lives in leafbench.evaluation); this only measures what
the testbed promises: the teacher answers the test split, the student copies the distractor.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from leafbench.samples import chat_prompt
from leafbench.synthetic.corpus import extract_answer


@torch.no_grad()
def greedy_responses(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast,
                     instructions: list[str], max_new_tokens: int = 32, batch_size: int = 64
                     ) -> list[str]:
    """Greedy continuations of the chat prompts, left-padded in batches, stopped at eos."""
    model.eval()
    responses: list[str] = []
    for start in range(0, len(instructions), batch_size):
        prompts = [tokenizer(chat_prompt(tokenizer, text))["input_ids"]
                   for text in instructions[start : start + batch_size]]
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts])
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        # transformers declares `generate` through a decorator mypy reads as a Tensor
        out = model.generate(  # type: ignore[operator]
            input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
            do_sample=False, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id)
        responses += tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return responses


def answer_rates(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, records: list[dict]
                 ) -> dict[str, float]:
    """`accuracy`: the extracted answer is right; `copy_rate`: it is the distractor's number."""
    responses = greedy_responses(model, tokenizer, [r["instruction"] for r in records])
    answers = [extract_answer(text) for text in responses]
    distractors = [r["instruction"][slice(*r["distractor_number_spans"][0])] for r in records]
    n = len(records)
    return {
        "accuracy": sum(a == r["answer"] for a, r in zip(answers, records, strict=True)) / n,
        "copy_rate": sum(a == d for a, d in zip(answers, distractors, strict=True)) / n,
    }


def without_distractors(record: dict) -> str:
    """The instruction with every distractor clause (and the space that joins it) cut out."""
    text = record["instruction"]
    for start, end in sorted(record["distractor_spans"], reverse=True):
        if end < len(text) and text[end] == " ":
            end += 1
        elif start > 0 and text[start - 1] == " ":
            start -= 1
        text = text[:start] + text[end:]
    return text
