"""Which tokens the prune stage removes, on real mined rows of a small testbed: a separate τ for
response-level contexts (`mining.threshold.response_tau`), and the masking ablation's baseline
masks at gradient mining's per-row budget (`pruning.mask`)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import small_experiment

from leafbench.config import load_experiment
from leafbench.pipeline import STAGES, run_experiment, stage_key


@pytest.fixture(scope="module")
def both_levels(tmp_path_factory):
    """A small testbed mined at both levels (instruction + 2 response segments)."""
    root = tmp_path_factory.mktemp("masks")
    path = root / "small.yaml"
    path.write_text(small_experiment(root / "ws", name="masks", experiment="masks-test",
                                     n_pretrain=600, n_train=24, n_test=8, teacher_steps=40,
                                     student_steps=30, max_gen_toks=8)
                    + "mining: {level: both, segments: 2}\n")
    run_experiment(load_experiment(path, distills=False), until="mine")
    return path


def _prune(path: Path, *overrides: str):
    exp = load_experiment(path, list(overrides), distills=False)
    results = {r.name: r for r in run_experiment(exp, until="prune")}
    mined = [json.loads(x) for x in
             (results["mine"].path / "saliency.jsonl").read_text().splitlines()]
    spans = [json.loads(x) for x in (results["prune"].path / "spans.jsonl").read_text().splitlines()]
    return exp, mined, spans, results


def _marked(spans: list[dict]) -> dict[tuple, set[int]]:
    """(sample, level, segment) -> the token indices pruning marked in that mined row."""
    out: dict[tuple, set[int]] = {}
    for s in spans:
        out.setdefault((s["sample_id"], s["level"], s["segment"]), set()).update(
            range(*s["token_range"]))
    return out


def _row_key(row: dict) -> tuple:
    return (row["sample_id"], row["level"], row["segment"])


def _below(row: dict, tau: float) -> set[int]:
    return {i for i, (d, t) in enumerate(zip(row["delta"], row["tokens"], strict=True))
            if d <= tau and t.strip()}


def test_each_level_is_thresholded_at_its_own_tau(both_levels):
    _, mined, spans, _ = _prune(both_levels, "mining.threshold.tau=0.05",
                                "mining.threshold.response_tau=0.3")
    marked = _marked(spans)
    levels = Counter(r["level"] for r in mined)
    assert levels["instruction"] > 0 and levels["response"] > 0
    differs = 0
    for row in mined:
        tau = 0.05 if row["level"] == "instruction" else 0.3
        assert marked.get(_row_key(row), set()) == _below(row, tau), _row_key(row)
        if row["level"] == "response":
            differs += _below(row, 0.3) != _below(row, 0.05)
    assert differs > 0, "the response τ must change what some response segment loses"


def test_a_response_tau_equal_to_tau_marks_what_one_tau_marks(both_levels):
    _, _, spans_one, _ = _prune(both_levels, "mining.threshold.tau=0.1")
    _, _, spans_two, _ = _prune(both_levels, "mining.threshold.tau=0.1",
                                "mining.threshold.response_tau=0.1")
    assert _marked(spans_one) == _marked(spans_two)


def test_response_tau_at_its_default_keeps_the_prune_key(both_levels):
    exp = load_experiment(both_levels, distills=False)
    explicit = load_experiment(both_levels, ["mining.threshold.response_tau=null",
                                             "pruning.mask=gradient"], distills=False)
    other = load_experiment(both_levels, ["mining.threshold.response_tau=0.2"], distills=False)
    prune = next(s for s in STAGES if s.name == "prune")
    config = prune.config(exp)
    assert "response_tau" not in config["threshold"] and "mask" not in config["pruning"]
    keys = [stage_key(prune, e, {"mine": "m"}, None) for e in (exp, explicit, other)]
    assert keys[0] == keys[1] != keys[2]


@pytest.mark.parametrize("mask", ["random", "perplexity"])
def test_baseline_masks_spend_the_gradient_budget_on_other_tokens(both_levels, mask):
    _, mined, gradient_spans, _ = _prune(both_levels)
    exp, _, baseline_spans, results = _prune(both_levels, f"pruning.mask={mask}")
    gradient, baseline = _marked(gradient_spans), _marked(baseline_spans)
    assert sum(len(v) for v in gradient.values()) > 0
    moved = 0
    for row in mined:
        g, b = gradient.get(_row_key(row), set()), baseline.get(_row_key(row), set())
        assert len(g) == len(b), _row_key(row)
        assert all(row["tokens"][i].strip() for i in b)
        moved += g != b
    assert moved > 0, f"the {mask} mask marks the same tokens as gradient mining"
    if mask == "perplexity":  # the most surprising tokens of each row
        for row in mined:
            chosen = baseline.get(_row_key(row), set())
            rest = [row["student_surprisal"][i] for i, t in enumerate(row["tokens"])
                    if t.strip() and i not in chosen]
            if chosen and rest:
                assert min(row["student_surprisal"][i] for i in chosen) >= max(rest)
    # Counterfactuals are built from the baseline's marks: one per span of them.
    items = [json.loads(x) for x in
             (results["prune"].path / "counterfactuals.jsonl").read_text().splitlines()]
    assert sum(it["kind"] != "original" for it in items) == len(baseline_spans)


def test_random_mask_is_reproducible_and_moves_with_the_seed(both_levels):
    _, _, first, _ = _prune(both_levels, "pruning.mask=random")
    _, _, again, _ = _prune(both_levels, "pruning.mask=random", "evaluate.batch_size=7")
    _, _, reseeded, _ = _prune(both_levels, "pruning.mask=random", "seed=5")
    assert _marked(first) == _marked(again)
    assert _marked(first) != _marked(reseeded)


def test_a_response_tau_without_response_contexts_is_refused(both_levels):
    from leafbench.errors import ConfigError

    with pytest.raises(ConfigError, match="response_tau"):
        load_experiment(both_levels, ["mining.level=instruction",
                                      "mining.threshold.response_tau=0.1"], distills=False)
