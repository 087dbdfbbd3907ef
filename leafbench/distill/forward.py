"""The forward passes both sides of the loss share: a model's outputs at exactly the positions
that predict response tokens. The teacher cache (`teach`) stores the teacher's; the trainer
computes the student's (and the teacher's, when the cache is off) the same way, so cached and
live targets line up position by position.
"""

from __future__ import annotations

from typing import Any

import torch

from leafbench.distill.batching import pack_rows
from leafbench.samples import EncodedPair, pad_batch


def response_hidden(model: Any, encs: list[EncodedPair], pad_id: int,
                    pack_to: int | None = None) -> torch.Tensor:
    """Final hidden states at every position that predicts a response token, concatenated in
    the order of `encs`. With `pack_to`, sequences share rows of that length (position ids
    restart per sequence, which makes the attention block-diagonal) instead of being padded."""
    decoder = model.get_decoder()
    if pack_to is None:
        ids, mask = pad_batch(encs, pad_id, next(model.parameters()).device)
        hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        where = [(r, 0) for r in range(len(encs))]
    else:
        ids, positions, where = _packed(encs, pad_id, pack_to, next(model.parameters()).device)
        # No cache: with one, transformers skips the block-diagonal mask of packed rows.
        hidden = decoder(input_ids=ids, position_ids=positions, use_cache=False).last_hidden_state
    rows = [where[i][0] for i, e in enumerate(encs) for _ in range(e.loss_start, e.loss_end)]
    cols = [where[i][1] + p - 1 for i, e in enumerate(encs) for p in range(e.loss_start, e.loss_end)]
    return hidden[rows, cols]


def _packed(encs: list[EncodedPair], pad_id: int, row_length: int, device: Any):
    layout = pack_rows(encs, row_length)
    width = max(sum(len(encs[i].input_ids) for i in row) for row in layout)
    ids = torch.full((len(layout), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(layout), width), dtype=torch.long)
    where: dict[int, tuple[int, int]] = {}
    for r, row in enumerate(layout):
        offset = 0
        for i in row:
            n = len(encs[i].input_ids)
            ids[r, offset : offset + n] = torch.tensor(encs[i].input_ids)
            positions[r, offset : offset + n] = torch.arange(n)
            where[i] = (r, offset)
            offset += n
        positions[r, offset:] = torch.arange(width - offset)  # padding: its own segment
    return ids.to(device), positions.to(device), where


def response_logits(model: Any, encs: list[EncodedPair], pad_id: int) -> torch.Tensor:
    """Logits at every position that predicts a response token, concatenated over the batch."""
    return model.get_output_embeddings()(response_hidden(model, encs, pad_id))
