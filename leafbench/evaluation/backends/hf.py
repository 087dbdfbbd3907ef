"""The `hf` backend: lm-eval's own HFLM (transformers, batched greedy `generate`)."""

from __future__ import annotations

from typing import Any


def load(
    model: str,
    *,
    revision: str | None = None,
    device: str = "cpu",
    batch_size: int = 32,
    dtype: str = "auto",
    seed: int = 0,
    max_gen_toks: int = 256,
    **options: Any,
):
    """HFLM for a local dir (pass it as an absolute path: a relative one looks like a hub id and
    lm-eval would ask the hub for its sha) or a hub id at `revision`. `options` go to HFLM."""
    from lm_eval.models.huggingface import HFLM

    # Greedy decoding, and lm-eval seeds torch itself; every request reaching this LM carries
    # its max_gen_toks (GenerationLM fills in the default), so HFLM's own default is unused.
    del seed, max_gen_toks
    if revision is not None:
        options["revision"] = revision
    lm = HFLM(pretrained=model, device=device, batch_size=batch_size, dtype=dtype, **options)
    # HFLM asks for max_length = prompt + max_gen_toks, and transformers lets a
    # generation_config.json's max_new_tokens win over it (with a warning every batch): the
    # testbed's models say 32, some hub models more, and the request's budget was ignored.
    lm.model.generation_config.max_new_tokens = None
    return lm
