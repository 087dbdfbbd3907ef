"""Evaluation with sampling (`run_evaluation(temperature=...)`): greedy stays the default and
unchanged, a temperature samples reproducibly per seed, results.json records it, and the
generation cache never serves one seed's samples to another.

The model is a random-weight Llama from conftest (seconds to build): at temperature 1 its
responses are all but certain to differ between seeds, and greedy ones never do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import build_model, build_tokenizer

ITEMS = [(3, 4, 9), (5, 2, 1), (6, 1, 8), (2, 2, 5), (7, 1, 3), (4, 4, 6)]


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sampling")
    model = build_model(build_tokenizer(), root / "model", hidden=16, layers=1, seed=3)
    test_file = root / "synthetic_test.jsonl"
    with test_file.open("w") as fh:
        for i, (a, b, d) in enumerate(ITEMS):
            fh.write(json.dumps({
                "id": f"t{i}", "instruction": f"The box holds {d} stones. What is {a} plus {b}?",
                "response": f"The answer is {a + b}.", "answer": str(a + b),
                "distractor_spans": [[0, 22]],
            }) + "\n")
    return model, test_file


def evaluate(model_and_data, out: Path, batch_size: int = len(ITEMS), **kwargs
             ) -> tuple[list[str], dict]:
    from leafbench.evaluation import run_evaluation

    model, test_file = model_and_data
    run_evaluation(model, ["leaf_synthetic"], out, data_files={"leaf_synthetic": test_file},
                   batch_size=batch_size, max_gen_toks=8, **kwargs)
    rows = [json.loads(x) for x in (out / "samples_leaf_synthetic.jsonl").read_text().splitlines()]
    report = json.loads((out / "results.json").read_text())
    return [r["response"] for r in rows], report


def test_greedy_is_the_default_and_ignores_the_seed(model_and_data, tmp_path):
    first, report = evaluate(model_and_data, tmp_path / "a", seed=0)
    again, _ = evaluate(model_and_data, tmp_path / "b", seed=1)
    assert first == again
    decoding = report["results"]["leaf_synthetic"]["decoding"]
    assert (decoding["do_sample"], decoding["temperature"]) == (False, 0.0)


def test_sampling_is_seeded_and_recorded(model_and_data, tmp_path):
    seed0, report = evaluate(model_and_data, tmp_path / "a", seed=0, temperature=1.0)
    seed0_again, _ = evaluate(model_and_data, tmp_path / "b", seed=0, temperature=1.0)
    seed1, _ = evaluate(model_and_data, tmp_path / "c", seed=1, temperature=1.0)
    greedy, _ = evaluate(model_and_data, tmp_path / "d", seed=0)
    assert seed0 == seed0_again  # the seed decides the samples
    assert seed0 != seed1
    assert seed0 != greedy
    decoding = report["results"]["leaf_synthetic"]["decoding"]
    assert (decoding["do_sample"], decoding["temperature"]) == (True, 1.0)
    assert decoding["samples_per_item"] == 1


def test_the_cache_keys_samples_by_seed(model_and_data, tmp_path):
    cache = tmp_path / "cache"
    seed0, first = evaluate(model_and_data, tmp_path / "a", seed=0, temperature=1.0,
                            cache_dir=cache)
    seed1, other = evaluate(model_and_data, tmp_path / "b", seed=1, temperature=1.0,
                            cache_dir=cache)
    replayed, again = evaluate(model_and_data, tmp_path / "c", seed=0, temperature=1.0,
                               cache_dir=cache)
    greedy, plain = evaluate(model_and_data, tmp_path / "d", seed=0, cache_dir=cache)
    n = len(ITEMS)
    assert (first["generation_cache"]["hits"], first["generation_cache"]["misses"]) == (0, n)
    assert (other["generation_cache"]["hits"], other["generation_cache"]["misses"]) == (0, n)
    assert seed1 != seed0  # a new seed samples anew instead of reading seed 0's responses
    assert again["generation_cache"]["hits"] == n and not again["generation_cache"]["model_loaded"]
    assert replayed == seed0
    assert plain["generation_cache"]["misses"] == n  # greedy responses are a different entry
    assert greedy != seed0


def test_the_cache_keys_samples_by_batch_size_and_greedy_responses_by_neither(
        model_and_data, tmp_path):
    """Batches draw from one seeded stream in turn, so a batch size of 2 samples other
    responses than 6: served from the cache, a run would give another batch size's samples
    instead of its own. Greedy responses are shared across batch sizes and seeds."""
    cache = tmp_path / "cache"
    _, whole = evaluate(model_and_data, tmp_path / "a", seed=0, temperature=1.0, cache_dir=cache)
    pairs, split = evaluate(model_and_data, tmp_path / "b", seed=0, temperature=1.0,
                            cache_dir=cache, batch_size=2)
    uncached, _ = evaluate(model_and_data, tmp_path / "c", seed=0, temperature=1.0, batch_size=2)
    n = len(ITEMS)
    assert whole["generation_cache"]["misses"] == n
    assert (split["generation_cache"]["hits"], split["generation_cache"]["misses"]) == (0, n)
    assert pairs == uncached  # what batch size 2 samples, cache or none
    evaluate(model_and_data, tmp_path / "d", seed=0, cache_dir=cache)
    _, greedy = evaluate(model_and_data, tmp_path / "e", seed=1, cache_dir=cache, batch_size=2)
    assert greedy["generation_cache"]["hits"] == n and not greedy["generation_cache"]["model_loaded"]


def test_temperature_is_checked_before_a_model_loads(model_and_data, tmp_path):
    from leafbench.evaluation import run_evaluation

    data = {"leaf_synthetic": model_and_data[1]}
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        run_evaluation(tmp_path / "no-model", ["leaf_synthetic"], tmp_path / "out",
                       data_files=data, temperature=-1.0)
    with pytest.raises(ValueError, match=r"\['leaf_humaneval_plus'\] decode greedily"):
        run_evaluation(tmp_path / "no-model", ["leaf_synthetic", "leaf_humaneval_plus"],
                       tmp_path / "out", data_files=data, temperature=0.7)
