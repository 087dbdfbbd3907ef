"""Training pairs (instruction X, response y) and their tokenisation.

Every stage sees a pair the same way: the instruction rendered through the tokenizer's chat
template, followed by the response and EOS. Mining needs to know which tokens are *context* and
where each sits in the text; distillation needs to know which positions carry the loss.
`encode_pair` computes both once.

Instruction level: the context is the instruction, the loss covers the whole response.
Response level: the loss covers one response segment [loss_from, loss_to) (characters of the
response) and the context is the instruction plus the response before that segment.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EncodedPair:
    input_ids: list[int]
    context_positions: list[int]            # token indices of context tokens
    context_offsets: list[tuple[int, int]]  # their (start, end) characters in their source text
    context_sources: list[str]              # "instruction" or "response", per context token
    loss_start: int                         # first token index that carries the loss
    loss_end: int                           # one past the last

    @property
    def n_loss(self) -> int:
        return self.loss_end - self.loss_start


def read_jsonl(path: str | Path, torn_tail_ok: bool = False) -> list[dict[str, Any]]:
    """Rows of a JSONL file. With `torn_tail_ok`, reading stops at the first unreadable line:
    the shape a file has when its writer was killed mid-line, which resume code must accept."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if torn_tail_ok:
                    break
                raise
    return rows


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def load_pairs(path: str | Path, max_samples: int | None = None) -> list[dict[str, Any]]:
    """Read a JSONL of pairs; every row needs `instruction` and `response`. Ids are filled in
    (the line's position) and always strings: counterfactuals extend them (`"3#cf0"`) and the
    teacher cache's JSON index keys them, so an integer id would not survive either."""
    rows = read_jsonl(path)
    for i, row in enumerate(rows):
        for key in ("instruction", "response"):
            if not isinstance(row.get(key), str):
                raise ValueError(f"{path}: line {i + 1}: field '{key}' missing or not a string")
        row["id"] = str(row.get("id", i))
    return rows[:max_samples] if max_samples else rows


def chat_prompt(tokenizer: Any, instruction: str) -> str:
    """The text a model sees before it answers: the instruction as the user's turn of the
    tokenizer's chat template, with the assistant's turn opened."""
    return str(tokenizer.apply_chat_template(
        [{"role": "user", "content": instruction}], add_generation_prompt=True, tokenize=False
    ))


def render_prompt(tokenizer: Any, instruction: str) -> tuple[str, int]:
    """The chat-template prompt for an instruction and where the instruction starts in it."""
    prompt = chat_prompt(tokenizer, instruction)
    start = prompt.rfind(instruction)
    if start < 0:
        raise ValueError("the tokenizer's chat template does not render the instruction verbatim")
    return prompt, start


def encode_pair(
    tokenizer: Any,
    instruction: str,
    response: str,
    max_length: int,
    loss_from: int = 0,
    loss_to: int | None = None,
) -> EncodedPair:
    """Tokenise prompt + response + EOS; locate context tokens and the loss span.

    Truncation cuts from the right (the context is what mining inspects). With the default
    `loss_to=None` the loss runs to the end, EOS included.
    """
    prompt, inst_start = render_prompt(tokenizer, instruction)
    inst_end = inst_start + len(instruction)
    text = prompt + response + (tokenizer.eos_token or "")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    resp_start = len(prompt)
    loss_char = resp_start + loss_from
    loss_end_char = len(text) if loss_to is None else resp_start + loss_to
    loss_start = next((i for i, (s, _) in enumerate(offsets) if s >= loss_char), len(ids))
    loss_end = next((i for i, (s, _) in enumerate(offsets) if s >= loss_end_char), len(ids))
    positions, char_offsets, sources = [], [], []
    for i, (s, e) in enumerate(offsets[:loss_start]):
        if e <= s:
            continue
        if s >= inst_start and e <= inst_end:
            positions.append(i)
            char_offsets.append((s - inst_start, e - inst_start))
            sources.append("instruction")
        elif s >= resp_start and e <= loss_char:
            positions.append(i)
            char_offsets.append((s - resp_start, e - resp_start))
            sources.append("response")
    ids = ids[:max_length]
    return EncodedPair(ids, positions, char_offsets, sources, min(loss_start, len(ids)),
                       min(loss_end, len(ids)))


def split_response(response: str, k: int) -> list[tuple[int, int]]:
    """k consecutive character segments of roughly equal length, cut after a sentence end or
    line break nearest each ideal cut (else at the nearest space) so segments are readable."""
    cuts, n = [0], len(response)
    for j in range(1, k):
        ideal = round(n * j / k)
        candidates = [i + 1 for i, c in enumerate(response[:-1]) if c in ".\n" and
                      response[i + 1] in " \n"] or [i for i, c in enumerate(response) if c == " "]
        candidates = [c for c in candidates if cuts[-1] < c < n]
        cuts.append(min(candidates, key=lambda c: abs(c - ideal)) if candidates else max(
            cuts[-1] + 1, min(ideal, n - 1)))
    cuts.append(n)
    return [(cuts[j], cuts[j + 1]) for j in range(k) if cuts[j] < cuts[j + 1]]


def pad_batch(pairs: list[EncodedPair], pad_id: int, device: Any) -> tuple[Any, Any]:
    """Right-padded input ids and attention mask for a list of encoded pairs."""
    import torch

    width = max(len(p.input_ids) for p in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for row, p in enumerate(pairs):
        ids[row, : len(p.input_ids)] = torch.tensor(p.input_ids)
        mask[row, : len(p.input_ids)] = 1
    return ids.to(device), mask.to(device)


def batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
