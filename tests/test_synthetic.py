"""The synthetic testbed: corpus invariants, the shared tokenizer, and the cached build."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from leafbench.config import SyntheticConfig, TinyModelConfig
from leafbench.samples import chat_prompt, read_jsonl
from leafbench.synthetic import (
    build_testbed,
    encode_pair,
    extract_answer,
    generate_corpus,
    train_tokenizer,
)
from leafbench.synthetic import testbed_key as key_of  # pytest would collect test*-named imports
from leafbench.synthetic.corpus import CLEAN_FRACTION, DISTRACTORS, NAMES
from leafbench.synthetic.probe import without_distractors

SMALL = SyntheticConfig(
    n_pretrain=300,
    n_train=24,
    n_test=24,
    vocab_size=600,
    teacher=TinyModelConfig(layers=1, hidden=32, heads=2, steps=30, batch_size=8),
    student=TinyModelConfig(layers=1, hidden=16, heads=2, steps=20, batch_size=8),
)


def distractor_number(record: dict) -> int | None:
    if not record["distractor_number_spans"]:
        return None
    start, end = record["distractor_number_spans"][0]
    return int(record["instruction"][start:end])


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[dict]]:
    return generate_corpus(SyntheticConfig(n_pretrain=2000, n_train=300, n_test=300))


@pytest.fixture(scope="module")
def tokenizer(corpus):
    texts = [r["instruction"] + "\n" + r["response"] for r in corpus["teacher_pretrain"]]
    return train_tokenizer(texts, vocab_size=600)


# ---------------------------------------------------------------- corpus
def test_records_have_the_promised_fields_and_response_format(corpus):
    for split, records in corpus.items():
        assert len({r["id"] for r in records}) == len(records), split
        for r in records:
            assert set(r) == {"id", "instruction", "response", "answer", "distractor_spans",
                              "distractor_number_spans"}
            assert r["response"].endswith(f"The answer is {r['answer']}.")
            assert extract_answer(r["response"]) == r["answer"]
            a, b, total = map(int, re.match(r"(\d+) \+ (\d+) = (\d+)\.", r["response"]).groups())
            assert a + b == total == int(r["answer"])


def test_spans_cover_exactly_the_distractor_clause_and_its_number(corpus):
    clause_patterns = [
        re.compile(re.escape(t).replace(r"\{name\}", f"({'|'.join(NAMES)})")
                   .replace(r"\{d\}", r"(\d+)") + "$")
        for t in DISTRACTORS
    ]
    for r in corpus["train"] + corpus["test"]:
        (start, end), = r["distractor_spans"]
        (n_start, n_end), = r["distractor_number_spans"]
        clause = r["instruction"][start:end]
        assert any(p.match(clause) for p in clause_patterns), clause
        assert start <= n_start < n_end <= end
        assert re.fullmatch(r"\d+", r["instruction"][n_start:n_end])
        # What is left without the clause is the plain problem: two operands, one question.
        rest = without_distractors(r)
        assert len(re.findall(r"\d+", rest)) == 2 and rest.endswith("?") and "  " not in rest


def test_test_split_has_an_unrelated_distractor_and_no_leaked_problems(corpus):
    assert all(distractor_number(r) != int(r["answer"]) for r in corpus["test"])
    seen = {r["instruction"] for s in ("teacher_pretrain", "student_pretrain", "train")
            for r in corpus[s]}
    assert not seen & {r["instruction"] for r in corpus["test"]}


def test_distractor_leaks_the_answer_at_the_configured_rate():
    cfg = SyntheticConfig(n_pretrain=3000, n_train=500, spurious_correlation=0.6,
                          train_correlation=0.3)
    corpus = generate_corpus(cfg)

    def leak_rate(split):
        distracted = [r for r in corpus[split] if r["distractor_spans"]]
        return sum(distractor_number(r) == int(r["answer"]) for r in distracted) / len(distracted)

    chance = 1 / (2 * cfg.max_operand + 1)  # d uniform over the 19 possible answers
    assert leak_rate("student_pretrain") == pytest.approx(0.6 + 0.4 * chance, abs=0.03)
    assert leak_rate("train") == pytest.approx(0.3 + 0.7 * chance, abs=0.07)
    assert leak_rate("teacher_pretrain") == pytest.approx(chance, abs=0.02)
    full = generate_corpus(SyntheticConfig(n_pretrain=200, spurious_correlation=1.0))
    assert all(distractor_number(r) == int(r["answer"])
               for r in full["student_pretrain"] if r["distractor_spans"])


def test_only_pretraining_holds_plain_problems(corpus):
    for split in ("teacher_pretrain", "student_pretrain"):
        plain = [r for r in corpus[split] if not r["distractor_spans"]]
        assert all(not r["distractor_number_spans"] for r in plain)
        assert len(plain) / len(corpus[split]) == pytest.approx(CLEAN_FRACTION, abs=0.03)
    for split in ("train", "test"):
        assert all(len(r["distractor_spans"]) == len(r["distractor_number_spans"]) == 1
                   for r in corpus[split])


def test_distractor_takes_every_position(corpus):
    positions = set()
    for r in corpus["test"]:
        start = r["distractor_spans"][0][0]
        positions.add(r["instruction"][:start].count("."))  # sentences before the clause
    assert positions == {0, 1, 2}


def test_corpus_is_determined_by_the_seed():
    cfg = SyntheticConfig(n_pretrain=100, n_train=20, n_test=20)
    assert generate_corpus(cfg) == generate_corpus(cfg)
    other = generate_corpus(cfg.model_copy(update={"seed": 1}))
    assert other["test"] != generate_corpus(cfg)["test"]


def test_default_generator_reproduces_the_original_corpus_byte_for_byte():
    """The harder-variant settings (n_distractors, distractor_form, distractor_position,
    filler_sentences) at their defaults draw exactly what the generator drew before they
    existed: these digests were taken from the corpus of the earlier generator."""
    import hashlib
    import json

    def digest(cfg: SyntheticConfig) -> str:
        return hashlib.sha256(json.dumps(generate_corpus(cfg), sort_keys=True).encode()).hexdigest()

    assert digest(SyntheticConfig()) == (
        "e95d12cc7c97caffd39ca36c447f69b41296d7c69562ee6818d8759063f20815")
    assert digest(SyntheticConfig(seed=3, train_correlation=0.5, max_operand=20,
                                  n_pretrain=500)) == (
        "1ec879bcb65792ddc6271ecd9f4b974cd7bf78273a4a1eddfd87839715dac8ce")


def test_new_generator_settings_keep_cache_keys_at_their_defaults():
    assert key_of(SyntheticConfig()) == "0d167ea06f6c52ff"  # the key before the settings existed
    assert key_of(SyntheticConfig(n_distractors=1, filler_sentences=0)) == "0d167ea06f6c52ff"
    changed = {key_of(SyntheticConfig(**{k: v})) for k, v in (
        ("n_distractors", 2), ("distractor_form", "unit"), ("distractor_position", "last"),
        ("filler_sentences", 1))}
    assert len(changed) == 4 and "0d167ea06f6c52ff" not in changed


@pytest.mark.parametrize("form", ["fact", "quantity", "unit", "mixed"])
def test_several_distractors_each_have_a_clause_and_number_span(form):
    cfg = SyntheticConfig(n_pretrain=50, n_train=40, n_test=40, n_validation=10,
                          n_distractors=3, distractor_form=form, filler_sentences=2)
    corpus = generate_corpus(cfg)
    for r in corpus["test"] + corpus["train"]:
        clauses, numbers = r["distractor_spans"], r["distractor_number_spans"]
        assert len(clauses) == len(numbers) == 3
        for (cs, ce), (ns, ne) in zip(clauses, numbers, strict=True):
            assert cs <= ns < ne <= ce
            assert r["instruction"][ns:ne].isdigit()
            assert r["instruction"][cs:ce].endswith(".")
        if r["id"].startswith("test"):  # no clause leaks the answer on the test split
            assert all(r["instruction"][a:b] != r["answer"] for a, b in numbers)
        # The pruned instruction keeps both operands and drops every distractor number.
        pruned = without_distractors(r)
        assert len(re.findall(r"\d+", pruned)) == 2
        assert r["instruction"].count(".") == 2 + 3 + 2  # operands, clauses, fillers (+ "?")


@pytest.mark.parametrize("position, sentences_before", [("first", 0), ("between", 1),
                                                          ("last", 2)])
def test_distractor_position_setting_puts_the_clause_there(position, sentences_before):
    cfg = SyntheticConfig(n_pretrain=50, n_train=10, n_test=30, n_validation=10,
                          distractor_position=position)
    for r in generate_corpus(cfg)["test"]:
        start = r["distractor_spans"][0][0]
        assert r["instruction"][:start].count(".") == sentences_before


def test_unknown_generator_setting_value_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        SyntheticConfig(distractor_form="colour")


# ---------------------------------------------------------------- tokenizer
def test_chat_template_renders_the_instruction_verbatim(tokenizer, corpus):
    r = corpus["test"][0]
    prompt = chat_prompt(tokenizer, r["instruction"])
    assert prompt == f"<|bos|><|user|>\n{r['instruction']}\n<|assistant|>\n"
    conversation = tokenizer.apply_chat_template(
        [{"role": "user", "content": r["instruction"]},
         {"role": "assistant", "content": r["response"]}], tokenize=False)
    assert conversation == prompt + r["response"] + tokenizer.eos_token


def test_offsets_map_tokens_to_characters_and_numbers_stay_whole(tokenizer, corpus):
    for r in corpus["test"][:50]:
        text = chat_prompt(tokenizer, r["instruction"])
        enc = tokenizer(text, return_offsets_mapping=True)
        tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
        n_start, n_end = r["distractor_number_spans"][0]
        n_start += text.index(r["instruction"])
        n_end += text.index(r["instruction"])
        covering = []
        for token, (start, end) in zip(tokens, enc["offset_mapping"], strict=True):
            if token.startswith("<|"):
                continue
            assert tokenizer.convert_tokens_to_string([token]).strip() == text[start:end].strip()
            if start < n_end and end > n_start:
                covering.append((start, end))
        # The number's tokens cover the number and nothing else.
        assert covering and covering[0][0] == n_start and covering[-1][1] == n_end
    for n in range(19):
        assert len(tokenizer.tokenize(f" {n}")) <= 2


def test_encode_pair_supervises_the_response_and_eos_only(tokenizer, corpus):
    r = corpus["train"][0]
    ids, labels = encode_pair(tokenizer, r["instruction"], r["response"])
    supervised = [t for t in labels if t != -100]
    assert ids[-len(supervised):] == supervised and supervised[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(supervised, skip_special_tokens=True) == r["response"]
    assert tokenizer.decode(ids[: len(ids) - len(supervised)]) == chat_prompt(
        tokenizer, r["instruction"])


# ---------------------------------------------------------------- the cached build
def test_build_testbed_caches_and_saves_loadable_models(tmp_path):
    # A scratch directory left by a killed build (its process is gone) must be cleared.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    abandoned = [tmp_path / "synthetic" / f".{key}.tmp-{dead.pid}"
                 for key in (key_of(SMALL), "0123456789abcdef")]
    for scratch in abandoned:
        (scratch / "teacher").mkdir(parents=True)

    started = time.perf_counter()
    tb = build_testbed(SMALL, tmp_path, progress=False)
    first_build = time.perf_counter() - started
    assert tb.root == tmp_path / "synthetic" / tb.key
    assert sorted(p.name for p in (tmp_path / "synthetic").iterdir()) == [tb.key]
    weights = tb.teacher_dir / "model.safetensors"
    stamp = weights.stat().st_mtime_ns

    started = time.perf_counter()
    again = build_testbed(SMALL, tmp_path, progress=False)
    assert time.perf_counter() - started < min(1.0, first_build / 4)
    assert again == tb and weights.stat().st_mtime_ns == stamp
    assert again.metrics == tb.metrics
    assert {"teacher_accuracy", "student_accuracy", "student_copy_rate"} <= set(tb.metrics)

    assert len(read_jsonl(tb.train_jsonl)) == SMALL.n_train
    test = read_jsonl(tb.test_jsonl)
    assert len(test) == SMALL.n_test

    shared = AutoTokenizer.from_pretrained(tb.tokenizer_dir)
    sizes = {}
    for model_dir in (tb.teacher_dir, tb.student_dir):
        tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        assert tok.get_vocab() == shared.get_vocab()
        assert model.config.vocab_size == len(tok)
        assert model.generation_config.eos_token_id == tok.eos_token_id
        prompt = chat_prompt(tok, test[0]["instruction"])
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        out = model.generate(ids, max_new_tokens=4, do_sample=False)
        assert out.shape[1] > ids.shape[1] and torch.equal(out[0, : ids.shape[1]], ids[0])
        sizes[model_dir.name] = sum(p.numel() for p in model.parameters())
    assert sizes["student"] < sizes["teacher"]

    # Same config elsewhere: the same weights, bit for bit.
    twin = build_testbed(SMALL, tmp_path / "twin", progress=False)
    assert twin.key == tb.key
    assert (twin.student_dir / "model.safetensors").read_bytes() == (
        tb.student_dir / "model.safetensors").read_bytes()


# The demo's own testbed (its story and its pinned figures): tests/test_testbed_reproducible.py
