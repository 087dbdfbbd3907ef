"""Starting the distillation recipe: in-process, or across GPUs through `accelerate launch`.

One process (the default) runs the recipe inside the pipeline. With `distill.launch.num_processes`
above 1 or an `accelerate_config` (experiments/accelerate/fsdp.yaml, deepspeed_zero3.yaml), the
stage writes its context to `launch.json` in its partial directory and runs

    accelerate launch [--config_file CFG] --num_processes N -m leafbench.distill.launch launch.json

or, with `launcher: torchrun` (data parallel over gloo on CPU machines, and the tests),
`python -m torch.distributed.run --nproc_per_node N -m leafbench.distill.launch launch.json`.

Every process rebuilds the same context and runs the same recipe (trainer.py); the main process
writes the metrics file the stage then returns. Resume works the same way: checkpoints live in
the partial directory, whichever way the recipe was started.

A run its watcher stops (control.py) raises `DistillationStopped` here, whichever way it was
started (a launched run's main process leaves `launch_stopped.json` and every process exits
cleanly), after discarding the partial directory: a stopped run is not a finished one, and
nothing of it may be taken for a result or resumed into one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from leafbench.config import validate_dict
from leafbench.contract import ModelRefs, StageContext, artifact
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
    if launch.num_processes == 1 and launch.accelerate_config is None:
        return run_distill(ctx)
    if (ctx.out / METRICS).is_file() and (ctx.out / artifact("distill", "student") / "config.json").is_file():
        return json.loads((ctx.out / METRICS).read_text())  # finished by a launch run by hand
    spec = ctx.out / SPEC
    spec.write_text(json.dumps({
        "experiment": ctx.exp.to_dict(),
        "out": str(ctx.out), "workspace": str(ctx.workspace),
        "inputs": {k: str(v) for k, v in ctx.inputs.items()},
        "refs": {"teacher": ctx.refs.teacher, "student": ctx.refs.student,
                 "train_jsonl": str(ctx.refs.train_jsonl),
                 "test_jsonl": str(ctx.refs.test_jsonl) if ctx.refs.test_jsonl else None,
                 "identity": ctx.refs.identity,
                 "validation_jsonl": (str(ctx.refs.validation_jsonl)
                                      if ctx.refs.validation_jsonl else None)},
    }))
    (ctx.out / STOPPED).unlink(missing_ok=True)
    subprocess.run(launch_command(launch, spec), check=True)
    if (ctx.out / STOPPED).is_file():
        stopped = json.loads((ctx.out / STOPPED).read_text())
        raise DistillationStopped(stopped["epoch"], stopped["score"])
    return json.loads((ctx.out / METRICS).read_text())


def _accelerate(launch: Any) -> list[str]:
    """The accelerate config's own process count wins unless num_processes was set."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if launch.accelerate_config:
        cmd += ["--config_file", launch.accelerate_config]
    if launch.accelerate_config is None or "num_processes" in launch.model_fields_set:
        cmd += ["--num_processes", str(launch.num_processes)]
    return cmd


def _torchrun(launch: Any) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
            str(launch.num_processes)]


LAUNCHERS = {"accelerate": _accelerate, "torchrun": _torchrun}


def launch_command(launch: Any, spec: Path) -> list[str]:
    return [*LAUNCHERS[launch.launcher](launch), "-m", "leafbench.distill.launch", str(spec)]


def _worker(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    refs = spec["refs"]
    ctx = StageContext(
        exp=validate_dict(spec["experiment"], source=spec_path),
        out=Path(spec["out"]),
        inputs={k: Path(v) for k, v in spec["inputs"].items()},
        refs=ModelRefs(refs["teacher"], refs["student"], Path(refs["train_jsonl"]),
                       Path(refs["test_jsonl"]) if refs["test_jsonl"] else None,
                       refs["identity"],
                       Path(refs["validation_jsonl"]) if refs["validation_jsonl"] else None),
        workspace=Path(spec["workspace"]),
    )
    from accelerate import PartialState

    try:
        metrics = run_distill(ctx)
    except DistillationStopped as stop:  # every process gets here together (a broadcast)
        if PartialState().is_main_process:
            (ctx.out / STOPPED).write_text(json.dumps({"epoch": stop.epoch, "score": stop.score}))
        return
    if PartialState().is_main_process:
        (ctx.out / METRICS).write_text(json.dumps(metrics))


if __name__ == "__main__":
    _worker(sys.argv[1])
