"""The distillation recipe piece by piece: per-token loss weights, training units, the step plan,
exact gradient accumulation, sequence packing, top-k teacher targets, the teacher cache,
gradient checkpointing, bf16 autocast, the model card and the loss config.

Everything runs on the tiny locally built models of conftest.py; nothing is downloaded.
"""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
import yaml
from safetensors.torch import load_file

from leafbench.config import ConfigError, validate_dict
from leafbench.distill import teacher_cache
from leafbench.distill.batching import (
    COUNTERFACTUAL,
    ORIGINAL,
    UNITS,
    Unit,
    epoch_batches,
    pack_rows,
    token_weights,
)
from leafbench.distill.loss import (
    DIVERGENCES,
    chunked_divergence,
    hybrid_loss,
    token_divergence,
    token_kl,
    topk_targets,
    with_tail,
)
from leafbench.distill.model_card import write_model_card
from leafbench.distill.teacher_cache import TeacherCache, encode_items, run_teach
from leafbench.distill.trainer import (
    StudentDivergence,
    _Recipe,
    response_hidden,
    response_logits,
    run_distill,
)
from leafbench.models import load_causal_lm, load_tokenizer
from leafbench.pipeline import ModelRefs, StageContext
from leafbench.samples import EncodedPair, write_jsonl

MAX_LENGTH = 64


def _item(item_id: str, original_id: str, kind: str, instruction: str, response: str) -> dict:
    """A distillation item with the fields pruning/stage.py `_item` writes."""
    return {"id": item_id, "original_id": original_id, "sample_id": original_id,
            "level": "instruction", "kind": kind, "instruction": instruction,
            "response": response, "loss_from": 0, "removed": []}


ITEMS = [
    _item("a", "a", "original",
          "Tom has 3 apples. Anna gives him 4 more. Her brother is 7 years old. How many apples?",
          "3 + 4 = 7. The answer is 7."),
    _item("a#cf0", "a", "span", "Tom has 3 apples. Anna gives him 4 more. How many apples?",
          "3 + 4 = 7. The answer is 7."),
    _item("a#cf1", "a", "span", "Tom has 3 apples. Anna gives him 4 more. Her brother is old. "
          "How many apples?", "3 + 4 = 7. The answer is 7."),
    _item("b", "b", "original", "The shop is on floor 5. Mia buys 2 pens and 6 pencils. "
          "How many things does she buy?", "2 + 6 = 8. The answer is 8."),
    _item("b#cf0", "b", "span", "Mia buys 2 pens and 6 pencils. How many things does she buy?",
          "2 + 6 = 8. The answer is 8."),
    _item("c", "c", "original", "Natalia sold clips to 48 of her friends in April.",
          "She sold 48 clips."),
    _item("d", "d", "original", "How many apples does Tom have now?", "The answer is 7."),
    _item("d#cf0", "d", "span", "How many apples?", "7"),
]


# ---------------------------------------------------------------- shared helpers and fixtures
@pytest.fixture(scope="module")
def tiny(tiny_pair):
    """Model dirs, tokenizer, the items encoded once, and the tiny models loaded on the CPU."""
    teacher_dir, student_dir = (str(p) for p in tiny_pair)
    tok = load_tokenizer(student_dir)
    encoded = encode_items(tok, ITEMS, MAX_LENGTH)
    teacher = load_causal_lm(teacher_dir, device="cpu").eval()
    return {"teacher_dir": teacher_dir, "student_dir": student_dir, "tok": tok,
            "encoded": encoded, "teacher": teacher, "pad": tok.pad_token_id, "vocab": len(tok)}


@pytest.fixture
def fresh_accelerate():
    """accelerate keeps one process-wide state that refuses a second mixed-precision setting;
    give each test that builds an Accelerator a clean one, and leave a clean one behind."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def _experiment(tiny, **distill):
    return validate_dict({
        "name": "recipe-test",
        "models": {"teacher": tiny["teacher_dir"], "student": tiny["student_dir"], "device": "cpu"},
        "data": {"max_length": MAX_LENGTH},
        "distill": distill,
    })


def _off_cache(path):
    path.mkdir(parents=True, exist_ok=True)
    (path / teacher_cache.INDEX).write_text(json.dumps({"mode": "off"}))
    return path


def _prune_dir(path, items=ITEMS):
    path.mkdir(parents=True, exist_ok=True)
    write_jsonl(path / "counterfactuals.jsonl", items)
    return path


def _context(tiny, tmp_path, exp, inputs):
    out = tmp_path / "out"
    out.mkdir(parents=True, exist_ok=True)
    refs = ModelRefs(tiny["teacher_dir"], tiny["student_dir"], tmp_path / "train.jsonl", None, {})
    return StageContext(exp=exp, out=out, inputs=inputs, refs=refs, workspace=tmp_path)


class RecordingSGD(torch.optim.SGD):
    """Plain SGD that keeps a copy of the gradients it stepped with."""

    def step(self, closure=None):
        self.grads = {id(p): p.grad.detach().clone()
                      for group in self.param_groups for p in group["params"]}
        return super().step(closure)


def _recipe_step(tiny, tmp_path, units, mixed_precision="no", gradient_checkpointing=False,
                 **distill):
    """One `_Recipe.step` on a fresh student with the teacher run on the fly (SGD, no clipping);
    returns the step record, the gradients it stepped with by parameter name, and the recipe."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    exp = _experiment(tiny, grad_clip=1e9, mixed_precision=mixed_precision, **distill)
    acc = Accelerator(cpu=True, mixed_precision=mixed_precision)
    student = load_causal_lm(tiny["student_dir"], device="cpu").train()
    if gradient_checkpointing:
        student.activation_checkpointing_enable({"use_reentrant": False})
    pack_to = MAX_LENGTH if exp.distill.packing else None
    model = acc.prepare(StudentDivergence(student, exp.distill.loss, tiny["vocab"], pack_to))
    optimizer = RecordingSGD(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    cache = TeacherCache(_off_cache(tmp_path / f"teach-off-{mixed_precision}"))
    recipe = _Recipe(acc, model, tiny["teacher"], cache, tiny["encoded"], tiny["pad"],
                     exp.distill)
    record, _ = recipe.step(units, optimizer, scheduler)
    grads = {name: optimizer.grads[id(p)] for name, p in student.named_parameters()}
    return record, grads, recipe


def _assert_same_grads(got, want, rtol=1e-5, atol=1e-8, norm_rtol=None):
    """Element by element to (rtol, atol); with `norm_rtol` also ‖got − want‖ ≤ norm_rtol·‖want‖
    per parameter (round-off makes single near-zero entries noisy, the whole tensor is not)."""
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=rtol, atol=atol, msg=name)
        if norm_rtol is not None:
            gap = (got[name].double() - want[name].double()).norm()
            assert gap <= norm_rtol * want[name].double().norm(), name


def _fake_encoded(n_loss: dict[str, int]) -> dict[str, EncodedPair]:
    return {i: EncodedPair(list(range(n + 3)), [], [], [], 3, 3 + n) for i, n in n_loss.items()}


# ---------------------------------------------------------------- 1. per-token loss weights
def test_token_weights_hybrid_and_mixed_reproduce_their_losses():
    n_loss = {"a": 5, "a#cf0": 3, "a#cf1": 7, "b": 2, "b#cf0": 4, "c": 6, "d": 1, "d#cf0": 9}
    encoded = _fake_encoded(n_loss)
    lam = 0.3
    gen = torch.Generator().manual_seed(0)
    for mode in ("hybrid", "mixed"):
        units = UNITS[mode](ITEMS)
        groups = [g for u in units for i, g in zip(u.item_ids, u.groups, strict=True)
                  for _ in range(n_loss[i])]
        n_orig = groups.count(ORIGINAL)
        n_cf = groups.count(COUNTERFACTUAL)
        weights, sizes = token_weights(units, encoded, mode, lam)
        assert sizes == {ORIGINAL: n_orig, COUNTERFACTUAL: n_cf}
        div = torch.rand(len(groups), generator=gen, dtype=torch.float64) * 3
        weighted = sum(weights[g] * d for g, d in zip(groups, div.tolist(), strict=True))
        is_orig = torch.tensor(groups) == ORIGINAL
        if mode == "hybrid":
            assert weights[ORIGINAL] == pytest.approx(lam / n_orig, rel=1e-12)
            assert weights[COUNTERFACTUAL] == pytest.approx((1 - lam) / n_cf, rel=1e-12)
            want = lam * div[is_orig].mean() + (1 - lam) * div[~is_orig].mean()
            ref, _, _ = hybrid_loss(div[is_orig], div[~is_orig], lam)
            assert weighted == pytest.approx(ref.item(), rel=1e-12)
        else:
            assert weights[ORIGINAL] == weights[COUNTERFACTUAL]
            assert weights[ORIGINAL] == pytest.approx(1 / len(groups), rel=1e-12)
            want = div.mean()
        assert weighted == pytest.approx(want.item(), rel=1e-12)


def test_token_weights_of_a_batch_with_only_originals_give_the_counterfactual_side_nothing():
    encoded = _fake_encoded({"c": 4})
    units = UNITS["mixed"]([it for it in ITEMS if it["id"] == "c"])
    weights, sizes = token_weights(units, encoded, "mixed", 0.5)
    assert sizes == {ORIGINAL: 4, COUNTERFACTUAL: 0}
    assert weights[ORIGINAL] == pytest.approx(0.25)


# ---------------------------------------------------------------- 2. training units
def test_hybrid_units_pair_each_counterfactual_with_its_original():
    shuffled = random.Random(3).sample(ITEMS, len(ITEMS))
    units = UNITS["hybrid"](shuffled)
    assert [u.item_ids for u in units] == [
        ("a", "a#cf0"), ("a", "a#cf1"), ("b", "b#cf0"), ("c", "c"), ("d", "d#cf0")]
    assert all(u.groups == (ORIGINAL, COUNTERFACTUAL) for u in units)
    assert UNITS["hybrid"](ITEMS) == units  # independent of the file's order


def test_mixed_units_are_every_item_once_grouped_by_kind():
    shuffled = random.Random(5).sample(ITEMS, len(ITEMS))
    units = UNITS["mixed"](shuffled)
    assert all(len(u.item_ids) == 1 for u in units)
    assert sorted(u.item_ids[0] for u in units) == sorted(it["id"] for it in ITEMS)
    kind = {it["id"]: it["kind"] for it in ITEMS}
    for u in units:
        want = ORIGINAL if kind[u.item_ids[0]] == "original" else COUNTERFACTUAL
        assert u.groups == (want,)
    assert UNITS["mixed"](ITEMS) == units


# ---------------------------------------------------------------- 3. the step plan
def _waste(batches, lengths):
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


@pytest.mark.parametrize("group_by_length", [False, True])
def test_epoch_batches_are_a_seeded_permutation_different_each_epoch(group_by_length):
    rng = random.Random(0)
    lengths = [rng.randint(5, 200) for _ in range(103)]
    plans = {}
    for epoch in range(3):
        plan = epoch_batches(lengths, 8, seed=7, epoch=epoch, group_by_length=group_by_length)
        assert plan == epoch_batches(lengths, 8, seed=7, epoch=epoch,
                                     group_by_length=group_by_length)
        flat = [i for batch in plan for i in batch]
        assert sorted(flat) == list(range(len(lengths)))
        assert sorted((len(b) for b in plan), reverse=True) == [8] * 12 + [7]
        plans[epoch] = plan
    assert plans[0] != plans[1] and plans[1] != plans[2]
    other_seed = epoch_batches(lengths, 8, seed=8, epoch=0, group_by_length=group_by_length)
    assert other_seed != plans[0]


def test_grouping_by_length_cuts_padding_on_skewed_lengths():
    rng = random.Random(1)
    lengths = [rng.choice([8, 9, 10, 12]) if rng.random() < 0.8 else rng.randint(150, 400)
               for _ in range(256)]
    for seed in range(3):
        plain = epoch_batches(lengths, 8, seed=seed, epoch=0, group_by_length=False)
        grouped = epoch_batches(lengths, 8, seed=seed, epoch=0, group_by_length=True)
        assert sorted(i for b in grouped for i in b) == list(range(len(lengths)))
        assert _waste(grouped, lengths) < 0.5 * _waste(plain, lengths)


# ---------------------------------------------------------------- 4. gradient accumulation
@pytest.mark.parametrize("mode", ["hybrid", "mixed"])
def test_micro_batches_give_the_gradients_of_one_big_batch(tiny, tmp_path, mode, fresh_accelerate):
    """Accumulating micro-batches of 2, 1 and 3+1 units gives one big batch's gradient and step
    record, up to float32 round-off.

    Mathematically the two are equal; in float32 they differ only in the order of summation:
    the matmuls of forward and backward see other shapes (other blocking: the student's hidden
    states differ by 1 ulp) and the sum over tokens is grouped per micro-batch. Measured, with
    torch 2.13 and 2.14.1 alike (the mixed case failed the old checks under both): the largest
    gradient gap is ~40·u·max|G| (u = 2⁻²⁴), ‖ΔG‖ ≤ ~21·u·‖G‖, the loss gap ~18·u of the size
    of its terms. The old per-entry check (rtol 1e-5) failed on embedding entries such as
    −2.498e−6 vs −2.497e−6, small sums of much larger terms: round-off measured against the
    entry itself has no bound. Likewise the loss (~0.0099, a KL between two near-uniform
    distributions) is a small sum of terms whose absolute values add up to ~0.22.

    The bound: a float32 sum of n terms is exact to γ_n = n·u times the sum of its terms'
    absolute values (Higham, Accuracy and Stability of Numerical Algorithms, §3.1). The longest
    sum behind any value here is the reduction over the vocabulary (V ≈ 300, ≫ hidden size 16
    and sequence length 64), so each value may move by γ_V ≈ 1.8e−5 of the size of its terms:
    per gradient entry, of max|G| of its tensor; for ‖G‖ and grad_norm, of ‖G‖; for the loss
    and its parts, of the same weighted sums over tokens of t²·Σ_v p_T·|log p_T − log p_S|
    instead of t²·Σ_v p_T·(log p_T − log p_S). A real accumulation error (a micro-batch weighed
    twice, a 1/N weight taken per micro-batch instead of per step) moves the gradient by ≥ 10%
    of its norm, four orders of magnitude above the bound; the round-off seen stays below 1/7
    of it."""
    t, lam = 2.0, 0.3
    loss = {"mode": mode, "temperature": t, "chunk_size": 5}
    if mode == "hybrid":
        loss["lambda"] = lam
    units = UNITS[mode](ITEMS)[:4]
    gamma = tiny["vocab"] * torch.finfo(torch.float32).eps / 2  # γ_V = V·u, u = eps/2
    scale = _divergence_term_sizes(tiny, units, mode, lam, t)
    ref_record, ref_grads, _ = _recipe_step(tiny, tmp_path, units, batch_size=4,
                                            gradient_accumulation=1, loss=loss)
    scale["grad_norm"] = ref_record["grad_norm"]
    for bs, ga in ((2, 2), (1, 4), (3, 2)):
        record, grads, _ = _recipe_step(tiny, tmp_path, units, batch_size=bs,
                                        gradient_accumulation=ga, loss=loss)
        assert grads.keys() == ref_grads.keys()
        for name, want in ref_grads.items():
            want, gap = want.double(), grads[name].double() - want.double()
            assert gap.abs().max() <= gamma * want.abs().max(), (name, bs, ga)
            assert gap.norm() <= gamma * want.norm(), (name, bs, ga)
        for key in ("loss", "l_kd", "l_cd", "grad_norm"):
            assert abs(record[key] - ref_record[key]) <= gamma * scale[key], (key, bs, ga)
        assert record["response_tokens"] == ref_record["response_tokens"]


def _divergence_term_sizes(tiny, units, mode, lam, t) -> dict[str, float]:
    """The step record's loss, l_kd and l_cd with every token's KL replaced by the sum of the
    absolute values of its terms, t²·Σ_v p_T·|log p_T − log p_S|: the size that bounds their
    round-off."""
    enc = tiny["encoded"]
    ids = [i for u in units for i in u.item_ids]
    groups = torch.tensor([g for u in units for i, g in zip(u.item_ids, u.groups, strict=True)
                           for _ in range(enc[i].n_loss)])
    encs = [enc[i] for i in ids]
    student = load_causal_lm(tiny["student_dir"], device="cpu")
    with torch.no_grad():
        log_p_t = torch.log_softmax(response_logits(tiny["teacher"], encs, tiny["pad"]) / t, -1)
        log_p_s = torch.log_softmax(response_logits(student, encs, tiny["pad"]) / t, -1)
        size = t * t * (log_p_t.exp() * (log_p_t - log_p_s).abs()).sum(-1).double()
    weights, sizes = token_weights(units, enc, mode, lam)
    part = {g: size[groups == g].sum().item() for g in (ORIGINAL, COUNTERFACTUAL)}
    return {"loss": sum(weights[g] * part[g] for g in part),
            "l_kd": part[ORIGINAL] / max(sizes[ORIGINAL], 1),
            "l_cd": part[COUNTERFACTUAL] / max(sizes[COUNTERFACTUAL], 1)}


def test_recipe_gradient_is_the_gradient_of_the_hybrid_loss(tiny, tmp_path, fresh_accelerate):
    """λ·mean KL over original tokens + (1−λ)·mean KL over counterfactual tokens, computed from
    full logits with plain torch, against the recipe's weighted chunked version."""
    lam, t = 0.3, 2.0
    units = UNITS["hybrid"](ITEMS)
    record, grads, _ = _recipe_step(tiny, tmp_path, units, batch_size=2, gradient_accumulation=3,
                                    loss={"lambda": lam, "temperature": t, "chunk_size": 4})
    student = load_causal_lm(tiny["student_dir"], device="cpu").train()
    enc = tiny["encoded"]
    orig = [enc[u.item_ids[0]] for u in units]
    cf = [enc[u.item_ids[1]] for u in units]
    with torch.no_grad():
        t_orig = response_logits(tiny["teacher"], orig, tiny["pad"])
        t_cf = response_logits(tiny["teacher"], cf, tiny["pad"])
    kl_o = token_kl(t_orig, response_logits(student, orig, tiny["pad"]), t)
    kl_c = token_kl(t_cf, response_logits(student, cf, tiny["pad"]), t)
    loss, l_kd, l_cd = hybrid_loss(kl_o, kl_c, lam)
    loss.backward()
    want = {n: p.grad for n, p in student.named_parameters()}
    _assert_same_grads(grads, want, rtol=1e-4, atol=1e-8)
    assert record["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert record["l_kd"] == pytest.approx(l_kd.item(), rel=1e-5)
    assert record["l_cd"] == pytest.approx(l_cd.item(), rel=1e-5)


def _distill_run(tiny, tmp_path, **distill):
    exp = _experiment(tiny, epochs=1, lr=1e-3, save_every=100, group_by_length=True,
                      loss={"lambda": 0.3}, **distill)
    inputs = {"prune": _prune_dir(tmp_path / "prune"), "teach": _off_cache(tmp_path / "teach")}
    ctx = _context(tiny, tmp_path, exp, inputs)
    metrics = run_distill(ctx)
    steps = [json.loads(x) for x in (ctx.out / "steps.jsonl").read_text().splitlines()]
    weights = load_file(ctx.out / "student" / "model.safetensors")
    return metrics, steps, weights, ctx.out


def test_run_distill_with_accumulation_matches_one_big_batch(tiny, tmp_path, fresh_accelerate):
    m_big, s_big, w_big, out = _distill_run(tiny, tmp_path / "big", batch_size=4,
                                            gradient_accumulation=1)
    m_acc, s_acc, w_acc, _ = _distill_run(tiny, tmp_path / "acc", batch_size=2,
                                          gradient_accumulation=2)
    n_units = len(UNITS["hybrid"](ITEMS))
    assert m_big["steps"] == m_acc["steps"] == math.ceil(n_units / 4)
    assert m_big["teacher_forward_passes"] == m_acc["teacher_forward_passes"] == 2 * n_units
    assert len(s_big) == len(s_acc) == m_big["steps"]
    for a, b in zip(s_big, s_acc, strict=True):
        assert a["response_tokens"] == b["response_tokens"]
        for key in ("loss", "l_kd", "l_cd", "grad_norm", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), key
    assert w_big.keys() == w_acc.keys()
    for name in w_big:
        torch.testing.assert_close(w_acc[name], w_big[name], rtol=1e-5, atol=1e-7, msg=name)
    before = load_file(f"{tiny['student_dir']}/model.safetensors")
    assert any(not torch.equal(before[n], w_big[n]) for n in before)  # it did train
    assert (out / "student" / "README.md").is_file()


# ---------------------------------------------------------------- 5. packing
def test_packed_rows_give_the_padded_hidden_states(tiny):
    student = load_causal_lm(tiny["student_dir"], device="cpu").eval()
    encs = [tiny["encoded"][i] for i in ("d#cf0", "a", "c", "b#cf0", "d", "a#cf1")]
    assert len({len(e.input_ids) for e in encs}) > 3
    layout = pack_rows(encs, MAX_LENGTH)
    assert any(len(row) >= 2 for row in layout) and len(layout) < len(encs)
    with torch.no_grad():
        padded = response_hidden(student, encs, tiny["pad"])
        packed = response_hidden(student, encs, tiny["pad"], pack_to=MAX_LENGTH)
    assert packed.shape == padded.shape == (sum(e.n_loss for e in encs), student.config.hidden_size)
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-5)


def test_packed_training_step_matches_the_padded_one(tiny, tmp_path, fresh_accelerate):
    units = UNITS["hybrid"](ITEMS)
    loss = {"lambda": 0.3}
    padded, g_padded, _ = _recipe_step(tiny, tmp_path, units, batch_size=5, loss=loss)
    packed, g_packed, _ = _recipe_step(tiny, tmp_path, units, batch_size=5, packing=True, loss=loss)
    assert packed["loss"] == pytest.approx(padded["loss"], rel=1e-5)
    _assert_same_grads(g_packed, g_padded, rtol=1e-4, atol=1e-8)


# ---------------------------------------------------------------- 6. top-k targets
def _random_logits(seed, n=7, vocab=50, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, vocab, generator=gen) * scale,
            torch.randn(n, vocab, generator=gen) * scale)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_topk_with_the_whole_vocabulary_is_the_exact_divergence(temperature):
    teacher, student = _random_logits(0)
    targets = topk_targets(teacher, teacher.shape[-1], temperature)
    assert targets.logp.shape == teacher.shape
    for name in DIVERGENCES:
        got = targets.divergence(student, temperature, name, 0.3)
        want = token_divergence(teacher, student, temperature, name, 0.3)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_topk_divergences_are_proper_and_bounded_by_the_exact_ones(k):
    teacher, student = _random_logits(k)
    t = 1.5
    targets = topk_targets(teacher, k, t)
    assert targets.logp.shape == targets.index.shape == (teacher.shape[0], k)
    for name in DIVERGENCES:
        binned = targets.divergence(student, t, name, 0.3)
        exact = token_divergence(teacher, student, t, name, 0.3)
        assert (binned >= -1e-6).all(), name
        assert (binned <= exact + 1e-5).all(), name  # data-processing inequality
        assert (binned > 1e-4).any(), name  # distinct distributions are told apart
        same = targets.divergence(teacher.clone(), t, name, 0.3)
        torch.testing.assert_close(same, torch.zeros_like(same), rtol=0, atol=1e-6, msg=name)


def test_topk_keeps_the_largest_probabilities_and_the_tail_holds_the_rest():
    teacher, _ = _random_logits(4)
    t, k = 2.0, 5
    targets = topk_targets(teacher, k, t)
    full = torch.log_softmax(teacher / t, dim=-1)
    torch.testing.assert_close(targets.logp, full.topk(k, dim=-1).values)
    torch.testing.assert_close(full.gather(-1, targets.index.long()), targets.logp)
    binned = with_tail(targets.logp)
    assert binned.shape == (teacher.shape[0], k + 1)
    tail = binned[:, -1].exp()
    torch.testing.assert_close(tail, 1 - targets.logp.exp().sum(-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(binned.exp().sum(-1), torch.ones(teacher.shape[0]))


# ---------------------------------------------------------------- 7. chunking with top-k
@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_chunked_topk_divergence_matches_one_chunk(name):
    gen = torch.Generator().manual_seed(2)
    head = torch.nn.Linear(8, 20, bias=False)
    teacher = torch.randn(11, 20, generator=gen) * 2
    targets = topk_targets(teacher[:, :17], 4, 1.5)
    hidden = torch.randn(11, 8, generator=gen)
    results = []
    for chunk in (3, 1000):
        h = hidden.clone().requires_grad_(True)
        head.zero_grad()
        got = chunked_divergence(targets, h, head, 1.5, name, 0.3, chunk=chunk, vocab=17)
        (got * torch.linspace(0.5, 1.5, 11)).sum().backward()
        results.append((got.detach(), h.grad.clone(), head.weight.grad.clone()))
    (v3, gh3, gw3), (v_all, gh_all, gw_all) = results
    torch.testing.assert_close(v3, v_all, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(gh3, gh_all, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gw3, gw_all, rtol=1e-5, atol=1e-7)
    want = targets.divergence(head(hidden)[:, :17], 1.5, name, 0.3)
    torch.testing.assert_close(v_all, want, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- 8. the teacher cache
def _teach(tiny, tmp_path, **cache):
    exp = _experiment(tiny, batch_size=3, teacher_cache=cache, loss={"temperature": 2.0})
    ctx = _context(tiny, tmp_path, exp, {"prune": _prune_dir(tmp_path / "prune")})
    return run_teach(ctx), ctx.out


def test_exact_cache_rows_are_the_teachers_logits_in_any_order(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(teacher_cache, "SHARD_ITEMS", 3)
    metrics, out = _teach(tiny, tmp_path, mode="exact")
    enc = tiny["encoded"]
    assert metrics["teacher_forward_items"] == len({it["id"] for it in ITEMS})
    assert metrics["cached_positions"] == sum(e.n_loss for e in enc.values())
    shards = sorted(out.glob("shard-*.safetensors"))
    assert len(shards) == math.ceil(len(ITEMS) / 3)
    assert sum(load_file(p)["logits"].shape[0] for p in shards) == metrics["cached_positions"]
    cache = TeacherCache(out)
    assert cache.enabled and cache.mode == "exact"
    for seed in range(3):
        ids = random.Random(seed).sample(sorted(enc), 5)
        got = cache.targets(ids)
        with torch.no_grad():
            want = response_logits(tiny["teacher"], [enc[i] for i in ids], tiny["pad"])
        assert got.logp is None and got.logits.shape == want.shape
        torch.testing.assert_close(got.logits, want, rtol=1e-5, atol=1e-5)


def test_topk_cache_rows_are_topk_of_the_teachers_logits(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(teacher_cache, "SHARD_ITEMS", 4)
    metrics, out = _teach(tiny, tmp_path, mode="topk", k=6)
    cache = TeacherCache(out)
    assert cache.mode == "topk" and cache.meta["k"] == 6 and cache.meta["temperature"] == 2.0
    ids = ["d#cf0", "a", "c", "b#cf0", "a#cf1"]
    enc = tiny["encoded"]
    got = cache.targets(ids)
    with torch.no_grad():
        logits = response_logits(tiny["teacher"], [enc[i] for i in ids], tiny["pad"])
    want = topk_targets(logits, 6, 2.0)
    torch.testing.assert_close(got.logp, want.logp, rtol=1e-5, atol=1e-5)
    assert torch.equal(got.index.long(), want.index.long())


def test_auto_mode_picks_exact_for_a_small_vocabulary_and_topk_beyond(tiny):
    exp = _experiment(tiny, teacher_cache={"mode": "auto", "exact_max_vocab": 1000})
    assert teacher_cache.resolve_mode(exp.distill.teacher_cache, tiny["vocab"]) == "exact"
    exp = _experiment(tiny, teacher_cache={"mode": "auto", "exact_max_vocab": 100})
    assert teacher_cache.resolve_mode(exp.distill.teacher_cache, tiny["vocab"]) == "topk"


def test_teach_resumes_by_recomputing_only_the_missing_shard(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(teacher_cache, "SHARD_ITEMS", 2)
    _, out = _teach(tiny, tmp_path, mode="exact")
    shards = sorted(out.glob("shard-*.safetensors"))
    assert len(shards) == len(ITEMS) // 2
    first = {p.name: load_file(p)["logits"] for p in shards}
    stamps = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shards}
    full = TeacherCache(out).targets(sorted(tiny["encoded"])).logits
    (out / teacher_cache.INDEX).unlink()
    missing = shards[1]
    missing.unlink()

    metrics, _ = _teach(tiny, tmp_path, mode="exact")
    again = sorted(out.glob("shard-*.safetensors"))
    assert [p.name for p in again] == [p.name for p in shards]
    for p in again:
        if p.name != missing.name:
            assert (p.stat().st_ino, p.stat().st_mtime_ns) == stamps[p.name], p.name
        torch.testing.assert_close(load_file(p)["logits"], first[p.name], rtol=1e-6, atol=1e-6)
    assert metrics["cached_positions"] == sum(e.n_loss for e in tiny["encoded"].values())
    torch.testing.assert_close(TeacherCache(out).targets(sorted(tiny["encoded"])).logits, full,
                               rtol=1e-6, atol=1e-6)


def test_teach_resume_redoes_a_shard_torn_by_a_kill(tiny, tmp_path, monkeypatch):
    """A run killed while writing a shard leaves the first part of its file: that shard is not
    finished, so the next run must write it again rather than index a torn file."""
    monkeypatch.setattr(teacher_cache, "SHARD_ITEMS", 2)
    _, out = _teach(tiny, tmp_path, mode="exact")
    ids = sorted(tiny["encoded"])
    full = TeacherCache(out).targets(ids).logits
    (out / teacher_cache.INDEX).unlink()
    torn = out / "shard-00002.safetensors"
    data = torn.read_bytes()
    torn.write_bytes(data[: len(data) // 2])

    _teach(tiny, tmp_path, mode="exact")
    torch.testing.assert_close(TeacherCache(out).targets(ids).logits, full, rtol=1e-6, atol=1e-6)


def test_off_mode_writes_only_an_index(tiny, tmp_path):
    metrics, out = _teach(tiny, tmp_path, mode="off")
    assert metrics["teacher_forward_items"] == 0
    assert not list(out.glob("shard-*")) and not TeacherCache(out).enabled


def test_cached_step_equals_the_on_the_fly_step(tiny, tmp_path, fresh_accelerate):
    """The recipe reading an exact cache trains exactly as running the teacher every step."""
    from accelerate import Accelerator

    units = UNITS["hybrid"](ITEMS)
    live, g_live, recipe = _recipe_step(tiny, tmp_path / "live", units, batch_size=3,
                                        loss={"lambda": 0.3})
    assert recipe.teacher_passes == 2 * len(units)
    _, cache_dir = _teach(tiny, tmp_path / "teach", mode="exact")
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    acc = Accelerator(cpu=True)
    exp = _experiment(tiny, batch_size=3, grad_clip=1e9, loss={"lambda": 0.3})
    student = acc.prepare(StudentDivergence(
        load_causal_lm(tiny["student_dir"], device="cpu").train(), exp.distill.loss,
        tiny["vocab"], None))
    optimizer = RecordingSGD(student.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    cached_recipe = _Recipe(acc, student, None, TeacherCache(cache_dir), tiny["encoded"],
                            tiny["pad"], exp.distill)
    cached, _ = cached_recipe.step(units, optimizer, scheduler)
    assert cached_recipe.teacher_passes == 0
    assert cached["loss"] == pytest.approx(live["loss"], rel=1e-5)
    inner = acc.unwrap_model(student).student
    g_cached = {n: optimizer.grads[id(p)] for n, p in inner.named_parameters()}
    _assert_same_grads(g_cached, g_live, rtol=1e-4, atol=1e-8)


# ---------------------------------------------------------------- 9. gradient checkpointing
@pytest.mark.parametrize("mode", ["hybrid", "mixed"])
def test_gradient_checkpointing_leaves_the_gradients_unchanged(tiny, tmp_path, mode,
                                                               fresh_accelerate):
    loss = {"mode": mode} if mode == "mixed" else {"lambda": 0.3}
    units = UNITS[mode](ITEMS)
    plain, g_plain, _ = _recipe_step(tiny, tmp_path, units, batch_size=3, loss=loss)
    ckpt, g_ckpt, _ = _recipe_step(tiny, tmp_path, units, batch_size=3, loss=loss,
                                   gradient_checkpointing=True)
    assert ckpt["loss"] == pytest.approx(plain["loss"], rel=1e-5)
    _assert_same_grads(g_ckpt, g_plain, rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------- 10. bf16 autocast on the CPU
def test_bf16_autocast_step_is_finite_and_close_to_fp32(tiny, tmp_path, fresh_accelerate):
    units = UNITS["hybrid"](ITEMS)
    fp32, g32, _ = _recipe_step(tiny, tmp_path, units, batch_size=3, loss={"lambda": 0.3})
    bf16, g16, _ = _recipe_step(tiny, tmp_path, units, batch_size=3, loss={"lambda": 0.3},
                                mixed_precision="bf16")
    assert all(math.isfinite(bf16[k]) for k in ("loss", "l_kd", "l_cd", "grad_norm"))
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=5e-2)
    assert bf16["loss"] != fp32["loss"]  # the forward pass did run in bf16
    assert bf16["grad_norm"] == pytest.approx(fp32["grad_norm"], rel=2e-1)
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in g16.values())


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_divergences_stay_float32_under_bf16_autocast(name):
    """The loss is documented as float32; autocast must not pull its reductions down to bf16
    (Σ p·log p − Σ p·log q cancels: in bf16 a divergence of 0.005 rounds to 0)."""
    gen = torch.Generator().manual_seed(0)
    teacher = torch.randn(6, 300, generator=gen)
    student = teacher + 0.1 * torch.randn(6, 300, generator=gen)
    want = token_divergence(teacher, student, 1.0, name, 0.3)
    targets = topk_targets(teacher, 20, 1.0)
    want_topk = targets.divergence(student, 1.0, name, 0.3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = token_divergence(teacher, student, 1.0, name, 0.3)
        got_topk = targets.divergence(student, 1.0, name, 0.3)
    assert got.dtype == got_topk.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got_topk, want_topk, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- 11. the model card
def _front_matter(text: str) -> tuple[dict, str]:
    lines = text.splitlines()
    assert lines[0] == "---"
    end = lines.index("---", 1)
    return yaml.safe_load("\n".join(lines[1:end])), "\n".join(lines[end + 1:])


def test_model_card_names_the_recipe_in_parseable_front_matter(tiny, tmp_path):
    exp = validate_dict({
        "name": "card-test",
        "models": {"teacher": "org/big-teacher", "student": "org/small-student"},
        "mining": {"threshold": {"tau": 0.15}},
        "distill": {"loss": {"lambda": 0.3, "temperature": 2.0, "divergence": "jsd"}},
    })
    ctx = _context(tiny, tmp_path, exp, {})
    path = write_model_card(tmp_path, ctx)
    assert path == tmp_path / "README.md"
    meta, prose = _front_matter(path.read_text(encoding="utf-8"))
    info = meta["leafbench"]
    assert meta["base_model"] == "org/small-student"
    assert info["teacher"] == "org/big-teacher"
    assert info["tau"] == 0.15 and info["lambda"] == 0.3 and info["loss_mode"] == "hybrid"
    assert info["temperature"] == 2.0 and info["divergence"] == "jsd"
    assert "org/big-teacher" in prose and "τ = 0.15" in prose and "λ = 0.3" in prose
    assert "hybrid" in prose


def test_model_card_in_mixed_mode_has_no_lambda(tiny, tmp_path):
    exp = validate_dict({"models": {"teacher": "org/t", "student": "org/s"},
                         "distill": {"loss": {"mode": "mixed"}}})
    ctx = _context(tiny, tmp_path, exp, {})
    meta, prose = _front_matter(write_model_card(tmp_path, ctx).read_text(encoding="utf-8"))
    assert "lambda" in meta["leafbench"] and meta["leafbench"]["lambda"] is None
    assert meta["leafbench"]["loss_mode"] == "mixed"
    assert "λ implicit" in prose and "λ =" not in prose


# ---------------------------------------------------------------- 12. the loss config
def test_mixed_mode_with_lambda_is_an_error_naming_the_field():
    with pytest.raises(ConfigError) as err:
        validate_dict({"distill": {"loss": {"mode": "mixed", "lambda": 0.3}}})
    assert err.value.field == "distill.loss.lambda"
    assert "distill.loss.lambda" in str(err.value)


def test_mixed_mode_without_lambda_round_trips():
    exp = validate_dict({"distill": {"loss": {"mode": "mixed", "temperature": 2.0}}})
    data = exp.to_dict()
    assert data["distill"]["loss"]["lambda"] is None and exp.distill.loss.lam is None
    assert validate_dict(data) == exp
    hybrid = validate_dict({"distill": {"loss": {"lambda": 0.2}}})
    assert hybrid.to_dict()["distill"]["loss"]["lambda"] == 0.2
    assert validate_dict(hybrid.to_dict()) == hybrid


# ---------------------------------------------------------------- multi-process launch
def test_two_process_data_parallel_run_equals_one_process(tiny, tmp_path, fresh_accelerate):
    """The stage started through torchrun on 2 CPU processes (DDP over gloo), 2 units per
    process, ends with the weights and step log of one process taking 4 units per step."""
    from leafbench.distill.launch import run_distill_stage

    m_one, s_one, w_one, _ = _distill_run(tiny, tmp_path / "one", batch_size=4)
    exp = _experiment(tiny, epochs=1, lr=1e-3, save_every=100, group_by_length=True,
                      loss={"lambda": 0.3}, batch_size=2,
                      launch={"num_processes": 2, "launcher": "torchrun"})
    two = tmp_path / "two"
    inputs = {"prune": _prune_dir(two / "prune"), "teach": _off_cache(two / "teach")}
    ctx = _context(tiny, two, exp, inputs)
    m_two = run_distill_stage(ctx)
    s_two = [json.loads(x) for x in (ctx.out / "steps.jsonl").read_text().splitlines()]
    w_two = load_file(ctx.out / "student" / "model.safetensors")
    assert m_two["steps"] == m_one["steps"] and len(s_two) == len(s_one)
    for a, b in zip(s_one, s_two, strict=True):
        assert a["response_tokens"] == b["response_tokens"]
        # Float round-off only: each process pads its own micro-batch, and gloo sums in its
        # own order. A wrong data-parallel scale would be off by a factor of 2.
        for key in ("loss", "l_kd", "l_cd", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), key
    for name in w_one:
        torch.testing.assert_close(w_two[name], w_one[name], rtol=1e-4, atol=1e-6, msg=name)
    assert (ctx.out / "student" / "README.md").is_file()


@pytest.mark.parametrize("n_units,processes,batch", [(9, 4, 2), (3, 4, 2), (8, 2, 3), (1, 3, 1)])
def test_every_rank_runs_the_same_number_of_micro_batches(n_units, processes, batch):
    """Sharded wrappers gather parameters in every forward: all ranks must make the same calls.
    Ranks short of units fill in with zero-weight units; the real units are each used once."""
    from types import SimpleNamespace

    units = [Unit((f"u{i}",), (0,)) for i in range(n_units)]
    cfg = SimpleNamespace(batch_size=batch)
    counts, real = set(), []
    for rank in range(processes):
        acc = SimpleNamespace(process_index=rank, num_processes=processes)
        recipe = _Recipe(acc, None, None, None, {}, 0, cfg)
        micro = recipe._micro_batches(units)
        counts.add(len(micro))
        assert all(0 < len(b) <= batch for b in micro)
        real += [u.item_ids[0] for b in micro for u, keep in b if keep]
    assert len(counts) == 1
    assert sorted(real) == sorted(u.item_ids[0] for u in units)


@pytest.mark.parametrize("section,field", [
    ({"loss": {"divergence": "jsd", "beta": 0.0}}, "distill.loss.beta"),
    ({"loss": {"divergence": "jsd", "beta": 1.0}}, "distill.loss.beta"),
    ({"launch": {"launcher": "torchrun", "accelerate_config": "x.yaml"}},
     "distill.launch.accelerate_config"),
])
def test_settings_that_would_fail_later_are_refused_up_front(section, field):
    with pytest.raises(ConfigError) as err:
        validate_dict({"distill": section})
    assert err.value.field == field


def test_an_accelerate_config_keeps_its_own_process_count_unless_one_is_set(tmp_path):
    from leafbench.distill.launch import launch_command

    own = validate_dict({"distill": {"launch": {"accelerate_config": "fsdp.yaml"}}})
    cmd = launch_command(own.distill.launch, tmp_path / "launch.json")
    assert "--config_file" in cmd and "--num_processes" not in cmd
    set_ = validate_dict({"distill": {"launch": {"accelerate_config": "fsdp.yaml",
                                                 "num_processes": 4}}})
    cmd = launch_command(set_.distill.launch, tmp_path / "launch.json")
    assert cmd[cmd.index("--num_processes") + 1] == "4"
    assert cmd[-3:] == ["-m", "leafbench.distill.launch", str(tmp_path / "launch.json")]
