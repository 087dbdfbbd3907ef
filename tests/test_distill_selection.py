"""Best-validation-epoch selection (`distill.select: best_validation_loss`) on the tiny models:
the kept epoch is the argmin of the recorded held-out losses, the saved student is that
epoch's weights, and a run killed between epochs resumes to the same result."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file
from test_distill_recipe import ITEMS, MAX_LENGTH, _context, _experiment, _off_cache, _prune_dir

from leafbench.distill.batching import UNITS
from leafbench.distill.selection import EpochSelection, split_heldout, weights_digest
from leafbench.distill.trainer import run_distill
from leafbench.pipeline import STAGES, stage_key


@pytest.fixture(scope="module")
def tiny(tiny_pair):
    """The tiny model pair, as test_distill_recipe's helpers take it."""
    from leafbench.distill.teacher_cache import encode_items
    from leafbench.models import load_tokenizer

    teacher_dir, student_dir = (str(p) for p in tiny_pair)
    tok = load_tokenizer(student_dir)
    return {"teacher_dir": teacher_dir, "student_dir": student_dir, "tok": tok,
            "encoded": encode_items(tok, ITEMS, MAX_LENGTH), "pad": tok.pad_token_id}


@pytest.fixture
def fresh_accelerate():
    """A clean accelerate state before and after (it refuses a second precision setting)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


SELECT = {"select": "best_validation_loss", "select_fraction": 0.25}


def _run(tiny, root, **distill):
    # lr rising to 20 over the whole run (warm-up ratio 1): the held-out loss falls, then the
    # steps overshoot and it rises, so the best epoch is not the last.
    exp = _experiment(tiny, **{"epochs": 4, "lr": 20.0, "warmup_ratio": 1.0, "batch_size": 2,
                               "save_every": 1, "group_by_length": False, **SELECT, **distill})
    inputs = {"prune": _prune_dir(root / "prune"), "teach": _off_cache(root / "teach")}
    ctx = _context(tiny, root, exp, inputs)
    metrics = run_distill(ctx)
    rows = [json.loads(x) for x in (ctx.out / "selection.jsonl").read_text().splitlines()]
    weights = load_file(ctx.out / "student" / "model.safetensors")
    return metrics, rows, weights, ctx.out


def _digest_of_saved(weights, tiny):
    """The saved student's parameters as the trainer digests them (tied weights included)."""
    from leafbench.models import load_causal_lm

    model = load_causal_lm(tiny["student_dir"], device="cpu")
    model.load_state_dict(weights, strict=False)
    return weights_digest(model.state_dict())


def test_the_kept_epoch_is_the_argmin_and_its_weights_are_the_student(tiny, tmp_path,
                                                                      fresh_accelerate):
    metrics, rows, weights, out = _run(tiny, tmp_path)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    losses = [r["loss"] for r in rows]
    best = min(range(4), key=lambda i: losses[i]) + 1
    assert metrics["selected_epoch"] == best
    assert [metrics[f"heldout_loss_epoch{e}"] for e in (1, 2, 3, 4)] == losses
    assert len({r["weights"] for r in rows}) == 4  # every epoch moved the weights
    assert _digest_of_saved(weights, tiny) == rows[best - 1]["weights"]
    assert not (out / "best_epoch").exists() and not (out / "checkpoints").exists()
    assert all(loss == loss for loss in losses) and best != 4, losses


def test_a_run_killed_after_an_epoch_resumes_to_the_uninterrupted_result(
        tiny, tmp_path, fresh_accelerate, monkeypatch):
    from accelerate.state import AcceleratorState

    m_full, rows_full, w_full, _ = _run(tiny, tmp_path / "full")
    AcceleratorState._reset_state(reset_partial_state=True)

    real = EpochSelection.after_epoch

    def dies_after_epoch_2(self, epoch, recipe, model):
        real(self, epoch, recipe, model)
        if epoch == 2:  # the epoch's row and best file are written; its checkpoint is not
            raise KeyboardInterrupt

    monkeypatch.setattr(EpochSelection, "after_epoch", dies_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny, tmp_path / "killed")
    monkeypatch.setattr(EpochSelection, "after_epoch", real)
    AcceleratorState._reset_state(reset_partial_state=True)
    m_res, rows_res, w_res, _ = _run(tiny, tmp_path / "killed")

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert strip(rows_res) == strip(rows_full)
    assert m_res["selected_epoch"] == m_full["selected_epoch"]
    assert w_res.keys() == w_full.keys()
    assert all((w_res[k] == w_full[k]).all() for k in w_full)


def test_whole_samples_are_held_out_of_training():
    units = UNITS["mixed"](ITEMS)
    train, held = split_heldout(units, ITEMS, 0.25, seed=0)
    sample = {it["id"]: it["sample_id"] for it in ITEMS}
    held_samples = {sample[u.item_ids[0]] for u in held}
    assert len(held_samples) == 1 and len(train) + len(held) == len(units)
    assert not held_samples & {sample[u.item_ids[0]] for u in train}
    # every item of the held-out sample (original and counterfactuals) is held out
    assert {i for u in held for i in u.item_ids} == {it["id"] for it in ITEMS
                                                    if it["sample_id"] in held_samples}
    assert split_heldout(units, ITEMS, 0.25, seed=0) == (train, held)


def test_keeping_the_last_epoch_keeps_the_distill_key(tiny):
    distill = next(s for s in STAGES if s.name == "distill")
    keys = [stage_key(distill, _experiment(tiny, **cfg), {"prune": "p", "teach": "t"}, None)
            for cfg in ({}, {"select": "last", "select_fraction": 0.3}, SELECT)]
    assert keys[0] == keys[1] != keys[2]
