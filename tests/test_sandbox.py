"""The sandbox against a hostile corpus: every attack is contained, scored as non-pass, and leaves
the host (this test process, its files, its environment) and the next sample alone.

Where a protection depends on the kernel (network namespace, mount namespace), the test asserts
what ``isolation()`` says is in effect here, and asserts the documented fallback explicitly
where it is not, instead of skipping.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from leafbench.evaluation.sandbox import (
    UID_BASE,
    UID_SLOTS,
    Limits,
    Outcome,
    isolation,
    run_python,
)

AS_ROOT = os.geteuid() == 0
NORMAL = "import sys\nnums = [int(x) for x in sys.stdin.read().split()]\nassert sum(nums) == 6\nprint('ok')\n"


def src(code: str) -> str:
    return textwrap.dedent(code).lstrip()


def run_uid(outcome: Outcome) -> int | None:
    """The sandbox uid a run used (from its detail); None when not root (no uid switch)."""
    match = re.search(r"uid=(\d+)", outcome.detail)
    return int(match.group(1)) if match else None


def processes_of(uid: int) -> list[tuple[int, str]]:
    """Live processes of ``uid`` on the host (pid, name), read from the host's /proc."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = dict(
                line.split(":", 1) for line in Path(f"/proc/{name}/status").read_text().splitlines()
            )
        except (OSError, ValueError):
            continue
        if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith("Z"):
            found.append((int(name), fields["Name"].strip()))
    return found


def assert_contained(outcome: Outcome) -> None:
    """Non-pass, nothing of the run left running, and a normal sample right after still passes."""
    assert outcome.status != "pass", outcome
    uid = run_uid(outcome)
    assert (uid is not None) == AS_ROOT, outcome.detail
    if uid is not None:
        assert UID_BASE <= uid < UID_BASE + UID_SLOTS
        assert processes_of(uid) == []
    after = run_python(NORMAL, stdin="1 2 3")
    assert (after.status, after.stdout) == ("pass", "ok\n"), after


# ----------------------------------------------------------------------------- positive cases


def test_correct_program_passes_in_a_fresh_isolated_directory():
    out = run_python(
        src("""
        import os, sys
        print(os.getcwd(), os.environ["HOME"], os.getuid(), sys.flags.isolated, sorted(os.listdir()))
    """)
    )
    assert out.status == "pass" and out.returncode == 0, out
    cwd, home, uid, isolated, listing = out.stdout.split(" ", 4)
    assert cwd == home and isolated == "1" and listing.strip() == "['main.py']"
    assert not os.path.exists(cwd), "the working directory is removed afterwards"
    if AS_ROOT:
        assert UID_BASE <= int(uid) < UID_BASE + UID_SLOTS
        assert "setuid" in isolation()
    assert "isolation=" in out.detail


def test_stdin_is_delivered_and_closed():
    out = run_python(
        "import sys\nprint(sys.stdin.read()[::-1])\nprint(repr(sys.stdin.read()))", stdin="abc"
    )
    assert (out.status, out.stdout) == ("pass", "cba\n''\n"), out


def test_failing_assert_is_fail():
    out = run_python("def add(a, b):\n    return a - b\nassert add(2, 2) == 4\n")
    assert (out.status, out.returncode) == ("fail", 1), out
    assert "AssertionError" in out.stderr and "AssertionError" in out.detail


def test_syntax_error_is_fail():
    out = run_python("def f(:\n    pass\n")
    assert (out.status, out.returncode) == ("fail", 1), out
    assert "SyntaxError" in out.detail


def test_rlimits_are_applied_in_the_child():
    limits = Limits(cpu_seconds=7, memory_bytes=512 << 20, file_size_bytes=3 << 20, max_processes=9)
    out = run_python(
        src("""
        import resource as r
        for n in ("AS", "CPU", "FSIZE", "NPROC", "CORE"):
            print(n, *r.getrlimit(getattr(r, "RLIMIT_" + n)))
    """),
        limits=limits,
    )
    assert out.status == "pass", out
    assert out.stdout.splitlines() == [
        f"AS {512 << 20} {512 << 20}",
        "CPU 7 8",
        f"FSIZE {3 << 20} {3 << 20}",
        "NPROC 9 9",
        "CORE 0 0",
    ]


# ----------------------------------------------------------------------------- hostile corpus


def test_fork_bomb_is_bounded_and_fully_reaped():
    limits = Limits(wall_seconds=2.0, max_processes=16)
    counted = run_python(
        src("""
        import os, time
        made = 0
        try:
            for _ in range(200):
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                made += 1
        except OSError as exc:
            print(made, type(exc).__name__)
        raise SystemExit(1)
    """),
        limits=limits,
    )
    made, error = counted.stdout.split()
    if AS_ROOT:  # RLIMIT_NPROC only binds because the program runs as its own unprivileged uid
        assert int(made) < 16 and error == "BlockingIOError", counted
    assert counted.seconds < 5
    assert_contained(counted)

    start = time.monotonic()
    bomb = run_python(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        limits=limits,
    )
    assert bomb.status == "timeout" and time.monotonic() - start < 6, bomb
    assert_contained(bomb)


def test_memory_bomb_hits_the_address_space_limit():
    out = run_python(
        "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n",
        limits=Limits(memory_bytes=256 << 20),
    )
    assert out.status == "fail" and "MemoryError" in out.detail and out.seconds < 5, out
    assert_contained(out)


def test_infinite_loop_times_out_near_the_wall_limit():
    out = run_python(
        "import time\nwhile True:\n    time.sleep(0.01)\n", limits=Limits(wall_seconds=1.0)
    )
    assert (out.status, out.returncode) == ("timeout", None), out
    assert 1.0 <= out.seconds < 2.5, out.seconds
    assert "wall" in out.detail
    assert_contained(out)


def test_cpu_burner_hits_rlimit_cpu_before_the_wall_limit():
    out = run_python("while True:\n    pass\n", limits=Limits(cpu_seconds=1, wall_seconds=30))
    assert out.status == "timeout" and "CPU" in out.detail, out
    assert out.seconds < 10, out.seconds  # generous: the 2 cores may be shared
    assert_contained(out)


def test_file_size_limit_stops_big_writes():
    # CPython ignores SIGXFSZ, so the write fails with EFBIG instead of killing the program.
    out = run_python(
        src("""
        import os
        try:
            with open("big", "wb") as handle:
                handle.write(b"x" * (3 << 20))
        finally:
            print(os.path.getsize("big"))
    """),
        limits=Limits(file_size_bytes=1 << 20),
    )
    assert out.status == "fail" and "File too large" in out.detail, out
    assert out.stdout == f"{1 << 20}\n"
    assert_contained(out)


def test_writes_outside_the_working_directory_never_reach_the_host(tmp_path):
    targets = [
        f"/tmp/leafbench_pwned_{uuid.uuid4().hex}",
        str(tmp_path / "pwned"),
        f"/var/tmp/leafbench_pwned_{uuid.uuid4().hex}",
        "/leafbench_pwned",
    ]
    out = run_python(
        src(f"""
        for path in {targets!r}:
            try:
                with open(path, "w") as handle:
                    handle.write("pwned")
                print("wrote", path)
            except OSError as exc:
                print("refused", path, type(exc).__name__)
        raise SystemExit(1)
    """)
    )
    assert out.stdout.count("\n") == len(targets), out
    try:
        for path in targets[1:]:
            assert not os.path.exists(path), path
        if "mountns" in isolation():
            # /tmp is a private tmpfs inside the sandbox: the write "succeeds" there, not here.
            assert not os.path.exists(targets[0])
        else:  # documented fallback: world-writable /tmp is shared with the host
            assert os.path.exists(targets[0])
    finally:
        Path(targets[0]).unlink(missing_ok=True)
    assert_contained(out)


def visible_writable_place() -> Path:
    """A directory we can write to that the sandbox does not mask (so the program sees our file
    there): /run as root; otherwise a directory of ours the program can see, read-only (when
    these tests run as the unprivileged account, the outer test made one for it)."""
    planted = os.environ.get("LEAFBENCH_TEST_VISIBLE_DIR")
    for place in (*([Path(planted)] if planted else []), Path("/run"), Path.cwd(),
                  Path(sys.prefix)):
        if os.access(place, os.W_OK) and not str(place).startswith(("/tmp", "/home", "/root")):
            return place
    pytest.fail("no writable place outside the masked directories to plant the victim in")


def test_deleting_or_truncating_host_files_fails(tmp_path):
    visible = visible_writable_place() / f"leafbench_keep_{uuid.uuid4().hex}"
    victims = [tmp_path / "keep.txt", Path(f"/tmp/leafbench_keep_{uuid.uuid4().hex}"), visible]
    for victim in victims:
        victim.write_text("precious")
    for victim in victims[:2]:
        victim.chmod(0o666)  # even a world-writable file in a shared directory must survive
    try:
        out = run_python(
            src(f"""
            import os
            for path in {[str(v) for v in victims]!r}:
                for attack in (os.remove, lambda p: open(p, "w").close()):
                    try:
                        attack(path)
                        print("done", path)
                    except OSError as exc:
                        print("refused", type(exc).__name__)
            raise SystemExit(1)
        """)
        )
        for victim in victims:
            assert victim.read_text() == "precious", out
        if AS_ROOT:
            assert out.stdout.splitlines()[-2:] == ["refused PermissionError"] * 2, out
    finally:
        for victim in victims[1:]:
            victim.unlink(missing_ok=True)
    assert_contained(out)


def test_environment_secrets_are_not_visible(monkeypatch):
    secret = f"leafbench-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("LEAFBENCH_SECRET", secret)
    out = run_python(
        src(f"""
        import os
        print(sorted(os.environ))
        for pid in (1, os.getppid(), {os.getpid()}):
            try:
                print(open(f"/proc/{{pid}}/environ", "rb").read())
            except OSError as exc:
                print(pid, type(exc).__name__)
        raise SystemExit(1)
    """)
    )
    assert out.status == "fail", out
    assert out.stdout.splitlines()[0] == "['HOME', 'LANG', 'PATH', 'TMPDIR']"
    assert secret not in out.stdout + out.stderr
    assert_contained(out)


def test_network_is_unreachable_when_netns_works():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        out = run_python(
            src(f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2)
                print("connected")
            except OSError as exc:
                print("blocked", exc.errno)
            raise SystemExit(1)
        """)
        )
        if "netns" in isolation():
            assert out.stdout.startswith("blocked"), out
            with pytest.raises(BlockingIOError):
                listener.accept()
        else:  # documented fallback: no network isolation without a network namespace
            assert out.stdout == "connected\n", out
    finally:
        listener.close()
    assert_contained(out)


def test_signalling_the_parent_cannot_hurt_the_host():
    out = run_python(
        src(f"""
        import os, signal
        for pid in (os.getppid(), {os.getpid()}, 1, -1):
            try:
                os.kill(pid, signal.SIGKILL)
                print(pid, "sent")
            except OSError as exc:
                print(pid, type(exc).__name__)
        raise SystemExit(1)
    """)
    )
    assert out.status == "fail", out  # the program survived its own kill(-1): it only hit itself
    lines = out.stdout.splitlines()
    if AS_ROOT:
        assert lines[0].endswith("PermissionError") and lines[2].endswith("PermissionError")
        assert "ProcessLookupError" in lines[1] or "PermissionError" in lines[1]
    os.kill(os.getpid(), 0)  # this test process is still alive
    assert_contained(out)


def test_stdout_flood_is_capped_and_stopped_quickly():
    cap = 64 << 10
    start = time.monotonic()
    out = run_python(
        src("""
        import sys
        while True:
            sys.stdout.write("x" * 4096)
            sys.stderr.write("y" * 512)
    """),
        limits=Limits(max_output_bytes=cap, wall_seconds=20),
    )
    assert out.status == "error" and "output exceeded" in out.detail, out
    assert len(out.stdout) + len(out.stderr) <= cap
    assert len(out.stdout) > cap // 2
    assert time.monotonic() - start < 5
    assert_contained(out)


@pytest.mark.parametrize("keep_output_open", [True, False])
def test_setsid_escapee_is_killed(keep_output_open):
    close = "" if keep_output_open else "os.close(0); os.close(1); os.close(2)"
    start = time.monotonic()
    out = run_python(
        src(f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                {close}
                while True:
                    time.sleep(0.05)
            os._exit(0)
        time.sleep(0.3)
        print("spawned")
        raise SystemExit(1)
    """),
        limits=Limits(wall_seconds=15),
    )
    assert (out.status, out.stdout) == ("fail", "spawned\n"), out
    assert time.monotonic() - start < 6, "the escapee must not keep the run alive"
    assert_contained(out)


def test_hostile_and_normal_samples_side_by_side():
    hostile = [
        (
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
            Limits(wall_seconds=1.5, max_processes=12),
        ),
        ("while True:\n    print('z' * 1000)\n", Limits(max_output_bytes=32 << 10)),
        ("x = bytearray(1 << 34)\n", Limits(memory_bytes=256 << 20)),
        ("while True:\n    pass\n", Limits(wall_seconds=1.0)),
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = []
        for source, limits in hostile:
            futures.append((False, pool.submit(run_python, source, limits=limits)))
            futures.append((True, pool.submit(run_python, NORMAL, stdin="1 2 3")))
        results = [(normal, future.result()) for normal, future in futures]
    for normal, out in results:
        if normal:
            assert (out.status, out.stdout) == ("pass", "ok\n"), out
        else:
            assert out.status != "pass", out
    if AS_ROOT:  # runs that overlapped had uids (and so process budgets) of their own
        uids = [run_uid(out) for _, out in results]
        assert uids[0] != uids[1], uids  # the fork bomb and the first normal sample overlapped
        assert all(processes_of(uid) == [] for uid in uids)
