"""The `preliminary` stage: does removing the mined tokens help the *undistilled* student?

The paper motivates LeaF with this experiment (§2): before any training, the student answers
training problems more often once the tokens mining flags are removed from them. No training
happens here. For each training item with a checkable `answer` (instruction-level mining rows),
the student as given answers three versions of the instruction greedily:

  original  the instruction as given;
  pruned    every token the prune stage marked removed at once (collective pruning, whatever
            `pruning.mask` chose the marks);
  random    the same number of non-whitespace tokens removed, chosen at random with a
            generator seeded by (seed, item) — the control: removing *some* tokens of the same
            count should not help the way removing the mined ones does.

Each answer is graded with `pruning.checker`. Writes
  summary.json  accuracy_original, accuracy_pruned, accuracy_random, n (and the mean number of
                tokens removed, and how many items had any)
  items.jsonl   per item: {id, original_correct, pruned_correct, random_correct, removed_tokens}

Off by default (`preliminary.enabled`); `leafbench run EXP --until preliminary` runs it alone
with its upstream mine and prune.
"""

from __future__ import annotations

import random
from typing import Any

from leafbench.contract import StageContext, artifact
from leafbench.mining import BASELINES
from leafbench.samples import read_jsonl, write_jsonl


def run_preliminary(ctx: StageContext) -> dict[str, float]:
    from leafbench.models import load_causal_lm, load_tokenizer
    from leafbench.pruning import CHECKERS, greedy_answers

    exp, cfg = ctx.exp, ctx.exp.preliminary
    rows = [r for r in read_jsonl(ctx.inputs["mine"] / artifact("mine", "store"))
            if r["level"] == "instruction"]
    if not rows:
        raise ValueError("the preliminary experiment removes mined instruction tokens, and "
                         f"mining.level {exp.mining.level!r} mines none; use 'instruction' or "
                         "'both'")
    items = [r for r in rows if r.get("answer") not in (None, "")][: cfg.max_samples]
    if not items:
        raise ValueError("the preliminary experiment grades answers: the training data "
                         f"{ctx.refs.train_jsonl} has no item with an 'answer' field")
    marked = instruction_marks(read_jsonl(ctx.inputs["prune"] / artifact("prune", "spans")))
    versions = [three_versions(row, marked.get(row["sample_id"], set()), exp.seed)
                for row in items]

    tokenizer = load_tokenizer(ctx.refs.student)
    student = load_causal_lm(ctx.refs.student, exp.models.dtype, exp.models.device).eval()
    prompts = [text for v in versions for text in (v["original"], v["pruned"], v["random"])]
    answers = greedy_answers(student, tokenizer, prompts, cfg.max_new_tokens, cfg.batch_size)
    check = CHECKERS[exp.pruning.checker]

    records = []
    for i, (row, version) in enumerate(zip(items, versions, strict=True)):
        gold = str(row["answer"])
        original, pruned, rand = answers[3 * i : 3 * i + 3]
        records.append({"id": row["sample_id"], "original_correct": check(original, gold),
                        "pruned_correct": check(pruned, gold), "random_correct": check(rand, gold),
                        "removed_tokens": version["removed_tokens"]})
    write_jsonl(ctx.out / artifact("preliminary", "items"), records)
    n = len(records)
    return {
        "n": float(n),
        "accuracy_original": sum(r["original_correct"] for r in records) / n,
        "accuracy_pruned": sum(r["pruned_correct"] for r in records) / n,
        "accuracy_random": sum(r["random_correct"] for r in records) / n,
        "mean_removed_tokens": sum(r["removed_tokens"] for r in records) / n,
        "items_with_removals": float(sum(r["removed_tokens"] > 0 for r in records)),
    }


def instruction_marks(spans: list[dict[str, Any]]) -> dict[str, set[int]]:
    """Sample id -> the instruction-level row's token indices that pruning marked."""
    out: dict[str, set[int]] = {}
    for span in spans:
        if span["level"] == "instruction":
            out.setdefault(span["sample_id"], set()).update(range(*span["token_range"]))
    return out


def three_versions(row: dict[str, Any], marks: set[int], seed: int) -> dict[str, Any]:
    """The instruction as given, without its marked tokens, and without as many random ones."""
    flags = [i in marks for i in range(len(row["tokens"]))]
    rng = random.Random(f"preliminary:{seed}:{row['id']}")
    random_flags = BASELINES["random"](row, sum(flags), rng)
    return {"original": row["instruction"], "pruned": _without(row, flags),
            "random": _without(row, random_flags), "removed_tokens": sum(flags)}


def _without(row: dict[str, Any], flags: list[bool]) -> str:
    from leafbench.pruning import prune_sample

    pruned = prune_sample({"instruction": row["instruction"]}, row["offsets"], row["sources"],
                          flags, "collective")
    return pruned[0][0]["instruction"] if pruned else row["instruction"]
