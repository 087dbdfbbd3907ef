"""A validation file that shares items with the training data or the test set is refused when
the experiment loads, naming the field, how many items leaked and where the first one is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leafbench.config import load_experiment
from leafbench.errors import ConfigError

DEMO = Path(__file__).resolve().parents[1] / "experiments" / "demo.yaml"
QUESTIONS = [
    "Tom has 3 apples and buys 4 more. How many apples does he have?",
    "A train travels 60 miles in 2 hours. What is its speed in miles per hour?",
    "Sara reads 12 pages a day for 5 days. How many pages does she read?",
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def files(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [
        {"id": "t0", "instruction": f"Solve step by step.\n\n{QUESTIONS[0]}", "response": "7"}])
    data_dir = tmp_path / "data"
    (data_dir / "gsm8k").mkdir(parents=True)
    write_jsonl(data_dir / "gsm8k" / "test.jsonl",
                [{"question": QUESTIONS[1], "answer": "#### 30"}])
    return train, data_dir, tmp_path


def load(train: Path, validation: Path, data_dir: Path | None = None):
    overrides = [f"data.train={train}", f"data.validation={{leaf_gsm8k: {validation}}}",
                 "evaluate.tasks=[leaf_gsm8k]"]
    if data_dir is not None:
        overrides.append(f"evaluate.data_dir={data_dir}")
    return load_experiment(DEMO, overrides)


def test_a_held_out_validation_file_is_accepted(files):
    train, data_dir, tmp = files
    validation = write_jsonl(tmp / "val.jsonl", [{"question": QUESTIONS[2], "answer": "#### 60"}])
    exp = load(train, validation, data_dir)
    assert exp.data.validation == {"leaf_gsm8k": str(validation)}


def test_items_also_in_the_training_data_are_refused(files):
    train, _, tmp = files
    # the same question, re-spaced and re-cased, inside the training template
    validation = write_jsonl(tmp / "val.jsonl", [
        {"question": QUESTIONS[2], "answer": "#### 60"},
        {"question": "  " + QUESTIONS[0].upper().replace(" ", "  "), "answer": "#### 7"}])
    with pytest.raises(ConfigError) as err:
        load(train, validation)
    message = str(err.value)
    assert "data.validation.leaf_gsm8k" in message
    assert "1 of its 2 items are also in data.train (the first at line 2)" in message


def test_items_also_in_the_local_test_set_are_refused(files):
    train, data_dir, tmp = files
    validation = write_jsonl(tmp / "val.jsonl", [{"question": QUESTIONS[1], "answer": "#### 30"}])
    load(train, validation)  # no local test set named: nothing to compare against
    with pytest.raises(ConfigError, match=r"1 of its 1 items are also in the leaf_gsm8k test set"):
        load(train, validation, data_dir)


def test_a_testbed_experiment_scored_on_other_tasks_passes_no_testbed_split(tmp_path):
    """The testbed's tiny models scored on GSM8K only (the smoke profile does this): the
    testbed's own split must not be handed to an evaluation that does not score its task."""
    from types import SimpleNamespace

    from leafbench.evaluation.stage import _split_files

    exp = load_experiment(DEMO, ["evaluate.tasks=[leaf_gsm8k]"])
    refs = SimpleNamespace(test_jsonl=tmp_path / "test.jsonl",
                           validation_jsonl=tmp_path / "validation.jsonl")
    assert _split_files(SimpleNamespace(exp=exp, refs=refs)) is None
    both = load_experiment(DEMO, ["evaluate.tasks=[leaf_gsm8k, leaf_synthetic]"])
    assert _split_files(SimpleNamespace(exp=both, refs=refs)) == {
        "leaf_synthetic": str(tmp_path / "test.jsonl")}
