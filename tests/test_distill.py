"""Stage 2: the hybrid loss against a plain reference, and pairing of counterfactuals."""

from __future__ import annotations

import math

import pytest
import torch

from leafbench.distill.loss import chunked_divergence, hybrid_loss, token_kl
from leafbench.distill.trainer import build_pairs, response_hidden, response_logits
from leafbench.models import load_causal_lm, load_tokenizer
from leafbench.samples import encode_pair


def _reference_kl(teacher_row, student_row, t):
    """Σ_v p_T(v) (log p_T(v) − log p_S(v)) with explicit Python sums, times t²."""
    pt = [math.exp(x / t) for x in teacher_row]
    ps = [math.exp(x / t) for x in student_row]
    zt, zs = sum(pt), sum(ps)
    return t * t * sum((a / zt) * (math.log(a / zt) - math.log(b / zs)) for a, b in zip(pt, ps, strict=True))


def test_hybrid_loss_equals_a_plain_reference():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(7, 11, generator=g, dtype=torch.float64)
    student = torch.randn(7, 11, generator=g, dtype=torch.float64)
    t, lam, n_orig = 2.0, 0.3, 4
    kl = token_kl(teacher, student, t)
    loss, l_kd, l_cd = hybrid_loss(kl[:n_orig], kl[n_orig:], lam)
    ref = [_reference_kl(teacher[i].tolist(), student[i].tolist(), t) for i in range(7)]
    ref_kd = sum(ref[:n_orig]) / n_orig
    ref_cd = sum(ref[n_orig:]) / (7 - n_orig)
    assert abs(l_kd.item() - ref_kd) < 1e-5 and abs(l_cd.item() - ref_cd) < 1e-5
    assert abs(loss.item() - (lam * ref_kd + (1 - lam) * ref_cd)) < 1e-5


def test_kl_is_zero_for_identical_distributions_and_positive_otherwise():
    logits = torch.randn(3, 5)
    assert torch.allclose(token_kl(logits, logits, 1.0), torch.zeros(3), atol=1e-6)
    assert (token_kl(logits, logits.flip(-1) * 3, 1.0) > 0).all()


def test_pairs_link_each_counterfactual_to_its_original():
    items = [
        {"id": "a", "original_id": "a", "kind": "original"},
        {"id": "a#cf0", "original_id": "a", "kind": "span"},
        {"id": "a#cf1", "original_id": "a", "kind": "span"},
        {"id": "b", "original_id": "b", "kind": "original"},
    ]
    pairs = [(o["id"], c["id"]) for o, c in build_pairs(items)]
    assert pairs == [("a", "a#cf0"), ("a", "a#cf1"), ("b", "b")]


def test_response_logits_cover_exactly_the_response_tokens(tiny_pair):
    tok = load_tokenizer(str(tiny_pair[1]))
    model = load_causal_lm(str(tiny_pair[1]), device="cpu").eval()
    encs = [encode_pair(tok, "Tom has 3 apples.", "The answer is 3.", 512),
            encode_pair(tok, "Mia buys 2 pens and 6 pencils. How many?", "8", 512)]
    n_response = sum(e.n_loss for e in encs)
    with torch.no_grad():
        got = response_logits(model, encs, tok.pad_token_id)
        full = model(torch.tensor([encs[1].input_ids])).logits[0]
    assert got.shape == (n_response, len(tok))
    tail = full[encs[1].loss_start - 1 : -1]
    torch.testing.assert_close(got[-len(tail):], tail, rtol=1e-5, atol=1e-5)


def test_chunked_divergence_matches_the_unchunked_loss_and_its_gradient():
    from leafbench.distill.loss import DIVERGENCES, chunked_divergence, token_divergence

    g = torch.Generator().manual_seed(1)
    head = torch.nn.Linear(8, 13, bias=False)
    teacher = torch.randn(10, 16, generator=g)  # padded to 16, real vocabulary 13
    for name in DIVERGENCES:
        hidden = torch.randn(10, 8, generator=g, requires_grad=True)
        got = chunked_divergence(teacher, hidden, head, 1.5, name, 0.3, chunk=3, vocab=13)
        (grad_got,) = torch.autograd.grad(got.sum(), hidden)
        want = token_divergence(teacher[:, :13], head(hidden), 1.5, name, 0.3)
        (grad_want,) = torch.autograd.grad(want.sum(), hidden)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad_got, grad_want, rtol=1e-5, atol=1e-6)


def test_jsd_is_symmetric_at_one_half_and_bounded_by_log_two():
    from leafbench.distill.loss import token_divergence

    a, b = torch.randn(4, 9) * 3, torch.randn(4, 9) * 3
    ab = token_divergence(a, b, 1.0, "jsd", 0.5)
    torch.testing.assert_close(ab, token_divergence(b, a, 1.0, "jsd", 0.5))
    assert (ab >= 0).all() and (ab <= math.log(2) + 1e-6).all()
    rev = token_divergence(a, b, 1.0, "reverse_kl")
    torch.testing.assert_close(rev, token_divergence(b, a, 1.0, "forward_kl"))


def _tokenizer_dir(path, vocab_size):
    from conftest import build_tokenizer

    build_tokenizer(vocab_size).save_pretrained(path)
    return path


def test_different_vocabularies_are_refused_at_validation_naming_the_teacher(tmp_path, capsys):
    from leafbench.cli import main

    teacher = _tokenizer_dir(tmp_path / "teacher", 300)
    student = _tokenizer_dir(tmp_path / "student", 280)
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"models:\n  teacher: {teacher}\n  student: {student}\n")
    assert main(["validate", str(exp)]) == 2
    err = capsys.readouterr().err.strip()
    assert "models.teacher" in err and "one tokenizer" in err and "300" in err and "280" in err
    assert len(err.splitlines()) == 1


def test_the_run_refuses_different_vocabularies_before_any_stage(tmp_path):
    from leafbench.config import ConfigError
    from leafbench.vocabulary import check, loaded_mismatch

    teacher = _tokenizer_dir(tmp_path / "teacher", 300)
    student = _tokenizer_dir(tmp_path / "student", 280)
    with pytest.raises(ConfigError, match="models.teacher"):
        check(str(teacher), str(student), loaded_mismatch)
    check(str(teacher), str(teacher), loaded_mismatch)  # same tokenizer: fine


def test_padded_embedding_matrices_with_one_tokenizer_are_fine(tiny_pair, tmp_path, capsys):
    """Teacher rows padded past the tokenizer (like Qwen2.5-72B vs Qwen2.5-Math-1.5B): the
    definition validates and the loss compares only the real vocabulary."""
    from transformers import AutoModelForCausalLM

    from leafbench.cli import main

    teacher = AutoModelForCausalLM.from_pretrained(tiny_pair[0])
    real = teacher.config.vocab_size
    teacher.resize_token_embeddings(real + 64)
    padded = tmp_path / "padded_teacher"
    teacher.save_pretrained(padded)
    load_tokenizer(str(tiny_pair[0])).save_pretrained(padded)
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"models:\n  teacher: {padded}\n  student: {tiny_pair[1]}\n")
    assert main(["validate", str(exp)]) == 0

    tok = load_tokenizer(str(padded))
    student = load_causal_lm(str(tiny_pair[1]), device="cpu").eval()
    big = load_causal_lm(str(padded), device="cpu").eval()
    encs = [encode_pair(tok, "Tom has 3 apples.", "The answer is 3.", 512)]
    with torch.no_grad():
        t_logits = response_logits(big, encs, tok.pad_token_id)
        assert t_logits.shape[-1] == real + 64
        hidden = response_hidden(student, encs, tok.pad_token_id)
        d = chunked_divergence(t_logits, hidden, student.get_output_embeddings(), 1.0,
                               vocab=len(tok))
        ref = token_kl(t_logits[:, : len(tok)], student.get_output_embeddings()(hidden)[:, : len(tok)], 1.0)
    assert torch.allclose(d, ref, atol=1e-6)
