"""Gate benchmark: how often the regression gate cries wolf, how often it catches a real drop,
and what it does on real sampled generations. Every figure is measured in this run, seeded.

Part 1 — false alarms. Null pairs of 500 items: the baseline is right with probability 0.6;
a random share d of the items (the discordance, 10% or 20%) is discordant, each discordant item
going right -> wrong or wrong -> right with probability 1/2, the rest concordant (both right with
probability q = (0.6 - d/2) / (1 - d)). Both models then have accuracy 0.6 and P(discordant) = d.
Each pair goes through `compare_items` and `verdicts` (significant-drop rule, alpha 0.05,
margin 0): the false-alarm rate per task (a pair checked alone), and family-wise over 5
independent null tasks checked together with Holm, each with its standard error and a Wilson
95% interval. Target: <= 0.05 + 2 SE.

Part 2 — power. The same design with a planted drop of k points: right -> wrong with
probability (d + k/100) / 2 and wrong -> right with (d - k/100) / 2, so the baseline keeps 0.6,
the candidate has 0.6 - k/100 and P(discordant) is still d. Printed: the power curve for drops
1..10 points at both discordances, next to a one-sided unpaired two-proportion z-test on the
same simulated data; with Holm over 5 tasks, once with the drop in one task (4 null tasks
beside it) and once in all five; and the items needed for 80% power at a 5-point drop, paired
and unpaired, searched over n. Targets: >= 95% at 10% discordance, >= 75% at 20%.

Part 3 — real generations. The testbed's distilled student (the pipeline up to `distill`) on
leaf_synthetic (`--n-test` items) with sampling at temperature 1.0 under 200 seeds: 100
disjoint seed pairs, each compared with `compare_items` + `verdicts`. The two runs of a pair
are exchangeable (same model, another seed), so every failure is a false alarm. Target: pass
rate >= 95%. The testbed (`--scale`) is the demo experiment's own (a student that learnt
something; the build takes several minutes on 2 cores) or, by default under `--quick`,
`bench.sweep.SMALL`'s (built in a minute or two, but its student barely beats guessing, so
its pairs disagree on few items and say less).

Run: `python -m leafbench.bench.gate [--quick] [--skip-generations] [--scale small|demo]
[--workspace DIR]`. `--quick` runs fewer simulations and seed pairs (a few minutes on 2 CPU
cores); its figures are labelled as such. `--workspace` keeps part 3's testbed and student for
the next run.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from leafbench.leaderboard.stats import (
    PairedComparison,
    compare_items,
    mcnemar_drop_p,
    verdicts,
)

ITEMS = 500
ACCURACY = 0.6
ALPHA = 0.05
DISCORDANCES = (0.10, 0.20)
TASKS = 5
Z95 = 1.959963984540054
Z_ALPHA = 1.6448536269514722  # one-sided 0.05
Z_POWER = 0.8416212335729143  # 80% power


# ---------------------------------------------------------------- simulated pairs
def cell_probabilities(discordance: float, drop: float) -> list[float]:
    """P(both right), P(right -> wrong), P(wrong -> right), P(both wrong) of an item, with the
    baseline's accuracy ACCURACY, the candidate's ACCURACY - drop, and P(discordant) =
    `discordance` (the module docstring)."""
    if not 0 <= drop <= discordance:
        raise ValueError(f"a drop of {drop} needs discordance >= it, got {discordance}")
    right_to_wrong = (discordance + drop) / 2
    wrong_to_right = (discordance - drop) / 2
    both_right = ACCURACY - right_to_wrong
    return [both_right, right_to_wrong, wrong_to_right, 1 - discordance - both_right]


def simulate_pair(rng: np.random.Generator, n: int, discordance: float, drop: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One simulated task: per-item 0/1 verdicts of the baseline and the candidate."""
    cells = rng.choice(4, size=n, p=cell_probabilities(discordance, drop))
    baseline = (cells == 0) | (cells == 1)
    candidate = (cells == 0) | (cells == 2)
    return baseline.astype(int), candidate.astype(int)


def compare(pair: tuple[np.ndarray, np.ndarray]) -> PairedComparison:
    """`compare_items` on a simulated task (one sample per item)."""
    baseline, candidate = pair
    return compare_items([[int(v)] for v in baseline], [[int(v)] for v in candidate])


def gate(comparisons: list[PairedComparison]) -> list[bool]:
    """Which tasks of a family fail `verdicts` (significant-drop, Holm over the family)."""
    named = {f"task{i}": c for i, c in enumerate(comparisons)}
    return [v.failed for v in verdicts(named, alpha=ALPHA).values()]


def unpaired_z_rejects(baseline: np.ndarray, candidate: np.ndarray) -> bool:
    """One-sided two-proportion z-test of a drop (pooled variance), as if the two models had
    answered independent samples of items."""
    n = baseline.size
    p_b, p_c = baseline.mean(), candidate.mean()
    pooled = (p_b + p_c) / 2
    if pooled in (0.0, 1.0):
        return False
    z = (p_b - p_c) / math.sqrt(pooled * (1 - pooled) * 2 / n)
    return 0.5 * math.erfc(z / math.sqrt(2)) < ALPHA


# ---------------------------------------------------------------- rates and intervals
def wilson(successes: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval of a binomial proportion."""
    p = successes / n
    denominator = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denominator
    return centre - half, centre + half


def rate(successes: int, n: int) -> str:
    """A rate as printed: "0.0420 ± 0.0045 SE, Wilson 95% [0.0341, 0.0517] (84/2000)"."""
    p = successes / n
    low, high = wilson(successes, n)
    return (f"{p:.4f} ± {math.sqrt(p * (1 - p) / n):.4f} SE, Wilson 95% [{low:.4f}, {high:.4f}]"
            f" ({successes}/{n})")


# ---------------------------------------------------------------- part 1
def false_alarms(families: int, seed: int) -> None:
    print(f"\n== Part 1: false alarms (null pairs, {ITEMS} items, accuracy {ACCURACY} both, "
          f"alpha {ALPHA}, margin 0)")
    print("(target: 0.05 + 2 SE, the SE of a 0.05 rate over as many trials)")
    for discordance in DISCORDANCES:
        rng = np.random.default_rng([seed, round(discordance * 100)])
        start = time.perf_counter()
        alone = family = 0
        for _ in range(families):
            tasks = [compare(simulate_pair(rng, ITEMS, discordance, 0.0)) for _ in range(TASKS)]
            alone += sum(gate([task])[0] for task in tasks)
            family += any(gate(tasks))
        pairs_n = families * TASKS
        print(f"discordance {discordance:.0%} ({time.perf_counter() - start:.1f} s)")
        print(f"  per task (checked alone), {pairs_n} pairs: {rate(alone, pairs_n)}  -> "
              f"{_null_target(alone, pairs_n)}")
        print(f"  family-wise, any of {TASKS} independent null tasks fails under Holm, "
              f"{families} families: {rate(family, families)}  -> "
              f"{_null_target(family, families)}")


def _null_target(alarms: int, n: int) -> str:
    bound = ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / n)
    return _target(alarms / n <= bound, f"<= 0.05 + 2 SE = {bound:.4f}")


def _target(met: bool, target: str) -> str:
    return f"target {target}: {'met' if met else 'MISSED'}"


# ---------------------------------------------------------------- part 2
def power(simulations: int, families: int, seed: int) -> None:
    print(f"\n== Part 2: power ({ITEMS} items, baseline accuracy {ACCURACY}, alpha {ALPHA}, "
          f"margin 0; {simulations} simulated pairs per cell)")
    curve: dict[tuple[float, int], tuple[int, int]] = {}
    for discordance in DISCORDANCES:
        rng = np.random.default_rng([seed, 1, round(discordance * 100)])
        for points in range(1, 11):
            paired = unpaired = 0
            for _ in range(simulations):
                base, cand = simulate_pair(rng, ITEMS, discordance, points / 100)
                paired += gate([compare((base, cand))])[0]
                unpaired += unpaired_z_rejects(base, cand)
            curve[discordance, points] = paired, unpaired
    print("single task: share of simulations failing the gate (paired: compare_items + "
          "verdicts, McNemar exact) vs an unpaired one-sided two-proportion z-test, same data")
    print("drop (pts) | " + " | ".join(f"paired d={d:.0%}  unpaired d={d:.0%}"
                                        for d in DISCORDANCES))
    for points in range(1, 11):
        cells = [f"{curve[d, points][0] / simulations:>13.3f}  {curve[d, points][1] / simulations:>13.3f}"
                 for d in DISCORDANCES]
        print(f"{points:>10} | " + " | ".join(cells))
    for discordance, target in zip(DISCORDANCES, (0.95, 0.75), strict=True):
        paired, unpaired = curve[discordance, 5]
        print(f"5-point drop at {discordance:.0%} discordance: paired {rate(paired, simulations)}"
              f"  -> {_target(paired / simulations >= target, f'>= {target:.2f}')}; "
              f"unpaired z-test {unpaired / simulations:.3f}")

    print(f"\nwith Holm over {TASKS} tasks, 5-point drop ({families} families each):")
    for discordance in DISCORDANCES:
        rng = np.random.default_rng([seed, 2, round(discordance * 100)])
        caught = null_fails = 0
        for _ in range(families):
            tasks = [compare(simulate_pair(rng, ITEMS, discordance, 0.05))]
            tasks += [compare(simulate_pair(rng, ITEMS, discordance, 0.0))
                      for _ in range(TASKS - 1)]
            failed = gate(tasks)
            caught += failed[0]
            null_fails += sum(failed[1:])
        print(f"  drop in ONE task, {TASKS - 1} null tasks beside it, d={discordance:.0%}: "
              f"dropped task caught {rate(caught, families)}; null tasks failed "
              f"{null_fails / (families * (TASKS - 1)):.4f}")
        flagged = any_flagged = 0
        for _ in range(families):
            failed = gate([compare(simulate_pair(rng, ITEMS, discordance, 0.05))
                           for _ in range(TASKS)])
            flagged += sum(failed)
            any_flagged += any(failed)
        print(f"  drop in ALL {TASKS} tasks, d={discordance:.0%}: per task caught "
              f"{rate(flagged, families * TASKS)}; at least one caught "
              f"{any_flagged / families:.4f}")


@functools.cache
def _mcnemar_rejects(right_to_wrong: int, wrong_to_right: int) -> bool:
    return mcnemar_drop_p(right_to_wrong, wrong_to_right) < ALPHA


def power_at(n: int, discordance: float, points: int, simulations: int, seed: int
             ) -> tuple[float, float]:
    """(paired, unpaired) power at n items, from simulated cell counts: with one sample per
    item the McNemar test sees only the flip counts (b, c) and the z-test only the two
    accuracies, so a multinomial draw of the four counts is the whole simulated task."""
    rng = np.random.default_rng([seed, 3, n, round(discordance * 100), points])
    counts = rng.multinomial(n, cell_probabilities(discordance, points / 100), size=simulations)
    both_right, right_to_wrong, wrong_to_right = counts[:, 0], counts[:, 1], counts[:, 2]
    paired = np.mean([_mcnemar_rejects(int(b), int(c))
                      for b, c in zip(right_to_wrong, wrong_to_right, strict=True)])
    p_b = (both_right + right_to_wrong) / n
    p_c = (both_right + wrong_to_right) / n
    pooled = (p_b + p_c) / 2
    with np.errstate(divide="ignore", invalid="ignore"):  # pooled 0 or 1: no rejection
        z = (p_b - p_c) / np.sqrt(pooled * (1 - pooled) * 2 / n)
    return float(paired), float(np.mean(z > Z_ALPHA))


def items_for_power(discordance: float, points: int, paired: bool, simulations: int, seed: int
                    ) -> int:
    """The smallest n (to 10 items) whose simulated power reaches 0.8, by bisection. The exact
    test's power saw-tooths a little in n, so this is the first crossing to within noise."""
    which = 0 if paired else 1
    low, high = 10, 10
    while power_at(high, discordance, points, simulations, seed)[which] < 0.8:
        low, high = high, high * 2
    while high - low > 10:
        mid = (low + high) // 20 * 10
        if power_at(mid, discordance, points, simulations, seed)[which] >= 0.8:
            high = mid
        else:
            low = mid
    return high


def normal_approximation(discordance: float, points: int) -> tuple[float, float, float]:
    """Normal-approximation items for 80% power, one-sided 0.05: McNemar; the unpaired z-test
    on these paired data (it assumes the variance 2 p(1-p)/n of independent samples, while the
    difference of paired accuracies varies as (d - delta^2)/n); and the z-test on two
    independent samples of n items each, the design it was made for."""
    delta = points / 100
    paired_sd = math.sqrt(discordance - delta**2)
    mean = ACCURACY - delta / 2
    assumed_sd = math.sqrt(2 * mean * (1 - mean))
    mcnemar = (Z_ALPHA * math.sqrt(discordance) + Z_POWER * paired_sd) ** 2 / delta**2
    z_on_pairs = (Z_ALPHA * assumed_sd + Z_POWER * paired_sd) ** 2 / delta**2
    independent = (Z_ALPHA + Z_POWER) ** 2 * assumed_sd**2 / delta**2
    return mcnemar, z_on_pairs, independent


def sample_sizes(simulations: int, seed: int) -> None:
    print(f"\nitems needed for 80% power, 5-point drop ({simulations} simulations per n, "
          "bisection to 10 items):")
    for discordance in DISCORDANCES:
        start = time.perf_counter()
        paired = items_for_power(discordance, 5, True, simulations, seed)
        unpaired = items_for_power(discordance, 5, False, simulations, seed)
        mcnemar, z_on_pairs, independent = normal_approximation(discordance, 5)
        check = power_at(ITEMS, discordance, 5, simulations, seed)
        print(f"  d={discordance:.0%}: paired (McNemar) {paired}, unpaired z-test {unpaired} "
              f"(ratio {unpaired / paired:.1f}x) ({time.perf_counter() - start:.1f} s)")
        print(f"         normal approximations: McNemar {mcnemar:.0f}, z-test on these paired "
              f"data {z_on_pairs:.0f}, z-test on two independent samples {independent:.0f} "
              f"per model")
        print(f"         check, count-level power at {ITEMS} items: paired {check[0]:.3f}, "
              f"unpaired {check[1]:.3f}")


# ---------------------------------------------------------------- part 3
TEMPERATURE = 1.0


def distilled_student(workspace: Path, scale: str, n_test: int) -> tuple[Path, Path, int]:
    """The testbed's distilled student, its test split and the experiment's max_gen_toks, built
    by the pipeline (up to `distill`) in `workspace`: the demo experiment, with `bench.sweep`'s
    SMALL testbed and step counts for scale "small"."""
    from leafbench.bench.sweep import DEMO, SMALL
    from leafbench.config import load_experiment
    from leafbench.contract import artifact
    from leafbench.pipeline import resolve_models, run_experiment

    raw: dict[str, Any] = {"base": str(DEMO), "workspace": str(workspace),
                           "tracking": {"experiment": "bench-gate"}}
    if scale == "small":
        raw.update(SMALL)
    path = workspace / "gate-experiment.yaml"
    workspace.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    exp = load_experiment(path, [f"synthetic.n_test={n_test}"])
    results = run_experiment(exp, until="distill")
    for r in results:
        print(f"  {r.name}: {r.status} in {r.seconds:.1f} s")
    distill = next(r for r in results if r.name == "distill")
    refs, _ = resolve_models(exp, workspace)
    assert refs.test_jsonl is not None and exp.evaluate.max_gen_toks is not None
    return distill.path / artifact("distill", "student"), refs.test_jsonl, exp.evaluate.max_gen_toks


def sampled_verdicts(model: Path, test_jsonl: Path, out: Path, *, seed: int, n_test: int,
                     max_gen_toks: int) -> list[list[int]]:
    """One sampled evaluation (no generation cache, the whole split in one batch): item i's
    verdicts, by doc id."""
    from leafbench.evaluation import run_evaluation

    run_evaluation(model, ["leaf_synthetic"], out, data_files={"leaf_synthetic": test_jsonl},
                   batch_size=n_test, max_gen_toks=max_gen_toks, seed=seed,
                   temperature=TEMPERATURE)
    rows = [json.loads(line) for line in (out / "samples_leaf_synthetic.jsonl").open()]
    by_item: dict[int, list[int]] = {}
    for row in rows:
        by_item.setdefault(row["doc_id"], []).append(int(row["correct"]))
    return [by_item[k] for k in sorted(by_item)]


def real_generations(pairs: int, scale: str, n_test: int, workspace: Path | None) -> None:
    print(f"\n== Part 3: real generations ({scale} testbed's distilled student, leaf_synthetic, "
          f"{n_test} test items, temperature {TEMPERATURE}, {pairs} disjoint seed pairs = "
          f"{2 * pairs} evaluations, alpha {ALPHA}, margin 0)")
    with tempfile.TemporaryDirectory(prefix="leafbench-bench-gate-") as tmp:
        start = time.perf_counter()
        model, test_jsonl, max_gen_toks = distilled_student(
            workspace or Path(tmp) / "workspace", scale, n_test)
        print(f"distilled student ready in {time.perf_counter() - start:.1f} s")
        passed, accuracies, discordant, seconds = 0, [], [], 0.0
        for k in range(pairs):
            start = time.perf_counter()
            base, cand = (sampled_verdicts(model, test_jsonl, Path(tmp) / f"seed{seed}", seed=seed,
                                           n_test=n_test, max_gen_toks=max_gen_toks)
                          for seed in (2 * k, 2 * k + 1))
            seconds += time.perf_counter() - start
            comparison = compare_items(base, cand, seed=k)
            verdict = verdicts({"leaf_synthetic": comparison}, alpha=ALPHA)["leaf_synthetic"]
            passed += not verdict.failed
            accuracies += [comparison.baseline, comparison.candidate]
            discordant.append((comparison.right_to_wrong + comparison.wrong_to_right)
                              / comparison.n_items)
            if verdict.failed:
                print(f"  pair (seed {2 * k}, seed {2 * k + 1}) failed: {verdict.reason}")
        print(f"evaluation time: {seconds:.1f} s for {2 * pairs} evaluations "
              f"({seconds / (2 * pairs):.2f} s each)")
        mean = float(np.mean(accuracies))
        print(f"accuracy over seeds: mean {mean:.3f}, min {min(accuracies):.3f}, max "
              f"{max(accuracies):.3f}, sd {np.std(accuracies, ddof=1):.4f} (independent items "
              f"would give at most {math.sqrt(mean * (1 - mean) / n_test):.4f}); discordant "
              f"items per pair: mean {np.mean(discordant):.3f}")
        print(f"pass rate: {rate(passed, pairs)}  -> {_target(passed / pairs >= 0.95, '>= 0.95')}")


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer simulations and seed pairs (a few minutes)")
    parser.add_argument("--skip-generations", action="store_true", help="skip part 3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", choices=["small", "demo"], default=None,
                        help="part 3's testbed: the demo experiment's own (default) or "
                             "bench.sweep's SMALL one (default with --quick)")
    parser.add_argument("--n-test", type=int, default=200,
                        help="test items of the part-3 testbed (default 200)")
    parser.add_argument("--workspace", type=Path, default=None,
                        help="keep part 3's testbed and student here (reused by a later run)")
    args = parser.parse_args(argv)
    families, simulations, pairs = (400, 400, 10) if args.quick else (2000, 2000, 100)
    label = "QUICK run: fewer simulations, wider intervals" if args.quick else "full run"
    print(f"gate benchmark, {label}: seed {args.seed}; part 1 {families} families of {TASKS} "
          f"tasks, part 2 {simulations} pairs per cell, part 3 {pairs} seed pairs")
    start = time.perf_counter()
    false_alarms(families, args.seed)
    power(simulations, families, args.seed)
    sample_sizes(2 * simulations, args.seed)
    print(f"parts 1-2: {time.perf_counter() - start:.1f} s")
    if not args.skip_generations:
        start = time.perf_counter()
        scale = args.scale or ("small" if args.quick else "demo")
        real_generations(pairs, scale, args.n_test, args.workspace)
        print(f"part 3: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
