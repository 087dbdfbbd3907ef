"""The regression gate's statistics (leafbench/leaderboard/stats.py): tests against hand
computations and brute force, the rules' decisions on planted data, and the edge cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from leafbench.leaderboard.stats import (
    RULES,
    compare_items,
    holm,
    mcnemar_drop_p,
    paired_bootstrap,
    sign_flip_drop_p,
    verdicts,
)


def one_sample(values) -> list[list[int]]:
    return [[int(v)] for v in values]


def planted(n: int, *, right_to_wrong: int, wrong_to_right: int, both_right: int):
    """One sample per item: the given flip counts, `both_right` concordant right, the rest
    concordant wrong."""
    rest = n - right_to_wrong - wrong_to_right - both_right
    base = [1] * right_to_wrong + [0] * wrong_to_right + [1] * both_right + [0] * rest
    cand = [0] * right_to_wrong + [1] * wrong_to_right + [1] * both_right + [0] * rest
    return one_sample(base), one_sample(cand)


# ---------------------------------------------------------------- McNemar
def test_mcnemar_matches_hand_computed_binomial_tails():
    # b=10, c=2: P(X >= 10), X ~ Bin(12, 1/2) = (C(12,10) + C(12,11) + C(12,12)) / 4096
    assert mcnemar_drop_p(10, 2) == pytest.approx((66 + 12 + 1) / 4096, abs=1e-15)
    assert mcnemar_drop_p(3, 0) == pytest.approx(1 / 8)
    assert mcnemar_drop_p(1, 0) == pytest.approx(0.5)
    assert mcnemar_drop_p(0, 3) == 1.0  # only improvements: the whole distribution
    assert mcnemar_drop_p(0, 0) == 1.0  # no discordant pair


def test_mcnemar_symmetry_and_large_counts():
    for b, c in [(10, 2), (7, 7), (0, 5), (40, 13)]:
        n = b + c
        # P(X >= b) + P(X >= c) = P(X >= b) + P(X <= b) = 1 + P(X = b)
        point = math.comb(n, b) / 2**n
        assert mcnemar_drop_p(b, c) + mcnemar_drop_p(c, b) == pytest.approx(1 + point)
    # Exact arithmetic does not overflow where floats would (2^3000).
    assert 0 < mcnemar_drop_p(1600, 1400) < 1e-3
    with pytest.raises(ValueError, match="flip counts"):
        mcnemar_drop_p(-1, 2)


# ---------------------------------------------------------------- sign flip
def brute_force_sign_flip(d) -> float:
    """Every one of the 2^n sign assignments of all items (zeros included), by itertools."""
    observed = sum(d)
    totals = [sum(s * abs(x) for s, x in zip(signs, d, strict=True))
              for signs in itertools.product((-1, 1), repeat=len(d))]
    return sum(t <= observed + 1e-12 for t in totals) / len(totals)


@pytest.mark.parametrize("d", [
    [-1.0, -0.5, 0.25, -0.75, 0.0, -1 / 3, 0.5],
    [-1.0, -1.0, -1.0, 1.0],
    [0.5, 0.5, -0.25],
    [-0.2],
])
def test_sign_flip_exact_equals_brute_force(d):
    assert sign_flip_drop_p(d) == pytest.approx(brute_force_sign_flip(d), abs=1e-12)


def test_sign_flip_with_unit_differences_is_mcnemar():
    d = [-1.0] * 10 + [1.0] * 2 + [0.0] * 30
    assert sign_flip_drop_p(d) == pytest.approx(mcnemar_drop_p(10, 2), abs=1e-12)


def test_sign_flip_monte_carlo_is_close_to_exact():
    rng = np.random.default_rng(3)
    d = np.round(rng.normal(-0.12, 0.5, size=18), 3)
    exact = sign_flip_drop_p(d)
    drawn = sign_flip_drop_p(d, exact_up_to=0, draws=40000, seed=1)
    assert 0.01 < exact < 0.5  # a p-value where the comparison means something
    assert drawn == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 40000))


def test_sign_flip_monte_carlo_is_never_zero():
    p = sign_flip_drop_p([-1.0] * 60, draws=999, seed=0)
    assert p == pytest.approx(1 / 1000)  # (1 + 0 hits) / (1 + draws)
    assert sign_flip_drop_p([0.0, 0.0]) == 1.0


# ---------------------------------------------------------------- bootstrap and Holm
def test_bootstrap_contains_the_difference_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 400, 1600):
        d = rng.choice([-1.0, 0.0, 1.0], size=n, p=[0.1, 0.85, 0.05])
        low, high = paired_bootstrap(d, confidence=0.95, resamples=2000, seed=0)
        assert low < d.mean() < high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4, rel=0.25)  # width ~ 1 / sqrt(n)


def test_bootstrap_matches_resampling_items_one_by_one():
    """The multinomial shortcut has the distribution of the naive item bootstrap."""
    rng = np.random.default_rng(5)
    d = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=200)
    naive = d[rng.integers(0, d.size, size=(4000, d.size))].mean(axis=1)
    low, high = paired_bootstrap(d, confidence=0.9, resamples=4000, seed=1)
    naive_low, naive_high = np.quantile(naive, [0.05, 0.95])
    assert low == pytest.approx(naive_low, abs=0.01)
    assert high == pytest.approx(naive_high, abs=0.01)


def test_bootstrap_is_seeded_and_validates():
    d = [-1.0, 0.0, 1.0, 0.0, -1.0]
    assert paired_bootstrap(d, confidence=0.95, resamples=500, seed=4) == paired_bootstrap(
        d, confidence=0.95, resamples=500, seed=4)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(d, confidence=95, resamples=500, seed=0)
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap(d, confidence=0.95, resamples=0, seed=0)


def test_holm_hand_worked_example():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    assert holm([0.9, 0.6, 0.01]) == pytest.approx([1.0, 1.0, 0.03])  # capped at 1
    assert holm([]) == []


def test_holm_is_monotone_and_never_below_raw():
    rng = np.random.default_rng(1)
    p = list(rng.uniform(0, 0.2, size=12))
    adjusted = holm(p)
    order = np.argsort(p)
    assert all(np.diff(np.asarray(adjusted)[order]) >= 0)
    assert all(a >= raw for a, raw in zip(adjusted, p, strict=True))


# ---------------------------------------------------------------- compare_items
def test_compare_one_sample_per_item_uses_mcnemar_and_counts_flips():
    base, cand = planted(100, right_to_wrong=10, wrong_to_right=2, both_right=50)
    c = compare_items(base, cand)
    assert (c.test, c.samples_per_item, c.n_items) == ("mcnemar-exact", 1, 100)
    assert (c.right_to_wrong, c.wrong_to_right) == (10, 2)
    assert c.baseline == pytest.approx(0.60) and c.candidate == pytest.approx(0.52)
    assert c.difference == pytest.approx(-0.08)
    assert c.p_drop == pytest.approx(mcnemar_drop_p(10, 2))
    assert c.ci[0] < c.difference < c.ci[1] < 0


def test_compare_items_everyone_agrees():
    base, cand = planted(30, right_to_wrong=0, wrong_to_right=0, both_right=20)
    c = compare_items(base, cand)
    assert (c.test, c.p_drop, c.difference, c.ci) == ("none", 1.0, 0.0, (0.0, 0.0))
    assert (c.right_to_wrong, c.wrong_to_right) == (0, 0)
    assert not verdicts({"t": c})["t"].failed
    assert not verdicts({"t": c}, rule="non-inferiority")["t"].failed


def test_compare_items_one_item_and_identical_items():
    c = compare_items([[1]], [[0]])
    assert (c.n_items, c.p_drop, c.difference, c.ci) == (1, 0.5, -1.0, (-1.0, -1.0))
    assert not verdicts({"t": c})["t"].failed  # one item can never be significant at 0.05
    # Every item the same flip: a degenerate interval, and a p-value from the count alone.
    c = compare_items([[1]] * 8, [[0]] * 8)
    assert c.ci == (-1.0, -1.0) and c.p_drop == pytest.approx(2**-8)
    assert verdicts({"t": c})["t"].failed


def test_compare_several_samples_unequal_counts_clusters_by_item():
    # Item i: the baseline's samples, then the candidate's; counts differ between sides.
    base = [[1, 1, 1], [1, 0], [0, 0, 0, 0], [1, 1], [1, 0, 1]]
    cand = [[1, 0], [0, 0, 0], [0, 1], [1, 1, 1, 1], [0, 0]]
    c = compare_items(base, cand, seed=2)
    d = [0.5 - 1, 0 - 0.5, 0.5 - 0, 1 - 1, 0 - 2 / 3]
    assert (c.test, c.samples_per_item, c.n_items) == ("sign-flip-permutation", 4, 5)
    assert c.difference == pytest.approx(np.mean(d))
    assert (c.right_to_wrong, c.wrong_to_right) == (3, 1)
    assert c.p_drop == pytest.approx(brute_force_sign_flip(d))
    assert c.differences == pytest.approx(d)


def test_clustering_makes_repeated_samples_no_stronger_evidence():
    """Copying every item's single sample k times adds no information: the clustered test
    gives the same p-value; treating the copies as independent items would not."""
    base, cand = planted(60, right_to_wrong=8, wrong_to_right=3, both_right=30)
    once = compare_items(base, cand)
    repeated = compare_items([v * 4 for v in base], [v * 4 for v in cand])
    flattened = compare_items([[x] for v in base for x in v * 4],
                              [[x] for v in cand for x in v * 4])
    assert repeated.p_drop == pytest.approx(once.p_drop, abs=1e-12)
    assert flattened.p_drop < once.p_drop / 10


def test_compare_items_refuses_misaligned_or_bad_verdicts():
    with pytest.raises(ValueError, match="item by item"):
        compare_items([[1], [0]], [[1]])
    with pytest.raises(ValueError, match="no items"):
        compare_items([], [])
    with pytest.raises(ValueError, match="candidate item 1 has no samples"):
        compare_items([[1], [0]], [[1], []])
    with pytest.raises(ValueError, match="0/1"):
        compare_items([[0.5]], [[1]])


# ---------------------------------------------------------------- verdicts
def test_planted_big_drop_fails_and_improvement_never_fails():
    base, cand = planted(500, right_to_wrong=45, wrong_to_right=10, both_right=250)
    drop = compare_items(base, cand)
    better = compare_items(cand, base)
    result = verdicts({"drop": drop, "better": better})
    assert result["drop"].failed and not result["better"].failed
    assert result["drop"].reason.startswith("drop 7.0 pts, Holm p=")
    assert "no drop (+7.0 pts)" in result["better"].reason
    # Holm over two tasks: the smaller p doubled.
    assert result["drop"].p_adjusted == pytest.approx(2 * drop.p_drop)
    # An improvement passes at any alpha, and under non-inferiority with no margin.
    assert not verdicts({"t": better}, alpha=0.999)["t"].failed
    assert not verdicts({"t": better}, rule="non-inferiority")["t"].failed


def test_margin_keeps_a_small_significant_drop_passing():
    # 3 points, very significant (30 of 30 flips go down), below a 5-point margin.
    base, cand = planted(1000, right_to_wrong=30, wrong_to_right=0, both_right=500)
    c = compare_items(base, cand)
    assert c.p_drop < 1e-8
    assert verdicts({"t": c}, margin=0.02)["t"].failed
    kept = verdicts({"t": c}, margin=0.05)["t"]
    assert not kept.failed
    assert "within margin 5.0 pts" in kept.reason


def test_holm_across_tasks_can_spare_a_borderline_task():
    base, cand = planted(200, right_to_wrong=12, wrong_to_right=3, both_right=100)
    c = compare_items(base, cand)
    assert 0.01 < c.p_drop < 0.05
    assert verdicts({"a": c})["a"].failed
    quiet = compare_items(*planted(200, right_to_wrong=3, wrong_to_right=3, both_right=100))
    spread = verdicts({"a": c, "b": quiet, "c": quiet, "d": quiet, "e": quiet})
    assert not spread["a"].failed  # 5 tasks: its Holm p is 5 p > 0.05
    assert "not significant" in spread["a"].reason


def test_non_inferiority_rule():
    # No change at all on 1000 items: non-inferior within 2 points, not within 0.
    base, cand = planted(1000, right_to_wrong=40, wrong_to_right=40, both_right=500)
    same = compare_items(base, cand)
    assert not verdicts({"t": same}, rule="non-inferiority", margin=0.02)["t"].failed
    strict = verdicts({"t": same}, rule="non-inferiority", margin=0.0)["t"]
    assert strict.failed and strict.reason.startswith("not shown non-inferior")
    # A small task with the same rates cannot rule out 2 points: it fails (burden reversed)
    # where the significant-drop rule passes it.
    small = compare_items(*planted(50, right_to_wrong=2, wrong_to_right=2, both_right=25))
    assert verdicts({"t": small}, rule="non-inferiority", margin=0.02)["t"].failed
    assert not verdicts({"t": small}, margin=0.02)["t"].failed
    # Bonferroni: the bound for m tasks is at level alpha/m, so it is lower (wider) than for 1.
    alone = verdicts({"t": same}, rule="non-inferiority", margin=0.02)["t"]
    many = verdicts({f"t{i}": same for i in range(10)}, rule="non-inferiority", margin=0.02)
    assert "over 10 tasks" in many["t0"].reason and "over 1 task)" in alone.reason
    assert _bound(many["t0"].reason) < _bound(alone.reason)


def _bound(reason: str) -> float:
    return float(reason.split(" bound ")[1].split(" pts")[0])


def test_unknown_rule_names_the_accepted_ones():
    c = compare_items([[1]], [[1]])
    with pytest.raises(ValueError, match="'non-inferiority', 'significant-drop'"):
        verdicts({"t": c}, rule="bayes")
    assert set(RULES) == {"significant-drop", "non-inferiority"}
    with pytest.raises(ValueError, match="margin"):
        verdicts({"t": c}, margin=-0.01)
    assert verdicts({}) == {}
