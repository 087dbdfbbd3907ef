"""How much data each stage reads: training items and tokens, evaluation items and budgets.

The plan needs, for the training corpus, the number of items and the mean prompt and response
lengths in tokens (prompt = the chat-template rendering of the instruction; response + EOS),
capped at `data.max_length` as the pipeline truncates. Where they come from, in order:

1. the command line (`--items`, `--prompt-tokens`, `--response-tokens`): always wins;
2. the training file itself when it exists: items counted; tokens counted with the student's
   tokenizer.json when the student is a local directory (the `tokenizers` library: no model,
   no torch), else estimated as characters / 4;
3. the testbed (`data.train: synthetic`): its train split generated from the experiment's
   settings (pure Python, seconds) and its tokens estimated one per word or punctuation mark —
   the testbed's byte-level BPE of `vocab_size` 600 learns the corpus's few hundred words
   whole — plus its chat template's 6 special and newline tokens and the EOS;
4. the paper's corpora when `data.train` names `data/paper/{math,code}_train.jsonl` and the file
   is not built (`PAPER_DATA`: stated sizes, see there).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from leafbench.errors import ConfigError

CHARS_PER_TOKEN = 4.0  # English prose with BPE vocabularies of 100k+ tokens: about 4
TESTBED_TEMPLATE_TOKENS = 6  # bos, <|user|>, "\n", "\n", <|assistant|>, "\n"
_WORD = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class Workload:
    """The training corpus as the plan sees it. `length` is the mean tokens per sequence after
    truncation, `length_sq` the mean of its square (attention grows with L²), `response` the
    mean response tokens that survive truncation (the loss positions)."""

    items: int
    prompt: float
    response: float
    length: float
    length_sq: float
    source: str


def from_means(items: int, prompt: float, response: float, max_length: int,
               source: str) -> Workload:
    """A corpus given by its means: every item taken as prompt + response tokens, capped."""
    length = min(prompt + response, max_length)
    return Workload(items, prompt, max(length - prompt, 0.0), length, length**2, source)


def from_lengths(pairs: list[tuple[int, int]], max_length: int, source: str) -> Workload:
    """A corpus given item by item as (prompt tokens, response tokens)."""
    if not pairs:
        raise ConfigError(source, "data.train", source, "the training data holds no items")
    lengths = [min(p + r, max_length) for p, r in pairs]
    responses = [max(min(p + r, max_length) - p, 0) for p, r in pairs]
    n = len(pairs)
    return Workload(n, sum(p for p, _ in pairs) / n, sum(responses) / n, sum(lengths) / n,
                    sum(x * x for x in lengths) / n, source)


# The paper's corpora (leafbench.training_data's recipes), for planning before they are built.
# Items: math takes min(30000, available) from each NuminaMath-CoT source — olympiads (150,581
# rows, so 30,000), amc_aime (4,070), gsm8k (7,345), math (7,478), the dataset card's counts —
# and code every AceCode-87K question (87,149; those without a passing completion are skipped,
# so this is an upper bound). Tokens are assumptions, not measurements (the files are not here):
# math prompts ≈ 150 (Llama-3's chat template with its system header ≈ 30, a problem ≈ 100, the
# "Please reason step by step…" suffix ≈ 18), responses ≈ 500 (NuminaMath's GPT-4o CoT
# solutions: the 30k Olympiads ones run long, the GSM8K ones short); code prompts ≈ 250
# (AceCode's questions carry a signature and examples), responses ≈ 300 (the evalplus prefix
# and one function in a fence). Measure a built file instead: the plan counts it when it exists.
PAPER_DATA: dict[str, tuple[int, float, float, str]] = {
    "math": (30000 + 4070 + 7345 + 7478, 150.0, 500.0,
             "the paper's math corpus (NuminaMath-CoT: 30,000 olympiads + 4,070 amc_aime + "
             "7,345 gsm8k + 7,478 math); assumed 150 prompt / 500 response tokens per item"),
    "code": (87149, 250.0, 300.0,
             "the paper's code corpus (AceCode-87K, 87,149 questions, an upper bound); "
             "assumed 250 prompt / 300 response tokens per item"),
}


def paper_corpus(train: str) -> str | None:
    """'math' / 'code' when `data.train` names one of the paper's corpora."""
    name = Path(train).name
    return next((k for k in PAPER_DATA if name == f"{k}_train.jsonl"), None)


def testbed_pairs(synthetic: object) -> list[tuple[int, int]]:
    """(prompt, response) token estimates of the testbed's train split, generated, not read."""
    from leafbench.synthetic.corpus import generate_split

    records = generate_split(synthetic, "train")  # type: ignore[arg-type]
    return [(TESTBED_TEMPLATE_TOKENS + len(_WORD.findall(r["instruction"])),
             len(_WORD.findall(r["response"])) + 1) for r in records]


def jsonl_pairs(path: Path, tokenizer_file: Path | None,
                max_samples: int | None) -> tuple[list[tuple[int, int]], str]:
    """(prompt, response) token counts of a JSONL training file's first `max_samples` items."""
    encode = _counter(tokenizer_file)
    pairs: list[tuple[int, int]] = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if max_samples is not None and len(pairs) >= max_samples:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pairs.append((encode(row["instruction"]), encode(row["response"]) + 1))
            except (ValueError, KeyError, TypeError):
                raise ConfigError(str(path), f"line {n}", line[:80],
                                  "expected a JSON object with instruction and response "
                                  "strings") from None
    how = f"tokens counted with {tokenizer_file}" if tokenizer_file else \
        f"tokens estimated as characters / {CHARS_PER_TOKEN:g}"
    return pairs, f"{path}: {len(pairs)} items, {how} (chat template not counted)"


def _counter(tokenizer_file: Path | None):  # noqa: ANN202 - a small local callable
    if tokenizer_file is None:
        return lambda text: round(len(text) / CHARS_PER_TOKEN)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


# ---------------------------------------------------------------- evaluation tasks
@dataclass(frozen=True)
class EvalTask:
    """What one evaluation task generates: items, the default generation budget (the task's own
    max_gen_toks, leafbench.evaluation), and an assumed mean prompt length in tokens."""

    items: int
    max_gen_toks: int
    prompt: float


# Items as the registry documents them (GSM8K test 1319, MATH-500 500, OlympiadBench 674,
# HumanEval+ 164, LeetCode 180, LiveCodeBench release_v4 713); budgets from the task YAMLs and
# code tasks; prompt lengths are assumptions (zero-shot prompts in a chat template).
EVAL_TASKS: dict[str, EvalTask] = {
    "leaf_gsm8k": EvalTask(1319, 512, 150),
    "leaf_math500": EvalTask(500, 2048, 150),
    "leaf_olympiadbench": EvalTask(674, 2048, 200),
    "leaf_humaneval_plus": EvalTask(164, 768, 200),
    "leaf_leetcode": EvalTask(180, 1024, 400),
    "leaf_livecodebench": EvalTask(713, 2000, 500),
}
SYNTHETIC_MAX_GEN_TOKS = 512  # leaf_synthetic includes _leaf_numeric.yaml
SYNTHETIC_PROMPT = 30.0  # a problem of ~20 words + the template
