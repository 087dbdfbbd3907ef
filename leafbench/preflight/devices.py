"""The devices an experiment asks for exist: a `cuda` device, and a GPU per launched process.

torch is imported only when the experiment names CUDA or launches several accelerate
processes: a CPU experiment's preflight stays light.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from leafbench.config import Experiment
from leafbench.errors import ConfigError
from leafbench.preflight.packages import LAUNCHED_STAGE, LAUNCHES

if TYPE_CHECKING:
    from leafbench.preflight import Context


def check_experiment(exp: Experiment, ctx: Context) -> list[ConfigError]:
    device = exp.models.device
    multi = {name: get(exp) for name, get in LAUNCHES.items()
             if get(exp).launcher == "accelerate" and get(exp).num_processes > 1
             and ctx.runs(LAUNCHED_STAGE[name])}
    if not device.startswith("cuda") and not multi:
        return []
    gpus = visible_gpus()
    found = []
    if device.startswith("cuda"):
        index = device.partition(":")[2]
        if gpus == 0:
            found.append(ConfigError(ctx.source, "models.device", device,
                                     f"no CUDA device is visible{_visible()}; use 'cpu' or "
                                     "'auto', or run where a GPU is"))
        elif index.isdigit() and int(index) >= gpus:
            found.append(ConfigError(ctx.source, "models.device", device,
                                     f"only {gpus} CUDA device(s) are visible{_visible()}; "
                                     f"expected cuda:0 to cuda:{gpus - 1}"))
    if device in ("cpu", "mps"):
        return found
    for name, launch in multi.items():
        if launch.num_processes > gpus:
            found.append(ConfigError(
                ctx.source, f"{name}.num_processes", launch.num_processes,
                f"accelerate launches one process per GPU and {gpus} are visible{_visible()}; "
                + (f"set it to at most {gpus}" if gpus else
                   "run where GPUs are, or set it to 1 (or launcher 'torchrun' for CPU "
                   "processes)")))
    return found


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _visible() -> str:
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f" (CUDA_VISIBLE_DEVICES={cvd!r})" if cvd is not None else ""
