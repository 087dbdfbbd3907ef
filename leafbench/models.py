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
