"""Data-parallel stages: whole batches shared among launched processes, one artifact for any count.

`mine` and `teach` are embarrassingly parallel: every batch is a pure function of the models and
its own items. So a stage plans its batches *globally*, in the order one process would run them
(the same items in the same batch, hence the same padding and the same numbers), and each rank
computes a deterministic share of whole batches and writes one file per finished batch inside
the stage's `.partial/` directory. The parent process merges the files in batch order once every
rank has exited; nothing a rank computes depends on how many ranks there are, so one process
and N processes leave byte-identical artifacts, and a killed rank's finished batches are kept
(the next run computes only the missing ones, balanced afresh over the new ranks).

The ranks never talk to each other: no process group is created, so a rank that finishes early
simply exits and one that dies cannot leave the others waiting in a collective. They are started
by the launchers distillation uses (`launch_command`): `accelerate launch` (GPU nodes; its
config file carries multi-node rendezvous settings) or `torchrun` (gloo on CPU machines, the
tests). On GPUs each local rank takes an equal slice of the node's visible devices, so a model
bigger than one GPU is `device_map`-sharded over its own slice (8 GPUs, 4 ranks: 4 replicas of a
teacher on 2 GPUs each).

Who gets which batch: the longest-processing-time rule on padded token counts — batches in
decreasing cost (ties: lower index first) each go to the rank with the least work so far (ties:
lower rank). It depends only on the pending batches' costs and the number of ranks.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leafbench.config import validate_dict
from leafbench.contract import ModelRefs, StageContext
from leafbench.errors import RankFailed, RankReport, classify

WORKER_MODULE = "leafbench.data_parallel"
# A failing rank's report to the parent: `<FAULT_REPORT><rank>.json` in the stage's directory.
FAULT_REPORT = "rank-fault-"


@dataclass(frozen=True)
class Rank:
    """This process's place among the launched ones (`index` is the global rank)."""

    index: int
    count: int


# A rank's work: (its stage context, its rank, the parent's plan — JSON data such as `pending`).
RankWork = Callable[[StageContext, Rank, dict[str, Any]], None]


def in_process(launch: Any) -> bool:
    """One process, no accelerate config: the stage runs inside the pipeline's own process."""
    return launch.num_processes == 1 and launch.accelerate_config is None


def balanced_shares(costs: Sequence[float], ranks: int) -> list[list[int]]:
    """Positions into `costs` per rank, each rank's in increasing order (see the module doc)."""
    loads = [0.0] * ranks
    shares: list[list[int]] = [[] for _ in range(ranks)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        r = min(range(ranks), key=lambda r: (loads[r], r))
        loads[r] += costs[i]
        shares[r].append(i)
    return [sorted(s) for s in shares]


def my_share(pending: Sequence[int], costs: Sequence[float], rank: Rank) -> list[int]:
    """The pending batch numbers this rank computes; `costs` are per pending batch."""
    return [pending[i] for i in balanced_shares(costs, rank.count)[rank.index]]


# ---------------------------------------------------------------- launching
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


LAUNCHERS: dict[str, Callable[[Any], list[str]]] = {"accelerate": _accelerate,
                                                    "torchrun": _torchrun}


def launch_command(launch: Any, module: str, spec: Path) -> list[str]:
    """`<launcher> -m module spec`: every launched process runs `module` on the same spec."""
    return [*LAUNCHERS[launch.launcher](launch), "-m", module, str(spec)]


def write_spec(ctx: StageContext, path: Path, **extra: Any) -> None:
    """Everything a launched process needs to rebuild `ctx`, plus `extra` (JSON data)."""
    refs = ctx.refs
    path.write_text(json.dumps({
        "experiment": ctx.exp.to_dict(),
        "out": str(ctx.out), "workspace": str(ctx.workspace),
        "inputs": {k: str(v) for k, v in ctx.inputs.items()},
        "refs": {"teacher": refs.teacher, "student": refs.student,
                 "train_jsonl": str(refs.train_jsonl),
                 "test_jsonl": str(refs.test_jsonl) if refs.test_jsonl else None,
                 "identity": refs.identity,
                 "validation_jsonl": str(refs.validation_jsonl) if refs.validation_jsonl else None},
        **extra,
    }))


def read_spec(spec_path: str | Path) -> tuple[StageContext, dict[str, Any]]:
    """The context `write_spec` saved, and the whole spec (for its extra fields)."""
    spec = json.loads(Path(spec_path).read_text())
    refs = spec["refs"]
    ctx = StageContext(
        exp=validate_dict(spec["experiment"], source=str(spec_path)),
        out=Path(spec["out"]),
        inputs={k: Path(v) for k, v in spec["inputs"].items()},
        refs=ModelRefs(refs["teacher"], refs["student"], Path(refs["train_jsonl"]),
                       Path(refs["test_jsonl"]) if refs["test_jsonl"] else None,
                       refs["identity"],
                       Path(refs["validation_jsonl"]) if refs["validation_jsonl"] else None),
        workspace=Path(spec["workspace"]),
    )
    return ctx, spec


def launch_ranks(ctx: StageContext, launch: Any, work: RankWork, plan: dict[str, Any],
                 spec_name: str) -> None:
    """Run `work` on every launched rank and return when all have exited. The spec goes to
    `spec_name` in the stage's directory and is removed afterwards (it is no part of the
    artifact). A failed rank makes the launcher fail, and this raises
    `subprocess.CalledProcessError`; what the ranks finished stays for the next run."""
    import torch

    spec = ctx.out / spec_name
    write_spec(ctx, spec, work=f"{work.__module__}:{work.__name__}", plan=plan,
               threads=torch.get_num_threads())
    run_launcher(launch_command(launch, WORKER_MODULE, spec), ctx.out)
    spec.unlink()


def run_launcher(command: list[str], out: Path) -> None:
    """Run a launcher over `out` (a stage's partial directory) and wait for every rank. When it
    fails, raise `errors.RankFailed` with what the failing ranks reported (`reporting_faults`),
    so the one-line fault names their real cause; a rank killed outright reports nothing."""
    for stale in out.glob(f"{FAULT_REPORT}*.json"):
        stale.unlink()
    try:
        subprocess.run(command, check=True)
    except subprocess.CalledProcessError as failed:
        reports = [_read_report(p) for p in sorted(out.glob(f"{FAULT_REPORT}*.json"))]
        raise RankFailed(failed, [r for r in reports if r is not None]) from failed
    finally:
        for report in out.glob(f"{FAULT_REPORT}*"):
            report.unlink(missing_ok=True)


@contextlib.contextmanager
def reporting_faults(out: Path) -> Iterator[None]:
    """In a launched process: on an exception, leave this rank's classified fault in `out` for
    the parent (`run_launcher`), then let the exception end the process as before."""
    try:
        yield
    except BaseException as err:
        rank, fault = current_rank(), classify(err)
        message = " ".join(str(err).split())[:300]
        report = {"rank": rank.index, "count": rank.count,
                  "error": f"{type(err).__name__}: {message}" if message else type(err).__name__,
                  "fault": fault.what if fault else None}
        tmp = out / f"{FAULT_REPORT}{rank.index}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(report))
        os.replace(tmp, out / f"{FAULT_REPORT}{rank.index}.json")
        raise


def _read_report(path: Path) -> RankReport | None:
    try:
        return RankReport(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None  # a rank that died while writing it: the launcher's status still says so


# ---------------------------------------------------------------- a launched process
def current_rank() -> Rank:
    """From the launcher's environment (torchrun and accelerate both set RANK, WORLD_SIZE)."""
    return Rank(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


def claim_gpus() -> None:
    """Narrow CUDA_VISIBLE_DEVICES to this local rank's equal slice of the node's GPUs, before
    CUDA starts, so `device_map="auto"` spreads a model over this rank's GPUs only."""
    import torch

    visible = torch.cuda.device_count()  # NVML: does not start CUDA, honours the variable
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if visible == 0 or local == 1:
        return
    if visible < local:
        raise RuntimeError(f"{local} processes per node but {visible} visible GPUs: "
                           "launch at most one process per GPU")
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = named.split(",") if named else [str(i) for i in range(visible)]
    per = visible // local
    first = int(os.environ.get("LOCAL_RANK", "0")) * per
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids[first : first + per])


def _worker(spec_path: str) -> None:
    import torch

    from leafbench.models import resolve_device

    claim_gpus()
    ctx, spec = read_spec(spec_path)
    if resolve_device(ctx.exp.models.device) == "cpu":
        # The parent's intra-op thread count: it decides how float32 sums split on a CPU
        # (leafbench.determinism), so every rank computes the numbers the parent would.
        torch.set_num_threads(spec["threads"])
    module, name = spec["work"].split(":")
    work: RankWork = getattr(importlib.import_module(module), name)
    with reporting_faults(ctx.out):
        work(ctx, current_rank(), spec["plan"])


if __name__ == "__main__":
    _worker(sys.argv[1])
