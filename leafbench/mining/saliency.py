"""Gradient saliency of context tokens (LeaF stage 1).

For one model and one pair (X, y): ℓ = Σ cross-entropy of the response tokens given the prompt,
and g_i = ‖∂ℓ/∂e_i‖₂ for each instruction token i (e_i its input embedding). Samples in a batch
never interact (causal attention with padding masked out), so back-propagating the *sum* of the
per-sample losses yields every sample's own gradient in one backward pass.

The vocabulary projection is applied only at the positions that carry loss, which keeps memory
proportional to the response length rather than to the whole padded batch.
"""

from __future__ import annotations

from typing import Any

import torch

from leafbench.samples import EncodedPair, pad_batch


def minmax(values: torch.Tensor) -> torch.Tensor:
    """Min-max normalise to [0, 1]; a constant vector maps to zeros (no token stands out)."""
    lo, hi = values.min(), values.max()
    span = hi - lo
    if span <= 0:
        return torch.zeros_like(values)
    return (values - lo) / span


def gradient_norms(model: Any, pairs: list[EncodedPair], pad_id: int) -> list[torch.Tensor]:
    """Per pair, the L2 norm of ∂ℓ/∂e_i at each context position (float32, on the CPU)."""
    device = next(model.parameters()).device
    ids, mask = pad_batch(pairs, pad_id, device)
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    hidden = model.get_decoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state

    rows, cols, targets = [], [], []
    for row, p in enumerate(pairs):
        for pos in range(max(p.loss_start, 1), p.loss_end):
            rows.append(row)
            cols.append(pos - 1)  # the hidden state at pos-1 predicts token pos
            targets.append(p.input_ids[pos])
    logits = model.get_output_embeddings()(hidden[rows, cols]).float()
    # With device_map sharding the head may sit on another GPU than the embeddings.
    loss = torch.nn.functional.cross_entropy(
        logits, torch.tensor(targets, device=logits.device), reduction="sum"
    )
    (grad,) = torch.autograd.grad(loss, embeds)
    norms = grad.float().norm(dim=-1).cpu()
    return [norms[row, p.context_positions] for row, p in enumerate(pairs)]


@torch.no_grad()
def context_surprisal(model: Any, pairs: list[EncodedPair], pad_id: int) -> list[torch.Tensor]:
    """−log p(x_i | x_<i) of each context token: the perplexity-masking baseline's score."""
    device = next(model.parameters()).device
    ids, mask = pad_batch(pairs, pad_id, device)
    hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    out = []
    for row, p in enumerate(pairs):
        positions = torch.tensor(p.context_positions, device=hidden.device)
        before = (positions - 1).clamp(min=0)
        logits = model.get_output_embeddings()(hidden[row, before]).float()
        tokens = ids[row].to(logits.device)[positions.to(logits.device), None]
        nll = -torch.log_softmax(logits, -1).gather(-1, tokens)[:, 0]
        out.append(torch.where(positions.to(nll.device) > 0, nll, torch.zeros_like(nll)).cpu())
    return out


def confounder_scores(g_teacher: torch.Tensor, g_student: torch.Tensor) -> dict[str, torch.Tensor]:
    """ĝ per model, then Δ = minmax(ĝ^T − ĝ^S): low Δ means the student leans on a token the
    teacher ignores, i.e. a confounder candidate."""
    t_hat, s_hat = minmax(g_teacher), minmax(g_student)
    return {"teacher_norm": t_hat, "student_norm": s_hat, "delta": minmax(t_hat - s_hat)}
