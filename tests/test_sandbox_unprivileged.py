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
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest

from leafbench.evaluation import sandbox
from leafbench.evaluation.sandbox import UNSAFE_OPT_IN, SandboxUnavailable, run_python

ACCOUNT = 65534  # nobody: owns no file of the evaluator
SANDBOX_FILE = Path(sandbox.__file__).resolve()

# Loads sandbox.py by path: it uses only the standard library, so the account needs no access
# to the project's virtualenv (often under /root, which it cannot traverse).
PROBE = textwrap.dedent("""
    import importlib.util, json, sys
    spec = importlib.util.spec_from_file_location("leafbench_sandbox", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    outcome = module.run_python(sys.argv[2])
    print(json.dumps(outcome.__dict__))
""")


def as_account(*command: str, home: str) -> subprocess.CompletedProcess:
    """Run ``command`` as the unprivileged account, through a shell so that the exec itself
    happens without root's capabilities."""
    return subprocess.run(
        ["setpriv", f"--reuid={ACCOUNT}", f"--regid={ACCOUNT}", "--clear-groups",
         "/bin/sh", "-c", 'exec "$@"', "sh", *command],
        env={"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8"},
        capture_output=True, text=True, timeout=120, check=False,
    )


def account_python(home: str) -> str:
    """A Python interpreter the account can execute (the evaluator's may live under /root)."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        if as_account(candidate, "-c", "pass", home=home).returncode == 0:
            return candidate
    pytest.fail("no Python interpreter is executable by an unprivileged account")


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
        python = account_python(home)
        ran = as_account(python, "-I", "-c", PROBE, str(SANDBOX_FILE), hostile, home=home)
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

    monkeypatch.setenv(UNSAFE_OPT_IN, "1")
    out = run_python("print('ran')")
    assert (out.status, out.stdout) == ("pass", "ran\n"), out
    assert "UNSAFE_no_sandbox" in out.detail and "UNPROTECTED" in out.detail, out.detail
    mechanisms = out.detail.split("isolation=")[1].split(";")[0].split(",")
    assert sorted(mechanisms) == ["UNSAFE_no_sandbox", "no_new_privs", "rlimits"], out.detail
