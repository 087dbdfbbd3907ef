"""Evaluation: answer normalisation, gold replay, and real lm-eval runs on a tiny local model.

The lm-eval runs use a Llama model with random weights and a byte-level BPE tokenizer that this
file builds in a couple of seconds, so they check the plumbing (data injection, chat template,
filters, result and sample files), not accuracy. GSM8K items come from ../shared/data when it
exists and from a small fixture in the same format otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from leafbench.evaluation.answers import (
    extract_flexible,
    extract_strict,
    gold_from_gsm8k,
    is_correct,
    normalize_number,
)
from leafbench.evaluation.registry import KNOWN_TASKS, TASKS

GSM8K_TEST = SHARED_DATA / "gsm8k" / "test.jsonl"

# Five GSM8K-format records written by the test when ../shared/data is absent (own wording).
FIXTURE_GSM8K = [
    {
        "question": "Ann has 3 apples and buys 4 more. How many apples does she have?",
        "answer": "She has 3 + 4 = <<3+4=7>>7 apples.\n#### 7",
    },
    {
        "question": "A pen costs $2. How much do 6 pens cost?",
        "answer": "6 pens cost 6 * 2 = $<<6*2=12>>12.\n#### 12",
    },
    {
        "question": "A farm has 1,200 hens and sells 200. How many hens are left?",
        "answer": "1,200 - 200 = <<1200-200=1000>>1,000 hens are left.\n#### 1,000",
    },
    {
        "question": "Tom reads 15 pages a day for 4 days. How many pages does he read?",
        "answer": "He reads 15 * 4 = <<15*4=60>>60 pages.\n#### 60",
    },
    {
        "question": "A class of 28 splits into 4 equal teams. How big is each team?",
        "answer": "Each team has 28 / 4 = <<28/4=7>>7 students.\n#### 7",
    },
]


def gsm8k_records() -> list[dict]:
    if GSM8K_TEST.is_file():
        return [json.loads(line) for line in GSM8K_TEST.read_text().splitlines() if line.strip()]
    return FIXTURE_GSM8K


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Nothing may come from the hub: the data and the model are local."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("LEAFBENCH_DATA_DIR", raising=False)


# ---------------------------------------------------------------- normalisation and extraction
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", "42"),
        ("1,000", "1000"),
        ("$1,234.00", "1234"),
        ("18.0", "18"),
        ("0.50", "0.5"),
        (".5", "0.5"),
        ("-7.", "-7"),
        ("-0", "0"),
        ("+3", "3"),
        ("(42)", "42"),
        ("**12**", "12"),
        ("$-5", "-5"),
        ("007", "7"),
        ("1,2", None),  # not a thousands separator
        ("abc", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_number(text, expected):
    assert normalize_number(text) == expected


@pytest.mark.parametrize(
    ("response", "strict", "flexible"),
    [
        ("3 + 4 = 7. The answer is 7.", "7", "7"),
        ("The answer is $1,000.00.", "1000", "1000"),
        ("#### 72", "72", "72"),
        ("The final answer is: 5", "5", "5"),
        ("So the total is \\boxed{36}.", "36", "36"),
        ("The answer is \\boxed{-2}", "-2", "-2"),
        ("It costs 3 dollars, so 12 in total.", None, "12"),  # no marker: strict abstains
        ("The answer is 4. Then 9 more.", "4", "9"),  # flexible takes the last number
        ("The answer is 4. No, the answer is 5.", "5", "5"),  # last marker wins
        ("I give up.", None, None),
        ("Add 3,4 and 5", None, "5"),
    ],
)
def test_extractors(response, strict, flexible):
    assert extract_strict(response) == strict
    assert extract_flexible(response) == flexible


def test_is_correct_compares_normalised_numbers():
    assert is_correct("1000", "1,000")
    assert not is_correct(None, "3")
    assert not is_correct("3", "4")


def test_gold_gsm8k_solutions_pass_both_extractors():
    """Replaying every gold solution of the GSM8K test set must score 100% under both filters."""
    records = gsm8k_records()
    for rec in records:
        gold = gold_from_gsm8k(rec["answer"])
        assert gold == str(int(rec["answer"].split("####")[-1].strip().replace(",", "")))
        assert extract_strict(rec["answer"]) == gold, rec["answer"]
        assert extract_flexible(rec["answer"]) == gold, rec["answer"]


def test_registry_matches_shipped_yamls():
    from leafbench.evaluation.harness import HEADLINE

    assert KNOWN_TASKS == set(TASKS)
    for name, spec in TASKS.items():
        if spec.engine == "lm_eval":
            assert spec.yaml_path.is_file()
            assert f"task: {name}" in spec.yaml_path.read_text()
            assert spec.metric == HEADLINE  # what sample_rows' `correct` is


# ---------------------------------------------------------------- real lm-eval runs
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A random-weight Llama with a byte-level BPE tokenizer trained on GSM8K-style text."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    lines = []
    for rec in gsm8k_records()[:300]:
        lines += [rec["question"], rec["answer"]]
    lines += ["The answer is 42.", "Solve the problem step by step."]
    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        lines,
        trainers.BpeTrainer(
            vocab_size=512,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        chat_template=CHAT_TEMPLATE,
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    path = tmp_path_factory.mktemp("tiny_llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _check_run(scores, out: Path, task: str, golds: list[str]) -> list[dict]:
    """Files exist, n and targets match the data, and scores agree with the per-sample verdicts."""
    from lm_eval import __version__ as lm_eval_version

    assert scores[task]["n"] == len(golds)
    report = json.loads((out / "results.json").read_text())
    assert report["lm_eval_version"] == lm_eval_version
    assert report["results"][task]["n"] == len(golds)
    rows = [json.loads(x) for x in (out / f"samples_{task}.jsonl").read_text().splitlines()]
    assert [r["doc_id"] for r in rows] == list(range(len(golds)))
    assert [r["target"] for r in rows] == golds
    for short, name in (("strict", "strict-match"), ("flexible", "flexible-extract")):
        score = scores[task][f"exact_match,{name}"]
        assert 0.0 <= score <= 1.0
        assert report["results"][task][f"exact_match,{name}"] == pytest.approx(score)
        verdicts = [r[f"correct_{short}"] for r in rows]
        assert score == pytest.approx(sum(verdicts) / len(rows))
        for r in rows:  # each verdict is the extractor's, recomputed from the raw response
            extracted = (extract_strict if short == "strict" else extract_flexible)(r["response"])
            assert r[f"extracted_{short}"] == extracted
            assert r[f"correct_{short}"] == is_correct(extracted, r["target"])
    assert all("<|im_start|>assistant" in r["prompt"] for r in rows)  # chat template applied
    return rows


def test_lm_eval_gsm8k_on_tiny_model(tiny_model, tmp_path):
    from leafbench.evaluation import run_evaluation

    data_dir = tmp_path / "data"
    (data_dir / "gsm8k").mkdir(parents=True)
    records = gsm8k_records()[:5]
    # A data dir laid out like ../shared/data, holding the first five real test items.
    (data_dir / "gsm8k" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "eval"
    scores = run_evaluation(
        tiny_model, ["leaf_gsm8k"], out, data_dir=data_dir, limit=5, batch_size=5, max_gen_toks=16
    )
    golds = [gold_from_gsm8k(r["answer"]) for r in records]
    rows = _check_run(scores, out, "leaf_gsm8k", golds)
    assert records[0]["question"] in rows[0]["prompt"]
    assert "dataset_kwargs" in (out / "tasks" / "leaf_gsm8k.yaml").read_text()


def test_lm_eval_synthetic_on_tiny_model(tiny_model, tmp_path):
    from leafbench.evaluation import run_evaluation

    items = [(3, 4, 9), (5, 2, 1), (6, 1, 8), (2, 2, 5)]  # a + b, with a distractor number
    test_file = tmp_path / "synthetic_test.jsonl"
    with test_file.open("w") as fh:
        for i, (a, b, d) in enumerate(items):
            instruction = f"Note: the box holds {d} stones. What is {a} plus {b}?"
            fh.write(
                json.dumps(
                    {
                        "id": f"t{i}",
                        "instruction": instruction,
                        "response": f"{a} plus {b} is {a + b}. The answer is {a + b}.",
                        "answer": str(a + b),
                        "distractor_spans": [[6, 26]],
                    }
                )
                + "\n"
            )
    out = tmp_path / "eval"
    scores = run_evaluation(
        tiny_model,
        ["leaf_synthetic"],
        out,
        data_files={"leaf_synthetic": test_file},
        batch_size=4,
        max_gen_toks=8,
    )
    _check_run(scores, out, "leaf_synthetic", [str(a + b) for a, b, _ in items])


def test_gold_replay_through_lm_eval_scores_one(tmp_path):
    """Gold GSM8K solutions fed through lm-eval's own task, filters and metric score 100%.

    An LM that answers each prompt with the gold rationale of the question in it: this checks
    the YAML targets, the custom filters and `exact_match` agree, which the random tiny model
    (all answers wrong) cannot.
    """
    from lm_eval.api.model import LM

    from leafbench.evaluation.harness import EvalRun, evaluate, resolve_sources

    records = gsm8k_records()[:20]
    data_dir = tmp_path / "data"
    (data_dir / "gsm8k").mkdir(parents=True)
    (data_dir / "gsm8k" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    class GoldReplay(LM):
        def generate_until(self, requests, disable_tqdm=False):
            prompts = [req.args[0] for req in requests]
            return [next(r["answer"] for r in records if r["question"] in p) for p in prompts]

        def loglikelihood(self, requests, disable_tqdm=False):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            raise NotImplementedError

    out = tmp_path / "eval"
    run = EvalRun(lm=GoldReplay(), out=out, model="gold-replay", backend="gold", chat=False)
    scores = evaluate(run, resolve_sources(["leaf_gsm8k"], data_dir=data_dir))
    assert scores["leaf_gsm8k"] == {
        "exact_match,strict-match": 1.0,
        "exact_match,flexible-extract": 1.0,
        "n": len(records),
    }


def test_data_source_errors_name_the_task(tmp_path):
    from leafbench.evaluation import run_evaluation

    with pytest.raises(ValueError, match="leaf_synthetic"):
        run_evaluation("unused", ["leaf_synthetic"], tmp_path)
    with pytest.raises(ValueError, match="unknown evaluation task"):
        run_evaluation("unused", ["gsm8k"], tmp_path)
    with pytest.raises(FileNotFoundError, match="gsm8k/test.jsonl"):
        run_evaluation("unused", ["leaf_gsm8k"], tmp_path, data_dir=tmp_path)
