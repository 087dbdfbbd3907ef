"""Experiment definitions: every malformed file is refused with one message naming the file,
the field path, the bad value and what is accepted; valid files inherit, override and freeze.

Everything is written into pytest's tmp_path; nothing here loads a model or touches the network.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from leafbench.cli import main
from leafbench.config import ConfigError, Experiment, load_experiment

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"

FILE = object()  # sentinel: the expected value is the (resolved) path of the file under test


@dataclass(frozen=True)
class Bad:
    """One malformed definition: YAML text (+ other files, overrides) and the expected error.

    `{tmp}` in texts and values is replaced by the test's tmp_path. `source` is "file" when the
    message must name the definition file itself, otherwise the exact expected source.
    """

    id: str
    text: str
    field: str
    value: Any
    accepted: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)
    source: str = "file"


BAD = [
    # --- unknown keys
    Bad("unknown_top_level", "trainer:\n  epochs: 3\n", "trainer", {"epochs": 3},
        ("unknown key",)),
    Bad("typo_nested_key", "mining:\n  treshold:\n    tau: 0.1\n", "mining.treshold",
        {"tau": 0.1}, ("unknown key", "spelling")),
    Bad("typo_deep_key", "distill:\n  loss:\n    lamda: 0.3\n", "distill.loss.lamda", 0.3,
        ("unknown key",)),
    Bad("unknown_key_in_synthetic_model", "synthetic:\n  teacher:\n    depth: 4\n",
        "synthetic.teacher.depth", 4, ("unknown key",)),
    # --- wrong types
    Bad("string_for_int", "distill:\n  epochs: three\n", "distill.epochs", "three",
        ("integer",)),
    Bad("fraction_for_int", "seed: 1.5\n", "seed", 1.5, ("integer",)),
    Bad("string_for_float", "mining:\n  threshold:\n    tau: low\n", "mining.threshold.tau",
        "low", ("number",)),
    Bad("list_for_dict", "mining: [1, 2]\n", "mining", [1, 2], ("dictionary",)),
    Bad("scalar_for_list", "evaluate:\n  tasks: leaf_synthetic\n", "evaluate.tasks",
        "leaf_synthetic", ("list",)),
    Bad("int_for_string", "name: 5\n", "name", 5, ("string",)),
    # --- out of range
    Bad("tau_negative", "mining:\n  threshold:\n    tau: -0.1\n", "mining.threshold.tau", -0.1,
        (">= 0",)),
    Bad("tau_above_one", "mining:\n  threshold:\n    tau: 1.5\n", "mining.threshold.tau", 1.5,
        ("<= 1",)),
    Bad("lambda_above_one", "distill:\n  loss:\n    lambda: 1.2\n", "distill.loss.lambda", 1.2,
        ("<= 1",)),
    Bad("response_tau_above_one", "mining:\n  level: both\n  threshold:\n    response_tau: 2\n",
        "mining.threshold.response_tau", 2, ("<= 1",)),
    Bad("response_tau_without_response_level",
        "mining:\n  level: instruction\n  threshold:\n    response_tau: 0.05\n",
        "mining.threshold.response_tau", 0.05, ("level 'response' or 'both'",)),
    Bad("unknown_pruning_mask", "pruning:\n  mask: saliency\n", "pruning.mask", "saliency",
        ("gradient", "random", "perplexity")),
    Bad("unknown_epoch_selection", "distill:\n  select: best\n", "distill.select", "best",
        ("last", "best_validation_loss")),
    Bad("select_fraction_of_one", "distill:\n  select_fraction: 1.0\n",
        "distill.select_fraction", 1.0, ("< 1",)),
    Bad("unknown_preliminary_key", "preliminary:\n  enable: true\n", "preliminary.enable", True,
        ("unknown key",)),
    Bad("lambda_negative", "distill:\n  loss:\n    lambda: -0.5\n", "distill.loss.lambda", -0.5,
        (">= 0",)),
    Bad("epochs_zero", "distill:\n  epochs: 0\n", "distill.epochs", 0, ("> 0",)),
    Bad("epochs_negative", "distill:\n  epochs: -3\n", "distill.epochs", -3, ("> 0",)),
    Bad("lr_zero", "distill:\n  lr: 0\n", "distill.lr", 0, ("> 0",)),
    Bad("temperature_negative", "distill:\n  loss:\n    temperature: -1.0\n",
        "distill.loss.temperature", -1.0, ("> 0",)),
    Bad("spurious_correlation_above_one", "synthetic:\n  spurious_correlation: 1.5\n",
        "synthetic.spurious_correlation", 1.5, ("<= 1",)),
    Bad("synthetic_layers_zero", "synthetic:\n  student:\n    layers: 0\n",
        "synthetic.student.layers", 0, ("> 0",)),
    Bad("max_samples_negative", "data:\n  max_samples: -1\n", "data.max_samples", -1, ("> 0",)),
    # --- unknown choices
    Bad("unknown_threshold_mode", "mining:\n  threshold:\n    mode: relative\n",
        "mining.threshold.mode", "relative", ("absolute", "quantile")),
    Bad("unknown_pruning_strategy", "pruning:\n  strategy: greedy\n", "pruning.strategy",
        "greedy", ("span", "collective")),
    Bad("unknown_loss_mode", "distill:\n  loss:\n    mode: kl\n", "distill.loss.mode", "kl",
        ("hybrid",)),
    Bad("unknown_dtype", "models:\n  dtype: fp8\n", "models.dtype", "fp8",
        ("float32", "bfloat16", "float16")),
    Bad("unknown_baseline", "mining:\n  baselines: [random, saliency]\n", "mining.baselines.1",
        "saliency", ("random",)),
    Bad("unknown_evaluate_task_first", "evaluate:\n  tasks: [gsm8k]\n", "evaluate.tasks.0",
        "gsm8k", ("leaf_synthetic", "leaf_gsm8k")),
    Bad("unknown_evaluate_task_second", "evaluate:\n  tasks: [leaf_synthetic, leaf_gsm9k]\n",
        "evaluate.tasks.1", "leaf_gsm9k", ("leaf_synthetic", "leaf_gsm8k")),
    Bad("unknown_evaluate_role", "evaluate:\n  models: [teacher, student]\n",
        "evaluate.models.1", "student", ("teacher", "student_before", "student_after")),
    # --- files and model references (relative paths are relative to the working directory,
    #     which the test sets to tmp_path)
    Bad("missing_train_file", "data:\n  train: {tmp}/missing.jsonl\n", "data.train",
        "{tmp}/missing.jsonl", ("synthetic", "JSONL")),
    Bad("missing_train_file_relative", "data:\n  train: nope/train.jsonl\n", "data.train",
        "nope/train.jsonl", ("synthetic",)),
    Bad("missing_evaluate_data_dir", "evaluate:\n  data_dir: {tmp}/no_data\n",
        "evaluate.data_dir", "{tmp}/no_data", ("existing directory",)),
    Bad("missing_teacher_dot_path", "models:\n  teacher: ./no_such_teacher\n", "models.teacher",
        "./no_such_teacher", ("existing model directory",)),
    Bad("missing_student_absolute_path", "models:\n  student: {tmp}/no_such_student\n",
        "models.student", "{tmp}/no_such_student", ("existing model directory",)),
    Bad("unknown_synthetic_teacher", "models:\n  teacher: synthetic:foo\n", "models.teacher",
        "synthetic:foo", ("synthetic:teacher", "synthetic:student")),
    Bad("unknown_synthetic_student", "models:\n  student: synthetic:big\n", "models.student",
        "synthetic:big", ("synthetic:teacher", "synthetic:student")),
    # --- file shape
    Bad("invalid_yaml_syntax", "mining:\n  threshold: [\n", "<file>", FILE, ("not valid YAML",)),
    Bad("yaml_tab_indent", "mining:\n\tthreshold: 1\n", "<file>", FILE, ("not valid YAML",)),
    Bad("top_level_list", "- mining\n- distill\n", "<root>", ["mining", "distill"],
        ("mapping",)),
    Bad("top_level_scalar", "just some text\n", "<root>", "just some text", ("mapping",)),
    # --- inheritance
    Bad("base_missing_file", "base: nowhere.yaml\n", "base", "nowhere.yaml", ("no such file",)),
    Bad("base_not_a_string", "base: [a.yaml]\n", "base", ["a.yaml"], ("path",)),
    Bad("base_self_cycle", "base: base_self_cycle.yaml\n", "base",
        "base_self_cycle.yaml -> base_self_cycle.yaml", ("cycle",)),
    Bad("base_cycle", "base: other.yaml\n", "base",
        "base_cycle.yaml -> other.yaml -> base_cycle.yaml", ("cycle",),
        files={"other.yaml": "seed: 1\nbase: base_cycle.yaml\n"}),
    Bad("error_inside_base", "base: parent.yaml\nname: child\n", "pruning.strategy", "greedy",
        ("span", "collective"), files={"parent.yaml": "pruning:\n  strategy: greedy\n"}),
    Bad("bad_yaml_inside_base", "base: parent.yaml\n", "<file>", "{tmp}/parent.yaml",
        ("not valid YAML",), files={"parent.yaml": "a: [\n"}, source="{tmp}/parent.yaml"),
    # --- command-line overrides
    Bad("override_without_equals", "", "mining.threshold.tau", "mining.threshold.tau",
        ("key.path=value",), overrides=("mining.threshold.tau",), source="-s"),
    Bad("override_unknown_key", "", "mining.treshold", 0.1, ("unknown key",),
        overrides=("mining.treshold=0.1",)),
    Bad("override_tau_out_of_range", "mining:\n  threshold:\n    tau: 0.1\n",
        "mining.threshold.tau", 1.5, ("<= 1",), overrides=("mining.threshold.tau=1.5",)),
    Bad("override_lambda_out_of_range", "", "distill.loss.lambda", -0.1, (">= 0",),
        overrides=("distill.loss.lambda=-0.1",)),
    Bad("override_unknown_mode", "", "mining.threshold.mode", "relative", ("absolute",),
        overrides=("mining.threshold.mode=relative",)),
    Bad("override_through_a_scalar", "seed: 3\n", "seed.x", "seed.x=1", ("not a section",),
        overrides=("seed.x=1",), source="-s"),
    Bad("override_last_one_is_bad", "", "distill.epochs", 0, ("> 0",),
        overrides=("distill.epochs=4", "distill.epochs=0")),
]


def _sub(text: Any, tmp: Path) -> Any:
    return text.replace("{tmp}", str(tmp)) if isinstance(text, str) else text


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_malformed_cases_are_many_and_distinct():
    assert len(BAD) >= 18
    assert len({c.id for c in BAD}) == len(BAD)
    assert len({(c.text, c.overrides, tuple(c.files.items())) for c in BAD}) == len(BAD)


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_malformed_definition_is_refused_naming_file_field_value(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, text in case.files.items():
        _write(tmp_path, name, _sub(text, tmp_path))
    path = _write(tmp_path, f"{case.id}.yaml", _sub(case.text, tmp_path))

    with pytest.raises(ConfigError) as info:
        load_experiment(path, list(case.overrides))
    err = info.value
    message = str(err)

    assert isinstance(err, ValueError)
    assert err.field == case.field, message
    expected_value = str(path.resolve()) if case.value is FILE else _sub(case.value, tmp_path)
    assert err.value == expected_value, message
    assert repr(expected_value) in message
    assert f"field '{case.field}'" in message
    if case.source == "file":
        assert Path(err.source).name == path.name, message
        assert path.name in message
    else:
        assert err.source == _sub(case.source, tmp_path), message
        assert message.startswith(f"{err.source}: ")
    for word in case.accepted:
        assert word in err.accepted, message
        assert word in message


def test_message_has_the_documented_shape(tmp_path):
    path = _write(tmp_path, "shape.yaml", "mining:\n  threshold:\n    tau: 2\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    err = info.value
    assert (err.source, err.field, err.value) == (str(path), "mining.threshold.tau", 2)
    assert str(err) == f"{path}: field 'mining.threshold.tau': got 2; {err.accepted}"
    assert err.accepted == "expected a number <= 1.0"


def test_missing_experiment_file_is_a_config_error(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert info.value.field == "<file>"
    assert "absent.yaml" in str(info.value)
    assert "does not exist" in info.value.accepted


def test_error_from_a_base_file_is_reported_before_the_child_file_is_used(tmp_path):
    """The first problem stops loading: a bad base wins over a good child override."""
    _write(tmp_path, "parent.yaml", "distill:\n  epochs: 0\n")
    child = _write(tmp_path, "child.yaml", "base: parent.yaml\nmining:\n  treshold: 1\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(child, ["distill.epochs=2"])
    # the base's bad epochs is fixed by the override; the child's typo remains
    assert info.value.field == "mining.treshold"


# ---------------------------------------------------------------- valid definitions
def test_empty_file_gives_the_defaults(tmp_path):
    exp = load_experiment(_write(tmp_path, "empty.yaml", ""))
    assert exp == Experiment()
    assert exp.mining.threshold.mode == "absolute"
    assert exp.mining.threshold.tau == pytest.approx(0.10)
    assert exp.distill.loss.mode == "hybrid"
    assert exp.distill.loss.lam == pytest.approx(0.5)
    assert exp.distill.epochs == 3
    assert exp.pruning.strategy == "span"
    assert exp.models.teacher == "synthetic:teacher"
    assert exp.models.student == "synthetic:student"
    assert exp.data.train == "synthetic"
    assert exp.evaluate.tasks == ["leaf_synthetic"]
    assert exp.evaluate.models == ["teacher", "student_before", "student_after"]


def test_comment_only_and_null_files_give_the_defaults(tmp_path):
    assert load_experiment(_write(tmp_path, "c.yaml", "# nothing yet\n")) == Experiment()
    assert load_experiment(_write(tmp_path, "n.yaml", "null\n")) == Experiment()


def test_base_is_deep_merged_child_wins_and_siblings_are_kept(tmp_path):
    _write(tmp_path, "base.yaml", (
        "name: base\nseed: 7\n"
        "mining:\n  threshold:\n    mode: quantile\n    tau: 0.2\n  batch_size: 4\n"
        "distill:\n  epochs: 5\n  loss:\n    lambda: 0.8\n    temperature: 2.0\n"
        "evaluate:\n  tasks: [leaf_synthetic, leaf_gsm8k]\n"
    ))
    child = _write(tmp_path, "child.yaml", (
        "base: base.yaml\nname: child\n"
        "mining:\n  threshold:\n    tau: 0.05\n"
        "distill:\n  loss:\n    lambda: 0.3\n"
        "evaluate:\n  tasks: [leaf_gsm8k]\n"
    ))
    exp = load_experiment(child)
    assert exp.name == "child"
    assert exp.seed == 7
    assert exp.mining.threshold.mode == "quantile"  # sibling of the overridden key, from base
    assert exp.mining.threshold.tau == pytest.approx(0.05)
    assert exp.mining.batch_size == 4
    assert exp.distill.epochs == 5
    assert exp.distill.loss.lam == pytest.approx(0.3)
    assert exp.distill.loss.temperature == pytest.approx(2.0)
    assert exp.evaluate.tasks == ["leaf_gsm8k"]  # lists are replaced, not concatenated
    assert "base" not in exp.to_dict()


def test_chained_bases_apply_in_order(tmp_path):
    _write(tmp_path, "grand.yaml",
           "name: grand\nseed: 1\ndistill:\n  epochs: 9\n  lr: 0.001\nworkspace: g\n")
    _write(tmp_path, "parent.yaml", "base: grand.yaml\nname: parent\nseed: 2\ndistill:\n  epochs: 4\n")
    child = _write(tmp_path, "child.yaml", "base: parent.yaml\nname: child\n")
    exp = load_experiment(child)
    assert (exp.name, exp.seed, exp.workspace) == ("child", 2, "g")
    assert exp.distill.epochs == 4
    assert exp.distill.lr == pytest.approx(0.001)


def test_base_paths_are_resolved_against_each_file_folder_not_the_cwd(tmp_path, monkeypatch):
    _write(tmp_path, "bases/common/root.yaml", "seed: 11\npruning:\n  strategy: collective\n")
    _write(tmp_path, "bases/mid.yaml", "base: common/root.yaml\nname: mid\n")
    child = _write(tmp_path, "configs/deep/child.yaml", "base: ../../bases/mid.yaml\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for given in (child, Path("../configs/deep/child.yaml")):
        exp = load_experiment(given)
        assert (exp.name, exp.seed, exp.pruning.strategy) == ("mid", 11, "collective")


def test_same_base_twice_in_a_chain_is_not_confused_with_a_cycle(tmp_path):
    """Two files inheriting one base each are independent loads, not a cycle."""
    _write(tmp_path, "shared.yaml", "seed: 5\n")
    a = _write(tmp_path, "a.yaml", "base: shared.yaml\nname: a\n")
    b = _write(tmp_path, "b.yaml", "base: shared.yaml\nname: b\n")
    assert (load_experiment(a).seed, load_experiment(b).seed) == (5, 5)


@pytest.mark.parametrize(("item", "get", "expected"), [
    ("mining.threshold.tau=0.05", lambda e: e.mining.threshold.tau, 0.05),
    ("distill.loss.lambda=0.3", lambda e: e.distill.loss.lam, 0.3),
    ("mining.threshold.mode=quantile", lambda e: e.mining.threshold.mode, "quantile"),
    ("distill.epochs=1", lambda e: e.distill.epochs, 1),
    ("evaluate.tasks=[leaf_gsm8k, leaf_synthetic]", lambda e: e.evaluate.tasks,
     ["leaf_gsm8k", "leaf_synthetic"]),
    ("data.max_samples=null", lambda e: e.data.max_samples, None),
    ("data.max_samples=64", lambda e: e.data.max_samples, 64),
    ("name=run-a", lambda e: e.name, "run-a"),
    ("name=", lambda e: e.name, ""),
    ("mining.threshold.tau = 0.2", lambda e: e.mining.threshold.tau, 0.2),
])
def test_override_sets_a_field(item, get, expected, tmp_path):
    path = _write(tmp_path, "exp.yaml",
                  "mining:\n  threshold:\n    tau: 0.1\ndistill:\n  loss:\n    lambda: 0.7\n")
    exp = load_experiment(path, [item])
    assert get(exp) == (pytest.approx(expected) if isinstance(expected, float) else expected)


def test_overrides_beat_file_and_base_and_apply_in_order(tmp_path):
    _write(tmp_path, "base.yaml", "mining:\n  threshold:\n    mode: quantile\n    tau: 0.3\n")
    child = _write(tmp_path, "child.yaml", "base: base.yaml\nmining:\n  threshold:\n    tau: 0.2\n")
    exp = load_experiment(child, ["mining.threshold.tau=0.9", "mining.threshold.tau=0.05",
                                  "distill.loss.lambda=0.3"])
    assert exp.mining.threshold.tau == pytest.approx(0.05)
    assert exp.mining.threshold.mode == "quantile"
    assert exp.distill.loss.lam == pytest.approx(0.3)
    # the file on disk is untouched by overrides
    assert load_experiment(child).mining.threshold.tau == pytest.approx(0.2)


def test_experiment_is_frozen(tmp_path):
    exp = load_experiment(_write(tmp_path, "exp.yaml", "name: frozen\n"))
    with pytest.raises(pydantic.ValidationError):
        exp.name = "changed"
    with pytest.raises(pydantic.ValidationError):
        exp.mining.threshold.tau = 0.9
    with pytest.raises(pydantic.ValidationError):
        exp.distill.loss.lam = 0.9
    assert exp.name == "frozen"
    assert exp.mining.threshold.tau == pytest.approx(0.1)


def test_lambda_is_the_user_facing_name_in_to_dict_and_section(tmp_path):
    exp = load_experiment(_write(tmp_path, "exp.yaml", "distill:\n  loss:\n    lambda: 0.25\n"))
    loss = exp.to_dict()["distill"]["loss"]
    assert loss["lambda"] == pytest.approx(0.25)
    assert "lam" not in loss
    assert exp.section("distill")["loss"]["lambda"] == pytest.approx(0.25)
    assert set(exp.to_dict()) == {"name", "seed", "workspace", "models", "synthetic", "data",
                                  "mining", "pruning", "distill", "evaluate", "preliminary",
                                  "interpret", "tracking"}


def test_to_dict_round_trips_through_a_file(tmp_path):
    exp = load_experiment(_write(tmp_path, "exp.yaml", (
        "name: rt\nmining:\n  threshold:\n    mode: quantile\n    tau: 0.07\n"
        "distill:\n  loss:\n    lambda: 0.3\n  epochs: 2\nevaluate:\n  tasks: [leaf_gsm8k]\n"
    )))
    again = load_experiment(_write(tmp_path, "dump.yaml", yaml.safe_dump(exp.to_dict())))
    assert again == exp


def test_exponent_floats_that_yaml_reads_as_strings_are_numbers(tmp_path):
    """PyYAML reads `1e-5` (no dot) as the string '1e-5'; it must still mean 0.00001."""
    assert yaml.safe_load("lr: 1e-5") == {"lr": "1e-5"}
    path = _write(tmp_path, "exp.yaml", "distill:\n  lr: 1e-5\n")
    exp = load_experiment(path, ["synthetic.teacher.lr=3e-3"])
    assert exp.distill.lr == pytest.approx(1e-5)
    assert exp.synthetic.teacher.lr == pytest.approx(3e-3)


def test_existing_paths_and_hub_ids_are_accepted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "teacher_dir").mkdir()
    (tmp_path / "bench").mkdir()
    (tmp_path / "train.jsonl").write_text('{"instruction": "1+1?", "response": "2"}\n')
    exp = load_experiment(_write(tmp_path, "exp.yaml", (
        "models:\n  teacher: ./teacher_dir\n  student: Qwen/Qwen2.5-Math-1.5B\n"
        "data:\n  train: train.jsonl\n"
        f"evaluate:\n  data_dir: {tmp_path / 'bench'}\n"
    )))
    assert exp.models.teacher == "./teacher_dir"
    assert exp.models.student == "Qwen/Qwen2.5-Math-1.5B"
    assert exp.data.train == "train.jsonl"
    swapped = load_experiment(tmp_path / "exp.yaml", ["models.teacher=synthetic:student",
                                                      "models.student=synthetic:teacher"])
    assert (swapped.models.teacher, swapped.models.student) == (
        "synthetic:student", "synthetic:teacher")


# ---------------------------------------------------------------- known bugs (should pass)
@pytest.mark.parametrize("item", ["name=[unclosed", "name=a: b: c"])
def test_override_value_that_is_not_yaml_is_a_config_error(item, tmp_path):
    path = _write(tmp_path, "exp.yaml", "")
    with pytest.raises(ConfigError) as info:
        load_experiment(path, [item])
    assert info.value.source == "-s"
    assert item.split("=", 1)[0] in str(info.value)


def test_non_utf8_file_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert info.value.field == "<file>"
    assert "latin1.yaml" in str(info.value)


@pytest.mark.parametrize("text", ["false\n", "0\n", "[]\n", "''\n"],
                         ids=["false", "zero", "empty_list", "empty_string"])
def test_falsy_non_mapping_document_is_refused(text, tmp_path):
    with pytest.raises(ConfigError) as info:
        load_experiment(_write(tmp_path, "falsy.yaml", text))
    assert info.value.field == "<root>"


@pytest.mark.parametrize("text,field_path", [
    ("distill:\n  lr: .inf\n", "distill.lr"),
    ("distill:\n  loss:\n    temperature: .inf\n", "distill.loss.temperature"),
    ("distill:\n  weight_decay: .inf\n", "distill.weight_decay"),
    ("distill:\n  grad_clip: .inf\n", "distill.grad_clip"),
    ("synthetic:\n  teacher:\n    lr: .inf\n", "synthetic.teacher.lr"),
], ids=lambda v: v if "\n" not in v else "yaml")
def test_infinite_numbers_are_refused(text, field_path, tmp_path):
    with pytest.raises(ConfigError) as info:
        load_experiment(_write(tmp_path, "inf.yaml", text))
    assert info.value.field == field_path
    assert math.isinf(info.value.value)


def test_nan_is_refused_for_bounded_numbers(tmp_path):
    for text, field_path in [("mining:\n  threshold:\n    tau: .nan\n", "mining.threshold.tau"),
                             ("distill:\n  loss:\n    lambda: .nan\n", "distill.loss.lambda"),
                             ("distill:\n  lr: .nan\n", "distill.lr")]:
        with pytest.raises(ConfigError) as info:
            load_experiment(_write(tmp_path, "nan.yaml", text))
        assert info.value.field == field_path
        assert math.isnan(info.value.value)


@pytest.mark.parametrize("text,field_path", [
    ("distill:\n  epochs: yes\n", "distill.epochs"),
    ("mining:\n  threshold:\n    tau: true\n", "mining.threshold.tau"),
    ("distill:\n  loss:\n    lambda: false\n", "distill.loss.lambda"),
], ids=lambda v: v if "\n" not in v else "yaml")
def test_booleans_are_not_numbers(text, field_path, tmp_path):
    with pytest.raises(ConfigError) as info:
        load_experiment(_write(tmp_path, "bool.yaml", text))
    assert info.value.field == field_path


def test_internal_name_lam_is_an_unknown_key(tmp_path):
    path = _write(tmp_path, "lam.yaml", "distill:\n  loss:\n    lam: 0.3\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert info.value.field == "distill.loss.lam"
    assert "unknown key" in info.value.accepted


def test_internal_name_lam_next_to_lambda_is_refused(tmp_path):
    path = _write(tmp_path, "lam.yaml", "distill:\n  loss:\n    lambda: 0.7\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path, ["distill.loss.lam=0.3"])
    assert info.value.field == "distill.loss.lam"


# ---------------------------------------------------------------- command line
def test_cli_validate_bad_file_exits_2_with_one_line(tmp_path, capsys):
    path = _write(tmp_path, "bad.yaml", "mining:\n  threshold:\n    tau: 1.5\n")
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "bad.yaml" in lines[0]
    assert "mining.threshold.tau" in lines[0]
    assert "1.5" in lines[0]


def test_cli_validate_good_file_exits_0(tmp_path, capsys):
    path = _write(tmp_path, "good.yaml", "name: fine\n")
    assert main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "valid experiment 'fine'" in out
    assert "good.yaml" in out


@pytest.mark.parametrize(("args", "code", "needle"), [
    (["-s", "distill.loss.lambda=0.3"], 0, "valid experiment"),
    (["--set", "mining.threshold.tau=0.05", "-s", "name=x"], 0, "valid experiment 'x'"),
    (["-s", "distill.loss.lambda=1.3"], 2, "distill.loss.lambda"),
    (["-s", "mining.treshold=0.1"], 2, "mining.treshold"),
    (["-s", "no_equals_sign"], 2, "no_equals_sign"),
])
def test_cli_validate_overrides(args, code, needle, tmp_path, capsys):
    path = _write(tmp_path, "exp.yaml", "")
    assert main(["validate", str(path), *args]) == code
    out, err = capsys.readouterr()
    assert needle in (out if code == 0 else err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1
        assert err.startswith("error: ")


def test_cli_validate_missing_file_exits_2(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "ghost.yaml")]) == 2
    assert "ghost.yaml" in capsys.readouterr().err


def test_cli_invalid_yaml_message_is_one_line(tmp_path, capsys):
    path = _write(tmp_path, "broken.yaml", "mining:\n  threshold: [\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "broken.yaml" in err


def test_cli_override_value_that_is_not_yaml_exits_2(tmp_path, capsys):
    path = _write(tmp_path, "exp.yaml", "")
    assert main(["validate", str(path), "-s", "name=[oops"]) == 2
    assert "error: " in capsys.readouterr().err


def test_console_script_validate_is_fast_and_imports_no_torch(tmp_path):
    """The real `leafbench` entry point, once: exit 2, one error line, no heavy imports.

    PYTHONPROFILEIMPORTTIME makes the interpreter list every imported module on stderr; the
    presence of leafbench.config there proves the listing works, so torch's absence means it
    was not imported.
    """
    exe = shutil.which("leafbench")
    assert exe is not None, "the leafbench console script is not on PATH (pip install -e .)"
    path = _write(tmp_path, "bad.yaml", "distill:\n  loss:\n    lambda: 7\n")
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    start = time.monotonic()
    proc = subprocess.run([exe, "validate", str(path)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=60)
    elapsed = time.monotonic() - start

    assert proc.returncode == 2, proc.stderr[-2000:]
    assert elapsed < 20, f"validate took {elapsed:.1f}s"
    modules = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:") and line.count("|") == 2}
    assert "leafbench.config" in modules
    heavy = sorted(m for m in modules
                   if m.split(".")[0] in {"torch", "transformers", "datasets", "lm_eval",
                                          "mlflow", "vllm"})
    assert heavy == [], heavy
    messages = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert messages == [
        f"error: {path}: field 'distill.loss.lambda': got 7; expected a number <= 1.0"
    ]
    assert proc.stdout == ""


# ---------------------------------------------------------------- the shipped experiments
def _shipped_experiments() -> list[Path]:
    """Every YAML file under experiments/, except experiments/tests/ (malformed fixtures),
    experiments/accelerate/ (launcher configs, checked below), experiments/sweeps/ (sweep
    definitions, checked in test_sweep.py) and the paper catalog (experiments/paper/ and
    experiments/ablations/: their training data is built by the user, checked in
    test_paper_catalog.py with a stand-in)."""
    found = [*EXPERIMENTS.rglob("*.yaml"), *EXPERIMENTS.rglob("*.yml")]
    return sorted(p for p in found
                  if p.relative_to(EXPERIMENTS).parts[0] not in ("tests", "accelerate", "sweeps",
                                                                "paper", "ablations"))


@pytest.mark.parametrize("name", ["fsdp.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml"])
def test_shipped_accelerate_configs_load_with_accelerate(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(EXPERIMENTS / "accelerate" / name))
    assert config.distributed_type.value in ("FSDP", "DEEPSPEED")
    assert config.mixed_precision == "bf16" and config.num_processes > 1


def test_every_shipped_experiment_validates(monkeypatch):
    monkeypatch.chdir(REPO)  # paths inside definitions are relative to the working directory
    problems = []
    for path in _shipped_experiments():
        try:
            exp = load_experiment(path)
        except ConfigError as err:
            problems.append(str(err))
            continue
        assert isinstance(exp, Experiment)
    assert problems == []


def test_every_shipped_experiment_validates_through_the_cli(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    for path in _shipped_experiments():
        assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().err == ""
