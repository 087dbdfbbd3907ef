"""Stage 1: saliency, Δ, thresholds, baselines, detection, and span pruning."""

from __future__ import annotations

import random

import pytest
import torch

from leafbench.mining.baselines import perplexity_marks, random_marks
from leafbench.mining.detection import precision_recall, token_in_spans
from leafbench.mining.saliency import confounder_scores, gradient_norms, minmax
from leafbench.mining.threshold import mark_confounders
from leafbench.models import load_causal_lm, load_tokenizer
from leafbench.pruning.spans import counterfactuals, find_spans, remove_chars
from leafbench.samples import encode_pair

INSTRUCTION = "Tom has 3 apples. His sister is 8. Anna gives him 4 more. How many apples?"
TOKENS = ["Tom", " has", " 3", " apples", ".", " His", " sister", " is", " 8", ".", " "]


def _offsets(tokens):
    out, pos = [], 0
    for t in tokens:
        out.append((pos, pos + len(t)))
        pos += len(t)
    return out


def test_quantile_mode_follows_the_official_code_on_a_hand_made_example():
    # n = 11, τ = 0.4: sorted Δ = [0, 0, .01, .03, .05, ...]; index ⌊11·0.4⌋ = 4 -> t = 0.05.
    delta = [0.90, 0.80, 0.70, 0.60, 0.50, 0.01, 0.03, 0.05, 0.00, 0.40, 0.00]
    marked = mark_confounders(delta, TOKENS, "quantile", 0.4)
    # Token 10 is whitespace-only: never marked although its Δ is minimal.
    assert marked == [False] * 5 + [True, True, True, True, False, False]
    # τ = 0.2: index 2 -> t = 0.01: only Δ ∈ {0, 0.01} qualify.
    assert sum(mark_confounders(delta, TOKENS, "quantile", 0.2)) == 2
    text = "".join(TOKENS)
    assert find_spans(marked) == [(5, 9)]
    (cf, removed), = counterfactuals(text, _offsets(TOKENS), marked, "span")
    assert removed == [(17, 33)]
    assert cf == "Tom has 3 apples.. "


def test_quantile_threshold_is_capped_at_one_half():
    delta = [0.6, 0.7, 0.8, 0.9, 1.0]
    # ⌊5·0.5⌋ = 2 -> 0.8, capped at 0.5: nothing is marked.
    assert mark_confounders(delta, ["a", "b", "c", "d", "e"], "quantile", 0.5) == [False] * 5


def test_absolute_mode_marks_delta_at_or_below_tau():
    delta = [0.0, 0.1, 0.15, 0.5]
    texts = ["x", "y", "z", "w"]
    assert mark_confounders(delta, texts, "absolute", 0.10) == [True, True, False, False]
    assert mark_confounders(delta, texts, "absolute", 0.15) == [True, True, True, False]


def test_span_and_collective_pruning_produce_the_expected_texts():
    tokens = ["A", " b", " c", " d", " e", " f"]
    marked = [False, True, False, True, True, False]
    text = "".join(tokens)
    spans = counterfactuals(text, _offsets(tokens), marked, "span")
    assert [cf for cf, _ in spans] == ["A c d e f", "A b c f"]
    (collective, removed), = counterfactuals(text, _offsets(tokens), marked, "collective")
    assert collective == "A c f" and removed == [(1, 3), (5, 9)]
    assert counterfactuals(text, _offsets(tokens), [False] * 6, "collective") == []
    assert remove_chars("abcdef", [(4, 5), (0, 2)]) == "cdf"


def test_pruning_a_trimmed_token_takes_its_leading_space_with_it():
    text = "Her brother is 7 years old."
    offsets = [(0, 3), (4, 11), (12, 14), (15, 16), (17, 22), (23, 26), (26, 27)]
    marked = [False, False, False, True, False, False, False]
    (cf, removed), = counterfactuals(text, offsets, marked, "span")
    assert cf == "Her brother is years old." and removed == [(14, 16)]


def test_minmax_and_delta():
    assert torch.equal(minmax(torch.tensor([2.0, 2.0])), torch.zeros(2))
    scores = confounder_scores(torch.tensor([1.0, 3.0, 5.0]), torch.tensor([4.0, 0.0, 2.0]))
    assert torch.allclose(scores["teacher_norm"], torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(scores["student_norm"], torch.tensor([1.0, 0.0, 0.5]))
    # ĝT − ĝS = [-1, 0.5, 0.5] -> normalised [0, 1, 1]: token 0 is the confounder candidate.
    assert torch.allclose(scores["delta"], torch.tensor([0.0, 1.0, 1.0]))


def test_random_baseline_spends_the_same_budget_on_non_whitespace_tokens():
    row = {"tokens": ["a", " ", "b", "c", "\n", "d"]}
    marks = random_marks(row, 3, random.Random(0))
    assert sum(marks) == 3 and not marks[1] and not marks[4]
    assert sum(random_marks(row, 10, random.Random(0))) == 4


def test_perplexity_baseline_takes_the_most_surprising_tokens():
    row = {"tokens": ["a", " ", "b", "c"], "student_surprisal": [1.0, 9.0, 5.0, 3.0]}
    assert perplexity_marks(row, 2, random.Random(0)) == [False, False, True, True]


def test_detection_counts_tokens_overlapping_true_spans():
    assert token_in_spans(" 8", (7, 9), [[8, 9]])
    assert not token_in_spans(" ", (8, 9), [[8, 9]])
    scores = precision_recall([([True, True, False, False], [True, False, True, False])])
    assert scores == {"precision": 0.5, "recall": 0.5, "f1": 0.5}


def _reference_norms(model, tokenizer, instruction, response):
    """Per-sample plain implementation: full-vocabulary logits, batch of one, mean-free sum."""
    enc = encode_pair(tokenizer, instruction, response, 512)
    ids = torch.tensor([enc.input_ids])
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds).logits[0]
    loss = torch.nn.functional.cross_entropy(
        logits[enc.loss_start - 1 : enc.loss_end - 1], ids[0, enc.loss_start : enc.loss_end], reduction="sum"
    )
    loss.backward()
    return embeds.grad[0].norm(dim=-1)[enc.context_positions]


@pytest.mark.parametrize("role", [0, 1])
def test_batched_gradient_norms_match_a_per_sample_reference(tiny_pair, role):
    tok = load_tokenizer(str(tiny_pair[role]))
    model = load_causal_lm(str(tiny_pair[role]), device="cpu").eval()
    pairs = [
        ("Tom has 3 apples. Her brother is 7 years old. Anna gives him 4 more.", "The answer is 7."),
        ("Mia buys 2 pens.", "2 + 6 = 8. The answer is 8."),
        ("The shop is on floor 5. How many?", "The answer is 11."),
    ]
    encs = [encode_pair(tok, i, r, 512) for i, r in pairs]
    batched = gradient_norms(model, encs, tok.pad_token_id)
    for (inst, resp), got in zip(pairs, batched, strict=True):
        want = _reference_norms(model, tok, inst, resp)
        assert got.shape == want.shape and len(got) > 3
        torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-7)


def test_encode_pair_maps_context_tokens_to_instruction_characters(tiny_pair):
    tok = load_tokenizer(str(tiny_pair[0]))
    enc = encode_pair(tok, INSTRUCTION, "The answer is 7.", 512)
    pieces = [INSTRUCTION[s:e] for s, e in enc.context_offsets]
    assert "".join(pieces) == INSTRUCTION
    decoded = tok.decode(enc.input_ids[enc.loss_start:])
    assert decoded.startswith("The answer is 7.")


def test_batched_normalised_saliencies_of_20_samples_match_per_sample_reference(tiny_pair):
    """The store's ĝ^T, ĝ^S and Δ (batched, padded, projected at loss positions only) equal an
    independent batch-of-one computation with full-vocabulary logits to 1e-5 relative."""
    tok = load_tokenizer(str(tiny_pair[0]))
    teacher = load_causal_lm(str(tiny_pair[0]), device="cpu").eval()
    student = load_causal_lm(str(tiny_pair[1]), device="cpu").eval()
    rng = random.Random(3)
    words = ["Tom", "has", "3", "apples", "Anna", "gives", "him", "4", "more", "shop", "floor"]
    pairs = [(" ".join(rng.choice(words) for _ in range(rng.randint(4, 18))) + ".",
              f"The answer is {rng.randint(0, 99)}.") for _ in range(20)]
    encs = [encode_pair(tok, i, r, 512) for i, r in pairs]
    batched = []
    for start in range(0, 20, 8):  # ragged batches of 8, 8, 4
        chunk = encs[start:start + 8]
        g_t = gradient_norms(teacher, chunk, tok.pad_token_id)
        g_s = gradient_norms(student, chunk, tok.pad_token_id)
        batched += [confounder_scores(a, b) for a, b in zip(g_t, g_s, strict=True)]
    for (inst, resp), got in zip(pairs, batched, strict=True):
        ref = confounder_scores(_reference_norms(teacher, tok, inst, resp),
                                _reference_norms(student, tok, inst, resp))
        for key in ("teacher_norm", "student_norm", "delta"):
            torch.testing.assert_close(got[key], ref[key].float(), rtol=1e-5, atol=1e-6)


def test_split_response_cuts_at_sentence_ends_into_k_segments():
    from leafbench.samples import split_response

    resp = "First add 3 and 4. That gives 7. Then double it. The answer is 14."
    two = split_response(resp, 2)
    three = split_response(resp, 3)
    assert [resp[s:e] for s, e in two] == ["First add 3 and 4. That gives 7.",
                                           " Then double it. The answer is 14."]
    assert len(three) == 3 and three[0][0] == 0 and three[-1][1] == len(resp)
    assert all(a[1] == b[0] for a, b in zip(three, three[1:], strict=False))


def test_response_level_context_is_instruction_plus_earlier_segments(tiny_pair):
    from leafbench.mining.stage import mining_units

    tok = load_tokenizer(str(tiny_pair[0]))
    row = {"id": "s1", "instruction": "Tom has 3 apples.",
           "response": "Anna gives him 4 more. So 3 + 4 = 7. The answer is 7."}
    units = mining_units(row, "both", 3)
    assert [u["id"] for u in units] == ["s1", "s1@seg2", "s1@seg3"]
    seg3 = units[2]
    enc = encode_pair(tok, row["instruction"], row["response"], 512,
                      seg3["loss_from"], seg3["loss_to"])
    by_source = {"instruction": "", "response": ""}
    for (s, e), src in zip(enc.context_offsets, enc.context_sources, strict=True):
        by_source[src] += row[src][s:e]
    assert by_source["instruction"] == row["instruction"]
    assert by_source["response"].replace(" ", "") == \
        row["response"][: seg3["loss_from"]].replace(" ", "")
    loss_text = tok.decode(enc.input_ids[enc.loss_start:enc.loss_end])
    assert loss_text.strip() == row["response"][seg3["loss_from"]:seg3["loss_to"]].strip()


def test_response_level_pruning_keeps_sources_apart():
    from leafbench.pruning.spans import prune_sample

    texts = {"instruction": "Add 3 and 4.", "response": "His dog is 9. So 3 + 4 = 7."}
    offsets = [(0, 3), (4, 5), (6, 9), (10, 11), (11, 12), (0, 3), (4, 7), (8, 10), (11, 12)]
    sources = ["instruction"] * 5 + ["response"] * 4
    marked = [False, False, False, False, True, True, True, True, True]
    (pruned, removed), (pruned2, _) = prune_sample(texts, offsets, sources, marked, "span")
    assert removed == [("instruction", 11, 12)] and pruned["instruction"] == "Add 3 and 4"
    assert pruned2["response"] == ". So 3 + 4 = 7." and pruned2["instruction"] == "Add 3 and 4."


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_saliency_follows_float32(tiny_pair, dtype):
    """Mining a bf16/fp16 model (what a GPU run loads) gives finite norms that rank the context
    tokens like float32 does."""
    tok = load_tokenizer(str(tiny_pair[0]))
    encs = [encode_pair(tok, "Tom has 3 apples. Her brother is 7 years old. How many apples?",
                        "3 + 4 = 7. The answer is 7.", 512),
            encode_pair(tok, "Mia buys 2 pens and 6 pencils. How many?", "8", 512)]
    full = gradient_norms(load_causal_lm(str(tiny_pair[0]), "float32", "cpu").eval(), encs,
                          tok.pad_token_id)
    half = gradient_norms(load_causal_lm(str(tiny_pair[0]), dtype, "cpu").eval(), encs,
                          tok.pad_token_id)
    for f, h in zip(full, half, strict=True):
        assert h.dtype == torch.float32 and torch.isfinite(h).all()
        rank_f, rank_h = f.argsort().argsort().float(), h.argsort().argsort().float()
        corr = torch.corrcoef(torch.stack([rank_f, rank_h]))[0, 1]
        assert corr > 0.8, (dtype, corr)
