"""The `teach` stage: the teacher's outputs at every response position, computed once.

Distillation needs the teacher's distribution at each response token of every original and
counterfactual. The teacher never changes, so running it every step (the official recipe) pays
epochs × (λ values) × (sweep trials) forward passes for one pass's worth of information. This
stage runs it once per (teacher, counterfactual dataset, truncation) — its cache key holds no λ,
learning rate or epoch count — and distillation reads the rows back.

Two formats (`distill.teacher_cache.mode`):
  exact  full logits over the tokenizer's real vocabulary, float32: right for small vocabularies;
  topk   the k largest log-probabilities at the loss temperature and their token ids; the tail
         mass is implied (1 − Σ top-k) and kept as its own bin by the loss (see loss.py), so the
         divergence stays proper. The temperature is part of this format's cache key.
`auto` picks exact up to `exact_max_vocab` tokens, topk beyond; `off` stores nothing and the
trainer runs the teacher on the fly.

Rows are written in shards of whole items; the index maps each item id to (shard, start, end).
A killed run keeps its finished shards and resumes after them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from leafbench.contract import StageContext, artifact
from leafbench.distill.forward import response_logits
from leafbench.distill.loss import TeacherTargets, topk_targets
from leafbench.samples import EncodedPair, encode_pair, read_jsonl

INDEX = artifact("teach", "index")
SHARD_ITEMS = 256


def resolve_mode(cfg: Any, vocab: int) -> str:
    """`auto` -> exact for small vocabularies, topk for large ones."""
    if cfg.mode != "auto":
        return cfg.mode
    return "exact" if vocab <= cfg.exact_max_vocab else "topk"


def encode_items(tokenizer: Any, items: list[dict], max_length: int) -> dict[str, EncodedPair]:
    """Every distinct item of the counterfactual dataset, encoded once, by id."""
    return {
        it["id"]: encode_pair(tokenizer, it["instruction"], it["response"], max_length,
                              it.get("loss_from", 0))
        for it in items
    }


def run_teach(ctx: StageContext) -> dict[str, float]:
    from leafbench.models import load_causal_lm, load_tokenizer

    exp, cfg = ctx.exp, ctx.exp.distill.teacher_cache
    tokenizer = load_tokenizer(ctx.refs.student)
    vocab = len(tokenizer)
    mode = resolve_mode(cfg, vocab)
    index_path = ctx.out / INDEX
    if mode == "off":
        index_path.write_text(json.dumps({"mode": "off"}))
        return {"teacher_forward_items": 0.0, "cached_positions": 0.0}

    items = read_jsonl(ctx.inputs["prune"] / artifact("prune", "counterfactuals"))
    encoded = encode_items(tokenizer, items, exp.data.max_length)
    ids = sorted(encoded, key=lambda i: (len(encoded[i].input_ids), i))
    shards = _finished_shards(ctx.out)
    teacher = None
    positions = forwarded = 0
    for number, start in enumerate(range(0, len(ids), SHARD_ITEMS)):
        shard_ids = ids[start : start + SHARD_ITEMS]
        if number in shards:
            positions += sum(encoded[i].n_loss for i in shard_ids)
            continue
        if teacher is None:
            teacher = load_causal_lm(ctx.refs.teacher, exp.models.dtype, exp.models.device).eval()
        rows = _teacher_rows(teacher, [encoded[i] for i in shard_ids], tokenizer.pad_token_id,
                             exp.distill.batch_size, vocab, mode, cfg.k,
                             exp.distill.loss.temperature)
        final = ctx.out / f"shard-{number:05d}.safetensors"
        tmp = final.with_suffix(".partial")
        save_file({k: v.contiguous() for k, v in rows.tensors().items()}, str(tmp))
        tmp.rename(final)  # a killed write never leaves a shard under its final name
        positions += len(rows)
        forwarded += len(shard_ids)

    spans, offset, shard = {}, 0, -1
    for n, item_id in enumerate(ids):
        if n % SHARD_ITEMS == 0:
            shard, offset = n // SHARD_ITEMS, 0
        spans[item_id] = [shard, offset, offset + encoded[item_id].n_loss]
        offset += encoded[item_id].n_loss
    index_path.write_text(json.dumps({
        "mode": mode, "k": cfg.k if mode == "topk" else None, "vocab": vocab,
        "temperature": exp.distill.loss.temperature if mode == "topk" else None,
        "max_length": exp.data.max_length, "items": spans,
    }))
    return {"teacher_forward_items": float(forwarded), "cached_items": float(len(ids)),
            "cached_positions": float(positions),
            "cache_mb": sum(p.stat().st_size for p in ctx.out.glob("shard-*")) / 2**20}


@torch.no_grad()
def _teacher_rows(teacher: Any, encs: list[EncodedPair], pad: int, batch_size: int, vocab: int,
                  mode: str, k: int, temperature: float) -> TeacherTargets:

    parts = []
    for i in range(0, len(encs), batch_size):
        logits = response_logits(teacher, encs[i : i + batch_size], pad)[..., :vocab].float().cpu()
        parts.append(TeacherTargets(logits=logits) if mode == "exact"
                     else topk_targets(logits, k, temperature))
    return TeacherTargets.cat(parts)


def _finished_shards(out: Path) -> set[int]:
    """Shards a previous run completed; one that does not open (torn by a kill) is redone."""
    done = set()
    for path in out.glob("shard-*.safetensors"):
        try:
            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        except Exception:  # noqa: BLE001 - any unreadable shard is simply recomputed
            path.unlink()
            continue
        done.add(int(path.name.split("-")[1].split(".")[0]))
    return done


class TeacherCache:
    """Read access to a `teach` artifact: the targets of a list of items, in order."""

    def __init__(self, root: Path):
        self.root = root
        self.meta = json.loads((root / INDEX).read_text())
        self.mode = self.meta["mode"]
        self._files: dict[int, Any] = {}

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def targets(self, item_ids: list[str]) -> TeacherTargets:
        parts = [self._rows(*self.meta["items"][i]) for i in item_ids]
        if self.mode == "exact":
            return TeacherTargets(logits=torch.cat([p["logits"] for p in parts]))
        return TeacherTargets(logp=torch.cat([p["logp"] for p in parts]),
                              index=torch.cat([p["index"] for p in parts]))

    def _rows(self, shard: int, start: int, end: int) -> dict[str, torch.Tensor]:
        if shard not in self._files:
            path = self.root / f"shard-{shard:05d}.safetensors"
            self._files[shard] = safe_open(str(path), framework="pt")
        handle = self._files[shard]
        return {name: handle.get_slice(name)[start:end] for name in handle.keys()}  # noqa: SIM118
