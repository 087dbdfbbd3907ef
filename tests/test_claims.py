"""`leafbench claims`: the two-way bootstrap, the claims' verdicts, and a real run on a tiny
testbed (the real pipeline, the real models; seconds)."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
from conftest import small_experiment

from leafbench.claims.claims import (
    HOLDS,
    NOT_MEASURED,
    NOT_SHOWN,
    REVERSED,
    Evidence,
    claim_d,
    claim_e,
    judge,
)
from leafbench.claims.statistics import (
    bootstrap_effect,
    f1_difference,
    f1_of,
    mean_difference,
    relative_fall_difference,
)
from leafbench.determinism import cpu_class
from leafbench.errors import ConfigError
from leafbench.mining import precision_recall


# ---------------------------------------------------------------- statistics
def test_a_constant_difference_has_a_point_interval_and_a_tiny_p():
    e = bootstrap_effect(np.full((3, 50), 0.1), mean_difference, resamples=500)
    assert e.estimate == pytest.approx(0.1)
    assert e.ci == pytest.approx((0.1, 0.1))
    assert e.p_greater == pytest.approx(1 / 501)
    assert e.p_less == pytest.approx(1.0)


def test_seed_variance_widens_the_interval_beyond_the_item_bootstrap():
    """Items agree perfectly within a seed, but seeds disagree: only a test that resamples
    seeds sees that the mean +0.06 could be noise."""
    offsets = np.array([0.3, -0.2, 0.25, -0.15, 0.1])
    values = np.repeat(offsets[:, None], 100, axis=1) + np.random.default_rng(0).normal(
        0, 0.01, (5, 100))
    both = bootstrap_effect(values, mean_difference, resamples=2000)
    assert both.ci[0] < 0 < both.ci[1]
    assert both.p_greater > 0.05
    items_only = bootstrap_effect(values.reshape(1, -1), mean_difference, resamples=2000)
    assert items_only.ci[0] > 0  # one "seed": the seed-to-seed spread is invisible


def test_item_variance_counts_with_a_single_seed_like_the_paired_bootstrap():
    d = np.array([1.0] * 30 + [-1.0] * 20 + [0.0] * 150)
    e = bootstrap_effect(d[None, :], mean_difference, resamples=4000)
    assert e.estimate == pytest.approx(0.05)
    assert e.ci[0] < 0.05 < e.ci[1]
    assert 0.1 < e.ci[1] - e.ci[0] < 0.14  # ≈ 2·1.96·sqrt(0.25/200) = 0.139 (discrete)


def test_nested_design_draws_items_within_each_seed():
    values = np.random.default_rng(1).normal(0.5, 1, (4, 40))
    crossed = bootstrap_effect(values, mean_difference, crossed=True, resamples=300)
    nested = bootstrap_effect(values, mean_difference, crossed=False, resamples=300)
    assert crossed.design == "crossed" and nested.design == "nested"
    assert crossed.estimate == nested.estimate


def test_nested_design_takes_each_seeds_own_items_however_many():
    """Seeds with their own testbeds have their own items, in different numbers: the estimate
    is the pooled statistic over every (seed, item) cell, and a crossed design refuses them."""
    rng = np.random.default_rng(2)
    per_seed = [rng.normal(0.3, 1, (n, 1)) for n in (30, 55, 12)]
    nested = bootstrap_effect(per_seed, mean_difference, crossed=False, resamples=300)
    assert nested.estimate == pytest.approx(np.concatenate(per_seed).mean())
    assert nested.items == round(97 / 3) and nested.seeds == 3
    assert nested.ci[0] < nested.estimate < nested.ci[1]
    with pytest.raises(ValueError, match="same items under every seed"):
        bootstrap_effect(per_seed, mean_difference, crossed=True)


def test_claims_on_seeds_with_their_own_testbeds_use_every_item():
    """Under --vary testbed an id names a different item in each seed's testbed: the claims must
    use each seed's items, not only the ids that happen to coincide (once 1 item of 64)."""
    seeds = [0, 1]
    before = [{f"s{s}-{i}": 1.0 for i in range(20)} for s in seeds]  # disjoint ids per seed
    leaf = [{k: 0.5 for k in b} for b in before]
    kd = [{k: 0.8 for k in b} for b in before]
    rows = [[{"id": f"s{s}-{i}", "original_correct": False, "pruned_correct": i % 2 == 0,
              "random_correct": False} for i in range(20)] for s in seeds]
    ev = Evidence(seeds=seeds, crossed=False, resamples=300, preliminary=rows,
                  attention={"mined": {"before": before, "leaf": leaf, "kd": kd}})
    d, e = claim_d(ev), claim_e(ev)
    assert d.extra["mined"]["items"] == 20
    assert d.effects["mined"].estimate == pytest.approx(0.3)
    assert e.effects["pruned-original"].estimate == pytest.approx(0.5)
    assert e.effects["pruned-original"].items == 20


def test_bootstrap_refuses_an_empty_grid():
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_effect(np.zeros((0, 3)), mean_difference)


def test_pooled_f1_matches_the_detection_measure():
    pairs = [([True, True, False, False], [True, False, True, False]),
             ([False, True, True], [False, True, True])]
    counts = np.array([[[1, 1, 1]], [[2, 0, 0]]], dtype=float)
    assert f1_of(counts) == pytest.approx(precision_recall(pairs)["f1"])
    both = np.concatenate([counts, np.array([[[0, 2, 3]], [[0, 1, 2]]], dtype=float)], axis=-1)
    assert f1_difference(both) == pytest.approx(precision_recall(pairs)["f1"])


def test_relative_fall_difference_is_how_much_more_leaf_removed():
    # before 1.0, LeaF leaves 0.5, KD leaves 0.8: LeaF removed 30% more of the mass.
    values = np.array([[[1.0, 0.5, 0.8], [1.0, 0.5, 0.8]]])
    assert relative_fall_difference(values) == pytest.approx(0.3)


# ---------------------------------------------------------------- verdicts
def _accuracy(rate: float, n: int = 200, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {f"t/{i}": float(rng.random() < rate) for i in range(n)}


def test_verdicts_holds_reversed_not_shown_and_not_measured():
    seeds = [0, 1, 2]
    ev = Evidence(seeds=seeds, crossed=True, resamples=500)
    ev.accuracy = {"leaf": [_accuracy(0.8, seed=s) for s in seeds],
                   "kd": [_accuracy(0.3, seed=10 + s) for s in seeds],
                   "collective": [_accuracy(0.98, seed=20 + s) for s in seeds]}
    results = {r.claim: r for r in judge(ev)}
    assert results["a"].verdict == HOLDS
    assert results["b"].verdict == REVERSED  # span far below collective, beyond the margin
    assert results["b"].margin == pytest.approx(0.03)
    for claim in "cde":
        assert results[claim].verdict == NOT_MEASURED
        assert results[claim].effects == {}
    assert "2 claims" in results["a"].reason  # Holm over the claims measured

    ev.accuracy["kd"] = ev.accuracy["leaf"]  # identical students: nothing to show
    assert {r.claim: r for r in judge(ev)}["a"].verdict == NOT_SHOWN


def test_preliminary_claim_needs_both_parts():
    rows = [{"id": i, "original_correct": 0, "pruned_correct": int(i % 2 == 0),
             "random_correct": 0} for i in range(100)]
    ev = Evidence(seeds=[0], crossed=True, resamples=500, preliminary=[rows])
    r = claim_e(ev)
    assert r.effects["pruned-original"].estimate == pytest.approx(0.5)
    assert r.effects["random-original"].estimate == pytest.approx(0.0)
    assert r.p_holds < 0.01
    same = [{**row, "random_correct": row["pruned_correct"]} for row in rows]
    r = claim_e(Evidence(seeds=[0], crossed=True, resamples=500, preliminary=[same]))
    assert r.p_holds > 0.05  # random removal helps as much: the claim's second part fails


# ---------------------------------------------------------------- real stages
def test_detection_counts_reproduce_the_prune_stage(tmp_path):
    """Claim (c)'s per-sample counts, pooled, are the prune stage's detection.json figures:
    same marks, same budgets, the same seeded random stream (mine and prune only: seconds)."""
    from leafbench.claims.measure import detection_counts, store_rows
    from leafbench.config import load_experiment
    from leafbench.pipeline import run_experiment

    exp_path = tmp_path / "tiny.yaml"
    exp_path.write_text(small_experiment(tmp_path / "ws", name="tiny", experiment="claims-test",
                                         n_pretrain=200, n_train=16, n_test=8, teacher_steps=20,
                                         student_steps=20, max_gen_toks=12))
    for seed in (0, 3):
        exp = load_experiment(exp_path, [f"seed={seed}"])
        stages = {r.name: r for r in run_experiment(exp, until="prune")}
        table = json.loads((stages["prune"].path / "detection.json").read_text())["by_tau"]["0.1"]
        counts = detection_counts(store_rows(stages["mine"].path), "absolute", 0.1,
                                  exp.mining.baselines, seed)
        for method in ("gradient", "random", "perplexity"):
            pooled = np.array(counts[method], dtype=float)[None]
            assert f1_of(pooled) == pytest.approx(table[method]["f1"]), (seed, method)


# ---------------------------------------------------------------- the command, for real
# Every condition for two seeds on a tiny testbed, distilled and evaluated (about 20 s here).
@pytest.fixture(scope="module")
def tiny_claims(tmp_path_factory) -> tuple[Path, dict]:
    from leafbench.claims.commands import run

    root = tmp_path_factory.mktemp("claims")
    exp = root / "tiny.yaml"
    exp.write_text(small_experiment(root / "ws", name="tiny", experiment="claims-test",
                                    n_pretrain=200, n_train=16, n_test=16, teacher_steps=20,
                                    student_steps=20, max_gen_toks=12))
    out = root / "claims.json"
    args = Namespace(experiment=exp, seeds=2, vary="pipeline", set=["distill.epochs=1"], json=out,
                     resamples=200, no_tracking=False)
    assert run(args) == 0
    return root, json.loads(out.read_text())


def test_claims_command_reports_every_claim_with_a_verdict(tiny_claims):
    _, report = tiny_claims
    assert report["seeds"] == [0, 1]
    assert [c["claim"] for c in report["claims"]] == list("abcde")
    for c in report["claims"]:
        assert c["verdict"] in (HOLDS, NOT_SHOWN, REVERSED, NOT_MEASURED)
    by = {c["claim"]: c for c in report["claims"]}
    for claim in "abcd":
        assert by[claim]["effects"], claim
        for e in by[claim]["effects"].values():
            assert e["ci"][0] <= e["estimate"] <= e["ci"][1] + 1e-12
            assert e["seeds"] == 2 and e["design"] == "crossed"
    assert set(by["d"]["effects"]) == {"mined", "distractor"}
    assert by["a"]["effects"]["leaf-kd"]["items"] == 16


def test_claims_accuracy_and_detection_agree_with_the_stages(tiny_claims):
    root, report = tiny_claims
    ws = root / "ws" / "artifacts"
    # Per-seed accuracies of the LeaF student are the evaluate stage's scores.
    scores = sorted(json.loads(p.read_text())["student_after.leaf_synthetic.score"]
                    for p in (ws / "evaluate").glob("*/summary.json"))
    leaf = [s["accuracy"]["leaf"] for s in report["diagnostics"]["per_seed"]]
    assert all(any(abs(x - s) < 1e-9 for s in scores) for x in leaf)
    # The pooled detection F1s are the prune stage's detection.json at the experiment's τ.
    f1 = {c["claim"]: c for c in report["claims"]}["c"]["extra"]["mean_f1"]
    tables = [json.loads(p.read_text())["by_tau"]["0.1"]
              for p in (ws / "prune").glob("*/detection.json")]
    for method in ("gradient", "perplexity", "random"):
        assert f1[method] == pytest.approx(np.mean([t[method]["f1"] for t in tables]))


def test_claims_are_logged_to_mlflow(tiny_claims):
    import mlflow

    root, _ = tiny_claims
    client = mlflow.tracking.MlflowClient(f"sqlite:///{root / 'ws' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("claims-test")
    runs = client.search_runs([experiment.experiment_id], "attributes.run_name = 'claims-tiny'")
    assert len(runs) == 1
    assert runs[0].data.tags["claim_a"] in (HOLDS, NOT_SHOWN, REVERSED)
    assert "claim_a.leaf-kd.effect" in runs[0].data.metrics
    assert runs[0].data.tags["cpu_class"] == cpu_class()


def test_preliminary_claim_reads_the_preliminary_stage(tiny_claims):
    root, report = tiny_claims
    e = {c["claim"]: c for c in report["claims"]}["e"]
    assert set(e["effects"]) == {"pruned-original", "pruned-random", "random-original"}
    assert e["verdict"] != NOT_MEASURED
    # The pooled accuracies are the preliminary stage's, seed by seed.
    summaries = [json.loads(p.read_text())
                 for p in (root / "ws" / "artifacts" / "preliminary").glob("*/summary.json")]
    assert summaries and all(s["n"] > 0 for s in summaries)


def test_bad_arguments_fail_before_anything_runs(tmp_path):
    from leafbench.claims.commands import run

    args = Namespace(experiment=tmp_path / "missing.yaml", seeds=0, vary="pipeline", set=[],
                     json=None, resamples=200, no_tracking=True)
    with pytest.raises(ConfigError, match="--seeds"):
        run(args)
    with pytest.raises(ConfigError, match="--vary"):
        run(Namespace(**{**vars(args), "seeds": 2, "vary": "everything"}))


def test_error_kinds_tell_the_shortcut_from_arithmetic_slips():
    from leafbench.claims.measure import wrong_answers

    row = {"instruction": "Mia has 5 pens. It is 8 degrees outside. Mia buys 1 more pens. "
                          "How many pens does Mia have now?",
           "response": "5 + 1 = 6. The answer is 6.", "answer": "6",
           "distractor_number_spans": [[22, 23]]}
    cases = {"right": ("6", "5 + 1 = 6. The answer is 6."),
             "copies_distractor": ("8", "5 + 1 = 8. The answer is 8."),
             "distractor_as_operand": ("13", "5 + 8 = 13. The answer is 13."),
             "wrong_sum_off_by_one": ("7", "5 + 1 = 7. The answer is 7."),
             "wrong_sum": ("9", "5 + 1 = 9. The answer is 9."),
             "other": ("2", "6 + 1 =. The answer is 2.")}
    for kind, answer in cases.items():
        shares = wrong_answers({0: answer}, [row])
        assert shares[kind] == 1.0, kind
