"""The disk the teacher cache will fill, against the space free where the workspace is.

The `teach` stage writes the teacher's distribution at every response position of every
original and counterfactual: full float32 logits (`exact`, 4·V bytes a position) or the top k
log-probabilities with their int32 ids (`topk`, 8·k bytes). For a 150k-token vocabulary that is
600 kB a position, so a paper-sized run fills a disk hours in.

The size comes from the cost model (`leafbench.plan`): the training file's token counts
(`plan.workload`: the student's tokenizer.json where the student is a local directory, else
characters / 4, truncated at `data.max_length`), the loss positions of each mining unit
(`plan.estimate.unit_loss_positions`) and the bytes per position (`plan.costs`). The plan's
guess of counterfactuals per unit is left out: the preflight counts the originals alone, so a
run it refuses would certainly not fit; one it passes may still fill the disk (the stage then
stops with a one-line disk-full report and resumes when re-run). V is the student config's
`vocab_size` (the teacher's logits are cut to the student's vocabulary).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from leafbench.config import Experiment
from leafbench.errors import ConfigError
from leafbench.plan.costs import teacher_cache_bytes
from leafbench.plan.estimate import unit_loss_positions
from leafbench.plan.workload import from_lengths, jsonl_pairs
from leafbench.preflight import refs

if TYPE_CHECKING:
    from leafbench.preflight import Context


def check_experiment(exp: Experiment, ctx: Context) -> list[ConfigError]:
    cfg = exp.distill.teacher_cache
    if not ctx.runs("teach") or cfg.mode == "off" or exp.data.train == "synthetic":
        return []  # the testbed's corpus is small by construction
    vocab = refs.vocab_size(exp.models.student)
    if vocab is None:
        return []
    mode = cfg.mode if cfg.mode != "auto" else ("exact" if vocab <= cfg.exact_max_vocab else "topk")
    try:
        positions = originals_positions(exp)
    except (OSError, ValueError):
        return []  # an unreadable file is the data check's to report
    need = int(teacher_cache_bytes(mode, positions, vocab, cfg.k))
    where = existing_ancestor(Path(exp.workspace).expanduser().resolve())
    free = shutil.disk_usage(where).free
    if need <= free:
        return []
    return [ConfigError(
        ctx.source, "distill.teacher_cache.mode", cfg.mode,
        f"the teacher cache ({mode}) needs at least {_size(need)} ({positions:,.0f} response "
        f"positions of the originals alone, {need / max(positions, 1):,.0f} bytes each) and "
        f"{where} has {_size(free)} free; free space, move `workspace`, or use mode 'topk' "
        "with a smaller k or 'off' (the teacher then runs every step)")]


def originals_positions(exp: Experiment) -> float:
    """The cost model's loss positions of the training file's originals (no counterfactuals)."""
    tokenizer = Path(exp.models.student).expanduser() / "tokenizer.json"
    pairs, how = jsonl_pairs(Path(exp.data.train), tokenizer if tokenizer.is_file() else None,
                             exp.data.max_samples)
    work = from_lengths(pairs, exp.data.max_length, how)
    return work.items * sum(distill for _, distill in unit_loss_positions(exp, work.response))


def existing_ancestor(path: Path) -> Path:
    """The workspace, or the nearest directory above it that exists (a new run creates it)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
