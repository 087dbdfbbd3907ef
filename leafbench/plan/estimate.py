"""The formulas of `costs` applied to one experiment, stage by stage.

What each stage runs (leafbench.pipeline and the stage modules):

  mine      per training item, one *unit* per mined context — instruction level 1, response
            level k−1 (segments 2…k), both k — each the whole sequence through teacher and
            student: forward + backward to the input embeddings (no weight gradients), logits
            at the unit's loss positions; the student adds a forward for the perplexity
            baseline's surprisal. Both models sit on the GPUs at once (device_map).
  prune     string work on the saliency store: no model, no GPU.
  teach     one teacher forward over every distillation item — each unit's original and its c
            counterfactuals (`--counterfactuals`, default 1: unknown before mining) — logits at
            the item's loss positions, stored as the cache mode says.
  distill   per epoch, hybrid: 2 sequences per (original, counterfactual) pair, max(c, 1) pairs
            per unit; mixed: 1 + c sequences per unit. Student forward + backward with weight
            gradients (+ a recomputed forward with gradient checkpointing); the teacher's
            forward too when the cache is off.
  evaluate  per model role and task, generation: prompt prefill + max_gen_toks new tokens per
            item (an upper bound: generation stops at EOS). Decoding is bandwidth-bound, so
            its time is the larger of FLOPs / peak and bytes read / bandwidth.

Counterfactuals are taken as long as their originals (pruning removes a few tokens): an upper
bound. Lengths enter as means; the attention term uses the mean of L² where the items are known.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from leafbench.config import Experiment
from leafbench.errors import ConfigError
from leafbench.plan import costs
from leafbench.plan.accelerators import Accelerator
from leafbench.plan.architectures import Architecture
from leafbench.plan.workload import (
    EVAL_TASKS,
    SYNTHETIC_MAX_GEN_TOKS,
    SYNTHETIC_PROMPT,
    EvalTask,
    Workload,
)

GB = 1e9


@dataclass(frozen=True)
class Settings:
    """What the plan is asked for: the accelerator, its memory, the utilisation, and the number
    of counterfactuals per mined unit."""

    accelerator: Accelerator
    gpu_memory_gb: float
    utilisation: float
    counterfactuals: float = 1.0


@dataclass
class ModelWork:
    model: str
    sequences: float
    tokens: float
    forward_flops: float
    backward_flops: float


@dataclass
class StagePlan:
    stage: str
    work: list[ModelWork]
    peak_memory_gb: float  # per GPU
    gpus: int  # GPUs the stage needs at once
    gpu_hours: float  # hours × GPUs held
    hours: float = 0.0  # wall-clock hours
    disk_gb: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def flops(self) -> float:
        return sum(w.forward_flops + w.backward_flops for w in self.work)


@dataclass
class Plan:
    experiment: str
    teacher: Architecture
    student: Architecture
    workload: Workload
    settings: Settings
    stages: list[StagePlan]

    @property
    def gpu_hours(self) -> float:
        return sum(s.gpu_hours for s in self.stages)

    @property
    def hours(self) -> float:
        return sum(s.hours for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        acc = self.settings.accelerator
        return {
            "experiment": self.experiment,
            "accelerator": {**asdict(acc), "gpu_memory_gb": self.settings.gpu_memory_gb,
                            "utilisation": self.settings.utilisation},
            "counterfactuals_per_unit": self.settings.counterfactuals,
            "models": {role: {**asdict(a), "parameters": a.parameters}
                       for role, a in (("teacher", self.teacher), ("student", self.student))},
            "data": asdict(self.workload),
            "stages": [{**asdict(s), "flops": s.flops} for s in self.stages],
            "gpu_hours": self.gpu_hours,
            "hours": self.hours,
        }


# ---------------------------------------------------------------- units and items
def unit_loss_positions(exp: Experiment, response: float) -> list[tuple[float, float]]:
    """Per mining unit of one item: (loss positions while mining, loss positions when
    distilling). Instruction unit: the whole response both times. Response unit j of k: segment
    j while mining (R/k), segments j…k when distilling (R·(k−j+1)/k: `loss_from`)."""
    k = exp.mining.segments
    units = []
    if exp.mining.level in ("instruction", "both"):
        units.append((response, response))
    if exp.mining.level in ("response", "both"):
        units += [(response / k, response * (k - j + 1) / k) for j in range(2, k + 1)]
    return units


def _hours(flops: float, s: Settings) -> float:
    return costs.gpu_hours(flops, s.accelerator.bf16_flops, s.utilisation)


# ---------------------------------------------------------------- stages
def plan_mine(exp: Experiment, t: Architecture, st: Architecture, w: Workload,
              s: Settings) -> StagePlan:
    units = unit_loss_positions(exp, w.response)
    n = w.items * len(units)
    dtype = exp.models.dtype
    mean_h = sum(h for h, _ in units) / len(units)
    # the student's surprisal forward computes logits at the context positions
    context = w.length - mean_h

    def gradients(arch: Architecture) -> tuple[float, float]:
        fwd = sum(costs.forward_flops(arch, w.length, h) for h, _ in units)
        bwd = sum(costs.backward_flops(arch, w.length, h, weight_gradients=False)
                  for h, _ in units)
        # F_fwd is linear in L except the L² term: use the mean of L² for it
        extra = 2 * arch.layers * (w.length_sq - w.length**2) * arch.attention_dim
        return w.items * (fwd + extra * len(units)), w.items * (bwd + 2 * extra * len(units))

    tf, tb = gradients(t)
    sf, sb = gradients(st)
    sf += n * costs.forward_flops(st, w.length, context)
    batch = exp.mining.batch_size

    def activations(arch: Architecture) -> float:
        return (batch * w.length * costs.activation_bytes_per_token(arch, dtype, False)
                + costs.logit_bytes(arch, batch * max(mean_h, context)))

    total = (costs.weight_bytes(t, dtype) + costs.weight_bytes(st, dtype)
             + max(activations(t), activations(st)))
    gpus = costs.gpus_to_hold(total, s.gpu_memory_gb)
    work = [ModelWork("teacher", n, n * w.length, tf, tb),
            ModelWork("student", n, n * w.length, sf, sb)]
    # device_map runs the layers one GPU after another: every GPU held, one busy at a time;
    # data-parallel ranks (mining.launch) each hold such a replica and split the batches
    ranks = exp.mining.launch.num_processes
    wall = _hours(tf + tb + sf + sb, s) / ranks
    return StagePlan("mine", work, total / gpus / GB, gpus * ranks, wall * gpus * ranks, wall,
                     notes=[f"{len(units)} unit(s) per item; backward to the input embeddings "
                            "only (no weight gradients)",
                            f"teacher + student on {gpus} GPU(s) via device_map, "
                            f"× {ranks} data-parallel rank(s)"])


def cache_mode(exp: Experiment, student: Architecture) -> str:
    """The teach stage's resolve_mode: `auto` is exact up to exact_max_vocab, else topk."""
    cfg = exp.distill.teacher_cache
    if cfg.mode != "auto":
        return cfg.mode
    return "exact" if student.tokenizer_vocab <= cfg.exact_max_vocab else "topk"


def distill_items(exp: Experiment, w: Workload, s: Settings) -> tuple[float, float]:
    """(sequences, loss positions) of the distillation set: each unit's original and its
    counterfactuals."""
    units = unit_loss_positions(exp, w.response)
    per_unit = 1 + s.counterfactuals
    return (w.items * len(units) * per_unit,
            w.items * per_unit * sum(h for _, h in units))


def plan_teach(exp: Experiment, t: Architecture, st: Architecture, w: Workload,
               s: Settings) -> StagePlan:
    mode = cache_mode(exp, st)
    if mode == "off":
        return StagePlan("teach", [], 0.0, 0, 0.0, notes=["cache off: the teacher runs in "
                                                          "distill, every epoch"])
    seqs, positions = distill_items(exp, w, s)
    fwd = _sequence_forward(t, w, seqs, positions)
    disk = costs.teacher_cache_bytes(mode, positions, st.tokenizer_vocab,
                                     exp.distill.teacher_cache.k)
    batch = exp.distill.batch_size
    total = (costs.weight_bytes(t, exp.models.dtype)
             + costs.logit_bytes(t, batch * positions / seqs, copies=2))
    gpus = costs.gpus_to_hold(total, s.gpu_memory_gb)
    kept = f"k={exp.distill.teacher_cache.k} log-probs + int32 ids" if mode == "topk" \
        else f"float32 logits over {st.tokenizer_vocab} tokens"
    ranks = exp.distill.teacher_cache.launch.num_processes  # replicas splitting the batches
    wall = _hours(fwd, s) / ranks
    return StagePlan("teach", [ModelWork("teacher", seqs, seqs * w.length, fwd, 0.0)],
                     total / gpus / GB, gpus * ranks, wall * gpus * ranks, wall,
                     disk_gb=disk / GB,
                     notes=[f"cache mode {mode}: {kept} per response position",
                            f"{positions:,.0f} cached positions; {ranks} data-parallel "
                            f"rank(s) × {gpus} GPU(s)"])


def _sequence_forward(t: Architecture, w: Workload, seqs: float, positions: float) -> float:
    """Forward FLOPs of `seqs` sequences of the corpus's lengths, logits at `positions` in all."""
    return (seqs * costs.forward_flops(t, w.length, 0)
            + 2 * t.layers * seqs * (w.length_sq - w.length**2) * t.attention_dim
            + 2 * t.head_parameters * positions)


def sharding(exp: Experiment) -> tuple[str, int]:
    """(zero3 | fsdp | zero2 | none, processes) of distillation's launch, read from the named
    accelerate config; its process count applies unless num_processes was set (launch.py)."""
    launch = exp.distill.launch
    if launch.accelerate_config is None:
        return "none", launch.num_processes
    path = Path(launch.accelerate_config)
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(str(path), "distill.launch.accelerate_config", str(path),
                          f"expected a readable accelerate YAML ({err})") from None
    processes = launch.num_processes if "num_processes" in launch.model_fields_set \
        else int(cfg.get("num_processes", launch.num_processes))
    kind = str(cfg.get("distributed_type", "")).upper()
    if kind == "FSDP":
        return "fsdp", processes
    if kind == "DEEPSPEED":
        stage = int((cfg.get("deepspeed_config") or {}).get("zero_stage", 0))
        return {3: "zero3", 2: "zero2"}.get(stage, "none"), processes
    return "none", processes


def plan_distill(exp: Experiment, t: Architecture, st: Architecture, w: Workload,
                 s: Settings) -> StagePlan:
    cfg = exp.distill
    seqs, positions = distill_items(exp, w, s)
    pairs_factor = 2 * max(s.counterfactuals, 1) / (1 + s.counterfactuals)
    per_epoch = seqs * (pairs_factor if cfg.loss.mode == "hybrid" else 1.0)
    scale = per_epoch / seqs * cfg.epochs
    n, loss_positions = per_epoch * cfg.epochs, positions * scale
    fwd = _sequence_forward(st, w, n, loss_positions)
    bwd = 2 * fwd + (fwd if cfg.gradient_checkpointing else 0.0)
    work = [ModelWork("student", n, n * w.length, fwd, bwd)]
    mode = cache_mode(exp, st)
    if mode == "off":
        work.append(ModelWork("teacher", n, n * w.length,
                              _sequence_forward(t, w, n, loss_positions), 0.0))
    kind, processes = sharding(exp)
    seq_per_micro = cfg.batch_size * (2 if cfg.loss.mode == "hybrid" else 1)
    per_token = (costs.checkpointed_activation_bytes_per_token(st, "bfloat16")
                 if cfg.gradient_checkpointing else
                 costs.activation_bytes_per_token(st, "bfloat16", True))
    memory = (costs.training_state_bytes(st, processes, kind)
              + seq_per_micro * w.length * per_token
              + costs.logit_bytes(st, cfg.loss.chunk_size))
    if mode == "off":  # each process holds the whole teacher (shard=False)
        memory += costs.weight_bytes(t, exp.models.dtype)
    notes = [f"{cfg.epochs} epoch(s), {cfg.loss.mode} loss, {per_epoch:,.0f} sequences per epoch",
             f"AdamW 16 B/param, sharding {kind} over {processes} process(es)"]
    if memory > s.gpu_memory_gb * GB:
        notes.append(f"does NOT fit {s.gpu_memory_gb:g} GB per GPU: shard (ZeRO-3/FSDP) over "
                     "more processes or use gradient checkpointing")
    busy = _hours(sum(x.forward_flops + x.backward_flops for x in work), s)
    return StagePlan("distill", work, memory / GB, processes, busy, busy / processes,
                     notes=notes)


def eval_tasks(exp: Experiment) -> dict[str, EvalTask]:
    """Each task's items (capped by evaluate.limit) and generation budget."""
    out = {}
    for name in exp.evaluate.tasks:
        if name == "leaf_synthetic":
            items = exp.synthetic.n_validation if exp.evaluate.split == "validation" \
                else exp.synthetic.n_test
            task = EvalTask(items, SYNTHETIC_MAX_GEN_TOKS, SYNTHETIC_PROMPT)
        else:
            task = EVAL_TASKS[name]
        items = min(task.items, exp.evaluate.limit or task.items)
        out[name] = EvalTask(items, exp.evaluate.max_gen_toks or task.max_gen_toks, task.prompt)
    return out


def plan_evaluate(exp: Experiment, t: Architecture, st: Architecture, w: Workload,
                  s: Settings) -> StagePlan:
    dtype = exp.models.dtype if exp.evaluate.dtype == "auto" else exp.evaluate.dtype
    batch = exp.evaluate.batch_size
    work, hours, wall, peak, gpus = [], 0.0, 0.0, 0.0, 1
    for role in exp.evaluate.models:
        arch = t if role == "teacher" else st
        flops = seqs = tokens = read = 0.0
        held = 0.0
        for task in eval_tasks(exp).values():
            flops += task.items * costs.generation_flops(arch, task.prompt, task.max_gen_toks)
            seqs += task.items
            tokens += task.items * (task.prompt + task.max_gen_toks)
            steps = math.ceil(task.items / batch) * task.max_gen_toks
            context = min(batch, task.items) * (task.prompt + task.max_gen_toks / 2)
            read += steps * (costs.weight_bytes(arch, dtype)
                             + costs.kv_cache_bytes(arch, dtype, context))
            held = max(held, costs.weight_bytes(arch, dtype) + costs.kv_cache_bytes(
                arch, dtype, min(batch, task.items) * (task.prompt + task.max_gen_toks)))
        work.append(ModelWork(role, seqs, tokens, flops, 0.0))
        need = costs.gpus_to_hold(held, s.gpu_memory_gb)
        # a model spread over `need` GPUs: FLOP time as under device_map; bandwidth adds up
        role_wall = max(_hours(flops, s), costs.memory_bound_hours(
            read, s.accelerator.bandwidth * need, s.utilisation))
        wall, hours = wall + role_wall, hours + role_wall * need
        gpus, peak = max(gpus, need), max(peak, held / need / GB)
    return StagePlan("evaluate", work, peak, gpus, hours, wall,
                     notes=[f"batch {batch}; generation to the full budget (upper bound); time "
                            "= max(FLOPs/peak, bytes read/bandwidth)"])


STAGE_PLANS = (("mine", plan_mine), ("teach", plan_teach), ("distill", plan_distill),
               ("evaluate", plan_evaluate))


def build_plan(exp: Experiment, teacher: Architecture, student: Architecture,
               workload: Workload, settings: Settings) -> Plan:
    """Every stage's plan; prune is listed with no GPU work (it reads the saliency store). An
    evaluate-only experiment (`Experiment.trains` false) plans its evaluation alone, as the
    pipeline runs it."""
    planned = STAGE_PLANS if exp.trains else tuple(p for p in STAGE_PLANS if p[0] == "evaluate")
    stages = [fn(exp, teacher, student, workload, settings) for _, fn in planned]
    if exp.trains:
        stages.insert(1, StagePlan("prune", [], 0.0, 0, 0.0,
                                   notes=["thresholds and spans on the CPU: no model"]))
    return Plan(exp.name, teacher, student, workload, settings, stages)
