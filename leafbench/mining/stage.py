"""The `mine` stage: one gradient pass of teacher and student over the training pairs.

Its output, the saliency store, is τ-independent (g, ĝ and Δ per context token), so every τ and
threshold mode of a sweep is served by the same pass. Rows are appended batch by batch and the
file is flushed after each batch: a killed run resumes after its last finished batch.

Teacher and student may use different tokenizers (the paper pairs Llama with Qwen). Each model
then reads the pair through its own tokenizer, and the store scores the pieces of the common
segmentation of the context text instead of tokens (`leafbench.mining.alignment`); a row's
`segmentation` field says which ("tokens" or "common"). Offsets, sources and every per-unit list
keep their meaning, so the prune stage reads both kinds alike.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from leafbench.contract import StageContext, artifact
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


def run_mine(ctx: StageContext) -> dict[str, float]:
    exp = ctx.exp
    pairs = load_pairs(ctx.refs.train_jsonl, exp.data.max_samples)
    student_tok = load_tokenizer(ctx.refs.student)
    teacher_tok = load_tokenizer(ctx.refs.teacher)
    shared = same_tokenizer(teacher_tok, student_tok)
    teacher = load_causal_lm(ctx.refs.teacher, exp.models.dtype, exp.models.device).eval()
    student = load_causal_lm(ctx.refs.student, exp.models.dtype, exp.models.device).eval()

    store = ctx.out / STORE
    done = _finished_ids(store)
    todo = []
    for row in pairs:
        for unit in mining_units(row, exp.mining.level, exp.mining.segments):
            if unit["id"] in done:
                continue
            args = (row["instruction"], row["response"], exp.data.max_length,
                    unit["loss_from"], unit["loss_to"])
            enc_s = encode_pair(student_tok, *args)
            enc_t = enc_s if shared else encode_pair(teacher_tok, *args)
            if not (_minable(enc_s) and _minable(enc_t)):
                continue
            seg = token_segmentation(enc_s) if shared else common_segmentation(enc_t, enc_s)
            if seg.offsets:
                todo.append(({**row, **unit}, enc_t, enc_s, seg))
    # Length-sorted batches waste little on padding; order does not change any number.
    todo.sort(key=lambda item: max(len(item[1].input_ids), len(item[2].input_ids)))

    size = exp.mining.batch_size
    n_pieces = 0
    with open(store, "a", encoding="utf-8") as fh, progress_bar("mine", len(todo)) as bar:
        for i in range(0, len(todo), size):
            chunk = todo[i : i + size]
            # Each model reads its own tokenizer's ids, padded with its own pad id.
            encs_t = [enc_t for _, enc_t, _, _ in chunk]
            encs_s = [enc_s for _, _, enc_s, _ in chunk]
            g_t = gradient_norms(teacher, encs_t, teacher_tok.pad_token_id)
            g_s = gradient_norms(student, encs_s, student_tok.pad_token_id)
            nll = context_surprisal(student, encs_s, student_tok.pad_token_id)
            for (row, _, _, seg), gt, gs, ns in zip(chunk, g_t, g_s, nll, strict=True):
                fh.write(json.dumps(_store_row(row, seg, gt, gs, ns)) + "\n")
                n_pieces += len(seg.offsets)
            fh.flush()
            bar.advance(len(chunk))
    # "Context tokens" are the store's units: tokens, or common pieces across two tokenizers.
    return {"samples": float(len(done) + len(todo)), "context_tokens_this_run": float(n_pieces)}


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


def _finished_ids(store: Any) -> set[str]:
    """Ids already in a partial store; a torn last line (killed mid-write) is dropped."""
    if not store.exists():
        return set()
    rows = read_jsonl(store, torn_tail_ok=True)
    store.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {r["id"] for r in rows}
