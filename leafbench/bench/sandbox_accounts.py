"""Sandbox cost per containment path, and HumanEval+ gold as an ordinary account.

Three ways a generated program can be contained, each timed in the same run against the same
floor (a bare ``python -I`` subprocess with no sandbox at all):

* ``root/setuid``: today's root path — a sandbox uid of its own plus the four namespaces;
* ``root/userns``: root taking the ordinary user's path (user namespace, read-only view), to
  decide whether root should move to it;
* ``nobody/userns``: what a researcher's non-root account gets (run as the ``nobody`` account).

For each: the mean wall time of one empty program (the sandbox's per-sample overhead over the
floor, as a ratio to today's root path), then the HumanEval+ canonical solutions scored through
the code engine (every problem must pass: the sandbox must not break correct programs).

Needs root (to switch accounts) and ../shared/data (or --data-dir) for HumanEval+.
Run: ``nox -s bench`` or ``python -m leafbench.bench.sandbox_accounts [--runs N] [--limit N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from leafbench.bench.fixtures import data_dir
from leafbench.bench.unprivileged import account_home, run_as_account

DATA_FILE = "humaneval_plus/HumanEvalPlus-v0.1.10.jsonl.gz"
PATHS = ("root/setuid", "root/userns", "nobody/userns")


def floor_seconds(runs: int) -> float:
    """Mean wall time of a bare interpreter start: what any per-sample process costs."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.mean(times)


def measure(runs: int, data: Path, limit: int | None) -> dict:
    """In this process (whatever account it is): sandbox per-sample time and HumanEval+ gold."""
    from leafbench.evaluation.code.humaneval_plus import load_problems
    from leafbench.evaluation.code.scoring import score_responses
    from leafbench.evaluation.sandbox import isolation, run_python

    mechanisms = sorted(isolation())
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        outcome = run_python("pass")
        times.append(time.perf_counter() - start)
        assert outcome.status == "pass", outcome
    problems = load_problems(data)[:limit] if limit else load_problems(data)
    responses = {i: "```python\n" + p["prompt"] + p["canonical_solution"] + "\n```"
                 for i, p in enumerate(problems)}
    score_responses("leaf_humaneval_plus", responses, data_file=data, limit=len(problems))
    start = time.perf_counter()  # second pass: ground truth cached, only the samples are timed
    metrics, rows = score_responses("leaf_humaneval_plus", responses, data_file=data,
                                    limit=len(problems))
    seconds = time.perf_counter() - start
    passed = sum(bool(r["correct"]) for r in rows)
    return {"mechanisms": mechanisms, "sample_seconds": statistics.mean(times),
            "sample_stdev": statistics.stdev(times) if runs > 1 else 0.0,
            "gold_passed": passed, "gold_total": len(problems),
            "gold_seconds_per_problem": seconds / len(problems)}


def measure_as_nobody(runs: int, data: Path, limit: int | None) -> dict:
    """The same measurement, in a child running as the ``nobody`` account."""
    home = account_home()
    try:
        argv = [sys.executable, "-m", "leafbench.bench.sandbox_accounts", "--worker",
                "--runs", str(runs), "--data", str(data)]
        if limit:
            argv += ["--limit", str(limit)]
        ran = run_as_account(argv, home=home, expose=[str(data.parent)],
                             env={"LEAFBENCH_CACHE_DIR": f"{home}/cache",
                                  "LEAFBENCH_PROGRESS": "0"})
        if ran.returncode != 0:
            raise SystemExit(f"the nobody worker failed:\n{ran.stdout[-2000:]}{ran.stderr[-3000:]}")
        return json.loads(ran.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40, help="empty programs per path")
    parser.add_argument("--limit", type=int, default=None, help="HumanEval+ problems (all: 164)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.runs, args.data, args.limit)))
        return
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark switches to the nobody account")
    root = data_dir(args.data_dir)
    if root is None or not (root / DATA_FILE).is_file():
        raise SystemExit(f"needs {DATA_FILE} under --data-dir (or ../shared/data)")
    data = (root / DATA_FILE).resolve()

    from leafbench.evaluation import sandbox

    floor = floor_seconds(args.runs)
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["LEAFBENCH_CACHE_DIR"] = cache
        results["root/setuid"] = measure(args.runs, data, args.limit)
        sandbox._FORCE_USERNS = True
        try:
            results["root/userns"] = measure(args.runs, data, args.limit)
        finally:
            sandbox._FORCE_USERNS = False
    results["nobody/userns"] = measure_as_nobody(args.runs, data, args.limit)
    today = results["root/setuid"]["sample_seconds"] - floor
    print(f"floor: bare `python -I` start {floor * 1000:.1f} ms (mean of {args.runs})")
    print(f"{'path':15} {'ms/sample':>10} {'overhead ms':>12} {'overhead ratio':>15} "
          f"{'HumanEval+ gold':>16} {'ms/problem':>11}  mechanisms")
    for path in PATHS:
        r = results[path]
        overhead = r["sample_seconds"] - floor
        print(f"{path:15} {r['sample_seconds'] * 1000:10.1f} {overhead * 1000:12.1f} "
              f"{overhead / today:14.2f}x {r['gold_passed']:>9}/{r['gold_total']:<6} "
              f"{r['gold_seconds_per_problem'] * 1000:11.1f}  {','.join(r['mechanisms'])}")
    print("overhead ratio: (path - floor) / (root/setuid - floor), all measured in this run")


if __name__ == "__main__":
    main()
