"""Best-validation-epoch selection (`distill.select: best_validation_loss`).

The official LeaF scripts keep the checkpoint whose validation cross-entropy is lowest, not the
last one. Here the validation set is a held-out slice of the distillation data itself: a seeded
`select_fraction` of the training *samples*, each with all its counterfactuals (a sample's
pruned copies would otherwise leak its response into training). After every epoch the recipe
measures the distillation loss on that slice — the same loss it trains on, the slice taken as
one global batch, no update — and

  * appends {epoch, loss, weights} to selection.jsonl (`weights`: a digest of the student's
    parameters, so anyone can check which epoch's weights were kept);
  * when the loss is the lowest so far (ties keep the earlier epoch), writes that epoch's
    state to best_epoch/epoch-<e>.pt atomically and removes the previous best.

At the end the chosen epoch's state becomes the stage's student. Resume: a run restarted from
a checkpoint inside epoch e trains e again, so the log is cut back to the epochs the checkpoint
had finished and any best file of a later epoch is dropped; the replay, bit-identical to the
first attempt, writes them again.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from leafbench.contract import artifact
from leafbench.distill.batching import Unit
from leafbench.samples import read_jsonl

LOG = artifact("distill", "selection")
BEST = artifact("distill", "best_epoch")


def split_heldout(units: Sequence[Unit], items: Sequence[dict[str, Any]], fraction: float,
                  seed: int) -> tuple[list[Unit], list[Unit]]:
    """(training units, held-out units): whole samples are held out, at least one, never all."""
    sample_of = {it["id"]: it["sample_id"] for it in items}
    samples = sorted({it["sample_id"] for it in items})
    if len(samples) < 2:
        raise ValueError(f"distill.select needs at least 2 training samples to hold one out; "
                         f"the counterfactual set has {len(samples)}")
    n = min(max(1, round(len(samples) * fraction)), len(samples) - 1)
    held = set(random.Random(f"select:{seed}").sample(samples, n))
    train = [u for u in units if sample_of[u.item_ids[0]] not in held]
    heldout = [u for u in units if sample_of[u.item_ids[0]] in held]
    return train, heldout


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """A short hash of a student's parameters (names and float32 values, in name order)."""
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class EpochSelection:
    """The per-epoch held-out loss and the best epoch's weights of one distillation run."""

    def __init__(self, out: Path, heldout: list[Unit], accelerator: Any):
        self.out, self.heldout, self.accelerator = out, heldout, accelerator

    @classmethod
    def for_run(cls, out: Path, cfg: Any, heldout: list[Unit], accelerator: Any
                ) -> EpochSelection | None:
        return cls(out, heldout, accelerator) if cfg.select == "best_validation_loss" else None

    def rows(self) -> list[dict[str, Any]]:
        path = self.out / LOG
        return read_jsonl(path, torn_tail_ok=True) if path.exists() else []

    def cut_back(self, epochs_done: int) -> None:
        """Forget epochs after the checkpoint the run resumed from (they are trained again)."""
        if self.accelerator.is_main_process:
            kept = [r for r in self.rows() if r["epoch"] <= epochs_done]
            (self.out / LOG).write_text("".join(json.dumps(r) + "\n" for r in kept))
            for file in (self.out / BEST).glob("epoch-*.pt"):
                if int(file.stem.split("-")[1]) > epochs_done:
                    file.unlink()
        self.accelerator.wait_for_everyone()

    def after_epoch(self, epoch: int, recipe: Any, model: Any) -> None:
        """Measure epoch `epoch` (1-based) and keep its weights if it is the best so far."""
        start = time.perf_counter()
        loss = recipe.measure(self.heldout)
        state = _student_state(self.accelerator, model)  # every process: sharded wrappers gather
        if self.accelerator.is_main_process:
            previous = [r["loss"] for r in self.rows()]
            row = {"epoch": epoch, "loss": loss, "weights": weights_digest(state),
                   "units": len(self.heldout), "seconds": time.perf_counter() - start}
            if not previous or loss < min(previous):
                self._keep(epoch, state)
            with open(self.out / LOG, "a") as log:
                log.write(json.dumps(row) + "\n")
        self.accelerator.wait_for_everyone()

    def _keep(self, epoch: int, state: dict[str, torch.Tensor]) -> None:
        root = self.out / BEST
        root.mkdir(exist_ok=True)
        tmp = root / f".epoch-{epoch}.pt.tmp"
        torch.save({k: v.detach().cpu() for k, v in state.items()}, tmp)
        tmp.rename(root / f"epoch-{epoch}.pt")
        # Earlier bests are kept (one file per improving epoch, the folder goes when the stage
        # ends): after a resume the replayed epochs may not beat an earlier best again — not on
        # GPUs, whose kernels are not bit-reproducible — and its weights must still be there.

    def chosen(self) -> tuple[int, dict[str, torch.Tensor] | None]:
        """The epoch with the lowest held-out loss (the earliest on ties) and, on the main
        process, its weights."""
        rows = self.rows()
        best = min(rows, key=lambda r: (r["loss"], r["epoch"]))["epoch"]
        if not self.accelerator.is_main_process:
            return best, None
        file = self.out / BEST / f"epoch-{best}.pt"
        if not file.is_file():
            raise RuntimeError(f"{file}: the weights of the chosen epoch {best} are missing "
                               "(the run's epochs were not reproducible after a resume)")
        return best, torch.load(file, weights_only=True)

    def metrics(self, chosen: int) -> dict[str, float]:
        out: dict[str, float] = {"selected_epoch": float(chosen),
                                 "heldout_units": float(len(self.heldout))}
        out.update({f"heldout_loss_epoch{r['epoch']}": r["loss"] for r in self.rows()})
        return out


def _student_state(accelerator: Any, model: Any) -> dict[str, torch.Tensor]:
    """The student's full state dict (gathered from every process), named as the student."""
    return {k.removeprefix("student."): v
            for k, v in accelerator.get_state_dict(model).items()}
