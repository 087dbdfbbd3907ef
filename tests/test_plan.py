"""`leafbench plan`: the cost model's formulas, shipped shapes and the command, offline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from leafbench.errors import ConfigError
from leafbench.plan import command, costs
from leafbench.plan.architectures import PAPER_MODELS, Architecture, from_config_json

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "experiments" / "demo.yaml"
PAPER_ROW = ROOT / "experiments" / "paper" / "llama3.2-1b" / "math_instr_resp_paper.yaml"
TINY = Architecture("tiny", layers=1, hidden=4, intermediate=8, heads=2, kv_heads=2, vocab=10,
                    tokenizer_vocab=10, tied_embeddings=True)


def _plan(*argv: str) -> dict:
    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["plan", *argv, "--json"])
    return args


def _run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert command.run(_plan(*argv)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def no_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Work in an empty directory, with any attempt to load weights failing the test."""
    import transformers

    import leafbench.models

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the plan loaded a model")

    monkeypatch.setattr(leafbench.models, "load_causal_lm", refuse)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------- shipped shapes
@pytest.mark.parametrize("name", sorted(PAPER_MODELS))
def test_shipped_parameter_counts_match_published_sizes(name: str) -> None:
    arch = PAPER_MODELS[name]
    assert arch.published_parameters is not None
    assert abs(arch.parameters / arch.published_parameters - 1) < 0.02


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_parameter_count_from_config_json_equals_a_real_model(tmp_path: Path,
                                                              model_type: str) -> None:
    import transformers

    cfg = {"model_type": model_type, "hidden_size": 32, "intermediate_size": 80,
           "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
           "vocab_size": 97, "tie_word_embeddings": model_type == "qwen2"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    config = transformers.AutoConfig.for_model(**cfg)
    model = transformers.AutoModelForCausalLM.from_config(config)
    assert from_config_json(tmp_path / "config.json").parameters == model.num_parameters()


# ---------------------------------------------------------------- formulas, by hand
def test_forward_and_backward_flops_by_hand() -> None:
    # one layer: q 16 + k 16 + v 16 + o 16 + MLP 3·4·8 = 96 + norms 8 = 168; + final norm 4
    assert TINY.body_parameters == 172
    # 2·172·3 + 2·1·3²·4 + 2·(4·10)·2
    assert costs.forward_flops(TINY, 3, 2) == 1032 + 72 + 160
    assert costs.backward_flops(TINY, 3, 2) == 2 * 1264
    # mining: one product per weight matmul, attention's core still twice its forward
    assert costs.backward_flops(TINY, 3, 2, weight_gradients=False) == 1032 + 144 + 160
    # prefill of 3 + 2 steps of 2·172 + 2·40, attention 4·1·4·2·(3 + 1.5)
    assert costs.generation_flops(TINY, 3, 2) == costs.forward_flops(TINY, 3, 1) + 848 + 144


def test_memory_and_cache_formulas_by_hand() -> None:
    assert costs.teacher_cache_bytes("exact", 10, 600, 128) == 10 * 600 * 4
    assert costs.teacher_cache_bytes("topk", 10, 600, 128) == 10 * 128 * 8
    assert costs.teacher_cache_bytes("off", 10, 600, 128) == 0
    p = TINY.parameters  # 10·4 embedding (tied) + 172
    assert p == 212
    assert costs.training_state_bytes(TINY, 4, "none") == 16 * p
    assert costs.training_state_bytes(TINY, 4, "zero3") == 4 * p
    assert costs.training_state_bytes(TINY, 4, "zero2") == 4 * p + 3 * p
    assert costs.gpus_to_hold(141e9, 80) == 2 and costs.gpus_to_hold(1e9, 80) == 1
    assert costs.gpu_hours(3600 * 1e12, 1e12, 0.5) == 2.0


# ---------------------------------------------------------------- the command
def test_demo_plans_offline_and_writes_nothing(no_weights: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    plan = _run_json(capsys, str(DEMO))
    stages = {s["stage"]: s for s in plan["stages"]}
    assert list(stages) == ["mine", "prune", "teach", "distill", "evaluate"]
    assert plan["data"]["items"] == 256  # synthetic.n_train
    assert plan["models"]["teacher"]["name"] == "synthetic:teacher"
    teach = stages["teach"]
    assert "exact" in teach["notes"][0]  # 600 tokens <= exact_max_vocab
    positions = float(teach["notes"][1].split()[0].replace(",", ""))
    assert teach["disk_gb"] == pytest.approx(positions * 600 * 4 / 1e9)
    # demo: 3 epochs of hybrid pairs, 2 sequences per pair, one pair per item
    assert stages["distill"]["work"][0]["sequences"] == 256 * 2 * 3
    assert [w["model"] for w in stages["evaluate"]["work"]] == [
        "teacher", "student_before", "student_after"]
    assert plan["gpu_hours"] > 0
    assert list(no_weights.iterdir()) == []  # no workspace, no cache, nothing


def test_paper_row_plans_from_hub_ids_without_the_data(
        no_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = _run_json(capsys, str(PAPER_ROW), "--gpu", "h200", "--utilisation", "0.5")
    assert plan["models"]["teacher"]["name"] == "meta-llama/Llama-3.3-70B-Instruct"
    assert plan["data"]["items"] == 48893
    stages = {s["stage"]: s for s in plan["stages"]}
    mine = {w["model"]: w for w in stages["mine"]["work"]}
    # level both, 2 segments: 2 units per item; no weight gradients: backward ≈ forward
    assert mine["teacher"]["sequences"] == 2 * 48893
    assert 1.0 < mine["teacher"]["backward_flops"] / mine["teacher"]["forward_flops"] < 1.1
    assert stages["mine"]["gpus"] >= 2  # a 70B teacher in bf16 exceeds one 141 GB GPU
    # 128k vocabulary: auto -> top-k, 8·k bytes per cached position
    assert "topk" in stages["teach"]["notes"][0]
    distill = stages["distill"]["work"][0]
    # gradient checkpointing (common.yaml): backward = 2·forward + a recomputed forward
    assert distill["backward_flops"] == pytest.approx(3 * distill["forward_flops"])
    flops = sum(w["forward_flops"] + w["backward_flops"] for w in stages["distill"]["work"])
    assert stages["distill"]["gpu_hours"] == pytest.approx(flops / (989.4e12 * 0.5) / 3600)
    assert list(no_weights.iterdir()) == []


def test_data_parallel_ranks_divide_the_wall_time_not_the_gpu_hours(
        no_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The paper rows mine and teach on 4 ranks; one rank does the same work 4 times slower
    on a quarter of the GPUs."""
    four = {s["stage"]: s for s in _run_json(capsys, str(PAPER_ROW))["stages"]}
    one = {s["stage"]: s for s in _run_json(
        capsys, str(PAPER_ROW), "-s", "mining.launch.num_processes=1",
        "-s", "distill.teacher_cache.launch.num_processes=1")["stages"]}
    for stage in ("mine", "teach"):
        assert four[stage]["gpu_hours"] == pytest.approx(one[stage]["gpu_hours"])
        assert four[stage]["hours"] == pytest.approx(one[stage]["hours"] / 4)
        assert four[stage]["gpus"] == 4 * one[stage]["gpus"]


def test_an_evaluate_only_row_plans_its_evaluation_alone(
        no_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pre_kd = PAPER_ROW.with_name("pre_kd.yaml")
    plan = _run_json(capsys, str(pre_kd))
    assert [s["stage"] for s in plan["stages"]] == ["evaluate"]
    assert [w["model"] for w in plan["stages"][0]["work"]] == ["student_before"]


def test_sizes_from_the_command_line_override_the_paper_defaults(
        no_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = _run_json(capsys, str(PAPER_ROW), "--items", "1000", "--prompt-tokens", "100",
                     "--response-tokens", "5000")
    assert plan["data"]["items"] == 1000
    assert plan["data"]["length"] == 4096  # data.max_length caps the sequence
    assert plan["data"]["response"] == 3996


def test_a_built_training_file_is_counted(no_weights: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"instruction": "x" * 40, "response": "y" * 80}] * 7
    Path("train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plan = _run_json(capsys, str(PAPER_ROW), "-s", "data.train=train.jsonl")
    assert plan["data"]["items"] == 7
    assert plan["data"]["prompt"] == 10 and plan["data"]["response"] == 21  # chars/4, + EOS


@pytest.mark.parametrize("argv, field", [
    (["--gpu", "TPU-v9"], "--gpu"),
    (["--utilisation", "0"], "--utilisation"),
    (["--utilisation", "1.5"], "--utilisation"),
    (["--gpu-memory", "-1"], "--gpu-memory"),
    (["--items", "0"], "--items"),
    (["-s", "models.teacher=someone/unknown-model"], "models.teacher"),
    (["-s", "mining.segments=7"], "mining.segments"),
    (["-s", "data.train=elsewhere/train.jsonl"], "data.train"),
])
def test_bad_input_is_a_config_error(no_weights: Path, argv: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        command.run(_plan(str(PAPER_ROW), *argv))
    assert err.value.field.endswith(field)
    assert list(no_weights.iterdir()) == []
