"""Tiny Llama-architecture models for the testbed, built from a `TinyModelConfig`.

The architecture is the one real LeaF students and teachers use (LlamaForCausalLM), only
small enough to pretrain on a CPU in seconds, so every later stage runs the same code path on
the testbed as on a hub model.
"""

from __future__ import annotations

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from leafbench.testbed_settings import TinyModelConfig

MAX_POSITIONS = 256  # problems are ~50 tokens; room for counterfactuals and long generations


def tiny_llama(shape: TinyModelConfig, tokenizer: PreTrainedTokenizerFast, seed: int
               ) -> LlamaForCausalLM:
    """A freshly initialised model whose vocabulary and special ids match `tokenizer`;
    `seed` fixes the initial weights."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden,
        intermediate_size=4 * shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=32,
    )
    return model
