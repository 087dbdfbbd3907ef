"""Pretraining a tiny model from scratch on (instruction, response) pairs.

Supervised on the response only (prompt tokens are masked out of the loss), as in the
instruction-tuned models LeaF starts from. AdamW with linear warmup and cosine decay; the
initial weights and the order of batches depend on `seed` alone, so a rebuild with the same
config reproduces the same model.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast, get_cosine_schedule_with_warmup

from leafbench.synthetic.tokenizer import encode_pair
from leafbench.testbed_settings import TinyModelConfig

WARMUP_FRACTION = 0.05
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padded positions are masked from attention and from the loss."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id)
    labels = torch.full((len(examples), width), -100)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """Endless batches of indices: a fresh seeded permutation each epoch, no ragged tail."""
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def pretrain(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, records: list[dict],
             budget: TinyModelConfig, seed: int, label: str = "pretrain", progress: bool = True
             ) -> list[float]:
    """Train `model` in place for `budget.steps` steps; returns the loss of every step."""
    examples = [encode_pair(tokenizer, r["instruction"], r["response"]) for r in records]
    batch_size = min(budget.batch_size, len(examples))
    order = batches(len(examples), batch_size, torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=budget.lr, betas=(0.9, 0.95),
                                  weight_decay=WEIGHT_DECAY)
    schedule = get_cosine_schedule_with_warmup(
        optimizer, max(1, int(WARMUP_FRACTION * budget.steps)), budget.steps)
    losses: list[float] = []
    model.train()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn(),
                  console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task(label, total=budget.steps, loss=float("nan"))
        for _ in range(budget.steps):
            batch = collate([examples[i] for i in next(order)], tokenizer.pad_token_id)
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.update(task, advance=1, loss=losses[-1])
    model.eval()
    return losses
