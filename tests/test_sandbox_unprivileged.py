"""The sandbox as an ordinary user (user namespaces) and its refusal to run unprotected.

Researchers usually run leafbench as a normal account, where the sandbox cannot switch to a
uid of its own; there it builds the same namespaces inside an unprivileged user namespace and
makes the whole filesystem read-only except the program's working directory, with the homes
hidden. When running as root (CI), the hostile program is run through ``run_python`` by a
process switched to an unprivileged account (``nobody``) with a home of its own, so the test
exercises exactly that path. When not root, the whole of ``test_sandbox.py`` already runs
through it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest

from leafbench.bench.unprivileged import account_home, run_as_account
from leafbench.evaluation import sandbox
from leafbench.evaluation.sandbox import UNSAFE_OPT_IN, SandboxUnavailable, run_python

ACCOUNT = 65534  # nobody: owns no file of the evaluator
AS_ROOT = os.geteuid() == 0
# Run again as the account by the test below: the whole sandbox suite and a HumanEval+ gold
# check (its canonical solutions must pass under the user-namespace sandbox too).
ACCOUNT_SUITE = ["tests/test_sandbox.py", "tests/test_sandbox_unprivileged.py",
                 "tests/test_eval_code.py::test_humaneval_plus_gold_solutions_pass_base_and_plus"]
SANDBOX_FILE = Path(sandbox.__file__).resolve()

# Loads sandbox.py by path, exactly as the launcher itself is started (standard library only).
PROBE = textwrap.dedent("""
    import importlib.util, json, sys
    spec = importlib.util.spec_from_file_location("leafbench_sandbox", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    outcome = module.run_python(sys.argv[2])
    print(json.dumps(outcome.__dict__))
""")


def processes_with(token: str) -> list[int]:
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            if token.encode() in Path(f"/proc/{name}/cmdline").read_bytes():
                found.append(int(name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another account needs root; as "
                    "a normal user test_sandbox.py itself runs through the user namespace")
def test_hostile_program_is_contained_for_an_unprivileged_account():
    assert shutil.which("setpriv"), "setpriv (util-linux) is needed to switch accounts"
    home = tempfile.mkdtemp(prefix="leafbench-account-home-")
    outside = tempfile.mkdtemp(prefix="leafbench-account-outside-")
    token = uuid.uuid4().hex
    listener = socket.socket()
    try:
        for directory in (home, outside):
            os.chmod(directory, 0o755)
            os.chown(directory, ACCOUNT, ACCOUNT)
        canaries = [Path(home, "precious"), Path(outside, "canary")]
        for canary in canaries:
            canary.write_text("precious")
            os.chown(canary, ACCOUNT, ACCOUNT)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        hostile = textwrap.dedent(f"""
            import os, shutil, socket, subprocess, time
            done = []
            def attempt(name, action):
                try:
                    action()
                    done.append(name)
                except Exception:
                    pass
            attempt("pwned", lambda: open({home!r} + "/pwned.txt", "w").write("x"))
            attempt("canary", lambda: os.remove({str(canaries[1])!r}))
            attempt("outside", lambda: open({outside!r} + "/pwned.txt", "w").write("x"))
            attempt("net", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2))
            subprocess.Popen(["sleep", "300", "{token}"], start_new_session=True)
            time.sleep(0.2)
            print(done)
            shutil.rmtree({home!r})  # raises when contained: the home is not visible
        """)
        ran = run_as_account([sys.executable, "-I", "-c", PROBE, str(SANDBOX_FILE), hostile],
                             home=Path(home), account=ACCOUNT, timeout=120)
        assert ran.returncode == 0, ran.stderr
        outcome = json.loads(ran.stdout)
        assert outcome["status"] == "fail", outcome
        assert outcome["stdout"] == "[]\n", outcome  # no attack succeeded
        for mechanism in ("userns", "mountns", "netns", "pidns", "ipcns"):
            assert mechanism in outcome["detail"], outcome["detail"]
        assert [c.read_text() for c in canaries] == ["precious", "precious"]
        assert sorted(os.listdir(home)) == ["precious"]
        assert sorted(os.listdir(outside)) == ["canary"]
        with pytest.raises(BlockingIOError):
            listener.accept()
        assert processes_with(token) == [], "a process of the run was left behind"
    finally:
        listener.close()
        for pid in processes_with(token):
            os.kill(pid, 9)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(outside, ignore_errors=True)


def test_without_containment_it_refuses_unless_the_user_opts_in(monkeypatch):
    monkeypatch.setattr(sandbox, "_FORCE_NO_CONTAINMENT", True)
    monkeypatch.delenv(UNSAFE_OPT_IN, raising=False)
    with pytest.raises(SandboxUnavailable, match=f"refusing to run generated code.*{UNSAFE_OPT_IN}=1"):
        run_python("print('never runs')")

    with sandbox.unsandboxed_permitted("--a-flag-the-user-typed"):
        out = run_python("print('ran')")
        assert sandbox.isolation() >= {"UNSAFE_no_sandbox"}
    assert "--a-flag-the-user-typed" in out.detail, out.detail
    with pytest.raises(SandboxUnavailable):  # the permission ends with its block
        run_python("print('never runs')")

    monkeypatch.setenv(UNSAFE_OPT_IN, "1")
    out = run_python("print('ran')")
    assert (out.status, out.stdout) == ("pass", "ran\n"), out
    assert "UNSAFE_no_sandbox" in out.detail and "UNPROTECTED" in out.detail, out.detail
    mechanisms = out.detail.split("isolation=")[1].split(";")[0].split(",")
    assert sorted(mechanisms) == ["UNSAFE_no_sandbox", "no_new_privs", "rlimits"], out.detail


@pytest.mark.skipif(not AS_ROOT, reason="switching to another account needs root; as a normal "
                    "user this suite itself runs through the user namespace")
def test_the_sandbox_suite_passes_as_an_unprivileged_account():
    """The hostile-program suite and HumanEval+ gold, as ``nobody`` (user-namespace path)."""
    home = account_home(ACCOUNT)
    visible = Path(tempfile.mkdtemp(prefix="leafbench-account-visible-", dir="/run"))
    os.chown(visible, ACCOUNT, ACCOUNT)
    try:
        ran = run_as_account(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
             f"--basetemp={home}/pytest", *ACCOUNT_SUITE],
            home=home, account=ACCOUNT,
            env={"LEAFBENCH_PROGRESS": "0", "LEAFBENCH_CACHE_DIR": f"{home}/cache",
                 "LEAFBENCH_TEST_VISIBLE_DIR": str(visible)},
        )
        summary = ran.stdout.strip().splitlines()[-1] if ran.stdout.strip() else ran.stderr
        assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
        passed = int(summary.split(" passed")[0].split()[-1])
        assert passed >= 20 and "failed" not in summary and "error" not in summary, summary
        probe = run_as_account(
            [sys.executable, "-c", "from leafbench.evaluation.sandbox import isolation; "
             "print(','.join(sorted(isolation())))"], home=home, account=ACCOUNT, timeout=120)
        mechanisms = set(probe.stdout.strip().split(","))
        assert {"userns", "mountns", "netns", "pidns", "ipcns"} <= mechanisms, probe
        assert "setuid" not in mechanisms and mechanisms & {"readonly_setattr",
                                                            "readonly_remount"}, mechanisms
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(visible, ignore_errors=True)


def test_read_only_view_without_mount_setattr(monkeypatch, tmp_path):
    """Kernels before 5.12 have no mount_setattr: the user-namespace sandbox remounts mount by
    mount instead, and a file of the caller's outside the working directory still survives."""
    monkeypatch.setattr(sandbox, "_FORCE_REMOUNT", True)
    monkeypatch.setattr(sandbox, "_FORCE_USERNS", AS_ROOT)  # root: take the same path
    victim = Path(os.environ.get("LEAFBENCH_TEST_VISIBLE_DIR") or "/run") / f"keep-{uuid.uuid4().hex}"
    try:
        victim.write_text("precious")
    except PermissionError:
        victim = Path.cwd() / victim.name
        victim.write_text("precious")
    try:
        out = run_python(textwrap.dedent(f"""
            import os
            for attack in (lambda: os.remove({str(victim)!r}),
                           lambda: open({str(victim)!r}, "w").close(),
                           lambda: open("/etc/leafbench-pwned", "w").close()):
                try:
                    attack()
                    print("done")
                except OSError as exc:
                    print(exc.errno)
            open("mine.txt", "w").write("the working directory stays writable")
        """))
        assert out.status == "pass", out
        assert out.stdout.split() == ["30", "30", "30"], out  # EROFS, every time
        assert "readonly_remount" in out.detail and "userns" in out.detail, out.detail
        assert victim.read_text() == "precious"
    finally:
        victim.unlink(missing_ok=True)
