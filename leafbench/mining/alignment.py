"""Mining with two tokenizers: per-token saliencies mapped onto one common segmentation.

The paper pairs a Llama teacher with a Qwen student, whose tokenizers cut the same text
differently. Each model tokenises the pair with its own tokenizer and gets its own g per context
token (`gradient_norms`, unchanged); Δ then needs both models' g on the *same* units of text.
Those units are pieces of the context text, found through the tokens' character offsets.

The common segmentation is the coarsest one that both tokenizations refine. Per source text
(instruction, earlier response) a *cut* is a character position that no token of either model
straddles (start < position < end); the pieces are the ranges between consecutive cuts. Where
both models cover the text without gaps this is exactly "a token boundary in both
tokenizations", so every token lies inside one piece and no piece can be split further without
splitting some token. The tokens come from `encode_pair`, which keeps only instruction and
earlier-response tokens (no chat-template or special tokens, none with empty offsets). A
byte-level BPE token such as "Ġfoo" covers " foo", its leading space included, unless the
tokenizer trims offsets (then (1, 4) and a lone space becomes empty and is skipped); one model may
put a space at the start of the next word, the other in a token of its own: the cuts fall where
both agree either way. Three details keep it honest on real tokenizers:

  * Only the characters both models see as context count: per source, the pieces lie wholly
    inside the range from the later of the two first token starts to the earlier of the two last
    token ends. Truncation, or a token that fuses the last instruction character with the chat
    template (and so is not context at all), can end one tokenization earlier than the other.
  * A piece must hold at least one token of each model, else Δ has nothing to compare and the
    piece is left out (e.g. a space that a tokenizer trimming its offsets leaves uncovered while
    the other gives it a token of its own). Positions inside one model's gap are cuts for that
    model: it has no token there to split.
  * Tokens that share offsets (a multi-byte character split into byte tokens, which byte-level
    BPE reports with the whole character's offsets) fall into the same piece together.

A piece's saliency for a model is sqrt(Σ g²) over that model's tokens in the piece: the L2 norm
of the gradient with respect to the concatenation of those tokens' embeddings, so the stored g is
still an L2 gradient norm, and a one-token piece keeps its token's g exactly (computed in float64,
where sqrt(g²) of a float32 g is exact). Min-max per model and Δ then run over pieces unchanged
(`confounder_scores`). The student's surprisal, the perplexity baseline's score, is summed over
its tokens in a piece: the piece's total −log p, the surprisal of the piece as a whole.

With one shared tokenizer nothing is aligned: `token_segmentation` makes every context token its
own piece, which reproduces the single-tokenizer numbers exactly.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from leafbench.samples import EncodedPair

Span = tuple[int, int]


@dataclass(frozen=True)
class Segmentation:
    """The units the saliency store scores, with the tokens of each model inside each unit."""

    kind: str                        # "tokens" (one shared tokenizer) or "common"
    offsets: list[Span]              # per piece, (start, end) characters in its source text
    sources: list[str]               # per piece, "instruction" or "response"
    teacher_tokens: list[list[int]]  # per piece, indices into the teacher's context tokens
    student_tokens: list[list[int]]  # per piece, indices into the student's context tokens


def same_tokenizer(teacher_tok: Any, student_tok: Any) -> bool:
    """One vocabulary means one token id sequence serves both models: mine token by token."""
    return bool(teacher_tok.get_vocab() == student_tok.get_vocab())


def token_segmentation(enc: EncodedPair) -> Segmentation:
    """Shared tokenizer: every context token is its own piece, for both models."""
    groups = [[i] for i in range(len(enc.context_positions))]
    return Segmentation("tokens", list(enc.context_offsets), list(enc.context_sources),
                        groups, [list(g) for g in groups])


def common_segmentation(teacher: EncodedPair, student: EncodedPair) -> Segmentation:
    """Different tokenizers: the common pieces of each source text, in context order
    (instruction first, then the earlier response)."""
    offsets, sources, t_groups, s_groups = [], [], [], []
    for source in dict.fromkeys([*student.context_sources, *teacher.context_sources]):
        t_index = [i for i, s in enumerate(teacher.context_sources) if s == source]
        s_index = [i for i, s in enumerate(student.context_sources) if s == source]
        pieces = common_pieces([teacher.context_offsets[i] for i in t_index],
                               [student.context_offsets[i] for i in s_index])
        for span, t_in, s_in in pieces:
            offsets.append(span)
            sources.append(source)
            t_groups.append([t_index[i] for i in t_in])
            s_groups.append([s_index[i] for i in s_in])
    return Segmentation("common", offsets, sources, t_groups, s_groups)


def common_pieces(a: Sequence[Span], b: Sequence[Span]
                  ) -> list[tuple[Span, list[int], list[int]]]:
    """The coarsest segmentation of one text that both token lists refine.

    `a` and `b` are two tokenizations' (start, end) character offsets in the same text. Returns,
    per piece in text order, its (start, end) and the indices of the tokens of `a` and of `b`
    that lie inside it. Pieces outside the range both cover, and pieces lacking a token of either
    list, are left out (see the module docstring).
    """
    if not a or not b:
        return []
    lo = max(min(s for s, _ in a), min(s for s, _ in b))
    hi = min(max(e for _, e in a), max(e for _, e in b))
    if lo >= hi:
        return []
    cuts = _cuts([*a, *b], lo, hi)
    if len(cuts) < 2:
        return []
    t_in: list[list[int]] = [[] for _ in cuts[1:]]
    s_in: list[list[int]] = [[] for _ in cuts[1:]]
    for tokens, into in ((a, t_in), (b, s_in)):
        for i, (start, end) in enumerate(tokens):
            k = bisect_right(cuts, start) - 1
            if lo <= start and end <= hi and 0 <= k < len(cuts) - 1 and end <= cuts[k + 1]:
                into[k].append(i)
    return [((cuts[k], cuts[k + 1]), t_in[k], s_in[k])
            for k in range(len(cuts) - 1) if t_in[k] and s_in[k]]


def _cuts(tokens: Sequence[Span], lo: int, hi: int) -> list[int]:
    """Token starts and ends in [lo, hi], plus lo and hi, that no token straddles. A running
    count of the tokens open over each character (a difference array) finds them in one pass."""
    opened = [0] * (hi - lo + 2)
    for start, end in tokens:
        first, last = max(start + 1, lo), min(end - 1, hi)  # positions strictly inside
        if first <= last:
            opened[first - lo] += 1
            opened[last - lo + 1] -= 1
    straddled, running = [], 0
    for count in opened[:-1]:
        running += count
        straddled.append(running > 0)
    candidates = {lo, hi} | {p for span in tokens for p in span if lo <= p <= hi}
    return sorted(p for p in candidates if not straddled[p - lo])


def piece_norms(g: torch.Tensor, groups: Sequence[Sequence[int]]) -> torch.Tensor:
    """sqrt(Σ g²) over each piece's tokens: the L2 norm of the gradient with respect to the
    concatenated embeddings of the piece. Summed in float64, so a one-token piece returns its
    token's float32 g bit for bit."""
    squares = _sum_into_pieces(g.double().square(), groups)
    return squares.sqrt().to(g.dtype)


def piece_sums(values: torch.Tensor, groups: Sequence[Sequence[int]]) -> torch.Tensor:
    """Σ over each piece's tokens (the student's surprisal: the piece's total −log p)."""
    return _sum_into_pieces(values.double(), groups).to(values.dtype)


def _sum_into_pieces(values: torch.Tensor, groups: Sequence[Sequence[int]]) -> torch.Tensor:
    index = torch.tensor([i for group in groups for i in group], dtype=torch.long)
    piece = torch.tensor([k for k, group in enumerate(groups) for _ in group], dtype=torch.long)
    out = torch.zeros(len(groups), dtype=values.dtype)
    return out.index_add_(0, piece, values[index])
