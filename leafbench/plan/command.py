"""`leafbench plan EXP.yaml`: print what an experiment will cost, computing nothing.

Reads the definition (with `-s` overrides), the models' shapes and the data's size, and prints
one row per stage and model: sequences, tokens, forward and backward FLOPs, peak memory per GPU,
GPUs needed at once, teacher-cache size on disk and GPU-hours on `--gpu` at `--utilisation`.
`--json` prints the same as one JSON object. Nothing is loaded, trained or written.

A definition whose training file is not built yet (the paper's rows) still plans: the paper's
corpora have stated sizes (leafbench.plan.workload.PAPER_DATA), any other file needs
`--items`, `--prompt-tokens` and `--response-tokens`.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from leafbench.config import Experiment, load_experiment
from leafbench.errors import ConfigError
from leafbench.plan.accelerators import ACCELERATORS, get_accelerator
from leafbench.plan.architectures import resolve_architecture
from leafbench.plan.estimate import ModelWork, Plan, Settings, build_plan
from leafbench.plan.workload import (
    PAPER_DATA,
    Workload,
    from_lengths,
    from_means,
    jsonl_pairs,
    paper_corpus,
    testbed_pairs,
)

DEFAULT_GPU = "H100-SXM"
DEFAULT_UTILISATION = 0.4


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="the cost of an experiment's stages: FLOPs, memory, "
                       "cache size, GPU-hours (computes nothing)")
    p.add_argument("experiment", type=Path)
    p.add_argument("-s", "--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a field of the definition")
    p.add_argument("--gpu", default=DEFAULT_GPU, help=f"one of {sorted(ACCELERATORS)}")
    p.add_argument("--gpu-memory", type=float, default=None, metavar="GB",
                   help="memory per GPU (default: the accelerator's)")
    p.add_argument("--utilisation", type=float, default=DEFAULT_UTILISATION,
                   help="achieved fraction of peak FLOP/s and bandwidth (default 0.4)")
    p.add_argument("--items", type=int, default=None, help="training items")
    p.add_argument("--prompt-tokens", type=float, default=None,
                   help="mean prompt tokens per item (chat template included)")
    p.add_argument("--response-tokens", type=float, default=None,
                   help="mean response tokens per item (EOS included)")
    p.add_argument("--counterfactuals", type=float, default=1.0,
                   help="counterfactuals per mined unit (unknown before mining; default 1)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    exp, missing = _load(args.experiment, args.overrides)
    source = str(args.experiment)
    teacher = resolve_architecture(exp.models.teacher, exp.synthetic, "models.teacher", source)
    student = resolve_architecture(exp.models.student, exp.synthetic, "models.student", source)
    workload = resolve_workload(exp, missing, args.items, args.prompt_tokens,
                                args.response_tokens, source)
    plan = build_plan(exp, teacher, student, workload, settings)
    print(json.dumps(plan.to_dict(), indent=2) if args.json else render(plan))
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    acc = get_accelerator(args.gpu)
    checks = {"--utilisation": (args.utilisation, 0 < args.utilisation <= 1, "a number in (0, 1]"),
              "--gpu-memory": (args.gpu_memory, args.gpu_memory is None or args.gpu_memory > 0,
                               "a positive number of GB"),
              "--counterfactuals": (args.counterfactuals, args.counterfactuals >= 0,
                                    "a number >= 0"),
              "--items": (args.items, args.items is None or args.items > 0, "a positive integer"),
              "--prompt-tokens": (args.prompt_tokens, args.prompt_tokens is None
                                  or args.prompt_tokens >= 0, "a number >= 0"),
              "--response-tokens": (args.response_tokens, args.response_tokens is None
                                    or args.response_tokens > 0, "a positive number")}
    for flag, (value, ok, accepted) in checks.items():
        if not ok or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError("plan", flag, value, f"expected {accepted}")
    return Settings(acc, args.gpu_memory or acc.memory_gb, args.utilisation,
                    args.counterfactuals)


def _load(path: Path, overrides: list[str]) -> tuple[Experiment, str | None]:
    """The experiment, and the training file it names when that file is not built yet (then
    it is validated with the testbed's data in its place, and sized without reading it)."""
    try:
        return load_experiment(path, overrides), None
    except ConfigError as err:
        if err.field != "data.train" or str(err.value) == "synthetic":
            raise
        return load_experiment(path, [*overrides, "data.train=synthetic"]), str(err.value)


def resolve_workload(exp: Experiment, missing: str | None, items: int | None,
                     prompt: float | None, response: float | None, source: str) -> Workload:
    """The training corpus's size: counted where it exists, stated where it does not, and
    overridden field by field from the command line (leafbench.plan.workload)."""
    cap = exp.data.max_length
    if missing is not None and (kind := paper_corpus(missing)) is not None:
        n, p, r, how = PAPER_DATA[kind]
        base = from_means(n, p, r, cap, how)
    elif missing is not None:
        if None in (items, prompt, response):
            raise ConfigError(source, "data.train", missing,
                              "the file does not exist: build it, or give --items, "
                              "--prompt-tokens and --response-tokens to plan without it")
        base = from_means(items, prompt, response, cap, "the command line")  # type: ignore[arg-type]
    elif exp.data.train == "synthetic":
        pairs = testbed_pairs(exp.synthetic)[: exp.data.max_samples]
        base = from_lengths(pairs, cap, "the testbed's train split, generated from the "
                            "experiment's synthetic settings; tokens estimated one per word or "
                            "punctuation mark + 6 template tokens + EOS")
    else:
        student = Path(exp.models.student).expanduser()
        tok = student / "tokenizer.json"
        pairs, how = jsonl_pairs(Path(exp.data.train), tok if tok.is_file() else None,
                                 exp.data.max_samples)
        base = from_lengths(pairs, cap, how)
    if exp.data.max_samples is not None and base.items > exp.data.max_samples:
        base = from_means(exp.data.max_samples, base.prompt, base.response, cap, base.source)
    if (items, prompt, response) == (None, None, None):
        return base
    return from_means(items or base.items,
                      base.prompt if prompt is None else prompt,
                      base.response if response is None else response, cap,
                      f"{base.source}; overridden on the command line")


# ---------------------------------------------------------------- rendering
def _si(x: float) -> str:
    """3 significant digits with an SI suffix: 1.23k, 4.56G, 7.89E."""
    if x == 0:
        return "0"
    for power, suffix in ((18, "E"), (15, "P"), (12, "T"), (9, "G"), (6, "M"), (3, "k")):
        if abs(x) >= 10**power:
            return f"{x / 10**power:.3g}{suffix}"
    return f"{x:.3g}"


def render(plan: Plan) -> str:
    s = plan.settings
    lines = [
        f"plan: {plan.experiment}",
        f"teacher {plan.teacher.name}: {_si(plan.teacher.parameters)} parameters; "
        f"student {plan.student.name}: {_si(plan.student.parameters)} parameters",
        f"data: {plan.workload.items:,} items, mean {plan.workload.prompt:.0f} prompt + "
        f"{plan.workload.response:.0f} response tokens, {plan.workload.length:.0f} per sequence "
        f"({plan.workload.source})",
        f"accelerator: {s.accelerator.name} ({_si(s.accelerator.bf16_flops)}FLOP/s dense bf16, "
        f"{s.gpu_memory_gb:g} GB) at utilisation {s.utilisation:g}; "
        f"{s.counterfactuals:g} counterfactual(s) per mined unit",
        "",
        "| stage | model | sequences | tokens | forward FLOPs | backward FLOPs "
        "| peak GB/GPU | GPUs | cache GB | hours | GPU-hours |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for stage in plan.stages:
        rows: list[ModelWork | None] = list(stage.work) or [None]
        for i, w in enumerate(rows):
            head = i == 0
            lines.append("| " + " | ".join([
                stage.stage if head else "",
                w.model if w else "-",
                _si(w.sequences) if w else "-",
                _si(w.tokens) if w else "-",
                _si(w.forward_flops) if w else "-",
                _si(w.backward_flops) if w else "-",
                f"{stage.peak_memory_gb:.1f}" if head and stage.gpus else "",
                str(stage.gpus) if head and stage.gpus else "",
                f"{stage.disk_gb:.1f}" if head and stage.disk_gb else "",
                f"{stage.hours:.3g}" if head else "",
                f"{stage.gpu_hours:.3g}" if head else "",
            ]) + " |")
    lines.append(f"| total | | | | | | | | | {plan.hours:.3g} | {plan.gpu_hours:.3g} |")
    lines.append("")
    lines += [f"- {stage.stage}: {note}" for stage in plan.stages for note in stage.notes]
    return "\n".join(lines)
