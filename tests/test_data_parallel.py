"""Data-parallel `mine` and `teach`: 2 ranks (torchrun over gloo, on this CPU) leave the bytes
1 process leaves, and a rank killed mid-stage is resumed into the same bytes.

The stages plan their batches globally and hand whole batches to ranks, so nothing a rank
computes depends on the number of ranks; these tests hold the stages to byte equality, not
closeness. Every launched run starts two fresh Python processes (a few seconds each here), so
the data is small and the launched runs are few.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import psutil
import pytest
import rank_faults
from conftest import CHAT_TEMPLATE, SENTENCES, build_model
from test_mining_alignment import byte_bpe

from leafbench.config import validate_dict
from leafbench.contract import SUMMARY, ModelRefs, StageContext
from leafbench.data_parallel import FAULT_REPORT, Rank, balanced_shares, launch_ranks, my_share
from leafbench.distill import teacher_cache
from leafbench.distill.teacher_cache import run_teach
from leafbench.errors import RankFailed, classify
from leafbench.mining import stage as mine_stage
from leafbench.samples import write_jsonl

TWO_RANKS = {"num_processes": 2, "launcher": "torchrun"}
MAX_LENGTH = 192


def _pairs(n: int) -> list[dict]:
    """n pairs of different lengths (so batches differ in padding and cost)."""
    out = []
    for i in range(n):
        k = 1 + i % 3
        instruction = " ".join(SENTENCES[(i + j) % len(SENTENCES)] for j in range(k))
        response = f"{SENTENCES[(i + 1) % len(SENTENCES)]} The answer is {i}."
        out.append({"id": f"p{i}", "instruction": instruction, "response": response})
    return out


def _context(root, teacher, student, pairs, *, level="instruction", batch_size=2, launch=None):
    root.mkdir(parents=True, exist_ok=True)
    train = root / "train.jsonl"
    write_jsonl(train, pairs)
    exp = validate_dict({
        "name": "data-parallel-test",
        "models": {"teacher": str(teacher), "student": str(student), "device": "cpu"},
        "data": {"max_length": MAX_LENGTH},
        "mining": {"level": level, "batch_size": batch_size, **({"launch": launch} if launch
                                                                 else {})},
    })
    out = root / "mine.partial"
    out.mkdir(exist_ok=True)
    refs = ModelRefs(str(teacher), str(student), train, None, {})
    return StageContext(exp, out, {}, refs, root)


def _mine(root, *models, **kwargs):
    ctx = _context(root, *models, **kwargs)
    metrics = mine_stage.run_mine(ctx)
    (ctx.out / SUMMARY).write_text(json.dumps(metrics, sort_keys=True))
    return ctx.out


def _files(out) -> dict[str, bytes]:
    """Every file the stage left in its directory, by name: the artifact as it would be
    renamed into place."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def mixed_pair(tmp_path_factory):
    """Teacher and student on two different byte-level BPE tokenizers (merges across words in
    the student's), as in test_mining_alignment."""
    root = tmp_path_factory.mktemp("dp_mixed")
    teacher_tok = byte_bpe(400, ["<|bos|>", "<|eos|>", "<|pad|>"], CHAT_TEMPLATE)
    student_tok = byte_bpe(330, ["<|pad|>", "<|bos|>", "<|eos|>"], CHAT_TEMPLATE,
                           use_regex=False)
    return (build_model(teacher_tok, root / "teacher", hidden=32, layers=2, seed=1),
            build_model(student_tok, root / "student", hidden=16, layers=1, seed=2))


# ---------------------------------------------------------------- who computes which batch
@pytest.mark.parametrize("ranks", [1, 2, 3, 5])
def test_every_batch_goes_to_exactly_one_rank_and_the_loads_stay_balanced(ranks):
    costs = [float(c) for c in [5, 90, 12, 12, 40, 7, 33, 60, 1, 18, 25, 25]]
    shares = balanced_shares(costs, ranks)
    assert sorted(i for share in shares for i in share) == list(range(len(costs)))
    assert all(share == sorted(share) for share in shares)
    loads = [sum(costs[i] for i in share) for share in shares]
    # The longest-processing-time rule: no rank ends more than one batch above another.
    assert max(loads) - min(loads) <= max(costs)
    assert balanced_shares(costs, ranks) == shares  # a pure function of costs and count


def test_shares_balance_tokens_not_batch_counts():
    pending = [3, 4, 7, 9]
    costs = [100.0, 10.0, 10.0, 10.0]
    assert my_share(pending, costs, Rank(0, 2)) == [3]
    assert my_share(pending, costs, Rank(1, 2)) == [4, 7, 9]


# ---------------------------------------------------------------- mine: 2 ranks == 1 rank
@pytest.mark.parametrize("level", ["instruction", "response"])
def test_two_ranks_mine_the_bytes_one_process_mines(tiny_pair, tmp_path, level):
    pairs = _pairs(10)
    one = _mine(tmp_path / "one", *tiny_pair, pairs, level=level)
    two = _mine(tmp_path / "two", *tiny_pair, pairs, level=level, launch=TWO_RANKS)
    rows = (one / mine_stage.STORE).read_text().splitlines()
    assert len(rows) >= 8 and {json.loads(r)["level"] for r in rows} == {level}
    assert _files(two) == _files(one)
    assert set(_files(one)) == {mine_stage.STORE, SUMMARY}  # batch files and spec are gone


def test_two_ranks_mine_across_two_tokenizers_the_bytes_one_process_mines(mixed_pair, tmp_path):
    pairs = _pairs(8)
    one = _mine(tmp_path / "one", *mixed_pair, pairs, level="both")
    two = _mine(tmp_path / "two", *mixed_pair, pairs, level="both", launch=TWO_RANKS)
    rows = [json.loads(r) for r in (one / mine_stage.STORE).read_text().splitlines()]
    assert {r["segmentation"] for r in rows} == {"common"}
    assert {r["level"] for r in rows} == {"instruction", "response"}
    assert _files(two) == _files(one)


# ---------------------------------------------------------------- a rank killed mid-stage
def _workers() -> list[psutil.Process]:
    """The launched rank processes under this test process (the launcher's own agent has the
    same module on its command line but no RANK)."""
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if ("leafbench.data_parallel" in " ".join(proc.cmdline())
                    and "RANK" in proc.environ()):
                out.append(proc)
        except psutil.NoSuchProcess:
            continue
    return out


def test_a_rank_killed_mid_stage_resumes_into_the_one_process_bytes(tiny_pair, tmp_path):
    """Rank 1 is SIGKILLed once it has finished some but not all of its batches; the launch
    fails, the finished batches stay, and a second launch computes only the rest."""
    pairs = _pairs(48)
    one = _mine(tmp_path / "one", *tiny_pair, pairs, batch_size=1)
    full = json.loads((one / SUMMARY).read_text())

    ctx = _context(tmp_path / "two", *tiny_pair, pairs, batch_size=1, launch=TWO_RANKS)
    plan = mine_stage.plan_mining(ctx)
    pending = list(range(len(plan.batches)))
    share = my_share(pending, [plan.cost(b) for b in pending], Rank(1, 2))
    batch_dir = ctx.out / mine_stage.BATCHES
    failure: list[BaseException] = []

    def launch():
        try:
            mine_stage.run_mine(ctx)
        except BaseException as err:  # noqa: BLE001 - the test inspects it below
            failure.append(err)

    thread = threading.Thread(target=launch)
    thread.start()
    rank1 = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and thread.is_alive():
        if rank1 is None:
            ranks = {p.environ().get("RANK"): p for p in _workers()}
            rank1 = ranks.get("1")
            assert len(ranks) <= 2
        elif any(mine_stage._batch_file(batch_dir, b).is_file() for b in share):
            rank1.send_signal(signal.SIGSTOP)  # hold it still while we look
            break
        time.sleep(0.002)
    assert rank1 is not None, "no rank 1 process was launched"
    finished = [b for b in share if mine_stage._batch_file(batch_dir, b).is_file()]
    rank1.send_signal(signal.SIGKILL)
    thread.join(timeout=120)
    assert 0 < len(finished) < len(share), "rank 1 was not stopped mid-stage"
    assert failure and isinstance(failure[0], subprocess.CalledProcessError)
    assert not (ctx.out / mine_stage.STORE).exists()

    metrics = mine_stage.run_mine(ctx)  # the re-run: 2 ranks again
    assert metrics["samples"] == full["samples"]
    assert 0 < metrics["context_tokens_this_run"] < full["context_tokens_this_run"]
    assert _files(ctx.out) == {mine_stage.STORE: (one / mine_stage.STORE).read_bytes()}
    assert not _workers()


# ---------------------------------------------------------------- a rank's fault reaches the parent
@pytest.fixture
def rank_faults_importable(monkeypatch):
    """The launched processes import the failing work from tests/rank_faults.py."""
    tests = os.path.dirname(rank_faults.__file__)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [tests,
                                                                   os.environ.get("PYTHONPATH")])))


def test_a_ranks_cuda_oom_is_classified_in_the_parent(tiny_pair, tmp_path, rank_faults_importable):
    """The parent sees only the launcher's exit status; the failing rank's own report makes the
    one-line fault say "CUDA out of memory" with the rank's message, not "unexpected error"."""
    from leafbench.cli import _fault_line

    ctx = _context(tmp_path, *tiny_pair, _pairs(2), launch=TWO_RANKS)
    with pytest.raises(subprocess.CalledProcessError) as caught:  # still one, for old callers
        launch_ranks(ctx, ctx.exp.mining.launch, rank_faults.out_of_cuda_memory_on_rank_1,
                     {"gib": 2.5}, "spec.json")
    err = caught.value
    assert isinstance(err, RankFailed)
    assert [r.rank for r in err.reports] == [1]
    assert str(err) == ("rank 1 of 2 failed: OutOfMemoryError: CUDA out of memory. "
                        "Tried to allocate 2.50 GiB")
    fault = classify(err)
    assert fault is not None and fault.what == "CUDA out of memory"
    line = _fault_line(err, None, fault)
    assert line.startswith("failed: CUDA out of memory (RankFailed: rank 1 of 2 failed")
    assert "lower the stage's batch size" in line
    assert not list(ctx.out.glob(f"{FAULT_REPORT}*")), "the reports are cleaned up"


def test_an_unknown_rank_error_is_named_but_not_classified(tiny_pair, tmp_path,
                                                           rank_faults_importable):
    ctx = _context(tmp_path, *tiny_pair, _pairs(2), launch=TWO_RANKS)
    with pytest.raises(RankFailed) as caught:
        launch_ranks(ctx, ctx.exp.mining.launch, rank_faults.a_bug_on_every_rank,
                     {"column": "answer"}, "spec.json")
    assert [r.rank for r in caught.value.reports] == [0, 1]
    assert str(caught.value) == ("rank 0 of 2 failed (and 1 other ranks): "
                                 "KeyError: \"no column 'answer' on rank 0\"")
    assert classify(caught.value) is None


def test_a_rank_that_reports_nothing_still_fails_with_the_launchers_status():
    failed = subprocess.CalledProcessError(-9, ["torchrun"])
    err = RankFailed(failed, [])
    assert "died without reporting why" in str(err) and "SIGKILL" in str(err)
    assert classify(err) is None


# ---------------------------------------------------------------- teach: 2 ranks == 1 rank
def _teach(root, tiny_pair, items, cache):
    teacher, student = tiny_pair
    prune = root / "prune"
    prune.mkdir(parents=True)
    write_jsonl(prune / "counterfactuals.jsonl", items)
    exp = validate_dict({
        "name": "data-parallel-teach",
        "models": {"teacher": str(teacher), "student": str(student), "device": "cpu"},
        "data": {"max_length": MAX_LENGTH},
        "distill": {"batch_size": 2, "teacher_cache": cache, "loss": {"temperature": 2.0}},
    })
    out = root / "teach.partial"
    out.mkdir()
    ctx = StageContext(exp, out, {"prune": prune},
                       ModelRefs(str(teacher), str(student), root / "x", None, {}), root)
    metrics = run_teach(ctx)
    (out / SUMMARY).write_text(json.dumps(metrics, sort_keys=True))
    return out


@pytest.mark.parametrize("cache", [{"mode": "exact"}, {"mode": "topk", "k": 5}])
def test_two_ranks_teach_the_bytes_one_process_teaches(tiny_pair, tmp_path, monkeypatch, cache):
    monkeypatch.setattr(teacher_cache, "SHARD_ITEMS", 3)
    items = [{**p, "original_id": p["id"], "sample_id": p["id"], "kind": "original",
              "level": "instruction", "loss_from": 0, "removed": []} for p in _pairs(11)]
    one = _teach(tmp_path / "one", tiny_pair, items, cache)
    two = _teach(tmp_path / "two", tiny_pair, items, {**cache, "launch": TWO_RANKS})
    files = _files(one)
    assert len([n for n in files if n.startswith("shard-")]) == 4
    assert _files(two) == files


def test_batches_finished_under_another_batch_size_are_kept_by_their_rows(tiny_pair, tmp_path):
    """The batch size is no part of mining's key: batch files cut by another layout are not
    merged as they are (that would mix two plans) but give their rows back to every batch of
    the new plan that they cover whole."""
    pairs = _pairs(6)
    full_out = _mine(tmp_path / "full", *tiny_pair, pairs, batch_size=2)
    full = json.loads((full_out / SUMMARY).read_text())
    rows = (full_out / mine_stage.STORE).read_text().splitlines(keepends=True)

    ctx = _context(tmp_path / "again", *tiny_pair, pairs, batch_size=4)
    stale = ctx.out / mine_stage.BATCHES
    stale.mkdir()
    (stale / mine_stage.LAYOUT).write_text("cut by batch size 2")
    (stale / "batch-0000000.jsonl").write_text("".join(rows[:2]))
    (stale / "batch-0000001.jsonl").write_text("".join(rows[2:4]))
    metrics = mine_stage.run_mine(ctx)
    first = sum(len(json.loads(r)["offsets"]) for r in rows[:4])
    assert metrics["context_tokens_this_run"] == full["context_tokens_this_run"] - first
    assert set(_files(ctx.out)) == {mine_stage.STORE}
    again = (ctx.out / mine_stage.STORE).read_text().splitlines(keepends=True)
    assert again[:4] == rows[:4]  # taken over, not recomputed
    assert [json.loads(r)["id"] for r in again] == [json.loads(r)["id"] for r in rows]
