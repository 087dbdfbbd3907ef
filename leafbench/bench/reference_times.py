"""HumanEval+ reference times measured under load vs quiet, and the verdicts they lead to.

The limits of HumanEval+ (``max(1 s, 4 × reference time)`` per input) come from the canonical
solutions' run times, cached indefinitely. This benchmark builds that cache four times for the
tasks with the heaviest inputs (HumanEval/15, /36, /59, /83, /139 by default), each in a fresh
directory:

* with leafbench's timing (`reference_times.DEFAULT_POLICY`: the child's CPU time, the fastest
  of 3 runs for heavy inputs) and with evalplus' (one wall-clock reading),
* each once on the machine as it is ("quiet") and once while `--busy` busy-loop processes run
  (default: 2 per core, "loaded").

It prints, per timing, the loaded / quiet ratio of the heavy inputs' reference times and the
largest limit, then scores — with the busy loops stopped — the same programs with each cache:
for every task, the canonical solution computing each answer k times, with k chosen so that
its heaviest input takes 0.25, 0.5, 1.5 and 3 times its quiet limit (`mutants.slowed`). A
cache built under load should give the verdicts of the quiet one; evalplus' timing is shown
for contrast. The conditions each cache recorded (load averages, calibration) are printed too,
and the limit of each task's heaviest input in every cache. The programs are held to their
limits in wall time when scored, so a program near its limit (the 0.5 and 1.5 shares) can
change verdict between two scorings with the same limits when the machine is busy at check
time; compare the limits to tell that apart from a change of the cache.

Run: ``python -m leafbench.bench.reference_times [--tasks HumanEval/15,...] [--busy N]``
(about 3-5 minutes on two cores).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from leafbench.bench.fixtures import data_dir

DATA_FILE = "humaneval_plus/HumanEvalPlus-v0.1.10.jsonl.gz"
HEAVY_TASKS = ("HumanEval/15", "HumanEval/36", "HumanEval/59", "HumanEval/83", "HumanEval/139")
LIMIT_SHARES = (0.25, 0.5, 1.5, 3.0)  # slowed programs: heaviest input's time / quiet limit
HEAVY_SECONDS = 0.05  # inputs at least this heavy (quiet) enter the ratios


@contextlib.contextmanager
def busy_loops(n: int) -> Iterator[None]:
    """`n` processes spinning on the CPU (trusted code of ours, so no sandbox) until exit."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(2.0)  # let the load settle in
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def build(problems: Sequence[dict[str, Any]], policy: Any, root: Path) -> dict[str, Any]:
    from leafbench.evaluation.code import humaneval_plus as he

    start = time.monotonic()
    truth = he.ground_truth(problems, cache_dir=root, policy=policy)
    print(f"  {policy.key():10} built in {time.monotonic() - start:5.1f}s; load "
          f"{_conditions(truth)['load_before']} -> {_conditions(truth)['load_after']}",
          flush=True)
    return truth


def _conditions(truth: dict[str, Any]) -> dict[str, Any]:
    return next(iter(truth.values()))["conditions"]


def heavy_ratios(quiet: dict[str, Any], loaded: dict[str, Any]) -> list[float]:
    ratios = []
    for task_id, entry in quiet.items():
        for suite in ("base_time", "plus_time"):
            for q, busy in zip(entry[suite], loaded[task_id][suite], strict=True):
                if q >= HEAVY_SECONDS:
                    ratios.append(busy / q)
    return ratios


def max_limit(truth: dict[str, Any]) -> float:
    from leafbench.evaluation.code.humaneval_plus import time_limits

    return max(max(time_limits(e["base_time"] + e["plus_time"])) for e in truth.values())


def heaviest_limit(entry: dict[str, Any]) -> float:
    from leafbench.evaluation.code.humaneval_plus import time_limits

    return max(time_limits(entry["base_time"] + entry["plus_time"]))


def slowed_programs(problems: Sequence[dict[str, Any]], quiet: dict[str, Any]) -> list[Any]:
    """Per task, the canonical solution slowed so that its heaviest input takes each of
    LIMIT_SHARES of its quiet limit (at least 1 ×)."""
    from leafbench.evaluation.code.humaneval_plus import time_limits
    from leafbench.evaluation.code.mutants import slowed

    out = []
    for p in problems:
        times = quiet[p["task_id"]]["base_time"] + quiet[p["task_id"]]["plus_time"]
        heaviest = max(range(len(times)), key=times.__getitem__)
        limit = time_limits(times)[heaviest]
        for share in LIMIT_SHARES:
            out.append(slowed(p, max(1, math.ceil(share * limit / times[heaviest]))))
    return out


def verdicts(
    problems: dict[str, dict[str, Any]], truth: dict[str, Any], programs: Sequence[Any]
) -> list[tuple[bool, bool]]:
    """Score each program against `truth` through leafbench's checking path, one at a time
    (the programs are held to their limits in wall time: no contention of our own)."""
    from leafbench.evaluation.code import humaneval_plus as he
    from leafbench.evaluation.code.execution import run_jobs

    results = run_jobs(programs, lambda m: he.check_job(problems[m.task_id],
                                                        truth[m.task_id], m.code), workers=1)
    out = []
    for result in results:
        v = he.verdict(result)
        out.append((bool(v["correct_base"]), bool(v["correct"])))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--tasks", default=",".join(HEAVY_TASKS))
    parser.add_argument("--busy", type=int, default=2 * (os.cpu_count() or 1),
                        help="busy-loop processes while the loaded caches are built")
    args = parser.parse_args(argv)

    from leafbench.evaluation.code import humaneval_plus as he
    from leafbench.evaluation.code.reference_times import DEFAULT_POLICY, EVALPLUS_POLICY

    root = data_dir(args.data_dir)
    if root is None or not (root / DATA_FILE).is_file():
        raise SystemExit(f"needs {DATA_FILE} under --data-dir")
    wanted = args.tasks.split(",")
    problems = [p for p in he.load_problems(root / DATA_FILE) if p["task_id"] in wanted]
    by_id = {p["task_id"]: p for p in problems}
    policies = {"leafbench (cpu, min of 3)": DEFAULT_POLICY,
                "evalplus (wall, once)": EVALPLUS_POLICY}
    start = time.monotonic()
    caches: dict[tuple[str, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        print(f"tasks {', '.join(wanted)}; {os.cpu_count()} cores")
        print("quiet:")
        for name, policy in policies.items():
            caches[name, "quiet"] = build(problems, policy, Path(tmp) / "quiet")
        print(f"loaded ({args.busy} busy loops):")
        with busy_loops(args.busy):
            for name, policy in policies.items():
                caches[name, "loaded"] = build(problems, policy, Path(tmp) / "loaded")

    print(f"\nreference times of heavy inputs (quiet >= {HEAVY_SECONDS}s), loaded / quiet:")
    print(f"{'timing':28}{'inputs':>8}{'min':>8}{'median':>8}{'max':>8}"
          f"{'max limit quiet':>18}{'max limit loaded':>18}")
    for name in policies:
        ratios = heavy_ratios(caches[name, "quiet"], caches[name, "loaded"])
        print(f"{name:28}{len(ratios):>8}{min(ratios):>8.2f}{statistics.median(ratios):>8.2f}"
              f"{max(ratios):>8.2f}{max_limit(caches[name, 'quiet']):>17.2f}s"
              f"{max_limit(caches[name, 'loaded']):>17.2f}s")
    for name in policies:
        for state in ("quiet", "loaded"):
            cal = _conditions(caches[name, state])["calibration"]
            print(f"  calibration {name:28} {state:6}: "
                  + ", ".join(f"cpu {c['cpu_s'] * 1e3:.0f} ms / wall {c['wall_s'] * 1e3:.0f} ms"
                              for c in cal))

    print("\nlimit of each task's heaviest input (quiet -> loaded):")
    for p in problems:
        cells = []
        for name in policies:
            limits = [heaviest_limit(caches[name, state][p["task_id"]])
                      for state in ("quiet", "loaded")]
            cells.append(f"{name.split(' ')[0]} {limits[0]:.2f}s -> {limits[1]:.2f}s")
        print(f"  {p['task_id']:14} " + "   ".join(cells))

    programs = slowed_programs(problems, caches["leafbench (cpu, min of 3)", "quiet"])
    print(f"\nverdicts of {len(programs)} slowed canonical solutions (heaviest input at "
          f"{', '.join(f'{s:g}' for s in LIMIT_SHARES)} x its quiet limit), scored one at a time, no busy loops:")
    table = {key: verdicts(by_id, truth, programs) for key, truth in caches.items()}
    print(f"{'program':28}" + "".join(f"{n.split(' ')[0] + ' ' + s:>20}" for n, s in table))
    for i, m in enumerate(programs):
        share = LIMIT_SHARES[i % len(LIMIT_SHARES)]
        cells = ["pass" if v[i][1] else ("base only" if v[i][0] else "fail")
                 for v in table.values()]
        print(f"{m.task_id + f' x{m.site} ({share:g}L)':28}" + "".join(f"{c:>20}" for c in cells))
    for name in policies:
        same = sum(a == b for a, b in zip(table[name, "quiet"], table[name, "loaded"],
                                          strict=True))
        print(f"{name}: loaded cache gives the quiet cache's verdict on {same}/{len(programs)}")
    print(f"\nwall time {time.monotonic() - start:.0f}s")


if __name__ == "__main__":
    main()
