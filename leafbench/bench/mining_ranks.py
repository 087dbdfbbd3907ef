"""Data-parallel mining benchmark: wall time of the `mine` stage on 1 process vs N ranks.

One run builds tiny teacher/student models and a GSM8K train slice, then runs the real stage
(`leafbench.mining.stage.run_mine`) twice in the same run: in process, and launched on N ranks
through torchrun (gloo, the CPU path). It prints both wall times, their ratio, and whether the
two stores are byte-identical (they must be: batches are planned globally).

What the ratio can show on a CPU: that sharding adds no serial bottleneck (planning, merging,
process start-up). What it cannot: the GPU gain, where each rank has GPUs of its own. The N-rank
time includes starting N Python processes and loading the models in each; that start-up is also
timed on its own (a launch whose ranks plan and load but compute no batch), so the ratio is
printed both whole and past start-up. Every rank computes
with the parent's intra-op thread count (`--threads`, default leafbench.determinism's count): on
a machine with fewer cores than ranks × threads the ranks share cores, so `--threads 1` is the
setting that shows how the work itself scales on a 2-core machine.

Run: `python -m leafbench.bench.mining_ranks [--items N] [--ranks 2] [--threads T]`.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from pathlib import Path

import torch

from leafbench.bench.fixtures import gsm8k_pairs, tiny_models
from leafbench.config import TinyModelConfig, validate_dict
from leafbench.contract import ModelRefs, StageContext
from leafbench.data_parallel import Rank, launch_ranks
from leafbench.determinism import cpu_threads
from leafbench.mining.stage import SPEC, STORE, plan_mining, run_mine
from leafbench.models import load_causal_lm
from leafbench.samples import write_jsonl


def _context(root: Path, models: dict[str, Path], train: Path, batch_size: int,
             launch: dict | None) -> StageContext:
    exp = validate_dict({
        "name": "bench-mining-ranks",
        "models": {"teacher": str(models["teacher"]), "student": str(models["student"]),
                   "device": "cpu"},
        "data": {"max_length": 512},
        "mining": {"level": "instruction", "batch_size": batch_size,
                   **({"launch": launch} if launch else {})},
    })
    out = root / "mine.partial"
    out.mkdir(parents=True)
    return StageContext(exp, out, {},
                        ModelRefs(str(models["teacher"]), str(models["student"]), train, None, {}),
                        root)


def start_only(ctx: StageContext, rank: Rank, work: dict) -> None:
    """What a launched rank does before its first batch: plan and load both models."""
    plan_mining(ctx)
    for ref in (ctx.refs.teacher, ctx.refs.student):
        load_causal_lm(ref, ctx.exp.models.dtype, ctx.exp.models.device)


def _timed_start(ctx: StageContext) -> float:
    """Seconds for the launcher to start the ranks, each to plan and load, and all to exit."""
    # By module name: run as `python -m`, this module is __main__ here but not in the ranks.
    work = importlib.import_module("leafbench.bench.mining_ranks").start_only
    start = time.perf_counter()
    launch_ranks(ctx, ctx.exp.mining.launch, work, {}, SPEC)
    return time.perf_counter() - start


def _timed_mine(ctx: StageContext) -> tuple[float, bytes]:
    start = time.perf_counter()
    run_mine(ctx)
    return time.perf_counter() - start, (ctx.out / STORE).read_bytes()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=192)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--threads", type=int, default=cpu_threads())
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)  # the ranks take the parent's count
    with tempfile.TemporaryDirectory(prefix="bench-mining-ranks-") as tmp:
        root = Path(tmp)
        tok, teacher, student = tiny_models(
            teacher=TinyModelConfig(layers=4, hidden=256, heads=4),
            student=TinyModelConfig(layers=2, hidden=128, heads=2))
        models = {"teacher": root / "teacher", "student": root / "student"}
        for role, model in (("teacher", teacher), ("student", student)):
            model.save_pretrained(models[role])
            tok.save_pretrained(models[role])
        train = root / "train.jsonl"
        write_jsonl(train, [{"id": str(i), "instruction": q, "response": a}
                            for i, (q, a) in enumerate(gsm8k_pairs(args.items, args.data_dir))])

        one_s, one = _timed_mine(_context(root / "one", models, train, args.batch_size, None))
        launch = {"num_processes": args.ranks, "launcher": "torchrun"}
        start_s = _timed_start(_context(root / "start", models, train, args.batch_size, launch))
        many_s, many = _timed_mine(_context(root / "many", models, train, args.batch_size,
                                            launch))
    print(f"mine, {args.items} GSM8K train items, batch {args.batch_size}, "
          f"{args.threads} intra-op thread(s) per process, {torch.get_num_threads()} set here")
    print(f"  1 process          {one_s:8.1f} s")
    print(f"  {args.ranks} ranks (torchrun) {many_s:8.1f} s   (process start-up included)")
    print(f"  speed-up (1 / {args.ranks})   {one_s / many_s:8.2f}x")
    print(f"  of which start-up  {start_s:8.1f} s   (launch, plan and load models, no batches)")
    if many_s > start_s:
        print(f"  speed-up past start-up {one_s / (many_s - start_s):4.2f}x   (1 process: all of it)")
    print(f"  stores byte-identical: {one == many} ({len(one)} bytes)")


if __name__ == "__main__":
    main()
