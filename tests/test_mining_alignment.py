"""Mining across two tokenizers: the common segmentation, piece saliencies, and the mine stage."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import CHAT_TEMPLATE, SENTENCES, build_model

from leafbench.mining import stage as mine_stage
from leafbench.mining.alignment import (
    common_pieces,
    common_segmentation,
    piece_norms,
    piece_sums,
    token_segmentation,
)
from leafbench.mining.saliency import confounder_scores, gradient_norms
from leafbench.mining.threshold import mark_confounders
from leafbench.models import load_causal_lm, load_tokenizer
from leafbench.pruning.spans import prune_sample
from leafbench.samples import encode_pair, read_jsonl

# A second chat template (ending in a line break, as Llama's and Qwen's do), so the two prompts
# differ around the instruction as well.
OTHER_TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}]\n{{ m['content'] }}\n\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant]\n{% endif %}"
)
PAIRS = [
    {"id": "a", "instruction": "Tom has 3 apples. Her brother is 7 years old. Anna gives him 4 more.",
     "response": "Tom has 3 + 4 = 7 apples. The answer is 7."},
    {"id": "b", "instruction": "Mia buys 2 pens and 6 pencils. The shop is on floor 5. How many?",
     "response": "She buys 2 + 6 = 8 things. The answer is 8."},
    {"id": "c", "instruction": "Natalia sold clips to 48 of her friends in April.",
     "response": "She sold 48 clips in April. The answer is 48."},
]


def byte_bpe(vocab_size: int, specials: list[str], template: str, use_regex: bool = True):
    """A byte-level BPE tokenizer like conftest's, with its own vocabulary size, special-token
    ids (so the pad ids differ) and chat template. Without the GPT-2 pre-tokenising regex its
    merges run across words ("Tom ha", "s ", "3 appl"), so neither tokenization refines the
    other: the hard case for alignment."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=use_regex)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(SENTENCES * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", bos_token="<|bos|>",
                                  eos_token="<|eos|>", chat_template=template)


@pytest.fixture(scope="module")
def tokenizers():
    """teacher: GPT-2-style, 400 merges' worth; finer: the same style, smaller vocabulary (it
    mostly refines the teacher's tokens); crossing: merges across words. Pad ids and chat
    templates differ between the teacher and the other two."""
    out = {
        "teacher": byte_bpe(400, ["<|bos|>", "<|eos|>", "<|pad|>"], CHAT_TEMPLATE),
        "finer": byte_bpe(300, ["<|pad|>", "<|bos|>", "<|eos|>"], OTHER_TEMPLATE),
        "crossing": byte_bpe(330, ["<|pad|>", "<|bos|>", "<|eos|>"], OTHER_TEMPLATE,
                             use_regex=False),
    }
    assert out["teacher"].pad_token_id != out["crossing"].pad_token_id
    assert len({len(t) for t in out.values()}) == 3
    return out


@pytest.fixture(scope="module")
def mixed_pair(tokenizers, tmp_path_factory):
    """(teacher_dir, student_dir) with different tokenizers; tiny random Llama networks."""
    root = tmp_path_factory.mktemp("mixed_models")
    return (build_model(tokenizers["teacher"], root / "teacher", hidden=32, layers=2, seed=1),
            build_model(tokenizers["crossing"], root / "student", hidden=16, layers=1, seed=2))


def _spans(texts):
    out, pos = [], 0
    for t in texts:
        out.append((pos, pos + len(t)))
        pos += len(t)
    return out


# --- the common segmentation on hand-made offsets ---------------------------------------------


def test_a_token_spanning_the_other_tokenizations_boundary_merges_the_pieces():
    # "Tom has apples": a = Tom| has| apples, b = To|m h|as| app|les. b's "m h" straddles 3.
    a = _spans(["Tom", " has", " apples"])
    b = _spans(["To", "m h", "as", " app", "les"])
    assert common_pieces(a, b) == [((0, 7), [0, 1], [0, 1, 2]), ((7, 14), [2], [3, 4])]


def test_identical_offsets_give_one_piece_per_token():
    a = _spans(["Tom", " has", " 3", " apples", "."])
    assert common_pieces(a, a) == [(span, [i], [i]) for i, span in enumerate(a)]


def test_leading_space_tokens_against_separate_space_tokens():
    # "is 7 years": GPT-2 style " 7", " years" against a tokenizer that splits the spaces off.
    a = _spans(["is", " 7", " years"])
    b = _spans(["is", " ", "7", " ", "years"])
    assert common_pieces(a, b) == [((0, 2), [0], [0]), ((2, 4), [1], [1, 2]),
                                   ((4, 10), [2], [3, 4])]


def test_trimmed_offsets_leave_whitespace_only_pieces_out():
    # A tokenizer that trims offsets reports " 7" as (3, 4) and a lone space as empty (dropped
    # by encode_pair): the spaces it never covers are pieces only the other model has.
    trimmed = [(0, 2), (3, 4), (5, 10)]
    b = _spans(["is", " ", "7", " ", "years"])
    assert common_pieces(trimmed, b) == [((0, 2), [0], [0]), ((3, 4), [1], [2]),
                                         ((5, 10), [2], [4])]
    untrimmed = _spans(["is", " 7", " years"])
    assert common_pieces(trimmed, untrimmed) == [((0, 2), [0], [0]), ((2, 4), [1], [1]),
                                                 ((4, 10), [2], [2])]


def test_bytes_of_one_character_share_offsets_and_a_piece():
    # Byte-level BPE reports every byte token of "é" with the character's offsets.
    a = [(0, 1), (1, 2), (1, 2), (2, 3)]
    b = [(0, 3)]
    assert common_pieces(a, b) == [((0, 3), [0, 1, 2, 3], [0])]


def test_pieces_stay_inside_the_range_both_tokenizations_cover():
    a = _spans(["Tom", " has", " apples", "."])
    truncated = _spans(["To", "m", " has"])  # b stops at character 7
    assert common_pieces(a, truncated) == [((0, 3), [0], [0, 1]), ((3, 7), [1], [2])]
    # b's last token runs past a's end (a token fused with the chat template is not context):
    # the piece holding it cannot be compared and is dropped with it.
    b = _spans(["Tom", " has", " appl", "es.\n"])
    assert common_pieces(_spans(["Tom", " has", " apples"]), b) == [
        ((0, 3), [0], [0]), ((3, 7), [1], [1])]
    # A later start (one tokenization begins inside the other's first token) likewise.
    assert common_pieces([(1, 3), (3, 7)], [(0, 3), (3, 7)]) == [((3, 7), [1], [1])]
    assert common_pieces(a, []) == [] and common_pieces([(0, 3)], [(3, 6)]) == []


# --- piece saliencies -------------------------------------------------------------------------


def test_piece_norm_is_the_gradient_norm_of_the_concatenated_embeddings():
    torch.manual_seed(0)
    grads = torch.randn(5, 8)  # ∂ℓ/∂e_i for five tokens
    g = grads.norm(dim=-1)
    groups = [[0, 1], [2], [3, 4]]
    want = torch.stack([grads[idx].flatten().norm() for idx in groups])
    torch.testing.assert_close(piece_norms(g, groups), want)
    assert torch.allclose(piece_norms(torch.tensor([3.0, 4.0, 12.0]), [[0, 1], [2]]),
                          torch.tensor([5.0, 12.0]))
    # A one-token piece keeps its token's g bit for bit (the identical-tokenizer guarantee).
    assert torch.equal(piece_norms(g, [[i] for i in range(5)]), g)


def test_surprisal_of_a_piece_is_the_sum_over_its_tokens():
    nll = torch.tensor([1.0, 2.5, 3.0])
    assert torch.equal(piece_sums(nll, [[0, 2], [1]]), torch.tensor([4.0, 2.5]))
    assert torch.equal(piece_sums(nll, [[0], [1], [2]]), nll)


# --- real tokenizers --------------------------------------------------------------------------


def _assert_contiguous(offsets, sources):
    """Per source, pieces are in order, non-empty and adjacent: one unbroken stretch of text."""
    for source in set(sources):
        spans = [tuple(o) for o, s in zip(offsets, sources, strict=True) if s == source]
        assert all(s < e for s, e in spans)
        assert all(x[1] == y[0] for x, y in zip(spans, spans[1:], strict=False))


def _assert_each_token_in_one_piece(seg, enc_t, enc_s):
    """Every mapped token of each model lies inside its piece, in the piece's source, once."""
    for enc, groups in ((enc_t, seg.teacher_tokens), (enc_s, seg.student_tokens)):
        flat = [i for g in groups for i in g]
        assert len(flat) == len(set(flat))
        for (start, end), source, group in zip(seg.offsets, seg.sources, groups, strict=True):
            for i in group:
                s, e = enc.context_offsets[i]
                assert enc.context_sources[i] == source and start <= s < e <= end


def _assert_boundaries_of_both(seg, enc_t, enc_s):
    """Each piece boundary is a token boundary in both tokenizations."""
    for enc in (enc_t, enc_s):
        bounds = {(src, p) for (s, e), src in zip(enc.context_offsets, enc.context_sources,
                                                  strict=True) for p in (s, e)}
        assert all((src, s) in bounds and (src, e) in bounds
                   for (s, e), src in zip(seg.offsets, seg.sources, strict=True))


def _encode_both(teacher_tok, student_tok, row):
    loss_from = row["response"].index(" The answer")
    args = (row["instruction"], row["response"], 512, loss_from, None)
    return encode_pair(teacher_tok, *args), encode_pair(student_tok, *args), loss_from


def test_finer_tokenizer_pieces_tile_the_whole_context(tokenizers):
    for row in PAIRS:
        enc_t, enc_s, loss_from = _encode_both(tokenizers["teacher"], tokenizers["finer"], row)
        assert enc_t.context_offsets != enc_s.context_offsets  # the two really cut differently
        seg = common_segmentation(enc_t, enc_s)
        assert seg.kind == "common" and seg.sources[0] == "instruction"
        _assert_contiguous(seg.offsets, seg.sources)
        _assert_each_token_in_one_piece(seg, enc_t, enc_s)
        _assert_boundaries_of_both(seg, enc_t, enc_s)
        texts = {"instruction": row["instruction"], "response": row["response"][:loss_from]}
        for source, text in texts.items():
            spans = [o for o, s in zip(seg.offsets, seg.sources, strict=True) if s == source]
            assert spans[0][0] == 0 and spans[-1][1] == len(text)
        # Both tokenizations cover the context fully here, so every token is mapped.
        assert sum(map(len, seg.teacher_tokens)) == len(enc_t.context_positions)
        assert sum(map(len, seg.student_tokens)) == len(enc_s.context_positions)
        assert any(len(t) > 1 for t in seg.student_tokens)  # the finer tokens merge


def test_word_crossing_tokenizer_pieces_merge_tokens_of_both_models(tokenizers):
    merged_teacher = merged_student = False
    for row in PAIRS:
        enc_t, enc_s, _ = _encode_both(tokenizers["teacher"], tokenizers["crossing"], row)
        seg = common_segmentation(enc_t, enc_s)
        assert seg.offsets and seg.sources[0] == "instruction"
        _assert_contiguous(seg.offsets, seg.sources)
        _assert_each_token_in_one_piece(seg, enc_t, enc_s)
        _assert_boundaries_of_both(seg, enc_t, enc_s)
        merged_teacher |= any(len(t) > 1 for t in seg.teacher_tokens)
        merged_student |= any(len(t) > 1 for t in seg.student_tokens)
    assert merged_teacher and merged_student


def test_same_tokenizer_common_segmentation_is_the_token_segmentation(tokenizers):
    for row, tok in zip(PAIRS, tokenizers.values(), strict=True):
        enc = encode_pair(tok, row["instruction"], row["response"], 512, 20, None)
        common, tokens = common_segmentation(enc, enc), token_segmentation(enc)
        assert (common.offsets, common.sources, common.teacher_tokens, common.student_tokens) \
            == (tokens.offsets, tokens.sources, tokens.teacher_tokens, tokens.student_tokens)


# --- the mine stage ---------------------------------------------------------------------------


def _mine(out, teacher, student, pairs, batch_size=2):
    train = out / "train.jsonl"
    train.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    exp = SimpleNamespace(
        data=SimpleNamespace(max_samples=None, max_length=512),
        mining=SimpleNamespace(level="both", segments=2, batch_size=batch_size),
        models=SimpleNamespace(dtype="float32", device="cpu"),
    )
    refs = SimpleNamespace(teacher=str(teacher), student=str(student), train_jsonl=train)
    metrics = mine_stage.run_mine(SimpleNamespace(exp=exp, refs=refs, out=out))
    return metrics, read_jsonl(out / mine_stage.STORE)


def test_identical_tokenizers_store_the_same_rows_through_the_common_path(
        tiny_pair, tmp_path, monkeypatch):
    (tmp_path / "tokens").mkdir()
    (tmp_path / "common").mkdir()
    _, by_tokens = _mine(tmp_path / "tokens", *tiny_pair, PAIRS)
    monkeypatch.setattr(mine_stage, "same_tokenizer", lambda *_: False)
    _, by_common = _mine(tmp_path / "common", *tiny_pair, PAIRS)
    assert {r["segmentation"] for r in by_tokens} == {"tokens"}
    assert {r["segmentation"] for r in by_common} == {"common"}
    assert len(by_tokens) == 2 * len(PAIRS)  # instruction level + one response segment each
    for a, b in zip(by_tokens, by_common, strict=True):
        assert {**a, "segmentation": None} == {**b, "segmentation": None}


def test_mine_with_two_tokenizers_stores_common_pieces_that_prune(mixed_pair, tmp_path):
    metrics, rows = _mine(tmp_path, *mixed_pair, PAIRS)
    assert metrics["samples"] == len(rows) == 2 * len(PAIRS)
    teacher_tok, student_tok = (load_tokenizer(str(d)) for d in mixed_pair)
    teacher = load_causal_lm(str(mixed_pair[0]), device="cpu").eval()
    counterfactuals = 0
    for row in rows:
        n = len(row["offsets"])
        assert row["segmentation"] == "common" and n > 3
        for key in ("tokens", "sources", "g_teacher", "g_student", "student_surprisal",
                    "teacher_norm", "student_norm", "delta"):
            assert len(row[key]) == n, key
        _assert_contiguous(row["offsets"], row["sources"])
        assert row["tokens"] == [row[src][s:e] for (s, e), src in zip(row["offsets"],
                                                                     row["sources"], strict=True)]
        if row["level"] == "instruction":  # both templates keep the instruction apart
            assert "".join(row["tokens"]) == row["instruction"]
        assert all(0.0 <= d <= 1.0 for d in row["delta"]) and min(row["delta"]) == 0.0
        assert all(g > 0 for g in row["g_teacher"] + row["g_student"])
        scores = confounder_scores(torch.tensor(row["g_teacher"]), torch.tensor(row["g_student"]))
        assert scores["delta"].tolist() == pytest.approx(row["delta"])

        # The teacher's piece g, recomputed from its own tokens found by character offsets.
        args = (row["instruction"], row["response"], 512, row["loss_from"], row["loss_to"])
        enc = encode_pair(teacher_tok, *args)
        g = gradient_norms(teacher, [enc], teacher_tok.pad_token_id)[0]
        for (start, end), source, got in zip(row["offsets"], row["sources"], row["g_teacher"],
                                             strict=True):
            inside = [gi for gi, (s, e), src in zip(g.tolist(), enc.context_offsets,
                                                    enc.context_sources, strict=True)
                      if src == source and start <= s and e <= end]
            assert got == pytest.approx(sum(x * x for x in inside) ** 0.5, rel=1e-5)

        texts = {"instruction": row["instruction"], "response": row["response"]}
        marked = mark_confounders(row["delta"], row["tokens"], "quantile", 0.3)
        for pruned, removed in prune_sample(texts, row["offsets"], row["sources"], marked, "span"):
            counterfactuals += 1
            for source, start, end in removed:
                assert pruned[source] == texts[source][:start] + texts[source][end:]
    assert counterfactuals > 0
    assert student_tok.pad_token_id != teacher_tok.pad_token_id


def test_mine_with_two_tokenizers_resumes_after_a_torn_store(mixed_pair, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "resumed").mkdir()
    _, full = _mine(tmp_path / "full", *mixed_pair, PAIRS, batch_size=4)
    lines = (tmp_path / "full" / mine_stage.STORE).read_text().splitlines(keepends=True)
    (tmp_path / "resumed" / mine_stage.STORE).write_text(lines[0] + lines[1][:25])
    metrics, resumed = _mine(tmp_path / "resumed", *mixed_pair, PAIRS, batch_size=4)
    assert metrics["samples"] == len(full)
    by_id = {r["id"]: r for r in full}
    assert sorted(r["id"] for r in resumed) == sorted(by_id)
    for row in resumed:
        assert row["offsets"] == by_id[row["id"]]["offsets"]
        assert row["delta"] == pytest.approx(by_id[row["id"]]["delta"], abs=1e-5)


# --- through the command line --------------------------------------------------------------------


def test_cli_mines_across_tokenizers_until_prune_and_refuses_to_distill(mixed_pair, tmp_path,
                                                                          capsys):
    """`--until prune` mines and prunes with two tokenizers; a full run is refused before any
    stage, naming the teacher and the vocabularies."""
    from leafbench.cli import main

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"instruction": s, "response": "The answer is 7."}) + "\n"
                             for s in SENTENCES))
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        f"workspace: {tmp_path / 'ws'}\n"
        f"models: {{teacher: {mixed_pair[0]}, student: {mixed_pair[1]}, device: cpu}}\n"
        f"data: {{train: {train}, max_length: 128}}\n"
        "mining: {threshold: {mode: quantile, tau: 0.2}}\n"
    )
    assert main(["run", str(exp), "--until", "prune", "--no-tracking"]) == 0
    prune_dirs = list((tmp_path / "ws" / "artifacts" / "prune").iterdir())
    items = read_jsonl(prune_dirs[0] / "counterfactuals.jsonl")
    assert sum(it["kind"] == "original" for it in items) == len(SENTENCES)
    assert any(it["kind"] != "original" for it in items)
    store = read_jsonl(next((tmp_path / "ws" / "artifacts" / "mine").iterdir()) / "saliency.jsonl")
    assert {row["segmentation"] for row in store} == {"common"}
    assert not (tmp_path / "ws" / "artifacts" / "distill").exists()
    capsys.readouterr()

    assert main(["run", str(exp), "--no-tracking"]) == 2
    err = capsys.readouterr().err
    assert "models.teacher" in err and "one tokenizer" in err
