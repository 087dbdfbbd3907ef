"""Decoder shapes the cost model needs, without loading a model.

The paper's five models are shipped as a table (`PAPER_MODELS`): the values of each model's
published `config.json` on the Hugging Face hub (hidden_size, intermediate_size,
num_hidden_layers, num_attention_heads, num_key_value_heads, vocab_size, tie_word_embeddings;
Qwen2 adds biases to the q, k and v projections) and the size its model card states. The
parameter count is *computed* from the shapes (`Architecture.parameters`), and the tests check
it against the published size, so a mistyped shape cannot hide.

A local model directory is read from its `config.json`; the testbed's two models from the
experiment's `synthetic:` section (leafbench.synthetic.models builds them: Llama layers,
intermediate = 4 × hidden, as many key/value heads as heads, tied embeddings, the tokenizer's
vocabulary).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from leafbench.errors import ConfigError
from leafbench.testbed_settings import SyntheticConfig

CONFIG_SOURCE = "the model's published config.json on the Hugging Face hub"


@dataclass(frozen=True)
class Architecture:
    """A Llama / Qwen2-style decoder: pre-norm layers of grouped-query attention and a SwiGLU
    MLP. `vocab` is the embedding matrix's rows (config vocab_size); `tokenizer_vocab` the
    tokenizer's real size, which is what the teacher cache stores per position."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tokenizer_vocab: int
    tied_embeddings: bool
    qkv_bias: bool = False
    head_dim: int | None = None  # None: hidden / heads
    published_parameters: float | None = None  # the model card's size, for the check
    source: str = CONFIG_SOURCE

    @property
    def attention_dim(self) -> int:
        """heads × head_dim: the width of the queries (and of the attention output)."""
        return self.heads * (self.head_dim or self.hidden // self.heads)

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * (self.head_dim or self.hidden // self.heads)

    @property
    def layer_parameters(self) -> int:
        """One decoder layer: q, k, v, o projections (+ q/k/v biases), gate/up/down of the MLP,
        two RMSNorm weights."""
        h, a, kv, i = self.hidden, self.attention_dim, self.kv_dim, self.intermediate
        attention = h * a + 2 * h * kv + a * h + ((a + 2 * kv) if self.qkv_bias else 0)
        return attention + 3 * h * i + 2 * h

    @property
    def body_parameters(self) -> int:
        """Every parameter a token's hidden state passes through except the embedding lookup and
        the output head: the layers and the final norm. These cost 2 FLOPs each per token."""
        return self.layers * self.layer_parameters + self.hidden

    @property
    def head_parameters(self) -> int:
        """The output projection hidden -> vocab (shared with the embedding when tied)."""
        return self.hidden * self.vocab

    @property
    def parameters(self) -> int:
        """All stored parameters: embedding, layers, final norm, and the head unless tied."""
        head = 0 if self.tied_embeddings else self.head_parameters
        return self.vocab * self.hidden + self.body_parameters + head


# The published config.json of each model (hub id -> shapes); sizes from the model cards.
PAPER_MODELS: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("meta-llama/Llama-3.3-70B-Instruct", layers=80, hidden=8192,
                     intermediate=28672, heads=64, kv_heads=8, vocab=128256,
                     tokenizer_vocab=128256, tied_embeddings=False, published_parameters=70.6e9),
        Architecture("meta-llama/Llama-3.2-1B-Instruct", layers=16, hidden=2048,
                     intermediate=8192, heads=32, kv_heads=8, vocab=128256,
                     tokenizer_vocab=128256, tied_embeddings=True, head_dim=64,
                     published_parameters=1.23e9),
        Architecture("meta-llama/Llama-3.2-3B-Instruct", layers=28, hidden=3072,
                     intermediate=8192, heads=24, kv_heads=8, vocab=128256,
                     tokenizer_vocab=128256, tied_embeddings=True, head_dim=128,
                     published_parameters=3.21e9),
        Architecture("Qwen/Qwen2.5-72B-Instruct", layers=80, hidden=8192, intermediate=29568,
                     heads=64, kv_heads=8, vocab=152064, tokenizer_vocab=151665,
                     tied_embeddings=False, qkv_bias=True, published_parameters=72.7e9),
        Architecture("Qwen/Qwen2.5-Math-1.5B", layers=28, hidden=1536, intermediate=8960,
                     heads=12, kv_heads=2, vocab=151936, tokenizer_vocab=151665,
                     tied_embeddings=True, qkv_bias=True, published_parameters=1.54e9),
    )
}


def testbed_architecture(synthetic: SyntheticConfig, role: str) -> Architecture:
    """The testbed's teacher or student as leafbench.synthetic.models.tiny_llama builds it."""
    shape = synthetic.teacher if role == "teacher" else synthetic.student
    return Architecture(f"synthetic:{role}", layers=shape.layers, hidden=shape.hidden,
                        intermediate=4 * shape.hidden, heads=shape.heads, kv_heads=shape.heads,
                        vocab=synthetic.vocab_size, tokenizer_vocab=synthetic.vocab_size,
                        tied_embeddings=True,
                        source="the experiment's synthetic section (leafbench.synthetic.models)")


def from_config_json(path: Path) -> Architecture:
    """A local model's shapes from its config.json (Llama, Qwen2, Mistral and alike)."""
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
        heads = int(cfg["num_attention_heads"])
        vocab = int(cfg["vocab_size"])
        return Architecture(
            str(path.parent), layers=int(cfg["num_hidden_layers"]),
            hidden=int(cfg["hidden_size"]), intermediate=int(cfg["intermediate_size"]),
            heads=heads, kv_heads=int(cfg.get("num_key_value_heads") or heads), vocab=vocab,
            tokenizer_vocab=vocab, tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            qkv_bias=bool(cfg.get("attention_bias", cfg.get("model_type") == "qwen2")),
            head_dim=cfg.get("head_dim"), source=str(path))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(str(path), "<file>", str(path),
                          f"expected a decoder's config.json with hidden_size, "
                          f"intermediate_size, num_hidden_layers, num_attention_heads and "
                          f"vocab_size ({type(err).__name__}: {err})") from None


def resolve_architecture(ref: str, synthetic: SyntheticConfig, field: str,
                         source: str) -> Architecture:
    """`synthetic:*`, a local directory with config.json, or one of the shipped hub ids."""
    if ref.startswith("synthetic:"):
        return testbed_architecture(synthetic, ref.removeprefix("synthetic:"))
    local = Path(ref).expanduser()
    if local.is_dir():
        return from_config_json(local / "config.json")
    if ref in PAPER_MODELS:
        return PAPER_MODELS[ref]
    raise ConfigError(source, field, ref,
                      "the plan knows the testbed, local model directories (config.json) and "
                      f"the shipped hub ids {sorted(PAPER_MODELS)}; give a local directory "
                      "holding the model's config.json")
