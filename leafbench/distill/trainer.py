"""The `distill` stage: one readable recipe for causal attention distillation (LeaF stage 2).

Per optimizer step: take the step's global batch of units (batching.py), weight every response
token (hybrid: λ/N_orig and (1−λ)/N_cf; mixed: 1/N), then for each of this process's
micro-batches run the student once over its originals and counterfactuals together, read the
teacher's targets from the `teach` stage's cache (or run the teacher when the cache is off),
and back-propagate Σ w·D computed in checkpointed chunks over the real vocabulary. Then clip,
step AdamW and the cosine schedule.

Multi-GPU runs use the same code under `accelerate launch` (FSDP or DeepSpeed ZeRO configs in
experiments/accelerate/): every process knows the whole global batch, takes every P-th unit,
and scales its loss by P because data-parallel wrappers average gradients.

Exact resume: the step plan is a pure function of (seed, epoch); model, optimizer, scheduler
and RNG states are checkpointed every `save_every` steps and the step log is cut back to the
checkpoint, so a run killed anywhere and restarted ends with the weights and log of one that
never stopped. Wall-clock figures go to timing.jsonl, apart from the deterministic step log.

Per-epoch validation (`validate_each_epoch`, validation.py): after an epoch's last step, before
any checkpoint of that step, the student is scored on the validation split and a watcher may
stop the run (control.py); a resumed run cuts validation.jsonl back with the step log.

Epoch selection (`select: best_validation_loss`, selection.py): a held-out slice of the samples
is left out of training, its loss is measured after every epoch, and the epoch with the lowest
loss — not necessarily the last — becomes the saved student.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from transformers import get_cosine_schedule_with_warmup

from leafbench.contract import StageContext, artifact
from leafbench.distill.batching import UNITS, build_pairs, epoch_batches, token_weights
from leafbench.distill.control import control_timeout
from leafbench.distill.forward import response_hidden, response_logits
from leafbench.distill.loss import TeacherTargets, chunked_divergence
from leafbench.distill.model_card import write_model_card
from leafbench.distill.selection import EpochSelection, split_heldout
from leafbench.distill.teacher_cache import TeacherCache, encode_items
from leafbench.distill.validation import EpochValidation
from leafbench.models import load_causal_lm, load_tokenizer, resolve_device
from leafbench.progress import progress_bar
from leafbench.samples import EncodedPair, read_jsonl

STEPS_LOG = artifact("distill", "steps")
TIMING_LOG = artifact("distill", "timing")
CHECKPOINTS = "checkpoints"

__all__ = ["build_pairs", "response_hidden", "response_logits", "run_distill"]


class StudentDivergence(torch.nn.Module):
    """The student's forward pass through to the per-token divergence, as one module.

    Data-parallel wrappers (DDP, FSDP, DeepSpeed) prepare parameters in their own forward;
    wrapping this module rather than the bare model keeps the decoder, the chunked vocabulary
    projection and the loss inside that forward, so every parameter is gathered, used and
    synchronised where the wrapper expects it.
    """

    def __init__(self, student: Any, loss_cfg: Any, vocab: int, pack_to: int | None):
        super().__init__()
        self.student, self.loss_cfg, self.vocab, self.pack_to = student, loss_cfg, vocab, pack_to

    def forward(self, encs: list[EncodedPair], pad: int, targets: TeacherTargets) -> torch.Tensor:
        hidden = response_hidden(self.student, encs, pad, self.pack_to)
        cfg = self.loss_cfg
        return chunked_divergence(targets, hidden, self.student.get_output_embeddings(),
                                  cfg.temperature, cfg.divergence, cfg.beta, cfg.chunk_size,
                                  self.vocab)


def run_distill(ctx: StageContext) -> dict[str, float]:
    from accelerate import Accelerator

    exp, cfg = ctx.exp, ctx.exp.distill
    torch.manual_seed(exp.seed)
    # "no" leaves the choice to an accelerate config's mixed_precision, when one is in use.
    accelerator = Accelerator(cpu=resolve_device(exp.models.device) == "cpu",
                              mixed_precision=None if cfg.mixed_precision == "no"
                              else cfg.mixed_precision,
                              kwargs_handlers=_process_group_timeout(cfg))
    tokenizer = load_tokenizer(ctx.refs.student)
    items = read_jsonl(ctx.inputs["prune"] / artifact("prune", "counterfactuals"))
    encoded = encode_items(tokenizer, items, exp.data.max_length)
    units = UNITS[cfg.loss.mode](items)
    heldout: list[Any] = []
    if cfg.select == "best_validation_loss":
        units, heldout = split_heldout(units, items, cfg.select_fraction, exp.seed)
    lengths = [sum(len(encoded[i].input_ids) for i in u.item_ids) for u in units]

    # Each process holds whole models on its own device (the data-parallel wrapper shards the
    # student), never a device_map spread over every GPU. The student trains in float32 master
    # weights — AdamW steps of 1e-5 vanish in bf16 — and bf16 compute comes from autocast.
    device = str(accelerator.device)
    cache = TeacherCache(ctx.inputs["teach"])
    teacher = None if cache.enabled else load_causal_lm(
        ctx.refs.teacher, exp.models.dtype, device, shard=False).eval()
    student = load_causal_lm(ctx.refs.student, "float32", device, shard=False).train()
    if cfg.gradient_checkpointing:
        # transformers 5 renamed gradient_checkpointing_enable; older releases lack the new name.
        enable = getattr(student, "activation_checkpointing_enable", None) or \
            student.gradient_checkpointing_enable
        enable({"use_reentrant": False})
    model = StudentDivergence(student, cfg.loss, len(tokenizer),
                              exp.data.max_length if cfg.packing else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    _configure_deepspeed(accelerator, cfg.batch_size)
    model, optimizer = accelerator.prepare(model, optimizer)  # FSDP2 / DeepSpeed: one call
    processes = accelerator.num_processes
    global_batch = cfg.batch_size * cfg.gradient_accumulation * processes
    steps_per_epoch = math.ceil(len(units) / global_batch)
    total = steps_per_epoch * cfg.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    accelerator.register_for_checkpointing(scheduler)

    step = _resume(ctx.out, accelerator)
    validation = EpochValidation.for_run(ctx, tokenizer, accelerator)
    if validation is not None:
        validation.cut_back(step // steps_per_epoch)
    selection = EpochSelection.for_run(ctx.out, cfg, heldout, accelerator)
    if selection is not None:
        selection.cut_back(step // steps_per_epoch)
    recipe = _Recipe(accelerator, model, teacher, cache, encoded, tokenizer.pad_token_id, cfg)
    main = accelerator.is_main_process
    log_path, timing_path = ctx.out / STEPS_LOG, ctx.out / TIMING_LOG
    with open(log_path, "a") as log, open(timing_path, "a") as timing, \
            progress_bar("distill", total, enabled=main) as bar:
        bar.advance(step)
        while step < total:
            epoch, index = divmod(step, steps_per_epoch)
            plan = epoch_batches(lengths, global_batch, exp.seed, epoch, cfg.group_by_length)
            start = time.perf_counter()
            record, tokens = recipe.step([units[i] for i in plan[index]], optimizer, scheduler)
            seconds = time.perf_counter() - start
            step += 1
            if main:
                log.write(json.dumps({"step": step, "epoch": epoch, **record}) + "\n")
                timing.write(json.dumps({"step": step, "seconds": seconds, "tokens": tokens,
                                         "tokens_per_s": tokens / seconds}) + "\n")
                log.flush()
                timing.flush()
            bar.advance(1)
            if selection is not None and step % steps_per_epoch == 0:
                selection.after_epoch(step // steps_per_epoch, recipe, model)
            if validation is not None and step % steps_per_epoch == 0:
                validation.after_epoch(step // steps_per_epoch, model)  # may stop the run
            if step % cfg.save_every == 0 and step < total:
                _checkpoint(ctx.out, step, accelerator)

    chosen, chosen_state = selection.chosen() if selection is not None else (cfg.epochs, None)
    _save_student(ctx, accelerator, model, tokenizer, chosen_state)
    shutil.rmtree(ctx.out / CHECKPOINTS, ignore_errors=True)
    shutil.rmtree(ctx.out / artifact("distill", "best_epoch"), ignore_errors=True)
    history = read_jsonl(log_path)
    speed = read_jsonl(timing_path)
    metrics = {
        "steps": float(total),
        "units": float(len(units)),
        "final_loss": history[-1]["loss"],
        "mean_loss_last_epoch": sum(h["loss"] for h in history[-steps_per_epoch:]) / steps_per_epoch,
        "tokens_per_s": sum(t["tokens"] for t in speed) / sum(t["seconds"] for t in speed),
        "teacher_forward_passes": float(recipe.teacher_passes),
    }
    if selection is not None:
        metrics.update(selection.metrics(chosen))
    score = validation.last_score() if validation is not None else None
    if score is not None:
        metrics["validation_score"] = score  # the last epoch's
    return metrics


def _process_group_timeout(cfg: Any) -> list[Any]:
    """With per-epoch validation the other processes wait in a broadcast while the main
    process generates and then waits for its watcher's verdict (up to the control timeout):
    give collectives that long on top of torch's default 30 minutes, or NCCL's 10-minute
    default would kill a run whose watcher is slow."""
    if not cfg.validate_each_epoch:
        return []
    from datetime import timedelta

    from accelerate.utils import InitProcessGroupKwargs

    return [InitProcessGroupKwargs(timeout=timedelta(seconds=1800 + control_timeout()))]


def _configure_deepspeed(accelerator: Any, micro_batch: int) -> None:
    """DeepSpeed sizes its engine from a dataloader, and the recipe has none: give it the
    micro-batch, and one accumulation step per engine step — the recipe marks accumulation
    boundaries itself and its token weights already normalise over the global batch."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:
        return
    plugin.deepspeed_config.update({
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": 1,
        "train_batch_size": micro_batch * accelerator.num_processes,
    })


class _Recipe:
    """One optimizer step over a global batch; holds what every step needs."""

    def __init__(self, accelerator, model, teacher, cache, encoded, pad, cfg):
        self.accelerator, self.model, self.teacher, self.cache = accelerator, model, teacher, cache
        self.encoded, self.pad, self.cfg = encoded, pad, cfg
        self.teacher_passes = 0

    def measure(self, units) -> float:
        """The distillation loss of `units` taken as one global batch, without an update: the
        held-out loss that epoch selection compares. Every process runs the same number of
        micro-batches (sharded wrappers gather in each forward) and the sums are reduced."""
        acc, cfg = self.accelerator, self.cfg
        weights, _ = token_weights(units, self.encoded, cfg.loss.mode, cfg.loss.lam)
        total = torch.zeros(1)
        self.model.eval()
        with torch.no_grad():
            for batch in self._micro_batches(units):
                ids, encs, groups, real = self._flatten(batch)
                with acc.autocast():
                    divergence = self.model(encs, self.pad, self._targets(ids, encs))
                w = torch.tensor([weights[g] * k for g, k in zip(groups, real, strict=True)])
                total += (divergence.detach().float().cpu() * w).sum()
        self.model.train()
        return acc.reduce(total.to(acc.device), "sum").item()

    def _flatten(self, batch) -> tuple[list[str], list[EncodedPair], list[int], list[float]]:
        """A micro-batch's item ids and encodings, and per loss row its group and weight flag."""
        ids = [i for u, _ in batch for i in u.item_ids]
        encs = [self.encoded[i] for i in ids]
        groups = [g for u, _ in batch for i, g in zip(u.item_ids, u.groups, strict=True)
                  for _ in range(self.encoded[i].n_loss)]
        real = [keep for u, keep in batch for i in u.item_ids
                for _ in range(self.encoded[i].n_loss)]
        return ids, encs, groups, real

    def step(self, units, optimizer, scheduler) -> tuple[dict[str, float], int]:
        acc, cfg = self.accelerator, self.cfg
        weights, sizes = token_weights(units, self.encoded, cfg.loss.mode, cfg.loss.lam)
        micro = self._micro_batches(units)
        sums = torch.zeros(2)
        tokens = 0
        for n, batch in enumerate(micro):
            last = n == len(micro) - 1
            acc.gradient_state._set_sync_gradients(last)  # DeepSpeed: accumulation boundary
            sync = contextlib.nullcontext() if last else acc.no_sync(self.model)
            with sync:
                ids, encs, groups, real = self._flatten(batch)
                with acc.autocast():
                    divergence = self.model(encs, self.pad, self._targets(ids, encs))
                w = torch.tensor([weights[g] * k for g, k in zip(groups, real, strict=True)],
                                 device=divergence.device)
                acc.backward((divergence * w).sum() * acc.num_processes)
            per_token = divergence.detach().float().cpu() * torch.tensor(real, dtype=torch.float32)
            for g in (0, 1):
                sums[g] += per_token[torch.tensor(groups) == g].sum()
            tokens += sum(len(self.encoded[i].input_ids) for u, keep in batch if keep
                          for i in u.item_ids)
        sums = acc.reduce(sums.to(acc.device), "sum").cpu()
        grad_norm = acc.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        if grad_norm is None:  # DeepSpeed clipped inside its engine step
            grad_norm = getattr(self.model, "get_global_grad_norm", lambda: float("nan"))()
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        l_kd, l_cd = (sums[g].item() / max(sizes[g], 1) for g in (0, 1))
        loss = (sums * torch.tensor([weights[0], weights[1]])).sum().item()
        record = {"loss": loss, "l_kd": l_kd, "l_cd": l_cd, "lr": lr,
                  "grad_norm": float(grad_norm), "response_tokens": sizes[0] + sizes[1]}
        return record, int(acc.reduce(torch.tensor(tokens, device=acc.device), "sum").item())

    def _micro_batches(self, units) -> list[list[tuple[Any, float]]]:
        """This process's share of the global batch as micro-batches of (unit, 1.0). Every
        process runs the same number of them — sharded wrappers (FSDP, ZeRO-3) gather
        parameters in each forward, so all ranks must make every call — and a rank short of
        units fills in with (unit, 0.0): a forward and backward that weigh nothing."""
        acc, size = self.accelerator, self.cfg.batch_size
        mine = [(u, 1.0) for u in units[acc.process_index :: acc.num_processes]]
        per_rank = max(1, math.ceil(len(units) / acc.num_processes))
        mine += [(units[0], 0.0)] * (per_rank - len(mine))
        return [mine[i : i + size] for i in range(0, per_rank, size)]

    def _targets(self, ids: list[str], encs: list[EncodedPair]) -> TeacherTargets:
        if self.cache.enabled:
            return self.cache.targets(ids)
        self.teacher_passes += len(encs)
        with torch.no_grad():
            return TeacherTargets(logits=response_logits(self.teacher, encs, self.pad))


def _save_student(ctx: StageContext, accelerator: Any, model: Any, tokenizer: Any,
                  chosen: dict[str, torch.Tensor] | None = None) -> None:
    """HF format, gathered from every process, with a model card saying how it was made;
    `chosen`: the selected epoch's weights (main process) instead of the final ones."""
    out = ctx.out / artifact("distill", "student")
    accelerator.wait_for_everyone()
    student = accelerator.unwrap_model(model).student
    state = {k.removeprefix("student."): v for k, v in accelerator.get_state_dict(model).items()}
    if chosen is not None:
        state = chosen
    student.save_pretrained(out, state_dict=state, is_main_process=accelerator.is_main_process,
                            save_function=accelerator.save)
    if accelerator.is_main_process:
        tokenizer.save_pretrained(out)
        write_model_card(out, ctx)


def _checkpoint(out: Path, step: int, accelerator: Any) -> None:
    """Write step-N atomically, then drop older checkpoints."""
    root = out / CHECKPOINTS
    tmp = root / f".step-{step}"
    accelerator.save_state(str(tmp), safe_serialization=False)  # tied weights stay tied
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "step.json").write_text(json.dumps({"step": step}))
        tmp.rename(root / f"step-{step}")
        for old in root.glob("step-*"):
            if old.name != f"step-{step}":
                shutil.rmtree(old)
    accelerator.wait_for_everyone()


def _resume(out: Path, accelerator: Any) -> int:
    """Load the newest checkpoint (if any) and cut the step logs back to it; return its step."""
    done = sorted((out / CHECKPOINTS).glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    step = 0
    if done:
        accelerator.load_state(str(done[-1]))
        step = json.loads((done[-1] / "step.json").read_text())["step"]
    if accelerator.is_main_process:
        for name in (STEPS_LOG, TIMING_LOG):
            path = out / name
            if path.exists():
                kept = [r for r in read_jsonl(path, torn_tail_ok=True) if r["step"] <= step]
                path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    accelerator.wait_for_everyone()
    return step
