"""The hybrid causal-attention-distillation loss (LeaF stage 2).

    L = λ · D(p_T(y|X) ‖ p_S(y|X)) + (1 − λ) · D(p_T(y|X∖A) ‖ p_S(y|X∖A))

D is token-level over the response positions only, with temperature t: both distributions are
softmax(logits / t) and the divergence is scaled by t² so gradient magnitudes do not shrink as t
grows. Each term is the mean over the response tokens of its half of the batch.

D is forward KL by default (the paper); reverse KL and generalised JSD(β) are options.

Memory: `chunked_divergence` projects hidden states to the vocabulary and evaluates D a chunk of
positions at a time under activation checkpointing, so neither the student's logits nor any
full-vocabulary float32 probabilities exist for the whole batch at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def _forward_kl(log_p_t: torch.Tensor, log_p_s: torch.Tensor, beta: float) -> torch.Tensor:
    """Σ p_T·log p_T − Σ p_T·log p_S, as two row-wise dot products: no vocabulary-sized
    difference or product tensor is kept for the backward pass (the loss's memory peak)."""
    p_t = log_p_t.exp()
    return torch.einsum("...v,...v->...", p_t, log_p_t) - torch.einsum("...v,...v->...", p_t, log_p_s)


def _reverse_kl(log_p_t: torch.Tensor, log_p_s: torch.Tensor, beta: float) -> torch.Tensor:
    return (log_p_s.exp() * (log_p_s - log_p_t)).sum(-1)


def _jsd(log_p_t: torch.Tensor, log_p_s: torch.Tensor, beta: float) -> torch.Tensor:
    """Generalised JSD: β·KL(p_T ‖ m) + (1−β)·KL(p_S ‖ m), m = β·p_T + (1−β)·p_S."""
    if beta <= 0.0 or beta >= 1.0:  # m equals one of the two: the divergence vanishes
        return log_p_t.new_zeros(log_p_t.shape[:-1])
    log_m = torch.logsumexp(
        torch.stack([log_p_t + math.log(beta), log_p_s + math.log(1.0 - beta)]), dim=0
    )
    kl_t = (log_p_t.exp() * (log_p_t - log_m)).sum(-1)
    kl_s = (log_p_s.exp() * (log_p_s - log_m)).sum(-1)
    return beta * kl_t + (1.0 - beta) * kl_s


DIVERGENCES: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "forward_kl": _forward_kl,
    "reverse_kl": _reverse_kl,
    "jsd": _jsd,
}


def token_divergence(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    temperature: float,
    divergence: str = "forward_kl",
    beta: float = 0.5,
) -> torch.Tensor:
    """D(p_T ‖ p_S) per position, in float32, times t²."""
    t = temperature
    with _float32(student_logits):
        log_p_t = F.log_softmax(teacher_logits.float() / t, dim=-1)
        log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
        return DIVERGENCES[divergence](log_p_t, log_p_s, beta) * (t * t)


def _float32(like: torch.Tensor):
    """Autocast off: under bf16 autocast the divergence's sums would run in bf16 and lose it."""
    return torch.autocast(like.device.type, enabled=False)


def token_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float):
    """Forward KL(p_T ‖ p_S) per position, in float32, times t²."""
    return token_divergence(teacher_logits, student_logits, temperature, "forward_kl")


@dataclass(frozen=True)
class TeacherTargets:
    """The teacher's side of the loss for a run of response positions.

    Exact: `logits` [N, V], raw logits over (at least) the real vocabulary. Top-k: `logp`
    [N, k], the k largest log-probabilities at the loss temperature, and `index` [N, k] their
    token ids. Top-k targets are compared on k+1 bins — the k tokens and everything else — so
    the teacher's tail mass is kept and the divergence between the two binned distributions is a
    proper one (zero only when they agree on every bin; by the data-processing inequality, never
    larger than the exact divergence).
    """

    logits: torch.Tensor | None = None
    logp: torch.Tensor | None = None
    index: torch.Tensor | None = None

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors this target holds, by field name (exact: logits; top-k: logp, index)."""
        held = {"logits": self.logits, "logp": self.logp, "index": self.index}
        out = {name: t for name, t in held.items() if t is not None}
        if set(out) not in ({"logits"}, {"logp", "index"}):
            raise ValueError(f"teacher targets need logits, or logp with index; got {sorted(out)}")
        return out

    @classmethod
    def cat(cls, parts: list[TeacherTargets]) -> TeacherTargets:
        """Runs of positions joined end to end (all exact or all top-k)."""
        names = parts[0].tensors().keys()
        return cls(**{n: torch.cat([p.tensors()[n] for p in parts]) for n in names})

    def __len__(self) -> int:
        return next(iter(self.tensors().values())).shape[0]

    def rows(self, start: int, end: int) -> TeacherTargets:
        return TeacherTargets(**{n: t[start:end] for n, t in self.tensors().items()})

    def divergence(self, student_logits: torch.Tensor, temperature: float, divergence: str,
                   beta: float) -> torch.Tensor:
        """D(p_T ‖ p_S) per position, in float32, times t²."""
        vocab = student_logits.shape[-1]
        if self.logits is not None:
            teacher = self.logits[..., :vocab].to(student_logits.device)
            return token_divergence(teacher, student_logits, temperature, divergence, beta)
        t = temperature
        with _float32(student_logits):
            log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
            held = self.tensors()
            index = held["index"].to(student_logits.device).long()
            teacher = with_tail(held["logp"].to(student_logits.device).float())
            student = with_tail(log_p_s.gather(-1, index))
            return DIVERGENCES[divergence](teacher, student, beta) * (t * t)


def with_tail(log_p_top: torch.Tensor) -> torch.Tensor:
    """Append the log of the mass outside the listed tokens as one more bin."""
    covered = torch.logsumexp(log_p_top, dim=-1, keepdim=True).clamp(max=0.0)
    tail = (-torch.expm1(covered)).clamp(min=torch.finfo(log_p_top.dtype).tiny).log()
    return torch.cat([log_p_top, tail], dim=-1)


def topk_targets(teacher_logits: torch.Tensor, k: int, temperature: float) -> TeacherTargets:
    """Keep the k most likely tokens' log-probabilities at the loss temperature."""
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    values, index = log_p.topk(min(k, log_p.shape[-1]), dim=-1)
    return TeacherTargets(logp=values, index=index.to(torch.int32))


def chunked_divergence(
    targets: TeacherTargets | torch.Tensor,
    student_hidden: torch.Tensor,
    head: torch.nn.Module,
    temperature: float,
    divergence: str = "forward_kl",
    beta: float = 0.5,
    chunk: int = 1024,
    vocab: int | None = None,
) -> torch.Tensor:
    """Per-position divergence computed `chunk` positions at a time.

    `student_hidden` are the final hidden states at the positions that predict response tokens;
    `head` is the student's output projection. Each chunk is checkpointed, so the backward pass
    recomputes its logits instead of keeping them: peak memory is O(chunk × vocabulary).
    `vocab` cuts both distributions to the tokenizer's real vocabulary (embedding matrices are
    often padded to different sizes).
    """
    if isinstance(targets, torch.Tensor):
        targets = TeacherTargets(logits=targets)

    def piece(hidden: torch.Tensor, start: int) -> torch.Tensor:
        s_logits = head(hidden)
        s_logits = s_logits[..., :vocab] if vocab else s_logits
        part = targets.rows(start, start + hidden.shape[0])
        return part.divergence(s_logits, temperature, divergence, beta)

    parts = []
    for start in range(0, student_hidden.shape[0], chunk):
        h_part = student_hidden[start : start + chunk]
        if torch.is_grad_enabled() and h_part.requires_grad:
            parts.append(checkpoint(piece, h_part, start, use_reentrant=False))
        else:
            parts.append(piece(h_part, start))
    return torch.cat(parts) if parts else student_hidden.new_zeros(0)


def hybrid_loss(kl_original: torch.Tensor, kl_counterfactual: torch.Tensor, lam: float):
    """Combine the per-token divergences of originals and counterfactuals; (L, L_kd, L_cd).
    The paper's formula for one batch; the trainer reaches the same value through per-token
    weights (batching.token_weights) so that micro-batches and processes can share it."""
    l_kd = kl_original.mean()
    l_cd = kl_counterfactual.mean()
    return lam * l_kd + (1.0 - lam) * l_cd, l_kd, l_cd
