"""Effects over seeds and items: a two-way (seed × item) bootstrap, one-sided tests, Holm.

Every claim compares two conditions measured on the same items under the same seeds, so its
data is a grid `values[s, i, k]`: seed s, item i, and k the quantities its statistic needs
(one 0/1 difference per item for accuracy; TP/FP/FN counts of two methods for detection F1;
attention masses before and after for the attention claim). The effect is `statistic(values)`.

How seed and item variance are combined: each bootstrap draw resamples the seeds with
replacement AND the items with replacement and recomputes the statistic on the resampled grid.
When every seed scored the same items (the testbed's models and test set fixed, only pruning
and distillation vary) the design is *crossed*: one item draw is applied to every seed, so an
item that is hard under every seed stays one item. When each seed has its own items (the
testbed itself changes with the seed) the design is *nested*: items are redrawn within each
drawn seed, from that seed's own items (as many as it has: ids are not aligned across seeds,
since the same id names a different item of another testbed). Either way the interval reflects both sources: with one seed it reduces to the
paired item bootstrap of leafbench.leaderboard.stats, with one item to a bootstrap over seeds.
(The crossed two-way bootstrap slightly overstates the variance — the seed × item residual is
counted in both margins — so the intervals err on the wide, conservative side.)

The test of "effect > null" is the bootstrap's one-sided p-value, (1 + #{draws <= null}) /
(1 + B), and the opposite direction's likewise; Holm across claims is
leafbench.leaderboard.stats.holm.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Statistic = Callable[[np.ndarray], float]


@dataclass(frozen=True)
class Effect:
    """A statistic, its percentile interval, and one-sided p-values against `null`."""

    estimate: float
    ci: tuple[float, float]
    p_greater: float  # H1: effect > null
    p_less: float     # H1: effect < null
    null: float
    seeds: int
    items: int
    design: str       # "crossed" or "nested"
    # items per seed (their mean in a nested design whose seeds have their own items)
    resamples: int


def mean_difference(values: np.ndarray) -> float:
    """The mean of the per-(seed, item) differences in `values[..., 0]`."""
    return float(values[..., 0].mean())


def bootstrap_effect(values: np.ndarray | Sequence[np.ndarray], statistic: Statistic, *,
                     null: float = 0.0, crossed: bool = True, confidence: float = 0.95,
                     resamples: int = 2000, seed: int = 0) -> Effect:
    """Estimate, interval and p-values of `statistic` over the (seed, item, k) grid `values`.

    Nested designs may give each seed its own number of items: `values` is then one
    (items, k) array per seed, and the statistic sees each draw's seeds stacked into one
    (1, Σ items, k) grid — for the means and pooled sums the statistics take, the same as a
    rectangular grid when the counts are equal."""
    per_seed = _per_seed(values)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    counts = [len(v) for v in per_seed]
    if crossed and len(set(counts)) != 1:
        raise ValueError(f"a crossed design needs the same items under every seed, got {counts}")
    n_seeds = len(per_seed)
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples)
    for b in range(resamples):
        seeds = rng.integers(0, n_seeds, size=(n_seeds,))
        if crossed:  # one item draw for every seed
            shared = rng.integers(0, counts[0], size=(counts[0],))
            grid = np.stack([per_seed[s][shared] for s in seeds])
        else:  # each drawn seed its own item draw, from its own items
            grid = np.concatenate([per_seed[s][rng.integers(0, counts[s], size=(counts[s],))]
                                   for s in seeds])[None]
        draws[b] = statistic(grid)
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    whole = np.stack(per_seed) if crossed else np.concatenate(per_seed)[None]
    return Effect(
        estimate=statistic(whole), ci=(float(low), float(high)),
        p_greater=float((1 + np.sum(draws <= null)) / (1 + resamples)),
        p_less=float((1 + np.sum(draws >= null)) / (1 + resamples)),
        null=null, seeds=n_seeds, items=round(sum(counts) / n_seeds),
        design="crossed" if crossed else "nested", resamples=resamples)


def _per_seed(values: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """One (items, k) float array per seed, from a (seeds, items[, k]) grid or a list."""
    per_seed = [np.asarray(v, dtype=float) for v in values]
    per_seed = [v[:, None] if v.ndim == 1 else v for v in per_seed]
    if not per_seed or any(v.ndim != 2 or len(v) == 0 for v in per_seed) or len(
            {v.shape[1] for v in per_seed}) != 1:
        shapes = [v.shape for v in per_seed]
        raise ValueError(f"values must be a non-empty (seeds, items[, k]) grid, got {shapes}")
    return per_seed


def f1_of(counts: np.ndarray) -> float:
    """Micro F1 of pooled (TP, FP, FN) counts, the way detection_at pools tokens."""
    tp, fp, fn = (float(counts[..., j].sum()) for j in range(3))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def f1_difference(values: np.ndarray) -> float:
    """F1 of the counts in k = 0..2 minus F1 of the counts in k = 3..5."""
    return f1_of(values[..., 0:3]) - f1_of(values[..., 3:6])


def relative_fall_difference(values: np.ndarray) -> float:
    """(Σ kd_after − Σ leaf_after) / Σ before for masses in k = (before, leaf_after, kd_after):
    how much more of the pre-distillation attention LeaF removed than plain KD did."""
    before = float(values[..., 0].sum())
    return (float(values[..., 2].sum()) - float(values[..., 1].sum())) / before if before else 0.0
