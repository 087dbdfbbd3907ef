"""Interpretability of confounder mining: attention mass on mined tokens, the Δ view, the stage."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from conftest import build_model
from transformers import AutoModelForCausalLM

from leafbench.config import validate_dict
from leafbench.interpret.attention import (
    MINED,
    NON_MINED,
    REST,
    MinedSample,
    attention_mass,
    key_group_mass,
    prepare,
    summarise,
)
from leafbench.interpret.delta_view import render_delta_view
from leafbench.interpret.stage import ATTENTION, VIEW, run_interpret
from leafbench.mining.threshold import mark_confounders
from leafbench.models import load_tokenizer
from leafbench.pipeline import ModelRefs, StageContext
from leafbench.samples import encode_pair, pad_batch

DISTRACTOR = "Her brother is 7 years old."
PAIRS = [  # (instruction, response); the distractor sentence is the mined span
    (f"Tom has 3 apples. Anna gives him 4 more. {DISTRACTOR}",
     "3 + 4 = 7. The answer is 7."),
    (f"{DISTRACTOR} Mia buys 2 pens.", "The answer is 2."),
    (f"The shop is on floor 5. {DISTRACTOR} Mia buys 2 pens and 6 pencils. How many?",
     "2 + 6 = 8. The answer is 8."),
    (f"Natalia sold clips to 48 of her friends in April. {DISTRACTOR}", "48"),
]


def _samples() -> list[MinedSample]:
    out = []
    for i, (inst, resp) in enumerate(PAIRS):
        start = inst.index(DISTRACTOR)
        out.append(MinedSample(str(i), inst, resp, ((start, start + len(DISTRACTOR)),)))
    return out


@pytest.fixture(scope="module")
def teacher(tiny_pair):
    """The two-layer tiny model, loaded as the pipeline loads it (SDPA by default)."""
    tok = load_tokenizer(str(tiny_pair[0]))
    model = AutoModelForCausalLM.from_pretrained(tiny_pair[0]).eval()
    return model, tok


def test_mass_matches_a_plain_loop_over_layers_heads_and_positions(tiny_pair, teacher):
    model, tok = teacher
    sample = _samples()[0]
    enc = encode_pair(tok, sample.instruction, sample.response, 256)
    (a, b), = sample.spans
    # overlapping the span, whitespace-only tokens excepted (mining never marks those either)
    mined = [p for p, (s, e), src in zip(enc.context_positions, enc.context_offsets,
                                         enc.context_sources, strict=True)
             if src == "instruction" and s < b and a < e and sample.instruction[s:e].strip()]
    other = [p for p in enc.context_positions if p not in mined]
    assert mined and other

    eager = AutoModelForCausalLM.from_pretrained(tiny_pair[0], attn_implementation="eager")
    with torch.no_grad():
        attentions = eager(torch.tensor([enc.input_ids]), output_attentions=True).attentions
    on_mined = on_other = 0.0
    count = 0
    for layer in attentions:
        for head in range(layer.shape[1]):
            for q in range(enc.loss_start - 1, enc.loss_end - 1):
                on_mined += sum(layer[0, head, q, k].item() for k in mined)
                on_other += sum(layer[0, head, q, k].item() for k in other)
                count += 1

    (got,) = attention_mass(model, tok, [sample], max_length=256, batch_size=1)
    assert got.n_mined == len(mined) and got.n_context == len(mined) + len(other)
    assert got.n_queries == enc.loss_end - enc.loss_start
    assert got.mined == pytest.approx(on_mined / count, abs=1e-5)
    assert got.non_mined == pytest.approx(on_other / count, abs=1e-5)
    share = len(mined) / (len(mined) + len(other))
    assert got.normalised == pytest.approx(on_mined / count / share, abs=1e-5)
    assert model.config._attn_implementation == "sdpa", "the caller's attention is restored"


def test_padding_does_not_change_the_numbers(teacher):
    model, tok = teacher
    samples = _samples()
    lengths = {len(encode_pair(tok, s.instruction, s.response, 256).input_ids) for s in samples}
    assert len(lengths) == len(samples), "mixed lengths, so batching pads"
    batched = attention_mass(model, tok, samples, max_length=256, batch_size=len(samples))
    alone = [attention_mass(model, tok, [s], max_length=256, batch_size=1)[0] for s in samples]
    assert [m.id for m in batched] == [s.id for s in samples]
    for b, a in zip(batched, alone, strict=True):
        assert (b.n_mined, b.n_context, b.n_queries) == (a.n_mined, a.n_context, a.n_queries)
        for field in ("mined", "non_mined", "rest"):
            assert getattr(b, field) == pytest.approx(getattr(a, field), abs=1e-5)


def test_masses_lie_in_unit_interval_and_every_query_row_sums_to_one(teacher):
    model, tok = teacher
    prepared = [prepare(tok, s, 256) for s in _samples()]
    ids, mask = pad_batch([p.enc for p in prepared], tok.pad_token_id, "cpu")
    groups = torch.zeros(len(prepared), 3, ids.shape[1])
    for row, p in enumerate(prepared):
        groups[row, REST, : len(p.enc.input_ids)] = 1.0
        groups[row, REST, p.mined + p.non_mined] = 0.0
        groups[row, MINED, p.mined] = 1.0
        groups[row, NON_MINED, p.non_mined] = 1.0
    per_query = key_group_mass(model, ids, mask, groups)
    for row, p in enumerate(prepared):
        real = per_query[row, : len(p.enc.input_ids)]
        assert torch.allclose(real.sum(-1), torch.ones(len(p.enc.input_ids)), atol=1e-5)
        assert real.min() >= 0.0 and real.max() <= 1.0 + 1e-6

    masses = attention_mass(model, tok, _samples(), max_length=256)
    for m in masses:
        for value in (m.mined, m.non_mined, m.rest):
            assert 0.0 <= value <= 1.0
        assert m.mined + m.non_mined + m.rest == pytest.approx(1.0, abs=1e-5)
    summary = summarise(masses)
    assert summary["samples"] == len(_samples())
    assert summary["mass"] == pytest.approx(sum(m.mined for m in masses) / len(masses))


def test_samples_without_mined_tokens_or_response_are_skipped(teacher):
    model, tok = teacher
    inst, resp = PAIRS[0]
    no_span = MinedSample("none", inst, resp, ())
    truncated = MinedSample("cut", inst, resp, ((0, 3),))
    kept = _samples()[1]
    out = attention_mass(model, tok, [no_span, kept], max_length=256)
    assert [m.id for m in out] == [kept.id]
    assert attention_mass(model, tok, [truncated], max_length=8) == []
    assert summarise([]) == {"samples": 0.0}


# ---------------------------------------------------------------- the Δ view
def _row(words: list[str], deltas: list[float], **extra) -> dict:
    """A saliency-store row whose tokens are the given pieces of the instruction."""
    instruction = "".join(words)
    offsets, cursor = [], 0
    for w in words:
        offsets.append([cursor, cursor + len(w)])
        cursor += len(w)
    n = len(words)
    return {"id": extra.pop("id", "r"), "sample_id": "r", "level": "instruction", "segment": 0,
            "instruction": instruction, "response": "7", "tokens": list(words),
            "offsets": offsets, "sources": ["instruction"] * n, "delta": deltas,
            "teacher_norm": [0.5] * n, "student_norm": [0.25] * n, **extra}


def test_delta_view_escapes_flags_and_explains_the_threshold():
    words = ["Add", " 2", " and", " 3", ".", " <script>alert(1)</script>", " ", "x & y"]
    deltas = [0.9, 0.05, 0.7, 0.02, 0.5, 0.0, 0.0, 0.3]
    start = len("Add 2 and 3.")
    row = _row(words, deltas, distractor_spans=[[start, start + 26]])
    plain = _row(["Tom", " has", " 3"], [0.2, 0.08, 1.0], id="q")
    page = render_delta_view([row, plain], "absolute", 0.1)

    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "x &amp; y" in page
    tokens = re.findall(r'<span class="tok[ "]', page)
    assert len(tokens) == len(words) + 3
    expected = sum(sum(mark_confounders(r["delta"], r["tokens"], "absolute", 0.1))
                   for r in (row, plain))
    assert page.count('class="tok marked') == expected == 4  # " 2", " 3", the script, " has"
    # only the script token lies in the distractor span
    assert len(re.findall(r'class="tok[^"]* truth"', page)) == 1
    assert "ground-truth distractor spans" in page
    assert "τ = 0.1" in page and "absolute" in page
    assert "Δ 0.050 | ĝ^T 0.500 | ĝ^S 0.250" in page
    assert "http" not in page and "<script" not in page and "<link" not in page


def test_delta_view_limits_rows_and_rejects_unknown_modes():
    rows = [_row(["a", " b"], [0.0, 1.0], id=str(i)) for i in range(60)]
    page = render_delta_view(rows, "quantile", 0.05)
    assert page.count('<div class="sample">') == 50 and "50 of 60 rows shown" in page
    assert "quantile" in page and "τ = 0.05" in page
    with pytest.raises(ValueError, match="quantile"):
        render_delta_view(rows, "median", 0.1)


# ---------------------------------------------------------------- the stage
def _store_row(tok, i: int, inst: str, resp: str, level: str = "instruction") -> dict:
    enc = encode_pair(tok, inst, resp, 256)
    start = inst.find(DISTRACTOR)
    offsets = [list(o) for o in enc.context_offsets]
    inside = [start >= 0 and s < start + len(DISTRACTOR) and start < e for s, e in offsets]
    n = len(offsets)
    sid = str(i)
    return {"id": sid if level == "instruction" else f"{sid}@seg2", "sample_id": sid,
            "level": level, "segment": 0 if level == "instruction" else 2, "loss_from": 0,
            "loss_to": None, "instruction": inst, "response": resp,
            "tokens": [inst[s:e] for s, e in offsets], "offsets": offsets,
            "sources": enc.context_sources, "g_teacher": [1.0] * n, "g_student": [1.0] * n,
            "student_surprisal": [1.0] * n,
            "delta": [0.0 if x else 0.5 + 0.5 * (j % 2) for j, x in enumerate(inside)],
            "teacher_norm": [0.1 if x else 0.8 for x in inside],
            "student_norm": [0.9 if x else 0.3 for x in inside],
            "distractor_spans": [[start, start + len(DISTRACTOR)]] if start >= 0 else []}


def _span_record(row: dict, level: str = "instruction") -> dict:
    start = row["instruction"].index(DISTRACTOR)
    return {"sample_id": row["sample_id"], "level": level, "segment": row["segment"],
            "source": "instruction", "token_range": [0, 1],
            "char_range": [start, start + len(DISTRACTOR)], "text": DISTRACTOR, "delta": 0.0,
            "teacher_norm": 0.1, "student_norm": 0.9}


def test_run_interpret_writes_attention_report_view_and_flat_metrics(tmp_path, tiny_pair):
    student_dir = tiny_pair[1]
    tok = load_tokenizer(str(student_dir))
    mine, prune, distill = tmp_path / "mine", tmp_path / "prune", tmp_path / "distill"
    for d in (mine, prune, distill):
        d.mkdir()
    build_model(tok, distill / "student", hidden=16, layers=1, seed=7)

    rows = [_store_row(tok, i, inst, resp) for i, (inst, resp) in enumerate(PAIRS)]
    rows.append(_store_row(tok, 9, "Tom has 3 apples. How many?", "3"))  # nothing mined
    response_level = _store_row(tok, 0, *PAIRS[0], level="response")
    (mine / "saliency.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in [*rows, response_level]))
    spans = [_span_record(r) for r in rows[:4]] + [_span_record(response_level, "response")]
    (prune / "spans.jsonl").write_text("".join(json.dumps(s) + "\n" for s in spans))

    exp = validate_dict({"seed": 0, "data": {"max_length": 256},
                         "models": {"device": "cpu", "dtype": "float32"},
                         "mining": {"threshold": {"mode": "absolute", "tau": 0.1}}})
    refs = ModelRefs(str(tiny_pair[0]), str(student_dir), tmp_path / "train.jsonl", None, {})
    out = tmp_path / "out"
    out.mkdir()
    ctx = StageContext(exp, out, {"mine": mine, "prune": prune, "distill": distill}, refs,
                       tmp_path)
    metrics = run_interpret(ctx)

    assert metrics["attention_samples"] == 4.0
    for name, value in metrics.items():
        assert "=" not in name and "," not in name
        assert isinstance(value, float) and math.isfinite(value)
    for base in ("attention_mass", "attention_mass_normalised", "attention_non_mined_mass",
                 "attention_non_mined_mass_normalised"):
        assert metrics[f"{base}_ratio"] == pytest.approx(
            metrics[f"{base}_after"] / metrics[f"{base}_before"])
    assert 0.0 < metrics["attention_mass_before"] < 1.0
    assert 0.0 < metrics["attention_mined_token_share"] < 1.0

    report = json.loads((out / ATTENTION).read_text())
    assert report["samples"] == 4 and report["threshold"] == {"mode": "absolute", "tau": 0.1}
    assert report["before"]["mass"] == metrics["attention_mass_before"]
    assert [r["id"] for r in report["per_sample"]] == ["0", "1", "2", "3"]

    student = AutoModelForCausalLM.from_pretrained(student_dir).eval()
    direct = attention_mass(student, tok, [MinedSample(r["id"], r["instruction"], r["response"],
                                                       tuple(map(tuple, r["distractor_spans"])))
                                           for r in rows[:4]], max_length=256)
    assert metrics["attention_mass_before"] == pytest.approx(summarise(direct)["mass"])

    page = (out / VIEW).read_text(encoding="utf-8")
    assert len(re.findall(r'<span class="tok[ "]', page)) == sum(len(r["tokens"]) for r in rows)
    assert page.count('<div class="sample">') == len(rows)  # instruction-level rows only
    assert page.count('class="tok marked') == sum(
        sum(mark_confounders(r["delta"], r["tokens"], "absolute", 0.1)) for r in rows)
