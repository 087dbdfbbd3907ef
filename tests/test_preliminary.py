"""The paper's preliminary experiment (the `preliminary` stage) on a small testbed: the
undistilled student on the answerable training items, as given, without the mined tokens and
without as many random ones; and which runs include the stage."""

from __future__ import annotations

import json

import pytest
from conftest import small_experiment

from leafbench.config import load_experiment
from leafbench.pipeline import planned_stages, run_experiment
from leafbench.preliminary.stage import instruction_marks, three_versions


@pytest.fixture(scope="module")
def small_yaml(tmp_path_factory):
    root = tmp_path_factory.mktemp("preliminary")
    path = root / "small.yaml"
    path.write_text(small_experiment(root / "ws", name="prelim", experiment="prelim-test",
                                     n_pretrain=600, n_train=24, n_test=8, teacher_steps=40,
                                     student_steps=30, max_gen_toks=8)
                    + "preliminary: {max_new_tokens: 12, max_samples: 16}\n")
    return path


@pytest.fixture(scope="module")
def preliminary(small_yaml):
    exp = load_experiment(small_yaml, distills=False)
    results = {r.name: r for r in run_experiment(exp, until="preliminary")}
    return exp, results


def _jsonl(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_until_preliminary_runs_mine_prune_and_the_experiment_only(preliminary):
    _, results = preliminary
    assert list(results) == ["testbed", "mine", "prune", "preliminary"]


def test_the_summary_and_items_follow_the_artifact_contract(preliminary):
    exp, results = preliminary
    out = results["preliminary"].path
    assert out.parent.name == "preliminary" and out.parent.parent.name == "artifacts"
    summary = json.loads((out / "summary.json").read_text())
    items = _jsonl(out / "items.jsonl")
    mined = [r for r in _jsonl(results["mine"].path / "saliency.jsonl")
             if r["level"] == "instruction" and r.get("answer")][: exp.preliminary.max_samples]
    assert summary["n"] == len(items) == len(mined) == 16
    assert [r["id"] for r in items] == [r["sample_id"] for r in mined]
    for row in items:
        assert set(row) == {"id", "original_correct", "pruned_correct", "random_correct",
                            "removed_tokens"}
        assert all(isinstance(row[k], bool) for k in ("original_correct", "pruned_correct",
                                                      "random_correct"))
        assert isinstance(row["removed_tokens"], int)
    for version in ("original", "pruned", "random"):
        assert summary[f"accuracy_{version}"] == pytest.approx(
            sum(r[f"{version}_correct"] for r in items) / len(items))
    # removed_tokens is what pruning marked in the item's instruction
    marks = instruction_marks(_jsonl(results["prune"].path / "spans.jsonl"))
    assert [r["removed_tokens"] for r in items] == [len(marks.get(r["id"], ())) for r in items]
    assert any(r["removed_tokens"] > 0 for r in items)


def test_pruned_and_random_versions_remove_the_same_number_of_other_tokens(preliminary):
    exp, results = preliminary
    marks = instruction_marks(_jsonl(results["prune"].path / "spans.jsonl"))
    mined = [r for r in _jsonl(results["mine"].path / "saliency.jsonl")
             if r["level"] == "instruction" and r.get("answer")]
    differ = 0
    for row in mined:
        chosen = marks.get(row["sample_id"], set())
        version = three_versions(row, chosen, exp.seed)
        assert version == three_versions(row, chosen, exp.seed)  # seeded
        assert version["removed_tokens"] == len(chosen)
        if chosen:
            assert version["pruned"] != row["instruction"]
            assert version["random"] != row["instruction"]
            differ += version["random"] != version["pruned"]
        else:
            assert version["pruned"] == version["random"] == row["instruction"]
    assert differ > 0


def test_the_stage_is_off_by_default_and_joins_a_run_when_enabled(small_yaml):
    default = [s.name for s in planned_stages(load_experiment(small_yaml))]
    enabled = [s.name for s in planned_stages(
        load_experiment(small_yaml, ["preliminary.enabled=true"]))]
    assert "preliminary" not in default
    assert enabled == ["mine", "prune", "preliminary", "teach", "distill", "evaluate",
                       "interpret"]
    # evaluate-only with the experiment on: mine and prune stay for it, training goes
    teacher_only = [s.name for s in planned_stages(load_experiment(
        small_yaml, ["preliminary.enabled=true", "evaluate.models=[teacher]"]))]
    assert teacher_only == ["mine", "prune", "preliminary", "evaluate"]


def test_enabling_it_changes_no_other_stage_key(small_yaml, preliminary):
    _, results = preliminary
    exp = load_experiment(small_yaml, ["preliminary.enabled=true"], distills=False)
    again = {r.name: r for r in run_experiment(exp, until="preliminary")}
    assert {r.status for r in again.values()} == {"cached"}
    assert {k: r.key for k, r in again.items()} == {k: r.key for k, r in results.items()}
