"""Faults during a run (leafbench.cli, leafbench.errors.FAULTS): one line naming the stage,
what failed and how to resume (exit 3), and the re-run resumes to the uninterrupted result.

The disk-full case fills a real, small tmpfs mounted by the test under the teacher cache's
artifact folder; the hub case serves a tiny model from a fake hub on 127.0.0.1 that drops the
connection in the middle of the weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fake_hub import FakeHub, Repo
from safetensors.torch import load_file

from leafbench.cli import _fault_line, main
from leafbench.errors import FailedStage, classify, mark_failed_stage

PAIRS = [{"instruction": f"Tom has {i} apples and {i + 3} pears. How many apples?",
          "response": f"Tom has {i} apples. The answer is {i}."} for i in range(16)]
GSM8K_LINE = {"question": "Tom has 3 apples and gets 4. How many?", "answer": "3 + 4 = 7\n#### 7"}


def experiment(root: Path, workspace: Path, teacher: str, student: str) -> Path:
    (root / "bench" / "gsm8k").mkdir(parents=True, exist_ok=True)
    (root / "bench" / "gsm8k" / "test.jsonl").write_text(json.dumps(GSM8K_LINE) + "\n")
    train = root / "train.jsonl"
    train.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    path = root / f"{workspace.name}.yaml"
    path.write_text(json.dumps({
        "name": "faults", "workspace": str(workspace),
        "models": {"teacher": teacher, "student": student, "device": "cpu"},
        "data": {"train": str(train), "max_length": 64},
        "mining": {"batch_size": 8, "baselines": []},
        "distill": {"batch_size": 4, "teacher_cache": {"mode": "exact"}},
        "evaluate": {"tasks": ["leaf_gsm8k"], "data_dir": str(root / "bench")}}))
    return path


def teach_artifact(workspace: Path) -> Path:
    found = [p for p in (workspace / "artifacts" / "teach").iterdir()
             if p.is_dir() and not p.name.endswith(".partial")]
    assert len(found) == 1, found
    return found[0]


def mount_tmpfs(where: Path, size: str) -> None:
    """Mount a small tmpfs, or skip naming why this machine cannot."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the disk-full case needs root")
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")


def test_disk_full_in_the_teacher_cache_resumes_to_the_uninterrupted_cache(
        tmp_path, tiny_pair, monkeypatch, capsys):
    from leafbench.distill import teacher_cache

    monkeypatch.setattr(teacher_cache, "SHARD_ITEMS", 4)  # several shards from a tiny corpus
    teacher, student = (str(p) for p in tiny_pair)
    reference = experiment(tmp_path, tmp_path / "reference", teacher, student)
    assert main(["run", str(reference), "--until", "teach", "--no-tracking"]) == 0
    expected = teach_artifact(tmp_path / "reference")
    shards = sorted(expected.glob("shard-*.safetensors"))
    assert len(shards) >= 3, "the case needs a cache of several shards"
    total = sum(s.stat().st_size for s in shards)

    workspace = tmp_path / "full"
    path = experiment(tmp_path, workspace, teacher, student)
    teach_dir = workspace / "artifacts" / "teach"
    mount_tmpfs(teach_dir, f"{max(1, 4 * total // 2**20 + 1)}m")
    try:
        # Ballast leaves room for about half the cache: the stage fills the disk mid-way.
        stat = os.statvfs(teach_dir)
        ballast = teach_dir / "ballast"
        with open(ballast, "wb") as fh:
            fh.truncate(0)
            fh.write(b"\0" * (stat.f_bavail * stat.f_frsize - total // 2))
        capsys.readouterr()
        status = main(["run", str(path), "--until", "teach", "--no-tracking"])
        err = capsys.readouterr().err  # also transformers' own progress bars
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert status == 3 and len(lines) == 1 and "Traceback" not in err, err
        line = lines[0]
        assert line.startswith("error: stage teach failed: disk full (ENOSPC)"), line
        partial = next(teach_dir.glob("*.partial"))
        assert partial.is_dir() and f"resumes from {partial}" in line
        done = sorted(partial.glob("shard-*.safetensors"))
        assert 0 < len(done) < len(shards), "the disk should fill part way through"
        # mining and pruning, computed before the fault, are kept
        assert all(any((workspace / "artifacts" / s).glob("*/summary.json"))
                   for s in ("mine", "prune"))

        ballast.unlink()  # space freed: the same command resumes after the finished shards
        assert main(["run", str(path), "--until", "teach", "--no-tracking"]) == 0
        assert "teach" in capsys.readouterr().out
        resumed = teach_artifact(workspace)
        assert resumed.name == expected.name
        assert json.loads((resumed / "index.json").read_text()) == json.loads(
            (expected / "index.json").read_text())
        assert [s.name for s in sorted(resumed.glob("shard-*"))] == [s.name for s in shards]
        for shard in shards:
            got, want = load_file(resumed / shard.name), load_file(shard)
            assert got.keys() == want.keys()
            assert all(torch.equal(got[k], want[k]) for k in want)
        summary = json.loads((resumed / "summary.json").read_text())
        assert summary["teacher_forward_items"] < summary["cached_items"]  # it did resume
    finally:  # lazily if a handle is still open: a test must never leave a mount behind
        if subprocess.run(["umount", str(teach_dir)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(teach_dir)], check=False)


def test_the_hub_dropping_mid_download_is_one_line_and_the_rerun_completes(
        tmp_path, tiny_pair):
    """The teacher is a hub id whose weights the fake hub cuts off mid-body: the preflight
    passes (config.json downloads), the mining stage's download fails; served again, the same
    command completes. A fresh process: the hub client reads HF_ENDPOINT when imported."""
    teacher = tmp_path / "repo"
    shutil.copytree(tiny_pair[0], teacher)
    path = experiment(tmp_path, tmp_path / "ws", "org/teacher", str(tiny_pair[1]))
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE", "TRANSFORMERS_OFFLINE")}
    env |= {"HF_HOME": str(tmp_path / "hf"), "LEAFBENCH_HUB_TIMEOUT": "3",
            "HF_HUB_DISABLE_XET": "1", "HF_HUB_DOWNLOAD_TIMEOUT": "5"}
    command = [sys.executable, "-m", "leafbench.cli", "run", str(path), "--until", "mine",
               "--no-tracking"]
    repo = Repo(files=teacher, drop={"model.safetensors"})
    with FakeHub({"org/teacher": repo}) as hub:
        proc = subprocess.run(command, env=env | {"HF_ENDPOINT": hub.url}, capture_output=True,
                              text=True, timeout=600)
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
        assert proc.returncode == 3, proc.stderr[-3000:]
        assert len(lines) == 1 and "the hub connection dropped" in lines[0], proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        repo.drop.clear()
        proc = subprocess.run(command, env=env | {"HF_ENDPOINT": hub.url}, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]


def test_cuda_out_of_memory_in_a_stage_is_named_with_what_to_do(tmp_path):
    """The real exception type torch raises (no GPU here to raise it for real)."""
    err = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    partial = tmp_path / "artifacts" / "distill" / "abc123.partial"
    partial.mkdir(parents=True)
    mark_failed_stage(err, FailedStage("distill", "abc123", str(tmp_path)))
    from leafbench.errors import failed_stage

    line = _fault_line(err, failed_stage(err), classify(err))
    assert line.startswith("stage distill failed: CUDA out of memory (OutOfMemoryError: ")
    assert "distill.batch_size" in line and f"resumes from {partial}" in line
    assert "\n" not in line


def test_an_unexpected_error_outside_any_stage_keeps_its_traceback():
    assert classify(KeyError("x")) is None  # a bug is not a fault of the surroundings
