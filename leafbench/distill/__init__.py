"""distill: the causal attention distillation stage (LeaF stage 2).

Other packages use it through these names: `DistillationStopped` is what a run stopped by its
watcher (a sweep's pruner, through the files of `distill.control`) raises out of the stage.
"""

from leafbench.distill.control import CONTROL_ENV, TIMEOUT_ENV, DistillationStopped

__all__ = ["CONTROL_ENV", "TIMEOUT_ENV", "DistillationStopped"]
