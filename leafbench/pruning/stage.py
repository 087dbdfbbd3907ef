"""The `prune` stage: saliency store + τ + strategy -> counterfactual dataset.

Writes
  counterfactuals.jsonl  the distillation set: every original pair, and after it each of its
                         counterfactuals (`original_id` links them; `kind` says which is which)
  spans.jsonl            every mined span: sample id, character offsets, text, Δ and ĝ values
  detection.json         when the data carries ground-truth distractor spans: precision / recall
                         / F1 of the marked tokens, for gradient mining and each baseline

Marks come from gradient mining (Δ at the row's level's τ: `mining.threshold.tau` for the
instruction, `response_tau` for response segments when set) or, for the masking ablation, from
a baseline mask with the same per-row budget (`pruning.mask`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from statistics import fmean
from typing import Any

from leafbench.config import Experiment
from leafbench.contract import CounterfactualItem, SpanRecord, StageContext, artifact
from leafbench.mining import BASELINES, mark_confounders, precision_recall, token_in_spans
from leafbench.pruning.spans import char_range, find_spans, prune_sample
from leafbench.samples import read_jsonl, write_jsonl

SPAN_SAMPLE = 200  # mined spans shown in MLflow; the full list stays in the artifact


def run_prune(ctx: StageContext) -> dict[str, float]:
    exp = ctx.exp
    rows = read_jsonl(ctx.inputs["mine"] / artifact("mine", "store"))
    threshold = exp.mining.threshold

    dataset, spans = [], []
    for row in rows:
        marked = marks(row, exp)
        texts = {"instruction": row["instruction"], "response": row["response"]}
        dataset.append(_item(row, row["id"], texts, "original", []))
        cfs = prune_sample(texts, row["offsets"], row["sources"], marked, exp.pruning.strategy)
        for j, (pruned, removed) in enumerate(cfs[: exp.pruning.max_counterfactuals_per_sample]):
            dataset.append(_item(row, f"{row['id']}#cf{j}", pruned, exp.pruning.strategy,
                                 removed))
        spans.extend(_span_records(row, marked))

    outcomes: list[dict] = []
    if exp.pruning.validation:
        dataset, outcomes = _validate(ctx, rows, dataset)
        write_jsonl(ctx.out / artifact("prune", "validation"), outcomes)
    write_jsonl(ctx.out / artifact("prune", "counterfactuals"), dataset)
    write_jsonl(ctx.out / artifact("prune", "spans"), spans)
    write_jsonl(ctx.out / artifact("prune", "spans_sample"), spans[:SPAN_SAMPLE])
    n_marked = sum(s["token_range"][1] - s["token_range"][0] for s in spans)
    n_tokens = sum(len(r["tokens"]) for r in rows)
    metrics = {
        "samples": float(len(rows)),
        "counterfactuals": float(len(dataset) - len(rows)),
        "spans": float(len(spans)),
        "marked_token_fraction": n_marked / n_tokens if n_tokens else 0.0,
    }
    if outcomes:
        metrics["validation_kept_fraction"] = sum(o["kept"] for o in outcomes) / len(outcomes)
    if rows and all("distractor_spans" in r for r in rows):
        taus = sorted({threshold.tau, *exp.mining.report_taus})
        table = {f"{tau:g}": detection_at(rows, threshold.mode, tau, exp.mining.baselines,
                                          exp.seed) for tau in taus}
        (ctx.out / artifact("prune", "detection")).write_text(json.dumps(
            {"mode": threshold.mode, "by_tau": table}, indent=2))
        for tau, methods in table.items():
            for method, scores in methods.items():
                metrics.update({f"detection/tau{tau}/{method}/{k}": v
                                for k, v in scores.items()})
                if tau == f"{threshold.tau:g}":
                    metrics.update({f"{method}_{k}": v for k, v in scores.items()})
    return metrics


def marks(row: dict[str, Any], exp: Experiment) -> list[bool]:
    """The context tokens of one mined row that pruning removes: gradient mining's marks at the
    row's level's τ, or a baseline mask (`pruning.mask`) given the same number of tokens. The
    random mask draws from a generator seeded by (seed, row id), so each row's draw is the same
    whatever other rows the store holds."""
    threshold = exp.mining.threshold
    marked = mark_confounders(row["delta"], row["tokens"], threshold.mode,
                              threshold.tau_for(row["level"]))
    if exp.pruning.mask == "gradient":
        return marked
    rng = random.Random(f"{exp.seed}:{row['id']}")
    return BASELINES[exp.pruning.mask](row, sum(marked), rng)


def _validate(ctx: StageContext, rows: list[dict], dataset: list[CounterfactualItem]
              ) -> tuple[list[CounterfactualItem], list[dict]]:
    """Drop instruction-level counterfactuals that teacher or student answers wrongly."""
    from leafbench.models import load_causal_lm, load_tokenizer
    from leafbench.pruning.validation import validate_counterfactuals

    golds = {r["sample_id"]: r.get("answer") for r in rows}
    missing = [sid for sid, gold in golds.items() if gold is None]
    if missing:
        raise ValueError(f"pruning.validation needs an 'answer' field in {ctx.refs.train_jsonl}; "
                         f"sample {missing[0]!r} has none")
    exp = ctx.exp
    checked = [it for it in dataset if it["kind"] != "original" and it["level"] == "instruction"]
    tokenizer = load_tokenizer(ctx.refs.student)
    teacher = load_causal_lm(ctx.refs.teacher, exp.models.dtype, exp.models.device).eval()
    student = load_causal_lm(ctx.refs.student, exp.models.dtype, exp.models.device).eval()
    outcomes = validate_counterfactuals(checked, {k: str(v) for k, v in golds.items()}, teacher,
                                        student, tokenizer, exp.pruning.checker,
                                        exp.pruning.validation_max_new_tokens,
                                        load_tokenizer(ctx.refs.teacher))
    dropped = {o["id"] for o in outcomes if not o["kept"]}
    return [it for it in dataset if it["id"] not in dropped], outcomes


def detection_at(rows: list[dict[str, Any]], mode: str, tau: float, baselines: Sequence[str],
                 seed: int) -> dict[str, dict[str, float]]:
    """Precision / recall / F1 against the true distractor spans at one τ, for gradient mining
    and each baseline given the same per-sample token budget."""
    rng = random.Random(seed)
    flags: dict[str, list] = {"gradient": [], **{b: [] for b in baselines}}
    for row in rows:
        truth = [src == "instruction" and token_in_spans(t, o, row["distractor_spans"])
                 for t, o, src in zip(row["tokens"], row["offsets"], row["sources"], strict=True)]
        marked = mark_confounders(row["delta"], row["tokens"], mode, tau)
        flags["gradient"].append((marked, truth))
        for name in baselines:
            flags[name].append((BASELINES[name](row, sum(marked), rng), truth))
    return {name: precision_recall(pairs) for name, pairs in flags.items()}


def _item(row: dict[str, Any], item_id: str, texts: dict[str, str], kind: str,
          removed: list[tuple[str, int, int]]) -> CounterfactualItem:
    """A distillation item. Response-level items keep the loss on the segment mined and every
    later one: `loss_from` moves left by what was removed from the response before it."""
    cut = sum(e - s for src, s, e in removed if src == "response" and e <= row["loss_from"])
    return {
        "id": item_id,
        "original_id": row["id"],
        "sample_id": row["sample_id"],
        "level": row["level"],
        "kind": kind,
        "instruction": texts["instruction"],
        "response": texts["response"],
        "loss_from": row["loss_from"] - cut,
        "removed": [list(r) for r in removed],
    }


def _span_records(row: dict[str, Any], marked: list[bool]) -> list[SpanRecord]:
    out: list[SpanRecord] = []
    for first, last in find_spans(marked, row["sources"]):
        source = row["sources"][first]
        start, end = char_range(row["offsets"], (first, last))
        out.append({
            "sample_id": row["sample_id"],
            "level": row["level"],
            "segment": row["segment"],
            "source": source,
            "token_range": [first, last],
            "char_range": [start, end],
            "text": row[source][start:end],
            "delta": fmean(row["delta"][first:last]),
            "teacher_norm": fmean(row["teacher_norm"][first:last]),
            "student_norm": fmean(row["student_norm"][first:last]),
        })
    return out
