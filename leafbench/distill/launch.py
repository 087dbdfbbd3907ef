"""Starting the distillation recipe: in-process, or across GPUs through `accelerate launch`.

One process (the default) runs the recipe inside the pipeline. With `distill.launch.num_processes`
above 1 or an `accelerate_config` (experiments/accelerate/fsdp.yaml, deepspeed_zero3.yaml), the
stage writes its context to `launch.json` in its partial directory and runs

    accelerate launch [--config_file CFG] --num_processes N -m leafbench.distill.launch launch.json

or, with `launcher: torchrun` (data parallel over gloo on CPU machines, and the tests),
`python -m torch.distributed.run --nproc_per_node N -m leafbench.distill.launch launch.json`.

Every process rebuilds the same context and runs the same recipe (trainer.py); the main process
writes the metrics file the stage then returns. The launchers and the spec that carries the
context are shared with the data-parallel `mine` and `teach` stages (leafbench.data_parallel).
Resume works the same way: checkpoints live in the partial directory, whichever way the recipe
was started.

A run its watcher stops (control.py) raises `DistillationStopped` here, whichever way it was
started (a launched run's main process leaves `launch_stopped.json` and every process exits
cleanly), after discarding the partial directory: a stopped run is not a finished one, and
nothing of it may be taken for a result or resumed into one.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from leafbench import data_parallel
from leafbench.contract import StageContext, artifact
from leafbench.data_parallel import read_spec, reporting_faults, write_spec
from leafbench.distill.control import DistillationStopped
from leafbench.distill.trainer import run_distill

SPEC = artifact("distill", "launch_spec")
METRICS = artifact("distill", "launch_metrics")
STOPPED = artifact("distill", "launch_stopped")


def run_distill_stage(ctx: StageContext) -> dict[str, float]:
    try:
        return _run(ctx)
    except DistillationStopped:
        shutil.rmtree(ctx.out, ignore_errors=True)
        raise


def _run(ctx: StageContext) -> dict[str, float]:
    launch = ctx.exp.distill.launch
    if data_parallel.in_process(launch):
        return run_distill(ctx)
    if (ctx.out / METRICS).is_file() and (ctx.out / artifact("distill", "student") / "config.json").is_file():
        return json.loads((ctx.out / METRICS).read_text())  # finished by a launch run by hand
    spec = ctx.out / SPEC
    write_spec(ctx, spec)
    (ctx.out / STOPPED).unlink(missing_ok=True)
    data_parallel.run_launcher(launch_command(launch, spec), ctx.out)
    if (ctx.out / STOPPED).is_file():
        stopped = json.loads((ctx.out / STOPPED).read_text())
        raise DistillationStopped(stopped["epoch"], stopped["score"])
    return json.loads((ctx.out / METRICS).read_text())


def launch_command(launch: Any, spec: Path) -> list[str]:
    return data_parallel.launch_command(launch, "leafbench.distill.launch", spec)


def _worker(spec_path: str) -> None:
    ctx, _ = read_spec(spec_path)
    from accelerate import PartialState

    try:
        with reporting_faults(ctx.out):
            metrics = run_distill(ctx)
    except DistillationStopped as stop:  # every process gets here together (a broadcast)
        if PartialState().is_main_process:
            (ctx.out / STOPPED).write_text(json.dumps({"epoch": stop.epoch, "score": stop.score}))
        return
    if PartialState().is_main_process:
        (ctx.out / METRICS).write_text(json.dumps(metrics))


if __name__ == "__main__":
    _worker(sys.argv[1])
