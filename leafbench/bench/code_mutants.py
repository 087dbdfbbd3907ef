"""Code verdicts vs evalplus on mutants of the HumanEval+ canonical solutions.

Every program of `mutants.suite` (the canonical solution and one mutant per AST kind for every
task, the behaviour kinds — printing, slow, hanging, sleeping, raising, exiting — for every
8th task) is judged three ways:

* expected: `mutant_oracle` — how it was built and what it computes against the reference
  outputs, never a checker's verdict; ambiguous ones are left out of the expected columns;
* leafbench: `score_responses` on the program as a model response (fenced), as `leafbench eval`
  scores it;
* evalplus: ``evalplus.evaluate`` 0.3.1 on the program leafbench extracted (evalplus' own
  `sanitize` result), with the same data file, run inside the sandbox.

A verdict is the pair (base passed, HumanEval+ passed); two verdicts agree when both match.
Prints the agreement per kind and in total, and lists every disagreement with its task, kind,
the verdicts and the reasons. evalplus 0.3.1 fails every program on HumanEval/32: its
``find_zero`` oracle ``continue``s before recording the input as passed, so the check reports
fewer passed inputs than inputs; leafbench follows the fixed upstream behaviour, so programs
that find a root pass there.

Run: ``python -m leafbench.bench.code_mutants [--tasks N] [--no-evalplus]`` (all 164 tasks:
about 20-30 minutes on two cores).
"""

from __future__ import annotations

import argparse
import collections
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from leafbench.bench.fixtures import data_dir

DATA_FILE = "humaneval_plus/HumanEvalPlus-v0.1.10.jsonl.gz"
EVALPLUS_BUG = (
    "evalplus 0.3.1 HumanEval/32 bug: its find_zero oracle `continue`s before counting the "
    "input as passed, so every program fails there (the canonical one too); leafbench follows "
    "the upstream fix"
)

Verdict = tuple[bool, bool]  # (base passed, HumanEval+ passed)


def fenced(code: str) -> str:
    return f"```python\n{code}```\n"


def leafbench_verdicts(
    problems: Sequence[dict[str, Any]], programs: Sequence[Any], cache_dir: Path, workers: int
) -> list[tuple[Verdict, str]]:
    """leafbench's verdict and reason for each mutant, scored as responses (fillers: the
    canonical solution for tasks without a mutant, since every doc needs a response)."""
    from leafbench.evaluation.code import code_task, score_responses

    index = {p["task_id"]: i for i, p in enumerate(problems)}
    responses: dict[int, list[str]] = {i: [] for i in range(len(problems))}
    where = []
    for mutant, _ in programs:
        doc = index[mutant.task_id]
        where.append((doc, len(responses[doc])))
        responses[doc].append(fenced(mutant.code))
    for doc, samples in responses.items():
        if not samples:
            p = problems[doc]
            samples.append(fenced(p["prompt"] + p["canonical_solution"]))
    task = code_task("leaf_humaneval_plus", cache_dir=cache_dir)
    _, rows = score_responses(task, responses, docs=problems, workers=workers)
    by_place = {(r["doc_id"], r["sample"]): r for r in rows}
    return [
        ((bool(by_place[w]["correct_base"]), bool(by_place[w]["correct"])),
         f"{by_place[w]['status']} {by_place[w]['reason']}".strip())
        for w in where
    ]


def evalplus_verdicts(
    path: Path, problems: Sequence[dict[str, Any]], programs: Sequence[Any], workers: int
) -> list[tuple[Verdict, str]]:
    from leafbench.evaluation.code.evalplus_reference import evalplus_statuses

    have = {m.task_id for m, _ in programs}
    fillers = [(p["task_id"], p["prompt"] + p["canonical_solution"]) for p in problems
               if p["task_id"] not in have]
    samples = [(m.task_id, code) for m, code in programs] + fillers
    statuses = evalplus_statuses(path, samples, workers=workers)[: len(programs)]
    return [((base == "pass", base == plus == "pass"), f"base={base} plus={plus}")
            for base, plus in statuses]


def show(v: Verdict | None) -> str:
    if v is None:
        return "-"
    return {(True, True): "pass", (True, False): "base only", (False, False): "fail"}.get(
        v, str(v))


def report(programs, expectations, ours, theirs) -> None:
    from leafbench.evaluation.code.mutant_oracle import Ambiguous

    rows: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    left_out: collections.Counter[str] = collections.Counter()
    disagreements, ambiguous = [], []
    for (mutant, _), expect, (our, our_why), their in zip(programs, expectations, ours, theirs,
                                                         strict=True):
        c = rows[mutant.kind]
        c["n"] += 1
        expected = None if isinstance(expect, Ambiguous) else (expect.base, expect.plus)
        if expected is None:
            c["ambiguous"] += 1
            left_out[expect.why.split(":")[0] + ": " + _gist(expect.why)] += 1
            ambiguous.append(f"{mutant.name}: {expect.why}")
        else:
            c["expected pass"] += expected == (True, True)
            c["leafbench = expected"] += our == expected
        if their is not None:
            c["evalplus = expected"] += expected is not None and their[0] == expected
            c["leafbench = evalplus"] += our == their[0]
            if our != their[0]:
                disagreements.append((mutant, expected, our, our_why, their))
        if expected is not None and our != expected:
            disagreements.append((mutant, expected, our, our_why, their))
    columns = ["n", "ambiguous", "expected pass", "leafbench = expected"]
    if theirs[0] is not None:
        columns += ["evalplus = expected", "leafbench = evalplus"]
    print(f"{'kind':16}" + "".join(f"{c:>22}" for c in columns))
    total: collections.Counter[str] = collections.Counter()
    for kind, c in rows.items():
        total.update(c)
        print(f"{kind:16}" + "".join(f"{c[col]:>22}" for col in columns))
    print(f"{'all':16}" + "".join(f"{total[col]:>22}" for col in columns))
    mutants_only = sum(c["n"] for k, c in rows.items() if k != "canonical")
    decided = total["n"] - total["ambiguous"]
    print(f"\nprograms: {total['n']} ({mutants_only} mutants + {rows['canonical']['n']} "
          f"canonical solutions); with an expected verdict: {decided}")
    print(f"leafbench = expected: {total['leafbench = expected']}/{decided}")
    if theirs[0] is not None:
        print(f"evalplus  = expected: {total['evalplus = expected']}/{decided}")
        mutant_agree = sum(c["leafbench = evalplus"] for k, c in rows.items() if k != "canonical")
        print(f"leafbench = evalplus: {total['leafbench = evalplus']}/{total['n']} programs, "
              f"{mutant_agree}/{mutants_only} mutants")
    if left_out:
        print("\nleft out (ambiguous), by reason:")
        for why, n in left_out.most_common():
            print(f"  {n:4d}  {why}")
        for line in ambiguous[:30]:
            print(f"        {line[:200]}")
    if disagreements:
        print("\ndisagreements:")
        seen = set()
        for mutant, expected, our, our_why, their in disagreements:
            if mutant.name in seen:
                continue
            seen.add(mutant.name)
            note = f"  [{EVALPLUS_BUG}]" if mutant.task_id == "HumanEval/32" else ""
            their_text = f" evalplus={show(their[0])} ({their[1]})" if their else ""
            print(f"  {mutant.name}: expected={show(expected)} leafbench={show(our)} "
                  f"({our_why[:160]}){their_text}{note}")


def _gist(why: str) -> str:
    """A reason without its numbers, for grouping."""
    text = why.split(":", 1)[1] if ":" in why else why
    words = [w for w in text.split() if not any(ch.isdigit() for ch in w)]
    return " ".join(words)[:80]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--tasks", type=int, default=None, help="mutate the first N tasks only")
    parser.add_argument("--behaviour-every", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="ground-truth cache (default: leafbench's)")
    parser.add_argument("--no-evalplus", action="store_true")
    args = parser.parse_args(argv)

    from leafbench.evaluation.code import humaneval_plus as he
    from leafbench.evaluation.code import mutants
    from leafbench.evaluation.code.mutant_oracle import expected_verdicts

    root = data_dir(args.data_dir)
    if root is None or not (root / DATA_FILE).is_file():
        raise SystemExit(f"needs {DATA_FILE} under --data-dir")
    path = root / DATA_FILE
    problems = he.load_problems(path)
    cache = args.cache_dir or he.default_cache_dir()
    start = time.monotonic()
    suite = mutants.suite(problems[: args.tasks], behaviour_every=args.behaviour_every,
                          seed=args.seed)
    by_id = {p["task_id"]: p for p in problems}
    programs = []
    for m in suite:
        code = he.extract_solution(fenced(m.code), by_id[m.task_id])
        programs.append((m, code or ""))
    truth = he.ground_truth(problems, cache_dir=cache, workers=args.workers)
    print(f"{len(programs)} programs built, ground truth ready: "
          f"{time.monotonic() - start:.0f}s", flush=True)
    expectations = expected_verdicts(programs, by_id, truth, workers=args.workers)
    print(f"expected verdicts: {time.monotonic() - start:.0f}s", flush=True)
    ours = leafbench_verdicts(problems, programs, cache, args.workers)
    print(f"leafbench verdicts: {time.monotonic() - start:.0f}s", flush=True)
    theirs: list[Any] = [None] * len(programs)
    if not args.no_evalplus:
        theirs = evalplus_verdicts(path, problems, programs, args.workers)
        print(f"evalplus verdicts: {time.monotonic() - start:.0f}s", flush=True)
    print()
    report(programs, expectations, ours, theirs)
    print(f"\nwall time {time.monotonic() - start:.0f}s")


if __name__ == "__main__":
    main()
