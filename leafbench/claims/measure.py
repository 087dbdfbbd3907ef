"""What the claims read from a condition's artifacts, item by item.

- accuracy: the per-item 0/1 verdicts of a role's evaluation (samples_<task>.jsonl);
- detection: per training sample, the TP/FP/FN token counts of gradient mining and each
  baseline against the planted distractor spans, drawn exactly as the prune stage's
  `detection_at` draws them (same threshold, same budget, the same seeded random stream), so the
  pooled counts reproduce its detection.json;
- attention: the attention mass of a model on the mined tokens and on the ground-truth
  distractor tokens of a fixed set of training samples (leafbench.interpret's measure);
- errors: what a student answers when it is wrong (the distractor's number, or another).
"""

from __future__ import annotations

import gc
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from leafbench.contract import artifact
from leafbench.mining import BASELINES, mark_confounders, token_in_spans
from leafbench.samples import read_jsonl


def item_verdicts(evaluate_dir: Path, role: str) -> dict[str, float]:
    """`{"task/doc_id": correct}` for one role of an evaluate artifact (first sample per item)."""
    out: dict[str, float] = {}
    for path in sorted((evaluate_dir / role).glob("samples_*.jsonl")):
        task = path.stem.removeprefix("samples_")
        for row in read_jsonl(path):
            out.setdefault(f"{task}/{row['doc_id']}", float(bool(row["correct"])))
    if not out:
        raise FileNotFoundError(f"no per-item records under {evaluate_dir / role}")
    return out


def item_responses(evaluate_dir: Path, role: str, task: str = "leaf_synthetic"
                   ) -> dict[int, tuple[str, str]]:
    """`{doc_id: (extracted answer, response text)}` of a role's first sample per item."""
    path = evaluate_dir / role / f"samples_{task}.jsonl"
    return {int(r["doc_id"]): (str(r.get("extracted_strict")), str(r.get("response", "")))
            for r in read_jsonl(path) if r.get("sample", 0) == 0}


def detection_counts(rows: Sequence[dict[str, Any]], mode: str, tau: float,
                     baselines: Sequence[str], seed: int) -> dict[str, list[tuple[int, int, int]]]:
    """Per row, (TP, FP, FN) over its tokens for "gradient" and each baseline."""
    rng = random.Random(seed)
    out: dict[str, list[tuple[int, int, int]]] = {"gradient": [], **{b: [] for b in baselines}}
    for row in rows:
        truth = [src == "instruction" and token_in_spans(t, o, row["distractor_spans"])
                 for t, o, src in zip(row["tokens"], row["offsets"], row["sources"], strict=True)]
        marked = mark_confounders(row["delta"], row["tokens"], mode, tau)
        out["gradient"].append(_counts(marked, truth))
        for name in baselines:
            out[name].append(_counts(BASELINES[name](row, sum(marked), rng), truth))
    return out


def _counts(marked: Sequence[bool], truth: Sequence[bool]) -> tuple[int, int, int]:
    tp = sum(1 for m, t in zip(marked, truth, strict=True) if m and t)
    fp = sum(1 for m, t in zip(marked, truth, strict=True) if m and not t)
    fn = sum(1 for m, t in zip(marked, truth, strict=True) if t and not m)
    return tp, fp, fn


def store_rows(mine_dir: Path) -> list[dict[str, Any]]:
    return read_jsonl(mine_dir / artifact("mine", "store"))


def attention_items(mine_dir: Path, prune_dir: Path, n: int) -> dict[str, list[Any]]:
    """The samples attention is measured on: `n` instruction-level training samples that have
    a mined span and a planted distractor, chosen with a fixed seed (not the run's), so every
    seed and condition is measured on the same items. Two views of each: its mined spans, and
    its ground-truth distractor clause."""
    from leafbench.interpret.attention import MinedSample
    from leafbench.interpret.stage import mined_samples

    rows = [r for r in store_rows(mine_dir) if r["level"] == "instruction"]
    truth = {r["sample_id"]: r.get("distractor_spans") or [] for r in rows}
    mined = [s for s in mined_samples(rows, read_jsonl(prune_dir / artifact("prune", "spans")))
             if truth.get(s.id)]
    if len(mined) > n:
        mined = [mined[i] for i in sorted(random.Random(0).sample(range(len(mined)), n))]
    planted = [MinedSample(s.id, s.instruction, s.response,
                           tuple((a, b) for a, b in truth[s.id])) for s in mined]
    return {"mined": mined, "distractor": planted}


def attention_by_item(ref: str, tokenizer_ref: str, samples: Sequence[Any], max_length: int,
                      dtype: str, device: str) -> dict[str, float]:
    """`{sample id: attention mass on its spans}` for the model at `ref` (raw mass: averaged over
    layers, heads and the positions predicting response tokens; see leafbench.interpret)."""
    import torch

    from leafbench.interpret.attention import attention_mass
    from leafbench.models import load_causal_lm, load_tokenizer

    if not samples:
        return {}
    model = load_causal_lm(ref, dtype, device).eval()
    try:
        masses = attention_mass(model, load_tokenizer(tokenizer_ref), samples, max_length)
    finally:
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return {m.id: m.mined for m in masses}


WORKING = re.compile(r"\s*(\d+) \+ (\d+) = (\d*)")
ERROR_KINDS = ("right", "copies_distractor", "distractor_as_operand", "wrong_sum_off_by_one",
               "wrong_sum", "other")


def wrong_answers(responses: dict[int, tuple[str, str]], test_rows: Sequence[dict[str, Any]]
                  ) -> dict[str, float]:
    """Shares of the test items by what the model answered (ERROR_KINDS, first match wins):
    right; the final answer is a distractor's number (the shortcut); the working "x + y ="
    uses a distractor's number as an operand; the operands are right but the sum is off by
    one, or off by more; anything else (no working, other operands)."""
    counts = dict.fromkeys(ERROR_KINDS, 0)
    for doc_id, row in enumerate(test_rows):
        answer, response = responses.get(doc_id, ("", ""))
        counts[_error_kind(answer, response, row)] += 1
    n = max(1, sum(counts.values()))
    return {k: v / n for k, v in counts.items()}


def _error_kind(answer: str, response: str, row: dict[str, Any]) -> str:
    numbers = {row["instruction"][a:b] for a, b in row.get("distractor_number_spans", [])}
    if answer == row["answer"]:
        return "right"
    if answer in numbers:
        return "copies_distractor"
    working, gold = WORKING.match(response), WORKING.match(row["response"])
    if working is None or gold is None:
        return "other"
    x, y, total = working.groups()
    operands = {gold.group(1), gold.group(2)}
    if {x, y} & numbers and not {x, y} <= operands:
        return "distractor_as_operand"
    if (x, y) == gold.groups()[:2] and total:
        return "wrong_sum_off_by_one" if abs(int(total) - int(row["answer"])) == 1 else "wrong_sum"
    return "other"
