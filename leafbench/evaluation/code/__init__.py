"""Code-generation evaluation: HumanEval+ (``leaf_humaneval_plus``), DeepSeek-Coder's LeetCode
contest set (``leaf_leetcode``) and LiveCodeBench (``leaf_livecodebench``).

Each benchmark module mirrors its reference harness — evalplus, DeepSeek-Coder's
Evaluation/LeetCode, LiveCodeBench's lcb_runner — for prompts, code extraction and the
pass/fail rules (each module's docstring says exactly how), while every program runs through
`leafbench.evaluation.sandbox.run_python`, one sandbox run per sample, via the stdlib-only
`sandbox_harness.py` that re-implements the reference checking loops. Each benchmark module's
`task()` builds its `task.CodeTask` (loader, prompt, extraction, checker), and the one task
table, `leafbench.evaluation.registry.TASKS`, names that builder. `scoring` turns responses into
pass@k and sample rows (the code engine of `harness.evaluate`); `generation` prompts an lm-eval
model; `passk` is the unbiased estimator; `plain_data` unpickles LiveCodeBench's private tests
without running anything. `reference_times` says how HumanEval+ reference times are measured
(CPU time, fastest of repeats, conditions recorded) so that its limits do not depend on load.
Checking the checker: `mutants` builds mutants of the canonical solutions, `mutant_oracle`
derives the verdict each must get from construction and outputs, and `evalplus_reference`
runs `evalplus.evaluate` itself on them (inside the sandbox, via `evalplus_runner.py`).

Why these are not lm-eval YAML tasks (as leaf_gsm8k and the math tasks are): lm-eval loads a
task's data through `datasets`' Arrow builders, which cannot type HumanEval+'s test inputs
(lists of arbitrary, per-problem Python values); a verdict needs a per-benchmark preparation
(HumanEval+'s expected outputs come from running the canonical solutions) and one sandbox
process per sample, which lm-eval's sequential, main-thread ``process_results`` would run one
at a time; and pass@k over n samples per problem plus per-suite statuses (base/plus) do not fit
its per-document float metrics. Their results and sample rows still follow the one schema of
`leafbench.evaluation.results`.
"""

from leafbench.evaluation.code.passk import mean_pass_at_k, pass_at_k
from leafbench.evaluation.code.scoring import evaluate_code_tasks, score_responses
from leafbench.evaluation.code.task import CodeTask, code_task

__all__ = [
    "CodeTask",
    "code_task",
    "evaluate_code_tasks",
    "mean_pass_at_k",
    "pass_at_k",
    "score_responses",
]
