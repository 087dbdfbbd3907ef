"""A workspace many processes share: the lease (leafbench/lease.py) on its own, then real
`leafbench run` processes started together on one workspace.

Every test here uses real processes, because what is being shown is what happens between
them: exclusivity, a heartbeat that keeps a slow holder's lease, takeover of a lease whose
holder died (dead pid on this host at once; silent for a TTL anywhere), two breakers racing,
a holder that lost its lease not committing, and the pipeline computing each stage once.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import small_experiment

from leafbench.lease import (
    LeaseSettings,
    _create,
    _take_away,
    acquire,
    host_id,
    lease_path,
    read_lease,
)

# Short enough for quick tests, long enough that a loaded 2-core machine never delays a live
# holder's heartbeat (every 0.1 s) past the TTL.
FAST = {"LEAFBENCH_LEASE_TTL": "2.0", "LEAFBENCH_LEASE_HEARTBEAT": "0.1",
        "LEAFBENCH_LEASE_POLL": "0.05"}

# A process that takes the lease at argv[1], logs entering and leaving to argv[2], and holds it
# argv[3] seconds. Mode "die" leaves without releasing (a crash); "lose" reports a lost lease.
HOLDER = """
import os, sys, time
from pathlib import Path
from leafbench.lease import LeaseLost, acquire

path, log, hold, mode = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
lease = acquire(path)
def note(what):
    with open(log, "a") as fh:
        fh.write(f"{what} {os.getpid()} {time.time():.3f}\\n")
note("enter")
if mode == "die":
    os._exit(0)
try:
    with lease:
        end = time.monotonic() + hold
        while time.monotonic() < end:
            time.sleep(0.01)
        note("exit")
except LeaseLost:
    note("lost")
    sys.exit(3)
"""


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, **FAST, "LEAFBENCH_PROGRESS": "0", **extra}


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def holder(tmp_path):
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    log = tmp_path / "log.txt"

    def start(path: Path, hold: float, mode: str = "hold", **env: str) -> subprocess.Popen:
        # A holder learns of a lost lease through a simulated SIGINT, which Python only handles
        # when SIGINT is not ignored; a shell's background job (`cmd &` without job control)
        # inherits it ignored, so the holder gets the default disposition back, as it has
        # when started from a terminal or a CI runner.
        return subprocess.Popen([sys.executable, str(script), str(path), str(log), str(hold),
                                 mode], env=_env(**env), stderr=subprocess.PIPE, text=True,
                                preexec_fn=_default_sigint)

    start.log = log
    return start


def _events(log: Path) -> list[tuple[str, int, float]]:
    rows = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    return [(what, int(pid), float(t)) for what, pid, t in rows]


def _assert_one_at_a_time(events: list[tuple[str, int, float]]) -> None:
    """Entries and exits alternate, each exit by the process that entered last."""
    for enter, leave in zip(events[::2], events[1::2], strict=True):
        assert (enter[0], leave[0]) == ("enter", "exit") and enter[1] == leave[1], events


def _foreign_lease(path: Path, token: str = "ghost") -> None:
    """A lease left by a machine that died: its pid means nothing here."""
    path.write_text(json.dumps({"token": token, "host": "elsewhere",
                                "host_id": "elsewhere/boot/1", "pid": 1}))


# ---------------------------------------------------------------------------- the lease


def test_the_lease_admits_one_process_at_a_time(tmp_path, holder):
    path = tmp_path / "stage.lease"
    procs = [holder(path, 0.3) for _ in range(4)]
    assert all(p.wait(timeout=60) == 0 for p in procs), [p.stderr.read() for p in procs]
    events = _events(holder.log)
    assert len(events) == 8
    _assert_one_at_a_time(events)
    assert not path.exists() and not list(tmp_path.glob(".stage.lease*"))


def test_the_heartbeat_keeps_a_slow_holder_s_lease(tmp_path, holder):
    """The holder keeps the lease for two and a half TTLs; a waiter on the same host (pid
    alive, so only the TTL rule applies) must not break it."""
    path = tmp_path / "stage.lease"
    proc = holder(path, 5.0)
    while read_lease(path) is None:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.02)
    first = read_lease(path)
    lease = acquire(path, settings=LeaseSettings(ttl=2.0, heartbeat=0.1, poll=0.05))
    got = time.time()
    lease.release()
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    (enter, _, _), (leave, _, left) = _events(holder.log)
    assert (enter, leave) == ("enter", "exit") and got >= left
    assert first.token != lease.token


def test_a_heartbeat_moves_the_lease_file(tmp_path):
    path = tmp_path / "stage.lease"
    with acquire(path, settings=LeaseSettings(ttl=1.0, heartbeat=0.2, poll=0.05)) as lease:
        before = read_lease(path).signature
        time.sleep(0.7)
        assert read_lease(path).signature != before and lease.still_held()
    assert not path.exists()


def test_a_silent_lease_is_taken_over_after_the_ttl(tmp_path):
    """A lease from another machine that stopped beating is broken once it has not changed
    for one TTL of the waiter's own clock (never by comparing clocks across machines)."""
    path = tmp_path / "stage.lease"
    _foreign_lease(path)
    old = time.time() - 3600
    os.utime(path, (old, old))  # an ancient mtime alone must not count: clocks differ
    start = time.monotonic()
    lease = acquire(path, settings=LeaseSettings(ttl=1.5, heartbeat=0.5, poll=0.05))
    waited = time.monotonic() - start
    assert lease.still_held() and read_lease(path).token == lease.token
    lease.release()
    assert 1.5 <= waited < 10


def test_a_dead_holder_on_this_host_is_taken_over_at_once(tmp_path, holder):
    path = tmp_path / "stage.lease"
    proc = holder(path, 0, mode="die")
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    seen = read_lease(path)
    assert seen.info["pid"] == proc.pid and seen.info["host_id"] == host_id()
    start = time.monotonic()
    lease = acquire(path, settings=LeaseSettings(ttl=600, heartbeat=10, poll=0.05))
    assert time.monotonic() - start < 5
    lease.release()


def test_two_breakers_racing_for_one_stale_lease_take_turns(tmp_path, holder):
    path = tmp_path / "stage.lease"
    _foreign_lease(path)
    procs = [holder(path, 0.4) for _ in range(4)]
    assert all(p.wait(timeout=60) == 0 for p in procs), [p.stderr.read() for p in procs]
    events = _events(holder.log)
    assert len(events) == 8
    _assert_one_at_a_time(events)
    assert not path.exists()


def test_breaking_verifies_it_moved_the_lease_it_judged_stale(tmp_path):
    """The race the rename-and-verify closes: a breaker judged lease A stale, but A was
    broken meanwhile and B created. The breaker moves B aside, sees it is not A, and puts
    it back; B's holder keeps its lease."""
    path = tmp_path / "stage.lease"
    assert _create(path, "A", host_id())
    judged = read_lease(path)
    assert _take_away(path, "A", judged.inode, tag="broken")  # the first breaker
    assert _create(path, "B", host_id())  # a new holder
    assert not _take_away(path, "A", judged.inode, tag="broken")  # the late breaker
    assert read_lease(path).token == "B"
    assert not list(tmp_path.glob(".stage.lease.*"))


def test_a_holder_that_lost_its_lease_stops_and_leaves_the_new_one_alone(tmp_path, holder):
    path = tmp_path / "stage.lease"
    proc = holder(path, 30.0)
    while read_lease(path) is None:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.02)
    seen = read_lease(path)  # as if it had stalled past the TTL and been broken
    assert _take_away(path, seen.token, seen.inode, tag="broken")
    assert _create(path, "newcomer", host_id())
    assert proc.wait(timeout=10) == 3, proc.stderr.read()
    assert [e[0] for e in _events(holder.log)] == ["enter", "lost"]
    assert read_lease(path).token == "newcomer"


def test_without_hard_links_the_lease_is_created_exclusively(tmp_path, monkeypatch):
    """Some filesystems refuse hard links: creation falls back to O_CREAT|O_EXCL."""
    def no_links(*_args, **_kwargs):
        raise PermissionError(errno.EPERM, "hard links not supported here")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "stage.lease"
    assert _create(path, "A", host_id()) and not _create(path, "B", host_id())
    assert read_lease(path).token == "A"
    assert not list(tmp_path.glob(".stage.lease.*"))


def test_settings_come_from_the_environment_and_are_checked(monkeypatch):
    monkeypatch.setenv("LEAFBENCH_LEASE_TTL", "30")
    monkeypatch.setenv("LEAFBENCH_LEASE_HEARTBEAT", "3")
    monkeypatch.delenv("LEAFBENCH_LEASE_POLL", raising=False)
    assert LeaseSettings.from_env() == LeaseSettings(ttl=30.0, heartbeat=3.0, poll=1.0)
    monkeypatch.setenv("LEAFBENCH_LEASE_HEARTBEAT", "20")
    with pytest.raises(ValueError, match="at most half the TTL"):
        LeaseSettings.from_env()
    monkeypatch.setenv("LEAFBENCH_LEASE_TTL", "soon")
    with pytest.raises(ValueError, match="LEAFBENCH_LEASE_TTL='soon'"):
        LeaseSettings.from_env()


# ---------------------------------------------------------------------------- the pipeline

ROW = re.compile(r"^[│┃](.+)[│┃]\s*$")


def _leafbench(yaml: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "leafbench.cli", "run", str(yaml), *args]


def _start(cmd: list[str]) -> subprocess.Popen:
    # COLUMNS: the end-of-run tables are never wrapped, so they parse the same every time.
    # A TTL of 1 s would be shorter than a busy machine's pauses (a holder judged silent loses
    # its lease); the killed holder is taken over through its dead pid, not the TTL.
    env = _env(COLUMNS="200", LEAFBENCH_LEASE_TTL="60", LEAFBENCH_LEASE_HEARTBEAT="2",
               LEAFBENCH_LEASE_POLL="0.1")
    return subprocess.Popen(cmd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[dict, list]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return _tables(out)


def _tables(stdout: str) -> tuple[dict[str, tuple[str, str]], list[list[str]]]:
    """(stage -> (status, cache key), every other table row) from `leafbench run`'s output."""
    stages, rows = {}, []
    for line in stdout.splitlines():
        match = ROW.match(line.strip())
        if not match:
            continue
        cells = [c.strip() for c in re.split(r"[│┃]", match.group(1))]
        if len(cells) == 4 and cells[1] in ("computed", "cached"):
            stages[cells[0]] = (cells[1], cells[3])
        elif cells[0] not in ("stage", "model", "τ", "measure"):
            rows.append(cells)
    return stages, rows


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory):
    root = tmp_path_factory.mktemp("workspace")
    path = root / "tiny.yaml"
    # test_pipeline's experiment, smaller still: these tests show who computes what, not what
    # the numbers are.
    path.write_text(small_experiment(root / "ws", name="tiny", experiment="workspace-test",
                                     n_pretrain=400, n_train=16, n_test=8, teacher_steps=30,
                                     student_steps=20, max_gen_toks=8))
    return path


@pytest.fixture(scope="module")
def two_runs(tiny_yaml):
    """Two `leafbench run` processes (MLflow tracking on) started together on a fresh
    workspace: testbed, every stage and the shared sqlite MLflow store all contended."""
    procs = [_start(_leafbench(tiny_yaml)) for _ in range(2)]
    return [_finish(p) for p in procs]


def test_two_runs_together_compute_each_stage_once_and_agree(two_runs, tiny_yaml):
    (stages_a, rows_a), (stages_b, rows_b) = two_runs
    names = ["testbed", "mine", "prune", "teach", "distill", "evaluate", "interpret"]
    assert list(stages_a) == list(stages_b) == names
    for name in names:
        assert {stages_a[name][0], stages_b[name][0]} == {"computed", "cached"}, name
        assert stages_a[name][1] == stages_b[name][1], name
    assert rows_a == rows_b and any(r[0] == "teacher" for r in rows_a)  # the scores
    ws = tiny_yaml.parent / "ws"
    assert not list(ws.rglob("*.lease")) and not list(ws.rglob("*.partial"))
    mined = next((ws / "artifacts" / "mine").iterdir()) / "saliency.jsonl"
    ids = [json.loads(line)["id"] for line in mined.read_text().splitlines()]
    assert len(ids) == len(set(ids))  # no sample mined twice into one store


def test_both_runs_are_in_the_shared_mlflow_store(two_runs, tiny_yaml):
    from mlflow.tracking import MlflowClient

    db = tiny_yaml.parent / "ws" / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("workspace-test")
    runs = client.search_runs([experiment.experiment_id],
                              filter_string="attributes.run_name = 'tiny'")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}


def test_a_run_with_another_tau_waits_for_and_reuses_the_mining(two_runs, tiny_yaml):
    """Mining's key leaves τ out: of two runs started together on new mining inputs, one mines
    and the other, with another τ, waits and reuses it."""
    base = ["--no-tracking", "--until", "prune", "-s", "data.max_length=96"]
    procs = [_start(_leafbench(tiny_yaml, *base)),
             _start(_leafbench(tiny_yaml, *base, "-s", "mining.threshold.tau=0.05"))]
    (a, _), (b, _) = [_finish(p) for p in procs]
    assert a["mine"][1] == b["mine"][1]
    assert {a["mine"][0], b["mine"][0]} == {"computed", "cached"}
    assert a["prune"][1] != b["prune"][1] and a["prune"][0] == b["prune"][0] == "computed"


def test_killing_the_holder_hands_the_stage_to_the_waiting_run(two_runs, tiny_yaml):
    """SIGKILL whichever process holds the distillation lease once it has a checkpoint: the
    other one takes over at once (dead pid on this host), resumes in the same partial
    directory, and ends with the weights and step log of the uninterrupted distillation that
    `two_runs` made (checkpointing every step instead of every third changes the key, not
    the training)."""
    from safetensors.torch import load_file

    run = _leafbench(tiny_yaml, "--no-tracking", "--until", "distill",
                     "-s", "distill.save_every=1")
    procs = {p.pid: p for p in (_start(run), _start(run))}
    root = tiny_yaml.parent / "ws" / "artifacts" / "distill"
    deadline = time.monotonic() + 300
    victim = partial = None
    while victim is None:
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs.values())
        for partial in root.glob("*.partial"):
            seen = read_lease(lease_path(partial.with_suffix("")))
            if seen and any((partial / "checkpoints").glob("step-*")):
                victim = procs[seen.info["pid"]]
                break
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    (partial / "marker").write_text("left in the killed holder's partial directory")
    survivor = next(p for p in procs.values() if p is not victim)
    stages, _ = _finish(survivor)
    assert stages["distill"][0] == "computed"
    final = root / stages["distill"][1]
    assert final == partial.with_suffix("") and (final / "marker").is_file()  # resumed in place

    reference = root / two_runs[0][0]["distill"][1]
    assert reference != final
    assert (final / "steps.jsonl").read_text() == (reference / "steps.jsonl").read_text()
    weights = load_file(final / "student" / "model.safetensors")
    for name, tensor in load_file(reference / "student" / "model.safetensors").items():
        assert (weights[name] == tensor).all(), name
