"""Loading teacher and student: a local directory or a Hugging Face hub id, one code path.

The real product loads hub ids such as `meta-llama/Llama-3.3-70B-Instruct`; tests and the demo
load the synthetic testbed's directories. Both go through `from_pretrained`, so nothing in the
pipeline knows which it got. `device_map="auto"` shards a model that does not fit one GPU.
"""

from __future__ import annotations

from typing import Any, cast

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(spec: str) -> str:
    if spec != "auto":
        return spec
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(ref: str) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ref)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(ref: str, dtype: str = "float32", device: str = "auto",
                   shard: bool = True) -> Any:
    """`shard`: spread a model over every visible GPU (frozen teachers, mining). Training
    processes pass False: each holds its model on its own device and the data-parallel wrapper
    decides the sharding."""
    from transformers import AutoModelForCausalLM

    device = resolve_device(device)
    kwargs: dict[str, Any] = {"dtype": DTYPES[dtype]}
    if shard and device == "cuda" and torch.cuda.device_count() > 1:
        kwargs["device_map"] = "auto"
    model = AutoModelForCausalLM.from_pretrained(ref, **kwargs)
    if "device_map" not in kwargs:
        # transformers' typed wrapper around `.to` mis-declares its first argument
        cast(Any, model).to(device)
    return model


@torch.no_grad()
def greedy_generate(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int,
                    batch_size: int) -> list[str]:
    """Greedy continuations of already rendered prompts (their template carries the bos), in
    left-padded batches; each stops at eos. The tokenizer's padding side is restored: callers
    save this tokenizer with their models."""
    device = next(model.parameters()).device
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    out: list[str] = []
    try:
        for i in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(device)
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
            out += tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:],
                                          skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return out
