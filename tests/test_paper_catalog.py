"""The paper's experiments as definitions (experiments/paper/, experiments/ablations/) and its
published numbers as a reference board (leaderboards/paper/).

Every definition must validate once it is given training data (the paper's data files are
built by the user, never shipped), the paper and official variants of a row must differ in the
named fields only, and the board must hold exactly the published table. Nothing here loads a
model or touches the network.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from leafbench.config import ConfigError, Experiment, load_experiment
from leafbench.leaderboard import board
from leafbench.leaderboard.entry import reference
from leafbench.sweep.definition import load_sweep

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "experiments" / "paper"
ABLATIONS = REPO / "experiments" / "ablations"
BOARD = REPO / "leaderboards" / "paper"
PAIRS = ("llama3.2-1b", "llama3.2-3b", "qwen2.5-math-1.5b")
MATH = ["leaf_gsm8k", "leaf_math500", "leaf_olympiadbench"]
CODE = ["leaf_humaneval_plus", "leaf_leetcode", "leaf_livecodebench"]
N = {"leaf_gsm8k": 1319, "leaf_math500": 500, "leaf_olympiadbench": 674,
     "leaf_humaneval_plus": 164, "leaf_leetcode": 180, "leaf_livecodebench": 713}
# τ as the official scripts' file and run names give them: (instruction, response) per pair
TAU = {"llama3.2-1b": (0.10, 0.075), "llama3.2-3b": (0.10, 0.05), "qwen2.5-math-1.5b": (0.05, 0.05)}


@pytest.fixture()
def data(tmp_path, monkeypatch):
    """A one-pair training file and a one-item validation file, distinct from each other; the
    repository as working directory (paths in definitions are relative to it)."""
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("LEAFBENCH_DATA_DIR", raising=False)
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"instruction": "Tom has 3 apples and buys 4 more. How many?",
                                 "response": "3 + 4 = 7. The answer is 7."}) + "\n")
    validation = tmp_path / "validation.jsonl"
    validation.write_text(json.dumps({"problem": "Find the sum of the first ten odd numbers.",
                                      "answer": "100"}) + "\n")
    return train, validation


def _load(path: Path, train: Path) -> Experiment:
    """The definition as shipped; when (and only when) its training file is missing, with
    `data.train` pointing at a tiny one."""
    try:
        return load_experiment(path)
    except ConfigError as err:
        assert err.field == "data.train", str(err)
        return load_experiment(path, [f"data.train={train}"])


def _is_sweep(path: Path) -> bool:
    return "experiment" in (yaml.safe_load(path.read_text()) or {})


def _catalog() -> list[Path]:
    return sorted([*PAPER.rglob("*.yaml"), *ABLATIONS.rglob("*.yaml")])


@pytest.fixture()
def rows(data) -> dict[str, Experiment]:
    """Every row file of experiments/paper/ ("pair/stem") -> its experiment, with tiny data."""
    train, _ = data
    skip = {"common", "base", "math", "code"}
    return {f"{p.parent.name}/{p.stem}": _load(p, train)
            for p in sorted(PAPER.rglob("*.yaml")) if p.stem not in skip}


# ------------------------------------------------------------------ every definition validates
def test_every_paper_and_ablation_definition_validates(data):
    train, validation = data
    paths = _catalog()
    assert len(paths) > 40
    for path in paths:
        if _is_sweep(path):
            sweep = load_sweep(path, [f"data.train={train}",
                                      f"data.validation={{leaf_math500: {validation}}}"])
            assert sweep.experiment.evaluate.split == "validation"
            assert len(sweep.grid()) == 8, path  # 2 levels x 4 thresholds
        else:
            assert isinstance(_load(path, train), Experiment)


def test_only_the_training_data_is_missing(data):
    """Shipped as they are, the rows fail on data.train alone (the paper's data is built by
    the user) and name it, so `-s data.train=FILE` is all validation needs."""
    with pytest.raises(ConfigError) as err:
        load_experiment(PAPER / "llama3.2-1b" / "math_instr_paper.yaml")
    assert err.value.field == "data.train"
    assert err.value.value == "data/paper/math_train.jsonl"


def test_row_names_are_unique(rows):
    names = [exp.name for exp in rows.values()]
    assert len(names) == len(set(names))


# ------------------------------------------------------------------ the main table's rows
@pytest.mark.parametrize("pair", PAIRS)
def test_each_pair_has_every_row_of_the_main_table(rows, pair):
    for domain in ("math", "code"):
        for row in ("kd", "instr", "instr_resp"):
            assert f"{pair}/{domain}_{row}_paper" in rows
        for row in ("instr", "instr_resp"):
            assert f"{pair}/{domain}_{row}_official" in rows
    before = rows[f"{pair}/pre_kd"]
    assert before.evaluate.models == ["student_before"]
    assert before.evaluate.tasks == MATH + CODE


@pytest.mark.parametrize("pair", PAIRS)
def test_thresholds_follow_the_official_file_names(rows, pair):
    instr, resp = TAU[pair]
    for variant in ("paper", "official"):
        assert rows[f"{pair}/math_instr_{variant}"].mining.threshold.tau == instr
        # Instr & Resp: each level its own τ, as the official scripts threshold them
        resp_row = rows[f"{pair}/math_instr_resp_{variant}"].mining.threshold
        assert (resp_row.tau_for("instruction"), resp_row.tau_for("response")) == (instr, resp)
        assert rows[f"{pair}/code_instr_{variant}"].mining.threshold.tau == 0.10
        assert rows[f"{pair}/code_instr_resp_{variant}"].mining.threshold.tau == 0.10
        assert rows[f"{pair}/math_instr_{variant}"].mining.level == "instruction"
        assert rows[f"{pair}/math_instr_resp_{variant}"].mining.level == "both"


def test_paper_variants_are_the_paper_and_official_variants_the_scripts(rows):
    for key, exp in rows.items():
        if key.endswith("_paper"):
            assert exp.distill.epochs == 3 and exp.data.max_length == 4096, key
            assert exp.mining.threshold.mode == "absolute", key
            assert exp.distill.loss.mode == "hybrid", key
        if key.endswith("_official") and "_kd_" not in key:
            assert exp.mining.threshold.mode == "quantile", key
            assert exp.distill.loss.mode == "mixed" and exp.distill.loss.lam is None, key
        if key.endswith("_official"):  # the scripts keep the best validation-loss epoch
            assert exp.distill.select == "best_validation_loss", key
        if key.endswith("_paper"):
            assert exp.distill.select == "last", key
        if "_kd_" in key:  # plain KD: the counterfactual side weighs nothing
            assert exp.distill.loss.lam == 1.0 and exp.pruning.strategy == "collective", key
        assert exp.distill.lr == 1e-5 and exp.seed == 1234, key
        per_step = exp.distill.batch_size * exp.distill.gradient_accumulation
        assert per_step * exp.distill.launch.num_processes == 32, key
    # the scripts' epochs and cutoff (instruction level): 5 for LLaMA, 3000 for LLaMA-3B
    assert rows["llama3.2-1b/math_instr_official"].distill.epochs == 5
    assert rows["llama3.2-3b/math_instr_official"].distill.epochs == 5
    assert rows["llama3.2-3b/math_instr_official"].data.max_length == 3000
    assert rows["qwen2.5-math-1.5b/math_instr_official"].distill.epochs == 3
    for pair in PAIRS:  # the response-level scripts: 3 epochs, cutoff 4096 everywhere
        assert rows[f"{pair}/math_instr_resp_official"].distill.epochs == 3
        assert rows[f"{pair}/math_instr_resp_official"].data.max_length == 4096


def _flat(data: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_an_official_variant_differs_from_its_paper_row_in_the_named_fields_only(rows):
    allowed = {"name", "mining.threshold.mode", "distill.loss.mode", "distill.loss.lambda",
               "distill.epochs", "data.max_length", "distill.select"}
    pairs = [(k, k.removesuffix("_official") + "_paper") for k in rows if k.endswith("_official")]
    assert len(pairs) == 3 * 4 + 4  # LeaF rows everywhere; KD where the scripts differ (LLaMA)
    for official, paper in pairs:
        a, b = _flat(rows[official].to_dict()), _flat(rows[paper].to_dict())
        changed = {k for k in a if a[k] != b[k]}
        assert changed <= allowed, (official, changed - allowed)


def test_rows_evaluate_with_the_papers_settings(rows):
    for key, exp in rows.items():
        ev = exp.evaluate
        assert ev.grading == "paper" and ev.limit is None and ev.split == "test", key
        if "/math_" in key:
            assert ev.tasks == MATH and exp.data.train.endswith("train.jsonl"), key
        if "/code_" in key:
            assert ev.tasks == CODE, key
        if key.startswith("teachers/"):
            assert ev.models == ["teacher"] and ev.tasks == MATH + CODE, key
        elif not key.endswith("pre_kd"):
            assert ev.models == ["student_after"], key


def test_the_shipped_rows_point_at_the_data_a_user_builds():
    for domain in ("math", "code"):
        raw = yaml.safe_load((PAPER / "llama3.2-1b" / f"{domain}.yaml").read_text())
        assert raw["data"]["train"] == f"data/paper/{domain}_train.jsonl"


# ------------------------------------------------------------------ the reference board
SPECS = sorted((BOARD / "specs").glob("*.yaml"))


def test_the_board_holds_the_published_table():
    entries = board.entries(BOARD)
    assert len(entries) == len(SPECS) == 14
    assert all(e.kind == "reference" and "RUCBM/LeaF" in (e.source or "") for e in entries)
    teachers = [e for e in entries if "(teacher)" in e.label]
    students = [e for e in entries if "(teacher)" not in e.label]
    assert len(teachers) == 2 and len(students) == 12
    for entry in entries:
        assert {name: t.n for name, t in entry.tasks.items()} == N, entry.label
        assert entry.tasks["leaf_livecodebench"].options == {"release": "release_v4"}


def test_every_board_entry_is_its_spec_file():
    found = {e.label: e for e in board.entries(BOARD)}
    for path in SPECS:
        spec = yaml.safe_load(path.read_text())
        assert set(spec) == {"label", "source", "date", "tasks"}, path
        built = reference(spec["label"], spec["source"], str(spec["date"]), spec["tasks"])
        assert found[spec["label"]] == built, path


@pytest.mark.parametrize("label, task, printed", [
    ("paper: LLaMA3.2-1B-Instruct Pre-KD", "leaf_gsm8k", "44.88"),
    ("paper: LLaMA3.2-1B-Instruct LeaF (Instr & Resp Mask)", "leaf_olympiadbench", "9.94"),
    ("paper: LLaMA3.2-3B-Instruct LeaF (Instr & Resp Mask)", "leaf_leetcode", "21.67"),
    ("paper: LLaMA3.2-3B-Instruct KD without Mask", "leaf_math500", "49.00"),
    ("paper: Qwen2.5-Math-1.5B Pre-KD", "leaf_livecodebench", "1.26"),
    ("paper: Qwen2.5-Math-1.5B LeaF (Instr Mask)", "leaf_leetcode", "9.94"),
    ("paper: Qwen2.5-72B-Instruct (teacher)", "leaf_livecodebench", "54.42"),
    ("paper: LLaMA3.3-70B-Instruct (teacher)", "leaf_humaneval_plus", "78.05"),
])
def test_published_numbers_spot_check(label, task, printed):
    """Scores are the printed percentages / 100, and the printed value is kept in the source."""
    entry = board.find(BOARD, label)
    assert entry.tasks[task].score == pytest.approx(float(printed) / 100, abs=1e-12)
    assert printed in (entry.source or "")


def test_a_score_that_is_no_item_count_is_flagged():
    """Qwen's LeetCode 9.94 is not k/180: kept as printed, and said so."""
    entry = board.find(BOARD, "paper: Qwen2.5-Math-1.5B LeaF (Instr Mask)")
    score = entry.tasks["leaf_leetcode"].score
    assert score == 0.0994 and round(score * 180) / 180 != score
    assert "9.94 is not k/180" in (entry.source or "")


def test_the_smoke_profile_turns_a_paper_row_into_a_testbed_run():
    from leafbench.config import load_experiment, profile_overrides

    profile = Path(__file__).resolve().parents[1] / "experiments" / "profiles" / "smoke.yaml"
    overrides = profile_overrides(profile)
    assert "synthetic.teacher.steps=200" in overrides and "evaluate.limit=20" in overrides
    row = Path(__file__).resolve().parents[1] / "experiments/paper/llama3.2-1b/math_instr_paper.yaml"
    exp = load_experiment(row, [*overrides, "distill.epochs=2"])
    assert (exp.models.teacher, exp.data.train, exp.evaluate.backend) == (
        "synthetic:teacher", "synthetic", "hf")
    assert exp.distill.epochs == 2  # -s after the profile still wins
    assert exp.mining.threshold.tau == 0.10  # what the row itself says stays
    # The rows' GPU layout (4 data-parallel ranks) becomes one CPU process.
    assert exp.mining.launch.num_processes == exp.distill.teacher_cache.launch.num_processes == 1


def test_training_rows_mine_and_teach_data_parallel_on_a_gpu_node(rows):
    """4 ranks of 2 GPUs each on an 8-GPU node for mining and the teacher pass; the stores do
    not depend on the rank count, so nothing in a stage key may name it."""
    from leafbench.pipeline import STAGES

    for key, exp in rows.items():
        for launch in (exp.mining.launch, exp.distill.teacher_cache.launch):
            assert (launch.num_processes, launch.launcher) == (4, "accelerate"), key
        one = exp.model_copy(update={"mining": exp.mining.model_copy(
            update={"launch": exp.mining.launch.model_copy(update={"num_processes": 1})})})
        for stage in STAGES:
            assert stage.config(one) == stage.config(exp), (key, stage.name)


def test_pre_kd_and_teacher_rows_train_nothing_and_the_others_train(rows):
    from leafbench.pipeline import planned_stages

    for key, exp in rows.items():
        names = [s.name for s in planned_stages(exp)]
        if key.startswith("teachers/") or key.endswith("pre_kd"):
            assert names == ["evaluate"], key
        else:
            assert names == ["mine", "prune", "teach", "distill", "evaluate", "interpret"], key


def test_the_masking_arms_differ_in_the_mask_alone(data):
    train, _ = data
    arms = {arm: _load(ABLATIONS / f"masking_{arm}_testbed.yaml", train).to_dict()
            for arm in ("baselines", "random", "perplexity")}
    base = _flat(arms.pop("baselines"))
    assert base["pruning.mask"] == "gradient"
    for arm, exp in arms.items():
        changed = {k for k, v in _flat(exp).items() if v != base[k]}
        assert changed == {"name", "pruning.mask"}, arm
        assert _flat(exp)["pruning.mask"] == arm


def test_the_preliminary_ablation_runs_the_preliminary_stage(data):
    from leafbench.pipeline import planned_stages

    train, _ = data
    exp = _load(ABLATIONS / "preliminary_testbed.yaml", train)
    assert exp.preliminary.enabled
    assert [s.name for s in planned_stages(exp, "preliminary")] == ["mine", "prune", "preliminary"]
