"""Attention mass on mined confounding tokens: does LeaF make the student look away from them?

The paper claims causal attention distillation suppresses the student's attention to the
confounders that mining found. This module measures it. For one model and one sample
(instruction X, response y, the character ranges of the mined spans in X):

    mass = mean over layers l, heads h and query positions q of  Σ_{k ∈ M} A^{l,h}[q, k]

where A^{l,h} is the softmax attention of head h in layer l, M the context positions whose token
overlaps a mined span, and q runs over the positions that *predict* a response token (q = t − 1
for every response token t, EOS included). Those are the positions where the distillation loss
is taken, so the number is the attention that produced the distributions LeaF trains on. Every
sample weighs the same, however long its response: per-sample means are averaged over samples.

Two companions make the number readable:
  normalised mass    mass / (n_mined / n_context): 1 means the mined tokens get exactly their
                     share of the instruction's tokens, > 1 that they are over-attended. Without
                     it a one-token span and a ten-token span would not be comparable.
  non-mined mass     the same sum over the instruction's other tokens (and its normalised form),
                     so a fall of the mined mass can be told apart from attention leaving the
                     whole instruction (for the template or the response so far).
The three parts — mined, non-mined instruction, everything else — sum to 1 for every query row.
Spans are character ranges, re-mapped onto the measured model's own tokens, so the measure does
not care whether mining scored tokens or a common segmentation of two tokenizers.

Two implementation choices matter for the numbers:
  * Eager attention. SDPA and flash kernels never materialise the weights, and transformers
    returns none from them; `eager_attention` switches the model for the call and restores it.
  * Right padding. Llama-family models number positions from the cache position, not from the
    attention mask, so left padding would shift the rotary positions of every shorter row and
    change its weights. With right padding a row's real tokens sit at positions 0..n-1 exactly as
    when it runs alone, causal masking keeps the pads out of every real query's keys, and the pad
    query rows are never read: batching leaves every number as it is alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from statistics import fmean
from typing import Any

import torch

from leafbench.mining import token_in_spans
from leafbench.samples import EncodedPair, batches, encode_pair, pad_batch

# Key groups, in the order `key_group_mass` reports them.
MINED, NON_MINED, REST = 0, 1, 2


@dataclass(frozen=True)
class MinedSample:
    """One pair and the character ranges [start, end) of its mined spans in the instruction."""

    id: str
    instruction: str
    response: str
    spans: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class SampleMass:
    """One sample's attention masses, each averaged over layers, heads and query positions."""

    id: str
    mined: float       # on the instruction tokens that overlap a mined span
    non_mined: float   # on the instruction's other tokens
    rest: float        # on everything else: template, BOS, the response so far
    n_mined: int
    n_context: int     # instruction tokens (within max_length)
    n_queries: int     # positions predicting a response token

    @property
    def share(self) -> float:
        """The mined tokens' share of the instruction's tokens."""
        return self.n_mined / self.n_context

    @property
    def normalised(self) -> float:
        return self.mined / self.share

    @property
    def non_mined_normalised(self) -> float:
        rest_share = 1.0 - self.share
        return self.non_mined / rest_share if rest_share > 0 else 0.0


@dataclass(frozen=True)
class _Prepared:
    sample: MinedSample
    enc: EncodedPair
    mined: list[int]
    non_mined: list[int]
    queries: list[int]


@contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Run the model with eager attention (the only kind that returns its weights), then
    switch back to whatever it used before."""
    before = getattr(model.config, "_attn_implementation", None)
    if before == "eager":
        yield
        return
    if not hasattr(model, "set_attn_implementation"):
        raise ValueError(f"the model uses {before!r} attention, which returns no weights, and "
                         "this transformers version cannot switch it; load it with "
                         "attn_implementation='eager'")
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


@torch.no_grad()
def key_group_mass(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   groups: torch.Tensor) -> torch.Tensor:
    """Per query position, the attention summed over each group of key positions, averaged over
    layers and heads: `groups` is (batch, G, seq) with 1.0 on a group's keys; returns a float32
    (batch, seq, G) tensor. Only the decoder runs: the vocabulary projection is never needed."""
    with eager_attention(model):
        out = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                  output_attentions=True, use_cache=False)
    groups = groups.to(device=input_ids.device, dtype=torch.float32)
    total = torch.zeros(groups.shape[0], groups.shape[2], groups.shape[1],
                        device=input_ids.device)
    for layer in out.attentions:  # each (batch, heads, query, key); sharded models: any device
        heads_mean = layer.mean(dim=1, dtype=torch.float32).to(total.device)
        total += torch.einsum("bqk,bgk->bqg", heads_mean, groups)
    return (total / len(out.attentions)).cpu()


def prepare(tokenizer: Any, sample: MinedSample, max_length: int) -> _Prepared | None:
    """Tokenise one sample the way every stage does (`encode_pair`) and sort its instruction
    tokens into mined / non-mined. A token is mined when its non-whitespace characters overlap
    a span — the rule ground-truth detection uses. None when nothing to measure is left: no
    mined token or no response position within `max_length`."""
    enc = encode_pair(tokenizer, sample.instruction, sample.response, max_length)
    n = len(enc.input_ids)
    mined: list[int] = []
    non_mined: list[int] = []
    for pos, (start, end), source in zip(enc.context_positions, enc.context_offsets,
                                         enc.context_sources, strict=True):
        if pos >= n or source != "instruction":
            continue
        text = sample.instruction[start:end]
        (mined if token_in_spans(text, (start, end), sample.spans) else non_mined).append(pos)
    queries = [t - 1 for t in range(max(enc.loss_start, 1), enc.loss_end)]
    if not mined or not queries:
        return None
    return _Prepared(sample, enc, mined, non_mined, queries)


def attention_mass(model: Any, tokenizer: Any, samples: Sequence[MinedSample], max_length: int,
                   batch_size: int = 4) -> list[SampleMass]:
    """Attention mass on the mined tokens of each sample, in the order given. Samples with no
    mined token or no response position left after truncation to `max_length` are skipped (the
    normalised mass would be undefined); compare `.id`s to see which remain.

    Batches are length-sorted and right-padded (see the module docstring); `batch_size` bounds
    memory, which grows with layers × heads × length² because every layer's weights are returned.
    """
    prepared = [p for s in samples if (p := prepare(tokenizer, s, max_length)) is not None]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(prepared)), key=lambda i: len(prepared[i].enc.input_ids))
    found: dict[int, SampleMass] = {}
    for chunk in batches(order, batch_size):
        items = [prepared[i] for i in chunk]
        ids, mask = pad_batch([it.enc for it in items], pad, device)
        groups = torch.zeros(len(items), 3, ids.shape[1])
        for row, it in enumerate(items):
            groups[row, REST, : len(it.enc.input_ids)] = 1.0
            groups[row, REST, it.mined + it.non_mined] = 0.0
            groups[row, MINED, it.mined] = 1.0
            groups[row, NON_MINED, it.non_mined] = 1.0
        per_query = key_group_mass(model, ids, mask, groups)
        for row, (index, it) in enumerate(zip(chunk, items, strict=True)):
            mean = per_query[row, it.queries].double().mean(dim=0).tolist()
            found[index] = SampleMass(
                it.sample.id, mean[MINED], mean[NON_MINED], mean[REST], len(it.mined),
                len(it.mined) + len(it.non_mined), len(it.queries))
    return [found[i] for i in range(len(prepared))]


def summarise(masses: Sequence[SampleMass]) -> dict[str, float]:
    """Means over samples (each sample weighs the same)."""
    if not masses:
        return {"samples": 0.0}
    return {
        "samples": float(len(masses)),
        "mass": fmean(m.mined for m in masses),
        "normalised_mass": fmean(m.normalised for m in masses),
        "non_mined_mass": fmean(m.non_mined for m in masses),
        "non_mined_normalised_mass": fmean(m.non_mined_normalised for m in masses),
        "rest_mass": fmean(m.rest for m in masses),
        "mined_token_share": fmean(m.share for m in masses),
    }
