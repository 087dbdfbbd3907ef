"""The `interpret` stage: did distillation move the student's attention off the mined tokens?

Inputs (upstream artifact directories): `mine` (saliency.jsonl), `prune` (spans.jsonl, the spans
marked at this experiment's threshold) and `distill` (the trained student in `student/`). The
student before distillation is the experiment's own student reference.

Writes
  attention.json    attention mass on the mined tokens before and after distillation (raw,
                    normalised by the mined tokens' share, and the non-mined baseline), the
                    summaries and one record per sample
  delta_view.html   the saliency store rendered token by token, coloured by Δ, with the
                    threshold's marks and any ground-truth distractor spans

Only instruction-level rows are measured (the mass is defined over instruction tokens), and at
most `interpret.max_samples` of those that have a mined span, chosen with the experiment's seed, so the stage
costs two forward passes over a few dozen samples however large the corpus is.
"""

from __future__ import annotations

import gc
import json
import random
from collections import defaultdict
from typing import Any

import torch

from leafbench.contract import StageContext, artifact
from leafbench.interpret.attention import MinedSample, SampleMass, attention_mass, summarise
from leafbench.interpret.delta_view import render_delta_view
from leafbench.models import load_causal_lm, load_tokenizer
from leafbench.samples import read_jsonl

ATTENTION = artifact("interpret", "attention")
VIEW = artifact("interpret", "view")
BATCH_SIZE = 4  # every layer's (heads × length²) weights are held at once: keep batches small
QUERY_POSITIONS = "positions predicting a response token (t - 1 for each response token t)"


def run_interpret(ctx: StageContext) -> dict[str, float]:
    exp, cfg = ctx.exp, ctx.exp.interpret
    threshold = exp.mining.threshold
    store = read_jsonl(ctx.inputs["mine"] / artifact("mine", "store"))
    rows = [r for r in store if r["level"] == "instruction"]
    rng = random.Random(exp.seed)

    view_rows = _pick(rows or store, cfg.view_rows, rng)
    (ctx.out / VIEW).write_text(render_delta_view(view_rows, threshold.mode, threshold.tau,
                                                  limit=cfg.view_rows), encoding="utf-8")

    samples = _pick(mined_samples(rows, read_jsonl(ctx.inputs["prune"] / artifact("prune", "spans"))),
                    cfg.max_samples, rng)
    tokenizer = load_tokenizer(ctx.refs.student)
    before = _measure(ctx.refs.student, tokenizer, samples, exp)
    after = _measure(str(ctx.inputs["distill"] / "student"), tokenizer, samples, exp)

    summary_before, summary_after = summarise(before), summarise(after)
    report = {
        "threshold": {"mode": threshold.mode, "tau": threshold.tau},
        "query_positions": QUERY_POSITIONS,
        "averaging": "layers and heads, then query positions, then samples (equal weight)",
        "max_length": exp.data.max_length,
        "samples": len(before),
        "samples_with_spans": len(samples),
        "before": summary_before,
        "after": summary_after,
        "per_sample": [_record(b, a) for b, a in zip(before, after, strict=True)],
    }
    (ctx.out / ATTENTION).write_text(json.dumps(report, indent=2), encoding="utf-8")

    metrics = {"attention_samples": float(len(before))}
    if not before:
        return metrics
    names = {"mass": "attention_mass", "normalised_mass": "attention_mass_normalised",
             "non_mined_mass": "attention_non_mined_mass",
             "non_mined_normalised_mass": "attention_non_mined_mass_normalised"}
    for key, name in names.items():
        metrics[f"{name}_before"] = summary_before[key]
        metrics[f"{name}_after"] = summary_after[key]
        if summary_before[key] > 0:
            metrics[f"{name}_ratio"] = summary_after[key] / summary_before[key]
    metrics["attention_mined_token_share"] = summary_before["mined_token_share"]
    return metrics


def mined_samples(rows: list[dict[str, Any]], spans: list[dict[str, Any]]) -> list[MinedSample]:
    """Instruction-level saliency rows that have at least one mined span in the instruction,
    with those spans' character ranges (spans.jsonl: what pruning marked at this threshold)."""
    ranges: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for span in spans:
        if span["level"] == "instruction" and span["source"] == "instruction":
            ranges[span["sample_id"]].append((span["char_range"][0], span["char_range"][1]))
    return [MinedSample(r["id"], r["instruction"], r["response"], tuple(ranges[r["sample_id"]]))
            for r in rows if ranges.get(r["sample_id"])]


def _pick(items: list[Any], n: int, rng: random.Random) -> list[Any]:
    """At most n items, a seeded random choice kept in store order. The store is written in
    length-sorted batches, so its first n rows would be the shortest, not a fair sample."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in sorted(rng.sample(range(len(items)), n))]


def _measure(ref: str, tokenizer: Any, samples: list[MinedSample], exp: Any) -> list[SampleMass]:
    if not samples:
        return []
    model = load_causal_lm(ref, exp.models.dtype, exp.models.device).eval()
    try:
        return attention_mass(model, tokenizer, samples, exp.data.max_length, BATCH_SIZE)
    finally:
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _record(before: SampleMass, after: SampleMass) -> dict[str, Any]:
    def masses(m: SampleMass) -> dict[str, float]:
        return {"mined": m.mined, "normalised": m.normalised, "non_mined": m.non_mined,
                "rest": m.rest}

    return {"id": before.id, "n_mined": before.n_mined, "n_context": before.n_context,
            "n_queries": before.n_queries, "before": masses(before), "after": masses(after)}
