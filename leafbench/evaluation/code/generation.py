"""Generate responses for a code task with any lm-eval `LM` (the hf backend's HFLM, vLLM, ...).

`contexts` builds each doc's prompt: the task's chat turns through the model's chat template
(when it has one) followed by the task's `response_prefix` (evalplus pre-fills the start of the
assistant turn), or the raw prompt for a model without a template. `generate_responses` asks the
model for one greedy continuation per doc, with the task's generation budget and stop strings
(`generation_kwargs`, which results.json records as the task's decoding), and returns
``{doc_id: prefix + continuation}``, ready for `scoring.score_responses`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from leafbench.evaluation.code.task import CodeTask

# End-of-turn markers of common chat models (HFLM also stops at the tokenizer's eos token).
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>", "</s>")


def contexts(
    lm: Any, task: CodeTask, docs: Sequence[dict[str, Any]], *, chat: bool | None = None
) -> list[str]:
    """The text each doc's generation continues. `chat` None: use the chat template when the
    model's tokenizer has one."""
    if chat is None:
        chat = getattr(getattr(lm, "tokenizer", None), "chat_template", None) is not None
    out = []
    for doc in docs:
        turns = task.messages(doc)
        if chat:
            text = lm.apply_chat_template(turns, add_generation_prompt=True)
        else:
            text = "\n\n".join(turn["content"] for turn in turns) + "\n\n"
        out.append(text + task.response_prefix)
    return out


def generate_responses(
    lm: Any,
    task: CodeTask,
    docs: Sequence[dict[str, Any]],
    *,
    max_gen_toks: int | None = None,
    chat: bool | None = None,
) -> dict[int, str]:
    """One greedy response per doc: {doc_id: response} (the response prefix included)."""
    from lm_eval.api.instance import Instance

    gen_kwargs = generation_kwargs(task, max_gen_toks)
    requests = [
        Instance(
            request_type="generate_until",
            doc=doc,
            arguments=(context, dict(gen_kwargs)),
            idx=0,
            metadata=(task.name, doc_id, 1),
        )
        for doc_id, (doc, context) in enumerate(zip(docs, contexts(lm, task, docs, chat=chat),
                                                    strict=True))
    ]
    outputs = lm.generate_until(requests)
    return {i: task.response_prefix + text for i, text in enumerate(outputs)}


def generation_kwargs(task: CodeTask, max_gen_toks: int | None = None) -> dict[str, Any]:
    """Greedy, with the task's stop strings and budget (`max_gen_toks` None: the task's own)."""
    return {
        "until": [*END_OF_TURN, *task.stop],
        "max_gen_toks": max_gen_toks or task.max_gen_toks,
        "do_sample": False,
        "temperature": 0.0,
    }
