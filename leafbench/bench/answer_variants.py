"""Answer-variant benchmark: how often each grading mode accepts the gold written another way,
and a near miss, on every item of GSM8K, MATH-500 and OlympiadBench.

For each item the suite (`leafbench.evaluation.answer_variants`) builds responses whose final
answer is the gold in an equivalent form or a near miss, and judges each with the `strict` and
the `paper` grading modes exactly as a run's headline filter (`strict-match`) does. Printed:
acceptance per variant kind and task, for both modes, then the overall rates and the variants
`strict` gets wrong. The baseline is the variant's label (accept for an equivalent form, reject
for a near miss); `paper` differs from it by design where the Qwen2.5-Math toolkit's rules do.

Run: `python -m leafbench.bench.answer_variants [--data-dir DIR] [--limit N] [--modes strict,paper]`
(all items by default; needs ../shared/data or a data dir laid out like it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from leafbench.bench.fixtures import data_dir
from leafbench.evaluation import answer_variants as av


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="first N items of each task")
    parser.add_argument("--modes", default="strict,paper")
    parser.add_argument("--show", type=int, default=20, help="wrong strict verdicts to list")
    args = parser.parse_args(argv)
    root = data_dir(args.data_dir)
    if root is None:
        sys.exit("no benchmark data: pass --data-dir or set LEAFBENCH_DATA_DIR")

    start = time.perf_counter()
    items = [i for t in av.TASKS for i in av.load_items(root, t)[: args.limit]]
    variants = [v for t in av.TASKS for v in av.generate([i for i in items if i.task == t])]
    docs = av.docs_of(items)
    print(f"{len(items)} items, {len(variants)} variants from {root} "
          f"(generated in {time.perf_counter() - start:.1f} s)")

    cells, judged_by_mode = {}, {}
    for mode in args.modes.split(","):
        t0 = time.perf_counter()
        judged = av.judge(variants, docs, mode)
        judged_by_mode[mode] = judged
        cells[mode] = av.acceptance(judged)
        r = av.rates(judged)
        print(f"{mode}: equivalent forms accepted {100 * r['equivalent_accepted']:.2f}% "
              f"of {r['n_equivalent']}, near misses accepted {100 * r['near_miss_accepted']:.2f}% "
              f"of {r['n_near_miss']} (judged in {time.perf_counter() - t0:.1f} s)")
    print()
    print("acceptance per kind x task (accepted/n):")
    print(av.format_table(cells))
    for mode, judged in judged_by_mode.items():
        wrong = [j for j in judged if not j.right]
        if mode != "strict" or not wrong:
            continue
        print(f"\n{mode}: {len(wrong)} verdicts differ from the label (first {args.show}):")
        for j in wrong[: args.show]:
            v = j.variant
            print(f"  {v.task} doc {v.doc_id} {v.kind}: {v.answer!r} "
                  f"{'accepted' if j.accepted else 'rejected'}")
    print(f"\nwall time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
