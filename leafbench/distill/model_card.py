"""The distilled student's model card: how it was made, in the student's own directory.

A checkpoint that travels without its recipe cannot be reproduced or compared, so the card
names the teacher, the data, the mining threshold τ, the loss (mode, λ, divergence,
temperature) and the training settings, as YAML metadata a hub page reads plus prose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from leafbench.contract import StageContext


def card_metadata(ctx: StageContext) -> dict[str, Any]:
    exp = ctx.exp
    loss = exp.distill.loss
    return {
        "library_name": "transformers",
        "base_model": exp.models.student,
        "tags": ["leafbench", "leaf", "causal-attention-distillation", "distillation"],
        "leafbench": {
            "experiment": exp.name,
            "teacher": exp.models.teacher,
            "student": exp.models.student,
            "train_data": exp.data.train,
            "max_length": exp.data.max_length,
            "mining_level": exp.mining.level,
            "threshold_mode": exp.mining.threshold.mode,
            "tau": exp.mining.threshold.tau,
            "response_tau": exp.mining.threshold.tau_for("response"),
            "pruning": exp.pruning.strategy,
            "loss_mode": loss.mode,
            "lambda": loss.lam if loss.mode == "hybrid" else None,
            "divergence": loss.divergence,
            "temperature": loss.temperature,
            "teacher_cache": exp.distill.teacher_cache.mode,
            "teacher_cache_k": exp.distill.teacher_cache.k,
            "epochs": exp.distill.epochs,
            "lr": exp.distill.lr,
            "seed": exp.seed,
        },
    }


def write_model_card(student_dir: Path, ctx: StageContext) -> Path:
    meta = card_metadata(ctx)
    info = meta["leafbench"]
    resp_tau = (f" (response level {info['response_tau']})"
                if info["response_tau"] != info["tau"] else "")
    lam = f"λ = {info['lambda']}" if info["lambda"] is not None else "λ implicit (mixed set)"
    body = (
        f"# {info['experiment']}: LeaF-distilled student\n\n"
        f"Student `{info['student']}` distilled from teacher `{info['teacher']}` with causal "
        "attention distillation (LeaF, arXiv 2506.07851), made by leafbench.\n\n"
        f"- Training pairs: `{info['train_data']}` (truncated to {info['max_length']} tokens)\n"
        f"- Confounder mining: {info['mining_level']} level, {info['threshold_mode']} threshold "
        f"τ = {info['tau']}{resp_tau}, {info['pruning']} pruning\n"
        f"- Loss: {info['loss_mode']}, {lam}, {info['divergence']}, temperature "
        f"{info['temperature']}; teacher targets from the `{info['teacher_cache']}` cache "
        f"(top-k k = {info['teacher_cache_k']} when top-k)\n"
        f"- Training: {info['epochs']} epochs, peak lr {info['lr']}, seed {info['seed']}\n"
    )
    path = student_dir / "README.md"
    path.write_text(f"---\n{yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)}---\n\n{body}",
                    encoding="utf-8")
    return path
