"""The paper's five claims, each a test over seeds and items (leafbench.claims.statistics).

    (a) LeaF beats KD without mask on the test set                     superiority, > 0
    (b) span pruning is at least as good as collective pruning         non-inferiority, > −margin
    (c) gradient masking's detection F1 > perplexity masking's > random's
    (d) the student's attention on confounders falls more after LeaF than after plain KD
    (e) removing the mined tokens from the mined training instructions raises the undistilled
        student's accuracy, and removing random tokens of the same budget does not

Verdicts, after Holm across the claims measured (α = 0.05): *holds* when the claim's one-sided
p-value survives, *reversed* when the opposite direction's does, *not shown* otherwise, and
*not measured* when the data for it is absent (never a made-up number). A claim with two parts
((c), (e)) holds only when both parts do: its p-value is the larger of the two (an
intersection-union test, valid without further adjustment).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leafbench.claims.statistics import (
    Effect,
    bootstrap_effect,
    f1_difference,
    mean_difference,
    relative_fall_difference,
)
from leafbench.leaderboard.stats import holm

ALPHA = 0.05
NON_INFERIORITY_MARGIN = 0.03  # claim (b): span may be at most 3 points below collective
HOLDS, NOT_SHOWN, REVERSED, NOT_MEASURED = "holds", "not shown", "reversed", "not measured"


@dataclass
class Evidence:
    """Per-seed measurements, aligned by item: every dict maps item id -> value."""

    seeds: list[int]
    crossed: bool
    accuracy: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # condition -> seeds
    detection: list[dict[str, list[tuple[int, int, int]]]] = field(default_factory=list)
    attention: dict[str, dict[str, list[dict[str, float]]]] = field(default_factory=dict)
    preliminary: list[list[dict[str, Any]]] | None = None  # per seed: items.jsonl rows
    resamples: int = 2000


@dataclass
class ClaimResult:
    claim: str
    statement: str
    measure: str
    test: str
    effects: dict[str, Effect]  # the tested part(s); empty when not measured
    p_holds: float | None
    p_reversed: float | None
    margin: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    p_holds_holm: float | None = None
    p_reversed_holm: float | None = None
    verdict: str = NOT_MEASURED
    reason: str = ""


def _grid(ev: Evidence, per_seed: Sequence[dict[str, Any]],
          value: Callable[[Any], Sequence[float]]) -> np.ndarray | list[np.ndarray]:
    """The values per seed and item from per-seed {item: record}. Crossed (every seed scored
    the same items): a (seeds, items, k) grid of the items every seed has. Nested (each seed
    its own testbed, so an id names a different item under each seed): one (items, k) array
    per seed, of all its own items — aligning ids across seeds would keep only the few that
    happen to coincide."""
    if not ev.crossed:
        own = [np.array([list(value(d[i])) for i in sorted(d)], dtype=float) for d in per_seed]
        if any(len(v) == 0 for v in own):
            raise ValueError("a seed has no items")
        return own
    items = sorted(set.intersection(*(set(d) for d in per_seed)))
    if not items:
        raise ValueError("the seeds share no items")
    return np.array([[list(value(d[i])) for i in items] for d in per_seed], dtype=float)


def _cells(values: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """Every (seed, item) cell of a grid as rows: (cells, k)."""
    return np.concatenate(list(values))


def _paired(ev: Evidence, a: Sequence[dict[str, float]], b: Sequence[dict[str, float]]
            ) -> np.ndarray | list[np.ndarray]:
    joined = [{i: (x[i], y[i]) for i in x.keys() & y.keys()} for x, y in zip(a, b, strict=True)]
    return _grid(ev, joined, lambda v: (v[0] - v[1],))


def _effect(ev: Evidence, values: np.ndarray | list[np.ndarray], statistic: Any,
            null: float = 0.0) -> Effect:
    return bootstrap_effect(values, statistic, null=null, crossed=ev.crossed,
                            resamples=ev.resamples)


TEST = ("two-way bootstrap over seeds and items (each effect records its design and draws), "
        "one-sided percentile p")


def claim_a(ev: Evidence) -> ClaimResult:
    statement = "LeaF beats KD without mask on the test set"
    if not {"leaf", "kd"} <= ev.accuracy.keys():
        return ClaimResult("a", statement, "", "", {}, None, None)
    e = _effect(ev, _paired(ev, ev.accuracy["leaf"], ev.accuracy["kd"]), mean_difference)
    means = {c: float(np.mean([np.mean(list(s.values())) for s in ev.accuracy[c]]))
             for c in ("leaf", "kd")}
    return ClaimResult("a", statement, "accuracy(LeaF) − accuracy(KD, λ=1)", TEST,
                       {"leaf-kd": e}, e.p_greater, e.p_less, extra={"mean_accuracy": means})


def claim_b(ev: Evidence) -> ClaimResult:
    statement = "span pruning is at least as good as collective pruning"
    if not {"leaf", "collective"} <= ev.accuracy.keys():
        return ClaimResult("b", statement, "", "", {}, None, None)
    m = NON_INFERIORITY_MARGIN
    e = _effect(ev, _paired(ev, ev.accuracy["leaf"], ev.accuracy["collective"]), mean_difference,
                null=-m)
    return ClaimResult("b", statement, "accuracy(span) − accuracy(collective)",
                       TEST + f"; non-inferiority, H0: difference <= −{m:g}", {"span-collective": e},
                       e.p_greater, e.p_less, margin=m)


def claim_c(ev: Evidence) -> ClaimResult:
    statement = "gradient masking's detection F1 beats perplexity masking, which beats random"
    if not ev.detection or not {"gradient", "perplexity", "random"} <= ev.detection[0].keys():
        return ClaimResult("c", statement, "", "", {}, None, None)

    def pair(x: str, y: str) -> Effect:
        per_seed = [{str(i): (*d[x][i], *d[y][i]) for i in range(len(d[x]))}
                    for d in ev.detection]
        return _effect(ev, _grid(ev, per_seed, lambda v: v), f1_difference)

    grad, perp = pair("gradient", "perplexity"), pair("perplexity", "random")
    f1 = {m: float(np.mean([_f1(d[m]) for d in ev.detection]))
          for m in ("gradient", "perplexity", "random")}
    return ClaimResult("c", statement, "token F1 against the planted distractor clauses",
                       TEST + "; both orderings must hold (p = the larger)",
                       {"gradient-perplexity": grad, "perplexity-random": perp},
                       max(grad.p_greater, perp.p_greater), min(1.0, 2 * min(grad.p_less,
                                                                             perp.p_less)),
                       extra={"mean_f1": f1})


def _f1(counts: Sequence[tuple[int, int, int]]) -> float:
    from leafbench.claims.statistics import f1_of

    return f1_of(np.array(counts, dtype=float))


def claim_d(ev: Evidence) -> ClaimResult:
    statement = "the student's attention on confounders falls more after LeaF than after KD"
    if "mined" not in ev.attention:
        return ClaimResult("d", statement, "", "", {}, None, None)
    effects, extra = {}, {}
    for view in ("mined", "distractor"):
        a = ev.attention.get(view)
        if not a:
            continue
        per_seed = [{i: (b[i], l_[i], k[i]) for i in b.keys() & l_.keys() & k.keys()}
                    for b, l_, k in zip(a["before"], a["leaf"], a["kd"], strict=True)]
        values = _grid(ev, per_seed, lambda v: v)
        effects[view] = _effect(ev, values, relative_fall_difference)
        cells = _cells(values)
        before = cells[:, 0].sum()
        extra[view] = {"after_over_before_leaf": float(cells[:, 1].sum() / before),
                       "after_over_before_kd": float(cells[:, 2].sum() / before),
                       "items": effects[view].items}
    main = effects["mined"]
    return ClaimResult("d", statement,
                       "(mass after KD − mass after LeaF) / mass before, on the mined tokens "
                       "(tested) and the planted distractor tokens (reported)",
                       TEST, effects, main.p_greater, main.p_less, extra=extra)


def claim_e(ev: Evidence) -> ClaimResult:
    statement = ("removing mined tokens from the mined training instructions raises the "
                 "undistilled student's accuracy; removing random tokens of the same budget "
                 "does not")
    if not ev.preliminary:
        return ClaimResult("e", statement, "", "", {}, None, None,
                           reason="the preliminary stage is not in this pipeline")
    per_seed = [{str(r["id"]): (float(r["original_correct"]), float(r["pruned_correct"]),
                                float(r["random_correct"])) for r in rows}
                for rows in ev.preliminary]
    values = _grid(ev, per_seed, lambda v: v)

    def difference(x: int, y: int) -> np.ndarray | list[np.ndarray]:
        return [v[:, x:x + 1] - v[:, y:y + 1] for v in values]

    pruned = _effect(ev, difference(1, 0), mean_difference)
    over_random = _effect(ev, difference(1, 2), mean_difference)
    random_only = _effect(ev, difference(2, 0), mean_difference)
    return ClaimResult("e", statement, "accuracy(pruned) − accuracy(original); "
                       "accuracy(pruned) − accuracy(random) must hold too",
                       TEST + "; both parts must hold (p = the larger)",
                       {"pruned-original": pruned, "pruned-random": over_random,
                        "random-original": random_only},
                       max(pruned.p_greater, over_random.p_greater), pruned.p_less)


CLAIMS: dict[str, Callable[[Evidence], ClaimResult]] = {
    "a": claim_a, "b": claim_b, "c": claim_c, "d": claim_d, "e": claim_e,
}


def judge(ev: Evidence, alpha: float = ALPHA) -> list[ClaimResult]:
    """Every claim, with Holm-adjusted p-values over the claims measured and a verdict."""
    results = [test(ev) for test in CLAIMS.values()]
    measured = [r for r in results if r.p_holds is not None]
    holds = [r.p_holds for r in measured if r.p_holds is not None]  # all of them
    reversed_ = [1.0 if r.p_reversed is None else r.p_reversed for r in measured]
    for r, ph, pr in zip(measured, holm(holds), holm(reversed_), strict=True):
        r.p_holds_holm, r.p_reversed_holm = ph, pr
        if ph < alpha:
            r.verdict = HOLDS
        elif pr < alpha:
            r.verdict = REVERSED
        else:
            r.verdict = NOT_SHOWN
        r.reason = (f"Holm p (holds) = {ph:.3g}, Holm p (reversed) = {pr:.3g} over "
                    f"{len(measured)} claims, α = {alpha:g}")
    for r in results:
        if r.p_holds is None and not r.reason:
            r.reason = "no data for this claim in the conditions run"
    return results
