"""What goes into each step: training units, length-grouped batches, per-token loss weights,
and optional sequence packing.

A *unit* is what the loss pairs up. In `hybrid` mode a unit is (original, counterfactual), so
every batch holds originals with their own counterfactuals; an original without counterfactuals
pairs with itself and its loss reduces to plain KD. In `mixed` mode (the official code) a unit
is a single item of the shuffled union.

Both losses are per-token weightings of the divergence over one optimizer step's global batch:
hybrid gives original-side tokens λ/N_orig and counterfactual-side tokens (1−λ)/N_cf; mixed gives
every token 1/N. Weights are computed from the whole global batch before any forward pass, so
splitting it into micro-batches (gradient accumulation) or across processes changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from leafbench.samples import EncodedPair

ORIGINAL, COUNTERFACTUAL = 0, 1
LENGTH_GROUP = 16  # global batches per sorted window when grouping by length


@dataclass(frozen=True)
class Unit:
    item_ids: tuple[str, ...]
    groups: tuple[int, ...]  # ORIGINAL feeds L_kd, COUNTERFACTUAL feeds L_cd


def build_pairs(items: list[dict[str, Any]]) -> list[tuple[dict, dict]]:
    """(original, counterfactual) items; originals without counterfactuals pair with themselves."""
    originals = {it["id"]: it for it in items if it["kind"] == "original"}
    pairs = [(originals[it["original_id"]], it) for it in items if it["kind"] != "original"]
    paired = {orig["id"] for orig, _ in pairs}
    pairs += [(orig, orig) for oid, orig in originals.items() if oid not in paired]
    return sorted(pairs, key=lambda p: (p[0]["id"], p[1]["id"]))


def _hybrid_units(items: list[dict[str, Any]]) -> list[Unit]:
    return [Unit((o["id"], c["id"]), (ORIGINAL, COUNTERFACTUAL)) for o, c in build_pairs(items)]


def _mixed_units(items: list[dict[str, Any]]) -> list[Unit]:
    return [Unit((it["id"],), (ORIGINAL if it["kind"] == "original" else COUNTERFACTUAL,))
            for it in sorted(items, key=lambda it: it["id"])]


UNITS = {"hybrid": _hybrid_units, "mixed": _mixed_units}


def epoch_batches(lengths: list[int], global_batch: int, seed: int, epoch: int,
                  group_by_length: bool) -> list[list[int]]:
    """Unit indices of each step of one epoch: a seeded permutation, and when grouping by length,
    sorted inside windows of LENGTH_GROUP batches (little padding) with the batch order
    shuffled again (no long-to-short drift over the epoch)."""
    gen = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = torch.randperm(len(lengths), generator=gen).tolist()
    if group_by_length:
        window = global_batch * LENGTH_GROUP
        order = [i for s in range(0, len(order), window)
                 for i in sorted(order[s : s + window], key=lambda i: -lengths[i])]
    steps = [order[s : s + global_batch] for s in range(0, len(order), global_batch)]
    if group_by_length:
        steps = [steps[i] for i in torch.randperm(len(steps), generator=gen).tolist()]
    return steps


def token_weights(units: list[Unit], encoded: dict[str, EncodedPair], mode: str,
                  lam: float) -> tuple[dict[int, float], dict[int, int]]:
    """Weight per response token of each group for one global batch, and the group sizes."""
    sizes = {ORIGINAL: 0, COUNTERFACTUAL: 0}
    for unit in units:
        for item_id, group in zip(unit.item_ids, unit.groups, strict=True):
            sizes[group] += encoded[item_id].n_loss
    if mode == "mixed":
        total = max(sizes[ORIGINAL] + sizes[COUNTERFACTUAL], 1)
        return {ORIGINAL: 1.0 / total, COUNTERFACTUAL: 1.0 / total}, sizes
    return {ORIGINAL: lam / max(sizes[ORIGINAL], 1),
            COUNTERFACTUAL: (1.0 - lam) / max(sizes[COUNTERFACTUAL], 1)}, sizes


def pack_rows(encs: list[EncodedPair], row_length: int) -> list[list[int]]:
    """First-fit packing of sequences (indices into `encs`) into rows of at most row_length."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i, enc in enumerate(encs):
        need = len(enc.input_ids)
        slot = next((r for r, free in enumerate(room) if free >= need), None)
        if slot is None:
            rows.append([])
            room.append(row_length)
            slot = len(rows) - 1
        rows[slot].append(i)
        room[slot] -= need
    return rows
