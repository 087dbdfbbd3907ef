"""`leafbench data`: the paper's training corpora, built from small local copies of the hub
datasets in their hub layout (data/train-*.parquet), written here; nothing is downloaded.

The recipe's promises: min(per_source, usable) items per source, the same file for the same
seed and another for another seed, rows the pipeline reads, no file replaced without
`overwrite`, and every bad argument refused (ConfigError) before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from leafbench.errors import ConfigError
from leafbench.evaluation.code.humaneval_plus import RESPONSE_PREFIX
from leafbench.samples import load_pairs, read_jsonl
from leafbench.training_data import (
    MATH_SUFFIX,
    RECIPES,
    Teacher,
    build_corpus,
)

ROOT = Path(__file__).resolve().parents[1]
# rows per NuminaMath source in the fixture; cn_k12 is a source the recipe does not sample
MATH_ROWS = {"olympiads": 12, "amc_aime": 3, "gsm8k": 5, "math": 6, "cn_k12": 4}


def math_rows() -> list[dict]:
    rows = []
    for source, n in MATH_ROWS.items():
        for i in range(n):
            problem = f"[{source} {i}] What is {i} + {len(source)}?"
            solution = f"We add {i} and {len(source)}. The answer is $\\boxed{{{i + len(source)}}}$."
            if source == "olympiads" and i == 7:
                solution = ""  # no reference solution: not usable under responses="dataset"
            rows.append({"source": source, "problem": problem, "solution": solution,
                         "messages": [{"role": "user", "content": problem},
                                      {"role": "assistant", "content": solution}]})
    # interleave the sources, as the hub's shards do
    return sorted(rows, key=lambda r: (int(r["problem"].split()[1].rstrip("]")), r["source"]))


def code_rows() -> list[dict]:
    rows = []
    for source, n in {"oss": 3, "evol": 2, "bigcode_python_fns": 2}.items():
        for i in range(n):
            inferences = [
                {"model_name": "m", "completion_id": 0, "pass_rate": 0.5,
                 "completion": "```python\ndef f():\n    return 'half'\n```"},
                {"model_name": "m", "completion_id": 2, "pass_rate": 1.0,
                 "completion": "def f():\n    return 'second'\n"},
                {"model_name": "m", "completion_id": 1, "pass_rate": 1.0,
                 "completion": f"Here it is:\n```python\ndef f():\n    return {i}\n```\nDone."},
            ]
            if source == "evol" and i == 1:
                inferences = inferences[:1]  # nothing passes every test: not usable
            rows.append({"id": f"{source}_{i}", "source": source,
                         "question": f"Write f returning {i} ({source}).",
                         "test_cases": ["assert f() is not None"], "inferences": inferences,
                         "context_messages": [{"role": "user", "content": "q"}]})
    return rows


def write_parquet(folder: Path, rows: list[dict], shards: int = 2) -> Path:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    size = -(-len(rows) // shards)
    for k in range(shards):
        part = rows[k * size:(k + 1) * size]
        pq.write_table(pa.Table.from_pylist(part),
                       folder / "data" / f"train-{k:05d}-of-{shards:05d}.parquet")
    return folder


def write_jsonl(folder: Path, rows: list[dict]) -> Path:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "train-00000-of-00001.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def numina(tmp_path_factory) -> Path:
    return write_parquet(tmp_path_factory.mktemp("numina"), math_rows())


@pytest.fixture(scope="module")
def acecode(tmp_path_factory) -> Path:
    return write_parquet(tmp_path_factory.mktemp("acecode"), code_rows(), shards=1)


def by_source(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["source"], []).append(row)
    return out


# ---------------------------------------------------------------- counts and fields
def test_math_takes_min_of_per_source_and_usable_items_from_each_source(numina, tmp_path):
    report = build_corpus("math", tmp_path / "math.jsonl", per_source=4, source_dir=numina)
    assert report.taken == {"olympiads": 4, "amc_aime": 3, "gsm8k": 4, "math": 4}
    assert report.available == {"olympiads": 12, "amc_aime": 3, "gsm8k": 5, "math": 6}
    assert report.total == 15 and report.per_source == 4 and report.seed == 1234
    assert "amc_aime" in report.summary() and "15 pairs" in report.summary()

    rows = read_jsonl(tmp_path / "math.jsonl")
    assert len(rows) == 15 and len({r["id"] for r in rows}) == 15
    assert {s: len(r) for s, r in by_source(rows).items()} == report.taken  # no cn_k12
    for row in rows:
        problem = row["instruction"].removesuffix(MATH_SUFFIX)
        assert row["instruction"] == problem + MATH_SUFFIX
        assert problem.startswith(f"[{row['source']} ")
        assert row["response"].startswith("We add") and row["response"].endswith("$.")
        assert row["answer"] == row["response"].split("boxed{")[1].split("}")[0]
        assert row["id"].startswith(row["source"] + "-")
    pairs = load_pairs(tmp_path / "math.jsonl")  # the pipeline's reader accepts the file
    assert [p["id"] for p in pairs] == [r["id"] for r in rows]


def test_the_default_cap_keeps_every_usable_item_of_a_small_source(numina, tmp_path):
    report = build_corpus("math", tmp_path / "all.jsonl", source_dir=numina)
    assert report.per_source == 30000
    assert report.taken == {"olympiads": 11, "amc_aime": 3, "gsm8k": 5, "math": 6}
    assert report.skipped["olympiads"] == 1  # the row without a solution
    assert all(r["response"] for r in read_jsonl(tmp_path / "all.jsonl"))


def test_the_math_suffix_is_the_prompt_the_math_tasks_are_evaluated_with():
    # training prompt = test prompt (leaf_math500 and leaf_olympiadbench: the paper's CoT prompt)
    text = (ROOT / "leafbench/evaluation/tasks/leaf_math500.yaml").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("doc_to_text:"))
    assert yaml.safe_load(line)["doc_to_text"] == "{{problem}}" + MATH_SUFFIX


def test_code_rows_teacher_force_a_fully_passing_completion(acecode, tmp_path):
    report = build_corpus("code", tmp_path / "code.jsonl", source_dir=acecode)
    assert report.per_source is None
    assert report.taken == {"oss": 3, "evol": 1, "bigcode_python_fns": 2}
    assert report.skipped == {"oss": 0, "evol": 1, "bigcode_python_fns": 0}
    rows = read_jsonl(tmp_path / "code.jsonl")
    for row in rows:
        i = row["dataset_id"].rsplit("_", 1)[1]
        assert row["dataset_id"] == f"{row['source']}_{i}"
        assert row["instruction"] == f"Write f returning {i} ({row['source']})."
        # completion_id 1 (the lowest that passes), its fenced code only, in evalplus' frame
        assert row["response"] == f"{RESPONSE_PREFIX}def f():\n    return {i}\n```"
    load_pairs(tmp_path / "code.jsonl")


def test_a_built_corpus_validates_as_a_paper_experiments_training_data(numina, tmp_path):
    from leafbench.config import load_experiment

    out = tmp_path / "math_train.jsonl"
    build_corpus("math", out, per_source=2, source_dir=numina)
    exp = load_experiment(ROOT / "experiments/paper/llama3.2-1b/math_instr_paper.yaml",
                          [f"data.train={out}"])
    assert exp.data.train == str(out)


# ---------------------------------------------------------------- determinism
def test_the_same_seed_builds_the_same_file_and_another_seed_another(numina, tmp_path):
    a = build_corpus("math", tmp_path / "a.jsonl", per_source=4, source_dir=numina, seed=7)
    build_corpus("math", tmp_path / "b.jsonl", per_source=4, source_dir=numina, seed=7)
    build_corpus("math", tmp_path / "c.jsonl", per_source=4, source_dir=numina, seed=8)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    first, other = read_jsonl(tmp_path / "a.jsonl"), read_jsonl(tmp_path / "c.jsonl")
    assert {r["id"] for r in first} != {r["id"] for r in other}
    assert a.seed == 7


def test_a_smaller_cap_takes_a_prefix_of_each_sources_draw(numina, tmp_path):
    build_corpus("math", tmp_path / "small.jsonl", per_source=2, source_dir=numina)
    build_corpus("math", tmp_path / "large.jsonl", per_source=5, source_dir=numina)
    small = {r["id"] for r in read_jsonl(tmp_path / "small.jsonl")}
    large = {r["id"] for r in read_jsonl(tmp_path / "large.jsonl")}
    assert small < large


def test_jsonl_and_parquet_copies_build_the_same_corpus(numina, tmp_path):
    jsonl = write_jsonl(tmp_path / "numina_jsonl", math_rows())
    build_corpus("math", tmp_path / "p.jsonl", per_source=3, source_dir=numina)
    build_corpus("math", tmp_path / "j.jsonl", per_source=3, source_dir=jsonl)
    assert (tmp_path / "p.jsonl").read_bytes() == (tmp_path / "j.jsonl").read_bytes()


def test_the_hub_path_reads_the_train_split_of_the_recipes_dataset(monkeypatch, tmp_path,
                                                                   numina):
    import datasets

    calls = []

    def fake_load_dataset(name, split=None, **kwargs):
        calls.append((name, split))
        return datasets.Dataset.from_list(math_rows())

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    build_corpus("math", tmp_path / "hub.jsonl", per_source=3)
    assert calls == [("AI-MO/NuminaMath-CoT", "train")]
    build_corpus("math", tmp_path / "local.jsonl", per_source=3, source_dir=numina)
    assert (tmp_path / "hub.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()

    monkeypatch.setattr(datasets, "load_dataset", lambda name, split=None: (
        datasets.Dataset.from_list([{"source": "math", "problem": "p"}])))
    with pytest.raises(ConfigError, match="NuminaMath-CoT.*solution"):
        build_corpus("math", tmp_path / "bad.jsonl")


# ---------------------------------------------------------------- the output file
def test_an_existing_file_is_never_replaced_without_overwrite(numina, tmp_path):
    out = tmp_path / "math.jsonl"
    out.write_text("keep me\n")
    with pytest.raises(ConfigError, match="exists"):
        build_corpus("math", out, per_source=2, source_dir=numina)
    assert out.read_text() == "keep me\n"
    build_corpus("math", out, per_source=2, source_dir=numina, overwrite=True)
    assert len(read_jsonl(out)) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["math.jsonl"]  # no temporary left


def test_the_output_folder_is_created(numina, tmp_path):
    out = tmp_path / "data" / "paper" / "math_train.jsonl"
    build_corpus("math", out, per_source=1, source_dir=numina)
    assert len(read_jsonl(out)) == 4


# ---------------------------------------------------------------- bad input
def _bad_column_dir(tmp_path: Path) -> Path:
    rows = [{k: v for k, v in r.items() if k != "solution"} for r in math_rows()]
    return write_parquet(tmp_path / "nosolution", rows)


def _missing_source_dir(tmp_path: Path) -> Path:
    return write_parquet(tmp_path / "noamc", [r for r in math_rows() if r["source"] != "amc_aime"])


@pytest.mark.parametrize("case, kwargs, message", [
    ("recipe", {"recipe": "physics"}, r"'recipe'.*'physics'.*\['code', 'math'\]"),
    ("per_source", {"per_source": 0}, r"'per_source'"),
    ("responses", {"responses": "model"}, r"'responses'.*dataset.*teacher"),
    ("no teacher", {"responses": "teacher"}, r"'teacher'.*needs a teacher"),
    ("teacher dir", {"responses": "teacher", "teacher": Teacher("./no/such/model")},
     r"'teacher'.*existing model directory"),
    ("backend", {"responses": "teacher", "teacher": Teacher("org/model", backend="replay")},
     r"'teacher.backend'.*'replay'"),
    ("idle teacher", {"teacher": Teacher("org/model")}, r"'teacher'.*only with responses"),
    ("no dir", {"source_dir": "MISSING"}, r"'source_dir'.*existing directory"),
    ("no files", {"source_dir": "EMPTY"}, r"'source_dir'.*data/train-\*\.parquet"),
    ("column", {"source_dir": "NOSOLUTION"}, r"train-00000-of-00002\.parquet.*'columns'.*solution"),
    ("source", {"source_dir": "NOAMC"}, r"'source'.*amc_aime"),
])
def test_bad_input_is_refused_before_anything_is_written(case, kwargs, message, numina,
                                                         tmp_path):
    (tmp_path / "empty").mkdir()
    folders = {"MISSING": tmp_path / "missing", "EMPTY": tmp_path / "empty",
               "NOSOLUTION": None, "NOAMC": None}
    if kwargs.get("source_dir") == "NOSOLUTION":
        folders["NOSOLUTION"] = _bad_column_dir(tmp_path)
    if kwargs.get("source_dir") == "NOAMC":
        folders["NOAMC"] = _missing_source_dir(tmp_path)
    kwargs = {"recipe": "math", "source_dir": numina, **kwargs}
    kwargs["source_dir"] = folders.get(str(kwargs["source_dir"]), kwargs["source_dir"])
    out = tmp_path / "out.jsonl"
    with pytest.raises(ConfigError, match=message):
        build_corpus(kwargs.pop("recipe"), out, **kwargs)
    assert not out.exists()


def test_the_recipes_name_their_hub_datasets_and_sources():
    assert RECIPES["math"].hub == "AI-MO/NuminaMath-CoT"
    assert RECIPES["math"].sources == ("olympiads", "amc_aime", "gsm8k", "math")
    assert RECIPES["code"].hub == "TIGER-Lab/AceCode-87K"
    assert RESPONSE_PREFIX.startswith("Below is a Python script with a self-contained function")


# ---------------------------------------------------------------- teacher responses
def test_teacher_mode_generates_each_response_greedily(numina, tmp_path):
    from conftest import build_model, build_tokenizer

    model = build_model(build_tokenizer(), tmp_path / "teacher", hidden=16, layers=1, seed=0)
    teacher = Teacher(str(model), backend="hf", device="cpu", max_gen_toks=4, batch_size=4,
                      cache_dir=tmp_path / "cache")
    report = build_corpus("math", tmp_path / "t.jsonl", per_source=1, source_dir=numina,
                          responses="teacher", teacher=teacher)
    assert report.teacher == str(model) and report.total == 4
    rows = read_jsonl(tmp_path / "t.jsonl")
    assert all(isinstance(r["response"], str) for r in rows)
    assert not any(r["response"].startswith("We add") for r in rows)  # not the dataset's
    # the generation cache holds every response: a rebuild generates nothing, same file
    from leafbench.evaluation.generations import GenerationStore

    store = GenerationStore(tmp_path / "cache")
    assert len(store) == 4
    store.close()
    build_corpus("math", tmp_path / "t2.jsonl", per_source=1, source_dir=numina,
                 responses="teacher", teacher=teacher)
    assert (tmp_path / "t.jsonl").read_bytes() == (tmp_path / "t2.jsonl").read_bytes()
