"""The statistics of the regression gate: is a candidate worse than a baseline, task by task?

Both models answered the same items, so the comparison is **paired**: what varies between them
is only the items on which they disagree, and the test looks at those alone. Item i's verdicts
are its samples' 0/1 correctness; its score is their mean (`results.item_verdicts`), and the
per-item difference is

    d_i = mean(candidate_i) - mean(baseline_i),        difference = mean_i d_i.

Why pair: items differ far more in difficulty than two versions of a model differ from each
other, and an unpaired test (two independent proportions) counts that item-to-item spread as
noise. For 500 items and a 5-point drop, a paired test at 10% discordance has about 0.97 power
where an unpaired z-test has about 0.48 (`leafbench.bench.gate` measures it).

The test of a drop (H1: candidate < baseline), one-sided:

- **One sample per item: McNemar's exact test** (`mcnemar_drop_p`). The items both models get
  right or both get wrong say nothing about which is better; of the b + c discordant items,
  b went right -> wrong and c wrong -> right, and under H0 (no difference) each discordant
  item is equally likely to go either way, so b ~ Binomial(b + c, 1/2). The exact binomial
  tail is used rather than the chi-square approximation because a gate sees small discordant
  counts (a task of 40 items, or two nearly identical models), where the approximation is off.
- **Several samples per item: a sign-flip permutation test over items** (`sign_flip_drop_p`).
  Samples of one item are not independent (an item the model cannot solve fails every time),
  so the item is the unit: under H0 each item's d_i is as likely to be -d_i (swapping the two
  models' labels within the item), and flipping the signs of whole items keeps each item's
  samples together. Treating the samples as independent trials would count one hard item
  several times and overstate the evidence.

The interval of the difference is a paired percentile bootstrap over items (`paired_bootstrap`),
and across tasks the p-values are adjusted by Holm's step-down method (`holm`), which controls
the family-wise error rate (the chance that any task fails by chance) for any dependence
between tasks, and is uniformly more powerful than Bonferroni.

`verdicts` turns the comparisons into pass/fail by a rule (`RULES`): "significant-drop" (the
default: fail on a significant drop larger than a margin) or "non-inferiority" (fail unless the
candidate is shown to be no worse than the margin). numpy and the standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

# Below this, two sums of per-item differences count as equal (they are sums of fractions
# with small denominators, computed in floating point).
TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class PairedComparison:
    """A candidate against a baseline on one task's items (see `compare_items`)."""

    n_items: int
    samples_per_item: int  # max samples per item over both sides (1 = McNemar path)
    baseline: float  # mean over items of the baseline's per-item mean correctness
    candidate: float
    difference: float  # candidate - baseline
    ci: tuple[float, float]  # paired bootstrap percentile interval of `difference`
    p_drop: float  # one-sided p-value of H1: candidate < baseline
    test: str  # "mcnemar-exact", "sign-flip-permutation", or "none" when nothing differs
    right_to_wrong: int  # one sample per item: baseline right, candidate wrong; several: d_i < 0
    wrong_to_right: int
    # What the non-inferiority rule redraws its bootstrap from: the per-item differences d_i,
    # and how `ci` was drawn (so the bound is drawn the same way).
    differences: tuple[float, ...] = field(default=(), repr=False)
    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0


def compare_items(
    baseline: Sequence[Sequence[float]],
    candidate: Sequence[Sequence[float]],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> PairedComparison:
    """Compare two models on the same items: `baseline[i]` and `candidate[i]` are the 0/1
    verdicts of item i's samples (aligned by item; each side has >= 1 sample per item, and the
    counts may differ between the sides and between items).

    One sample per item on both sides -> McNemar's exact test on the flips; otherwise the
    sign-flip permutation test on the per-item mean differences (the module docstring says
    why). When no item differs the p-value is 1 and the test is "none".
    """
    if len(baseline) != len(candidate):
        raise ValueError(f"baseline has {len(baseline)} items but candidate has "
                         f"{len(candidate)}; the comparison is item by item")
    if not baseline:
        raise ValueError("no items to compare")
    base = _item_means(baseline, "baseline")
    cand = _item_means(candidate, "candidate")
    differences = cand - base
    per_item = max(max(len(v) for v in baseline), max(len(v) for v in candidate))

    if per_item == 1:
        right_to_wrong = int(np.sum((base == 1) & (cand == 0)))
        wrong_to_right = int(np.sum((base == 0) & (cand == 1)))
        test = "mcnemar-exact"
        p_drop = mcnemar_drop_p(right_to_wrong, wrong_to_right)
    else:
        right_to_wrong = int(np.sum(differences < 0))
        wrong_to_right = int(np.sum(differences > 0))
        test = "sign-flip-permutation"
        p_drop = sign_flip_drop_p(differences, seed=seed)
    if right_to_wrong == wrong_to_right == 0:
        test, p_drop = "none", 1.0

    return PairedComparison(
        n_items=len(base),
        samples_per_item=per_item,
        baseline=float(base.mean()),
        candidate=float(cand.mean()),
        difference=float(differences.mean()),
        ci=paired_bootstrap(differences, confidence=confidence, resamples=resamples, seed=seed),
        p_drop=p_drop,
        test=test,
        right_to_wrong=right_to_wrong,
        wrong_to_right=wrong_to_right,
        differences=tuple(float(d) for d in differences),
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )


def _item_means(items: Sequence[Sequence[float]], side: str) -> np.ndarray:
    """Each item's mean verdict; every verdict must be 0 or 1 (bools count)."""
    means = np.empty(len(items))
    for i, verdicts in enumerate(items):
        if len(verdicts) == 0:
            raise ValueError(f"{side} item {i} has no samples; every item needs at least one")
        values = [float(v) for v in verdicts]
        if any(v not in (0.0, 1.0) for v in values):
            raise ValueError(f"{side} item {i} has verdicts {values}; expected 0/1 correctness")
        means[i] = sum(values) / len(values)
    return means


# ---------------------------------------------------------------- the tests of a drop
def mcnemar_drop_p(right_to_wrong: int, wrong_to_right: int) -> float:
    """One-sided exact McNemar p-value for a drop: P(X >= b) for X ~ Binomial(b + c, 1/2),
    b = `right_to_wrong`, c = `wrong_to_right`; 1.0 when there are no discordant items.

    Under H0 each discordant item is a fair coin between "went wrong" and "went right"; the
    concordant items drop out. Computed in exact integer arithmetic (the tail's binomial
    coefficients over 2^n), so it is exact for any count a task can have.
    """
    b, c = right_to_wrong, wrong_to_right
    if b < 0 or c < 0:
        raise ValueError(f"flip counts must be >= 0, got right_to_wrong={b}, wrong_to_right={c}")
    n = b + c
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(b, n + 1)) / 2**n


def sign_flip_drop_p(
    differences: Sequence[float] | np.ndarray,
    *,
    exact_up_to: int = 20,
    draws: int = 20000,
    seed: int = 0,
) -> float:
    """One-sided sign-flip permutation p-value for a drop: the share of sign assignments
    s_i in {-1, +1} with sum_i s_i |d_i| <= sum_i d_i (the observed total), items as clusters.

    Why it respects clustering: an item's samples move together (the whole d_i flips), so the
    null distribution has the spread of n items, not of n x samples independent trials. Under
    H0 the two models' labels are exchangeable within an item, so d_i and -d_i are equally
    likely. (With unequal sample counts on the two sides d_i is only approximately symmetric
    under H0; the test is then approximate.) Items with d_i = 0 are the same under any flip
    and drop out.

    With at most `exact_up_to` nonzero differences every one of the 2^m assignments is
    enumerated (2^20 sums, 8 MB); beyond that `draws` random assignments are drawn and the
    p-value is (1 + hits) / (1 + draws), the Monte Carlo estimate that counts the observed
    assignment itself and so is never 0 (a valid p-value at any number of draws).
    """
    d = np.asarray(differences, dtype=float)
    nonzero = d[np.abs(d) > TIE_TOLERANCE]
    if nonzero.size == 0:
        return 1.0
    observed = float(nonzero.sum())
    magnitudes = np.abs(nonzero)
    if nonzero.size <= exact_up_to:
        sums = np.zeros(1)
        for m in magnitudes:  # all 2^k signed sums of the first k magnitudes
            sums = np.concatenate([sums + m, sums - m])
        return float(np.mean(sums <= observed + TIE_TOLERANCE))
    rng = np.random.default_rng(seed)
    hits, chunk = 0, max(1, 2_000_000 // nonzero.size)  # about 16 MB of signs at a time
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        signs = rng.integers(0, 2, size=(size, nonzero.size)) * 2 - 1
        hits += int(np.sum(signs @ magnitudes <= observed + TIE_TOLERANCE))
    return (1 + hits) / (1 + draws)


def paired_bootstrap(
    differences: Sequence[float] | np.ndarray, *, confidence: float, resamples: int, seed: int
) -> tuple[float, float]:
    """Two-sided percentile bootstrap interval of mean(d) at `confidence`, resampling items
    (each item's d_i whole, so several samples per item stay together).

    Drawing n items with replacement amounts to drawing how many times each distinct value of
    d_i is taken: a multinomial over the distinct values with their observed frequencies. That
    is the same distribution as resampling the items one by one, at a cost of resamples x
    (distinct values) instead of resamples x n; the values of d_i are few (-1, 0, 1 with one
    sample per item). When all d_i are equal the interval is that value, on both ends.
    """
    _check_confidence(confidence)
    means = _bootstrap_means(differences, resamples=resamples, seed=seed)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def _bootstrap_means(
    differences: Sequence[float] | np.ndarray, *, resamples: int, seed: int
) -> np.ndarray:
    """`resamples` bootstrap means of `differences` (see `paired_bootstrap`)."""
    d = np.asarray(differences, dtype=float)
    if d.size == 0:
        raise ValueError("no differences to resample")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    values, counts = np.unique(d, return_counts=True)
    if values.size == 1:
        return np.full(resamples, values[0])
    rng = np.random.default_rng(seed)
    drawn = rng.multinomial(d.size, counts / d.size, size=resamples)
    return drawn @ values / d.size


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


# ---------------------------------------------------------------- across tasks
def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in input order.

    Sorted ascending, the i-th smallest p (1-based) is multiplied by (m - i + 1); a running
    maximum keeps the adjusted values monotone in the sorted order (a smaller raw p never gets
    a larger adjusted one), and they are capped at 1. Rejecting adjusted p < alpha controls the
    family-wise error rate at alpha: e.g. [0.01, 0.04, 0.03] -> [0.03, 0.06, 0.06].
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Verdict:
    """A task's outcome at the gate."""

    task: str
    failed: bool
    reason: str  # one readable sentence
    p_adjusted: float  # the adjusted p-value the rule used (Holm, or Bonferroni)


def verdicts(
    comparisons: Mapping[str, PairedComparison],
    *,
    alpha: float = 0.05,
    margin: float = 0.0,
    rule: str = "significant-drop",
) -> dict[str, Verdict]:
    """Pass or fail each task of `comparisons` ({task: comparison}) by `rule` (`RULES`).
    `margin` is in score units (0.02 = 2 points) and must be >= 0; `alpha` is the family-wise
    error rate over all the tasks given."""
    if rule not in RULES:
        raise ValueError(f"unknown gate rule {rule!r}; accepted: {sorted(RULES)}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0 (in score units, 0.02 = 2 points), got {margin}")
    if not comparisons:
        return {}
    return RULES[rule](comparisons, alpha, margin)


def significant_drop(
    comparisons: Mapping[str, PairedComparison], alpha: float, margin: float
) -> dict[str, Verdict]:
    """Fail a task when its drop is significant after Holm (adjusted p_drop < alpha) AND larger
    than `margin`: a real but negligible drop passes, and so does a large one the data cannot
    tell from noise."""
    adjusted = holm([c.p_drop for c in comparisons.values()])
    out = {}
    for (task, c), p in zip(comparisons.items(), adjusted, strict=True):
        drop = c.baseline - c.candidate
        significant = p < alpha
        failed = significant and drop > margin
        if drop <= 0:
            reason = f"no drop ({_points(-drop, signed=True)} pts), Holm p={p:.3g}"
        elif failed:
            reason = (f"drop {_points(drop)} pts, Holm p={p:.3g} < {alpha:g} "
                      f"and > margin {_points(margin)} pts")
        elif significant:
            reason = (f"drop {_points(drop)} pts is significant (Holm p={p:.3g} < {alpha:g}) "
                      f"but within margin {_points(margin)} pts")
        else:
            reason = f"drop {_points(drop)} pts not significant: Holm p={p:.3g} >= {alpha:g}"
        out[task] = Verdict(task, failed, reason, p)
    return out


def non_inferiority(
    comparisons: Mapping[str, PairedComparison], alpha: float, margin: float
) -> dict[str, Verdict]:
    """Fail a task unless the candidate is shown to be no more than `margin` worse: the lower
    bound of a one-sided (1 - alpha/m) paired bootstrap interval of the difference (m tasks)
    must be >= -margin.

    The burden of proof is reversed: "significant-drop" passes when the data cannot show a
    drop, this rule fails when the data cannot rule one out (so a small task fails unless its
    margin is generous). Multiplicity is handled by Bonferroni (each task at alpha/m), because
    the bound is an interval, not a p-value Holm could step down over; the intervals then hold
    simultaneously with probability >= 1 - alpha. The bootstrap is redrawn from the
    comparison's per-item differences with its own resamples and seed. `p_adjusted` is the
    share of bootstrap means below -margin, times m, capped at 1.
    """
    m = len(comparisons)
    level = alpha / m
    out = {}
    for task, c in comparisons.items():
        means = _bootstrap_means(c.differences, resamples=c.resamples, seed=c.seed)
        lower = float(np.quantile(means, level))
        p = min(1.0, m * float(np.mean(means < -margin)))
        failed = lower < -margin - TIE_TOLERANCE
        bound = (f"lower {100 * (1 - level):.4g}% bound {_points(lower, signed=True)} pts "
                 f"(Bonferroni over {m} task{'s' if m > 1 else ''})")
        if failed:
            reason = f"not shown non-inferior: {bound} < -margin {_points(margin)} pts"
        else:
            reason = f"non-inferior: {bound} >= -margin {_points(margin)} pts"
        out[task] = Verdict(task, failed, reason, p)
    return out


def _points(score: float, *, signed: bool = False) -> str:
    """A score difference in points (0.042 -> "4.2"; never "-0.0")."""
    score = round(score, 3) + 0.0
    return f"{100 * score:+.1f}" if signed else f"{100 * score:.1f}"


# The gate's rules: name -> (comparisons, alpha, margin) -> {task: verdict}.
RULES: dict[str, Callable[[Mapping[str, PairedComparison], float, float], dict[str, Verdict]]] = {
    "significant-drop": significant_drop,
    "non-inferiority": non_inferiority,
}
