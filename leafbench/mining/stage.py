"""The `mine` stage: one gradient pass of teacher and student over the training pairs.

Its output, the saliency store, is τ-independent (g, ĝ and Δ per context token), so every τ and
threshold mode of a sweep is served by the same pass. The batches are planned once for the whole
pass; each finished batch is one file in the partial directory, so a killed run resumes after its
last finished batch, and the store is those files merged in batch order at the end.

Data parallel (`mining.launch`, leafbench.data_parallel): launched ranks take token-balanced
shares of the same batches, so the store is byte-identical for any number of processes.

Teacher and student may use different tokenizers (the paper pairs Llama with Qwen). Each model
then reads the pair through its own tokenizer, and the store scores the pieces of the common
segmentation of the context text instead of tokens (`leafbench.mining.alignment`); a row's
`segmentation` field says which ("tokens" or "common"). Offsets, sources and every per-unit list
keep their meaning, so the prune stage reads both kinds alike.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from leafbench.contract import StageContext, artifact, digest
from leafbench.data_parallel import Rank, in_process, launch_ranks, my_share
from leafbench.mining.alignment import (
    Segmentation,
    common_segmentation,
    piece_norms,
    piece_sums,
    same_tokenizer,
    token_segmentation,
)
from leafbench.mining.saliency import confounder_scores, context_surprisal, gradient_norms
from leafbench.models import load_causal_lm, load_tokenizer
from leafbench.progress import progress_bar
from leafbench.samples import (
    EncodedPair,
    encode_pair,
    load_pairs,
    read_jsonl,
    split_response,
)

STORE = artifact("mine", "store")
BATCHES = "batches"  # while the stage runs: one finished file of rows per batch, merged at the end
LAYOUT = "layout"  # in BATCHES: the plan layout its batch files were cut by
SPEC = "launch.json"  # what launched ranks read (removed once they exit)


@dataclass(frozen=True)
class _Unit:
    """One mining unit, encoded for both models, and the segmentation its store row scores."""

    row: dict[str, Any]
    enc_t: EncodedPair
    enc_s: EncodedPair
    seg: Segmentation


@dataclass(frozen=True)
class MiningPlan:
    """Every batch of the whole pass, in the order one process runs them: a rank computes some
    of these very batches, so its numbers (padding included) do not depend on the rank count."""

    teacher_tok: Any
    student_tok: Any
    batches: list[list[_Unit]]

    def layout(self) -> str:
        """Which unit is in which batch: batch files are only valid under this very layout."""
        return digest([[u.row["id"] for u in units] for units in self.batches])

    def cost(self, b: int) -> float:
        """Padded tokens the two models read for batch b (what the ranks are balanced on)."""
        units = self.batches[b]
        return float(len(units) * (max(len(u.enc_t.input_ids) for u in units)
                                   + max(len(u.enc_s.input_ids) for u in units)))


def run_mine(ctx: StageContext) -> dict[str, float]:
    plan = plan_mining(ctx)
    batch_dir = ctx.out / BATCHES
    _resume(plan, batch_dir, ctx.out / STORE)
    pending = [b for b in range(len(plan.batches)) if not _batch_file(batch_dir, b).is_file()]
    launch = _launch(ctx.exp)
    if launch is None or in_process(launch):
        _mine_share(ctx, plan, pending, Rank(0, 1))
    elif pending:
        launch_ranks(ctx, launch, mine_batches, {"pending": pending}, SPEC)
    _merge(plan, batch_dir, ctx.out / STORE)
    # "Context tokens" are the store's units: tokens, or common pieces across two tokenizers.
    return {"samples": float(sum(len(units) for units in plan.batches)),
            "context_tokens_this_run": float(sum(len(u.seg.offsets) for b in pending
                                                 for u in plan.batches[b]))}


def _launch(exp: Any) -> Any:
    """`mining.launch`; None for a hand-built experiment that has no such section."""
    return getattr(exp.mining, "launch", None)


def plan_mining(ctx: StageContext) -> MiningPlan:
    """Tokenise every unit with both tokenizers, drop what cannot be mined, and cut the
    length-sorted units into batches (length-sorted batches waste little on padding)."""
    exp = ctx.exp
    pairs = load_pairs(ctx.refs.train_jsonl, exp.data.max_samples)
    student_tok = load_tokenizer(ctx.refs.student)
    teacher_tok = load_tokenizer(ctx.refs.teacher)
    shared = same_tokenizer(teacher_tok, student_tok)
    units = []
    for row in pairs:
        for unit in mining_units(row, exp.mining.level, exp.mining.segments):
            args = (row["instruction"], row["response"], exp.data.max_length,
                    unit["loss_from"], unit["loss_to"])
            enc_s = encode_pair(student_tok, *args)
            enc_t = enc_s if shared else encode_pair(teacher_tok, *args)
            if not (_minable(enc_s) and _minable(enc_t)):
                continue
            seg = token_segmentation(enc_s) if shared else common_segmentation(enc_t, enc_s)
            if seg.offsets:
                units.append(_Unit({**row, **unit}, enc_t, enc_s, seg))
    units.sort(key=lambda u: max(len(u.enc_t.input_ids), len(u.enc_s.input_ids)))
    size = exp.mining.batch_size
    return MiningPlan(teacher_tok, student_tok,
                      [units[i : i + size] for i in range(0, len(units), size)])


def mine_batches(ctx: StageContext, rank: Rank, work: dict[str, Any]) -> None:
    """A launched rank: its token-balanced share of the pending batches."""
    _mine_share(ctx, plan_mining(ctx), work["pending"], rank)


def _mine_share(ctx: StageContext, plan: MiningPlan, pending: list[int], rank: Rank) -> None:
    """Compute this rank's batches, each written to its own file as soon as it is done (the
    models are loaded only by a rank that has work)."""
    share = my_share(pending, [plan.cost(b) for b in pending], rank)
    if not share:
        return
    exp = ctx.exp
    teacher = load_causal_lm(ctx.refs.teacher, exp.models.dtype, exp.models.device).eval()
    student = load_causal_lm(ctx.refs.student, exp.models.dtype, exp.models.device).eval()
    pad_t, pad_s = plan.teacher_tok.pad_token_id, plan.student_tok.pad_token_id
    label = "mine" if rank.count == 1 else f"mine rank {rank.index}"
    with progress_bar(label, sum(len(plan.batches[b]) for b in share)) as bar:
        for b in share:
            chunk = plan.batches[b]
            # Each model reads its own tokenizer's ids, padded with its own pad id.
            g_t = gradient_norms(teacher, [u.enc_t for u in chunk], pad_t)
            g_s = gradient_norms(student, [u.enc_s for u in chunk], pad_s)
            nll = context_surprisal(student, [u.enc_s for u in chunk], pad_s)
            rows = [_store_row(u.row, u.seg, gt, gs, ns)
                    for u, gt, gs, ns in zip(chunk, g_t, g_s, nll, strict=True)]
            _write_batch(ctx.out / BATCHES, b, "".join(json.dumps(r) + "\n" for r in rows))
            bar.advance(len(chunk))


def _batch_file(batch_dir: Path, b: int) -> Path:
    return batch_dir / f"batch-{b:07d}.jsonl"


def _write_batch(batch_dir: Path, b: int, text: str) -> None:
    """Written aside and renamed: a batch file under its final name is always whole. The
    temporary name is the writer's own (its pid): an orphaned rank of a killed run and the rank
    of the run that took over may write the same batch, and neither may truncate the other's
    file under the other's rename (their contents are identical)."""
    final = _batch_file(batch_dir, b)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.rename(final)


def _merge(plan: MiningPlan, batch_dir: Path, store: Path) -> None:
    """The store: every batch's rows in batch order (the one-process order), whichever rank
    wrote them; written aside and renamed, then the batch files go."""
    missing = [b for b in range(len(plan.batches)) if not _batch_file(batch_dir, b).is_file()]
    if missing:
        raise RuntimeError(f"mine: {len(missing)} batches unfinished after all ranks exited "
                           f"(first: {missing[0]}); run the stage again to resume")
    tmp = store.with_suffix(".merging")
    with open(tmp, "w", encoding="utf-8") as fh:
        for b in range(len(plan.batches)):
            fh.write(_batch_file(batch_dir, b).read_text(encoding="utf-8"))
    tmp.rename(store)
    shutil.rmtree(batch_dir)


def _resume(plan: MiningPlan, batch_dir: Path, store: Path) -> None:
    """Keep what an earlier run of this partial directory finished. Batch files count as they
    are when they were cut by this plan's layout. Rows in batch files of another layout (the
    batch size changed: it is no part of the stage key) or in a store left in the directory
    (merged by a run killed before it committed, or appended row by row by an older version;
    a torn last line is dropped) give back every batch all of whose rows they hold."""
    layout = plan.layout()
    marker = batch_dir / LAYOUT
    rows: dict[str, Any] = {}
    if batch_dir.is_dir() and not (marker.is_file() and marker.read_text() == layout):
        for path in sorted(batch_dir.glob("batch-*.jsonl")):
            rows.update((r["id"], r) for r in read_jsonl(path))
        shutil.rmtree(batch_dir)
    if not batch_dir.is_dir():
        batch_dir.mkdir()
        marker.write_text(layout)
    if store.exists():
        rows.update((r["id"], r) for r in read_jsonl(store, torn_tail_ok=True))
    for b, units in enumerate(plan.batches):
        if not _batch_file(batch_dir, b).is_file() and all(u.row["id"] in rows for u in units):
            _write_batch(batch_dir, b, "".join(json.dumps(rows[u.row["id"]]) + "\n"
                                               for u in units))
    store.unlink(missing_ok=True)


def _minable(enc: EncodedPair) -> bool:
    """A unit is mined only when it has context tokens and its loss survived truncation."""
    return bool(enc.context_positions) and enc.n_loss > 0


def mining_units(row: dict[str, Any], level: str, segments: int) -> list[dict[str, Any]]:
    """What one pair is mined as. Instruction level: the whole response is the loss and the
    instruction the context. Response level: for each segment j ≥ 2 of k, segment j is the loss
    and the instruction plus segments < j the context."""
    units = []
    if level in ("instruction", "both"):
        units.append({"id": row["id"], "sample_id": row["id"], "level": "instruction",
                      "segment": 0, "loss_from": 0, "loss_to": None})
    if level in ("response", "both"):
        for j, (start, end) in enumerate(split_response(row["response"], segments)[1:], 2):
            units.append({"id": f"{row['id']}@seg{j}", "sample_id": row["id"],
                          "level": "response", "segment": j, "loss_from": start, "loss_to": end})
    return units


def _store_row(row: dict[str, Any], seg: Segmentation, gt: torch.Tensor, gs: torch.Tensor,
               surprisal: torch.Tensor) -> dict[str, Any]:
    """One store row: per unit of `seg`, its text, place, both models' g and the scores. `gt`,
    `gs` and `surprisal` are per token of each model's own context."""
    g_teacher = piece_norms(gt, seg.teacher_tokens)
    g_student = piece_norms(gs, seg.student_tokens)
    scores = confounder_scores(g_teacher, g_student)
    inst = row["instruction"]
    source_text = {"instruction": inst, "response": row["response"]}
    out = {
        "id": row["id"],
        "sample_id": row["sample_id"],
        "level": row["level"],
        "segment": row["segment"],
        "loss_from": row["loss_from"],
        "loss_to": row["loss_to"],
        "instruction": inst,
        "response": row["response"],
        "segmentation": seg.kind,
        "tokens": [source_text[src][s:e]
                   for (s, e), src in zip(seg.offsets, seg.sources, strict=True)],
        "offsets": [list(o) for o in seg.offsets],
        "sources": seg.sources,
        "g_teacher": g_teacher.tolist(),
        "g_student": g_student.tolist(),
        "student_surprisal": piece_sums(surprisal, seg.student_tokens).tolist(),
        **{k: v.tolist() for k, v in scores.items()},
    }
    for key in ("answer", "distractor_spans"):
        if key in row:
            out[key] = row[key]
    return out
