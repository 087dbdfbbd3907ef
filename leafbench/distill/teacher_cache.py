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

Data parallel (`distill.teacher_cache.launch`, leafbench.data_parallel): launched ranks take
token-balanced shares of the same shards and the parent writes the index once they have all
exited, so the cache is byte-identical for any number of processes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from leafbench.contract import StageContext, artifact
from leafbench.data_parallel import Rank, in_process, launch_ranks, my_share
from leafbench.distill.forward import response_logits
from leafbench.distill.loss import TeacherTargets, topk_targets
from leafbench.samples import EncodedPair, encode_pair, read_jsonl

INDEX = artifact("teach", "index")
SHARD_ITEMS = 256
SPEC = "launch.json"  # what launched ranks read (removed once they exit)


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
    from leafbench.models import load_tokenizer

    exp, cfg = ctx.exp, ctx.exp.distill.teacher_cache
    tokenizer = load_tokenizer(ctx.refs.student)
    vocab = len(tokenizer)
    mode = resolve_mode(cfg, vocab)
    index_path = ctx.out / INDEX
    if mode == "off":
        index_path.write_text(json.dumps({"mode": "off"}))
        return {"teacher_forward_items": 0.0, "cached_positions": 0.0}

    encoded, ids = _plan(ctx, tokenizer)
    shards = [ids[start : start + SHARD_ITEMS] for start in range(0, len(ids), SHARD_ITEMS)]
    done = _finished_shards(ctx.out)
    pending = [n for n in range(len(shards)) if n not in done]
    work = {"pending": pending, "shard_items": SHARD_ITEMS, "mode": mode}
    if in_process(cfg.launch):
        _teach_share(ctx, tokenizer, encoded, shards, work, Rank(0, 1))
    elif pending:
        launch_ranks(ctx, cfg.launch, teach_shards, work, SPEC)
    missing = [n for n in range(len(shards)) if not _shard_file(ctx.out, n).is_file()]
    if missing:
        raise RuntimeError(f"teach: {len(missing)} shards unfinished after all ranks exited "
                           f"(first: {missing[0]}); run the stage again to resume")
    for leftover in ctx.out.glob(".shard-*.partial"):  # writes a killed rank never finished
        leftover.unlink()

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
    return {"teacher_forward_items": float(sum(len(shards[n]) for n in pending)),
            "cached_items": float(len(ids)),
            "cached_positions": float(sum(e.n_loss for e in encoded.values())),
            "cache_mb": sum(p.stat().st_size for p in ctx.out.glob("shard-*")) / 2**20}


def _plan(ctx: StageContext, tokenizer: Any) -> tuple[dict[str, EncodedPair], list[str]]:
    """Every item encoded with the student's tokenizer, and the item ids in shard order (by
    length: a shard's batches pad little). Shard n is ids[n·size : (n+1)·size]."""
    items = read_jsonl(ctx.inputs["prune"] / artifact("prune", "counterfactuals"))
    encoded = encode_items(tokenizer, items, ctx.exp.data.max_length)
    return encoded, sorted(encoded, key=lambda i: (len(encoded[i].input_ids), i))


def teach_shards(ctx: StageContext, rank: Rank, work: dict[str, Any]) -> None:
    """A launched rank: its token-balanced share of the pending shards."""
    from leafbench.models import load_tokenizer

    tokenizer = load_tokenizer(ctx.refs.student)
    encoded, ids = _plan(ctx, tokenizer)
    size = work["shard_items"]
    shards = [ids[start : start + size] for start in range(0, len(ids), size)]
    _teach_share(ctx, tokenizer, encoded, shards, work, rank)


def _teach_share(ctx: StageContext, tokenizer: Any, encoded: dict[str, EncodedPair],
                 shards: list[list[str]], work: dict[str, Any], rank: Rank) -> None:
    """Run the teacher over this rank's shards. A shard is whole batches of the one-process
    run (its items cut into `distill.batch_size` batches in order), so its bytes do not depend
    on which rank, or how many, computed it."""
    from leafbench.models import load_causal_lm

    exp, cfg = ctx.exp, ctx.exp.distill.teacher_cache
    pending = work["pending"]
    costs = [float(sum(_padded(encoded, shards[n][i : i + exp.distill.batch_size])
                       for i in range(0, len(shards[n]), exp.distill.batch_size)))
             for n in pending]
    share = my_share(pending, costs, rank)
    if not share:
        return
    teacher = load_causal_lm(ctx.refs.teacher, exp.models.dtype, exp.models.device).eval()
    for number in share:
        rows = _teacher_rows(teacher, [encoded[i] for i in shards[number]],
                             tokenizer.pad_token_id, exp.distill.batch_size, len(tokenizer),
                             work["mode"], cfg.k, exp.distill.loss.temperature)
        final = _shard_file(ctx.out, number)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.partial")  # the writer's own name
        save_file({k: v.contiguous() for k, v in rows.tensors().items()}, str(tmp))
        tmp.rename(final)  # a killed write never leaves a shard under its final name


def _padded(encoded: dict[str, EncodedPair], batch: list[str]) -> int:
    """Tokens the teacher reads for one batch, padding included."""
    return len(batch) * max(len(encoded[i].input_ids) for i in batch)


def _shard_file(out: Path, number: int) -> Path:
    return out / f"shard-{number:05d}.safetensors"


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
