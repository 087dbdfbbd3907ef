"""The cost model's formulas, one function each. Notation, per model:

  N   body parameters: the decoder layers and final norm (`Architecture.body_parameters`);
      the embedding lookup costs no FLOPs, the output head is counted apart because the
      pipeline applies it only where a loss or a logit is needed
  L   tokens in a sequence (prompt + response + EOS, capped at data.max_length)
  H   positions whose logits are computed (response tokens for a loss, 1 for a prefill)
  n_l layers, d model width, d_a = heads × head_dim, d_kv = kv_heads × head_dim, I MLP width,
  V   vocabulary (embedding rows)

Forward FLOPs of one sequence (a multiply-add = 2 FLOPs; Kaplan et al. 2020, "Scaling laws for
neural language models", Table 1, with causal masking counted as computed by fused kernels):

  F_fwd = 2·N·L  +  2·n_l·L²·d_a  +  2·d·V·H
          matmuls   QKᵀ and A·V over the causal half (2·L²·d_a / 2 each)   output head

Backward FLOPs. Every matmul y = x·W has two gradient products, ∂x = ∂y·Wᵀ and ∂W = xᵀ·∂y, each
as costly as the forward product, so with weight gradients (training) the backward is twice the
forward: F_bwd = 2·F_fwd (the usual "6·N per token" for forward + backward). Mining needs only
∂ℓ/∂e, the gradient at the input embeddings: the weights are constants, ∂W is never formed and
each matmul's backward is the one product ∂x — as costly as its forward. Attention's core has no
weights; its backward still forms ∂Q, ∂K, ∂V (twice its forward) either way:

  F_bwd,weights = 4·N·L + 4·n_l·L²·d_a + 4·d·V·H
  F_bwd,input   = 2·N·L + 4·n_l·L²·d_a + 2·d·V·H

Gradient checkpointing recomputes the forward of every layer during the backward: + F_fwd.

Generation with a KV cache: a prefill forward of the P prompt tokens, then per new token one
position's forward whose attention reads the whole context (no causal half: one query, every
key): 2·N + 2·d·V + 4·n_l·c·d_a at context c, summed over c = P+1 … P+G:

  F_gen = F_fwd(P, H=1) + G·(2·N + 2·d·V) + 4·n_l·d_a·G·(P + (G+1)/2)

Memory: bytes per parameter by dtype; full-parameter AdamW in leafbench's trainer keeps fp32
master weights (4 bytes), fp32 gradients (4) and two fp32 moments (8) = 16 bytes per parameter
(bf16 compute comes from autocast), split over the processes by ZeRO-3 / FSDP. Activations kept
for the backward are counted per token and layer as the tensors autograd saves in a pre-norm
SwiGLU layer with a fused attention kernel (which keeps Q, K, V and the output, not the L×L
scores): an estimate, good to tens of per cent, not an allocator trace.
"""

from __future__ import annotations

import math

from leafbench.plan.architectures import Architecture

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
ADAMW_BYTES_PER_PARAM = 16  # fp32 weights 4 + fp32 gradients 4 + Adam m and v 4 + 4
LOGIT_BYTES = 4  # logits are taken to float32 for every softmax and divergence
SECONDS_PER_HOUR = 3600.0


def forward_flops(arch: Architecture, length: float, logit_positions: float) -> float:
    """F_fwd = 2·N·L + 2·n_l·L²·d_a + 2·d·V·H for one sequence of L tokens, logits at H."""
    return (2 * arch.body_parameters * length
            + 2 * arch.layers * length**2 * arch.attention_dim
            + 2 * arch.head_parameters * logit_positions)


def backward_flops(arch: Architecture, length: float, logit_positions: float,
                   weight_gradients: bool = True) -> float:
    """F_bwd = 2·F_fwd with weight gradients (training); without them (mining's ∂ℓ/∂e) every
    weight matmul costs one product instead of two: 2·N·L + 4·n_l·L²·d_a + 2·d·V·H."""
    if weight_gradients:
        return 2 * forward_flops(arch, length, logit_positions)
    return (2 * arch.body_parameters * length
            + 4 * arch.layers * length**2 * arch.attention_dim
            + 2 * arch.head_parameters * logit_positions)


def generation_flops(arch: Architecture, prompt: float, generated: float) -> float:
    """F_gen = F_fwd(P, 1) + G·(2·N + 2·d·V) + 4·n_l·d_a·G·(P + (G+1)/2): a prefill, then G
    single-position steps each attending over the whole cached context."""
    steps = generated * (2 * arch.body_parameters + 2 * arch.head_parameters)
    attention = 4 * arch.layers * arch.attention_dim * generated * (prompt + (generated + 1) / 2)
    return forward_flops(arch, prompt, 1) + steps + attention


def weight_bytes(arch: Architecture, dtype: str) -> float:
    """Stored parameters × bytes of the dtype."""
    return arch.parameters * DTYPE_BYTES[dtype]


def training_state_bytes(arch: Architecture, processes: int, sharding: str) -> float:
    """Full-parameter AdamW per process: 16 bytes per parameter (fp32 weights, gradients, m, v).
    `zero3` / `fsdp` shard all of it over the processes; `zero2` shards gradients and moments
    (12 bytes) and keeps the 4-byte weights whole; `none` (plain data parallel) keeps all 16."""
    p = arch.parameters
    if sharding in ("zero3", "fsdp"):
        return ADAMW_BYTES_PER_PARAM * p / processes
    if sharding == "zero2":
        return 4 * p + (ADAMW_BYTES_PER_PARAM - 4) * p / processes
    return float(ADAMW_BYTES_PER_PARAM * p)


def activation_bytes_per_token(arch: Architecture, dtype: str, weight_gradients: bool) -> float:
    """Bytes autograd keeps per token for the backward, summed over the layers.

    With weight gradients each layer keeps both norms' inputs and outputs (4·d), Q, K, V and the
    attention output (2·d_a + 2·d_kv) and the MLP's gate, up, activation and product (4·I).
    For ∂ℓ/∂e alone the matmuls' inputs are not needed (∂x = ∂y·Wᵀ uses only the weights): the
    norms' inputs (2·d), the attention tensors (2·d_a + 2·d_kv) and gate, up, activation (3·I).
    """
    d, a, kv, i = arch.hidden, arch.attention_dim, arch.kv_dim, arch.intermediate
    per_layer = (4 * d + 2 * a + 2 * kv + 4 * i) if weight_gradients else \
        (2 * d + 2 * a + 2 * kv + 3 * i)
    return per_layer * arch.layers * DTYPE_BYTES[dtype]


def checkpointed_activation_bytes_per_token(arch: Architecture, dtype: str) -> float:
    """With gradient checkpointing only each layer's input is kept (d per layer), plus one
    layer's full set while that layer is recomputed."""
    full_one_layer = activation_bytes_per_token(arch, dtype, True) / arch.layers
    return arch.hidden * arch.layers * DTYPE_BYTES[dtype] + full_one_layer


def logit_bytes(arch: Architecture, positions: float, copies: int = 3) -> float:
    """float32 logits at `positions`, with `copies` live at once (logits, log-softmax and their
    gradient)."""
    return copies * positions * arch.vocab * LOGIT_BYTES


def kv_cache_bytes(arch: Architecture, dtype: str, tokens: float) -> float:
    """Keys and values of every layer for `tokens` cached positions: 2·n_l·d_kv per token."""
    return 2 * arch.layers * arch.kv_dim * tokens * DTYPE_BYTES[dtype]


def teacher_cache_bytes(mode: str, positions: float, vocab: int, k: int) -> float:
    """The `teach` stage's shards (leafbench.distill.teacher_cache): `exact` stores float32
    logits over the tokenizer's vocabulary, 4·V bytes per response position; `topk` stores k
    float32 log-probabilities and k int32 token ids, 8·k bytes (the tail mass is implied:
    1 − Σ top-k, never stored); `off` stores nothing."""
    per_position = {"exact": LOGIT_BYTES * vocab, "topk": 8 * k, "off": 0}[mode]
    return positions * per_position


def gpus_to_hold(total_bytes: float, gpu_memory_gb: float, usable: float = 0.9) -> int:
    """GPUs a model spread with device_map needs: ⌈bytes / (usable × memory)⌉ — 10% is left to
    the CUDA context, the allocator's fragmentation and the layers' uneven split."""
    return max(1, math.ceil(total_bytes / (usable * gpu_memory_gb * 1e9)))


def gpu_hours(flops: float, peak_flops: float, utilisation: float) -> float:
    """FLOPs / (peak × utilisation), in hours of one GPU."""
    return flops / (peak_flops * utilisation) / SECONDS_PER_HOUR


def memory_bound_hours(bytes_read: float, bandwidth: float, utilisation: float) -> float:
    """Bytes read / (bandwidth × utilisation), in GPU-hours: decoding reads every weight (and
    the KV cache) once per step, whatever the batch, so small batches are bandwidth-bound."""
    return bytes_read / (bandwidth * utilisation) / SECONDS_PER_HOUR
