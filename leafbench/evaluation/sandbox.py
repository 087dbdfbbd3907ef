"""Run untrusted, model-generated Python in a contained child process.

Every execution of generated code (HumanEval+, LeetCode, LiveCodeBench) goes through
:func:`run_python`. Each call gets a fresh temporary working directory and a fresh process tree
that is torn down completely afterwards. The mechanisms, strongest first, and why each exists:

``setuid``
    When we run as root the program runs as a fresh unprivileged uid/gid (one of
    ``UID_SLOTS`` uids from ``UID_BASE``, claimed with a lock file for the duration of the
    run). Root ignores ``RLIMIT_NPROC``; an unprivileged uid does not, so the process limit
    really caps a fork bomb. A uid of its own (rather than the shared ``nobody``) means one
    sample's fork bomb cannot use up the process budget of a sample running beside it, and
    "kill every process of this uid" kills exactly this run's leftovers. The uid owns nothing
    but the working directory, so it cannot modify or delete files of the host, and it cannot
    signal or ptrace root's processes (the evaluator included).
``netns``
    A new, empty network namespace (only a loopback device that is down): no network at all,
    not even 127.0.0.1.
``mountns``
    A private mount namespace in which world-writable directories (``/tmp``, ``/var/tmp``,
    ``/run/lock``, ``/dev/shm``) are covered with small private tmpfs mounts, so a write there
    never reaches the host, and directories the sandbox uid could not traverse on the way to
    the interpreter or the working directory (``/root`` for a pyenv Python) are replaced with
    a tmpfs that exposes only those paths, so the rest of them stays hidden.
``pidns``
    A new PID namespace with a small init process (root, unreachable for the program) that
    reaps orphans. When the program exits, init exits and the kernel kills everything left in
    the namespace, including children that escaped with ``setsid()``. A fresh ``/proc`` shows
    only the sandbox's processes.
``ipcns``
    Private System V IPC and POSIX message queues.
``userns``
    When we are not root: the launcher first enters a new user namespace in which it is root
    (mapped to the caller's own uid, so it gains nothing on the host), which lets it build the
    four namespaces above without privileges. Because the program then runs as the caller's
    uid, which owns the caller's files, the mount namespace is made read-only as a whole
    (``mount_setattr`` with ``AT_RECURSIVE``, Linux 5.12+) except the working directory and the
    private tmpfs mounts, and the caller's ``$HOME``, ``/home`` and ``/root`` are covered with
    empty tmpfs mounts (the interpreter is bound back, read-only, if it lives there). The
    program itself runs in a nested user namespace as the caller's uid, not as root, so it
    holds no capability over those mounts and cannot undo them; init is non-dumpable, so the
    program cannot ptrace it either. The uid switch and its per-uid ``RLIMIT_NPROC`` are not
    available here; the PID namespace still tears down every leftover process.
``no_new_privs``
    ``PR_SET_NO_NEW_PRIVS``: setuid binaries cannot give privileges back.
``rlimits``
    ``RLIMIT_AS``, ``RLIMIT_CPU``, ``RLIMIT_FSIZE``, ``RLIMIT_NPROC``, ``RLIMIT_CORE=0``.

Independently of those, the process runs ``python -I`` (isolated mode: no ``PYTHON*``
variables, no user site-packages, no script directory on ``sys.path``) in its own session and
process group with a scrubbed environment, the wall-clock limit kills the whole process group,
and the uid's processes are swept after every run. Which mechanisms took effect is written into
every ``Outcome.detail`` (``isolation=...``) and summarised by :func:`isolation`. Namespaces
need ``CAP_SYS_ADMIN`` (root) or a user namespace. Where neither a sandbox uid (root) nor a
user namespace, plus all four namespaces, can be had, :func:`run_python` raises
:class:`SandboxUnavailable` with one line naming what is missing and how to enable it, instead
of running the program with rlimits alone. Only an explicit opt-in runs it anyway (rlimits,
process-group kill and scrubbed environment only): ``leafbench eval
--unsafe-run-generated-code-unsandboxed``, the experiment field
``evaluate.unsafe_run_generated_code_unsandboxed: true`` (both enter
:func:`unsandboxed_permitted`), or ``LEAFBENCH_UNSAFE_NO_SANDBOX=1``. Every such result lists
``UNSAFE_no_sandbox`` among its mechanisms and names the opt-in in its detail (``UNPROTECTED``).

On kernels older than 5.12 (no ``mount_setattr``) the user-namespace sandbox makes the tree
read-only mount by mount instead (a read-only bind remount of every mount point in
``/proc/self/mountinfo``, keeping the flags the kernel locks); the mechanisms then say
``readonly_remount`` instead of ``readonly_setattr``.

Status mapping (any non-pass is a failure for scoring):

* ``pass``: the program exited with code 0.
* ``fail``: the program ran and exited non-zero: an uncaught exception (``AssertionError``,
  a wrong answer checked by an assert, ``SyntaxError`` while compiling the source,
  ``MemoryError`` from the address-space limit, ``OSError: File too large`` from the file-size
  limit, since CPython ignores ``SIGXFSZ``), or ``sys.exit(n)`` with ``n != 0``.
* ``timeout``: the wall-clock limit expired (the whole tree is killed), or the CPU limit was
  hit (``SIGXCPU`` at the soft limit, or ``SIGKILL`` at the hard limit one second later).
* ``error``: the sandbox could not run the program, the output exceeded
  ``max_output_bytes`` (the tree is killed and the output truncated), or the program was
  killed by any other signal (``SIGSEGV``, ``SIGABRT``, an OOM kill, ...).

``returncode`` is the exit code, ``-signal`` when the program was killed by a signal, and
``None`` when it never finished (wall timeout) or the sandbox failed before it ran.

Note that ``-I`` ignores ``PYTHONHASHSEED``, so string hashing is randomised per run exactly as
for any ``python`` invocation. This module uses only the standard library: it doubles as the
launcher script (``python -I -S sandbox.py CONFIG``) that builds the sandbox as root.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as errno_module
import fcntl
import functools
import json
import os
import resource
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "DEFAULT_LIMITS",
    "UID_BASE",
    "UID_SLOTS",
    "Limits",
    "Outcome",
    "SandboxUnavailable",
    "UNSAFE_OPT_IN",
    "isolation",
    "run_python",
    "unsandboxed_permitted",
]

# Sandbox uids: outside the ranges distributions and systemd allocate (system users, regular
# users, systemd dynamic users, nspawn container ranges), below 2**31.
UID_BASE = 1_999_000_000
UID_SLOTS = 256

# World-writable places the program must not be able to write to on the host.
_MASKED_DIRS = ("/tmp", "/var/tmp", "/run/lock", "/dev/shm")
_TMPFS_OPTIONS = b"size=64m,nr_inodes=16384"
_CHILD_PATH = "/usr/local/bin:/usr/bin:/bin"
_DRAIN_GRACE_SECONDS = 1.0

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWPID = 0x20000000
_NAMESPACES = (
    ("mountns", _CLONE_NEWNS),
    ("netns", _CLONE_NEWNET),
    ("pidns", _CLONE_NEWPID),
    ("ipcns", _CLONE_NEWIPC),
)
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_NO_NEW_PRIVS = 1, 4, 38
_SYS_MOUNT_SETATTR = 442  # the same number on every architecture (added in Linux 5.12)
_AT_FDCWD, _AT_RECURSIVE, _MOUNT_ATTR_RDONLY = -100, 0x8000, 1

# What "contained" means: a fresh identity (a sandbox uid as root, a user namespace otherwise)
# and all four namespaces. Anything less is refused unless the user opts in with this variable.
UNSAFE_OPT_IN = "LEAFBENCH_UNSAFE_NO_SANDBOX"
_REQUIRED_NAMESPACES = ("mountns", "netns", "pidns", "ipcns")
# Places a user's own files live; hidden (not just read-only) in the user-namespace sandbox.
_HIDDEN_HOMES = ("/home", "/root")
# Set only by tests, to exercise the refusal without changing the machine's kernel settings.
_FORCE_NO_CONTAINMENT = False
# Set only by tests, to exercise the pre-5.12 read-only remount on a newer kernel.
_FORCE_REMOUNT = False
# Set only by the overhead benchmark: root through the user-namespace path, to compare costs.
_FORCE_USERNS = False
# Opt-ins given in-process (a CLI flag, an experiment field), innermost last.
_PERMITS: list[str] = []


class SandboxUnavailable(RuntimeError):
    """No strong containment can be had here, and the user has not opted in to run without it.

    Raised instead of returning an ``Outcome``: scoring every sample as "error" would hide the
    problem, and running the code anyway would hide a worse one.
    """


@dataclass(frozen=True)
class Limits:
    """Resource limits for one run; the defaults suit unit-test-style programs.

    ``memory_bytes`` caps the address space (RLIMIT_AS), not resident memory, because that is
    what the kernel enforces per process without cgroups. ``max_processes`` counts processes
    and threads of the sandbox uid (RLIMIT_NPROC); it is only enforced when the sandbox runs
    as root and can switch to its own uid. ``max_output_bytes`` caps stdout and stderr
    together.
    """

    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_bytes: int = 1 << 30
    file_size_bytes: int = 10 << 20
    max_processes: int = 64
    max_output_bytes: int = 1 << 20


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Outcome:
    """What happened to one program; see the module docstring for the status mapping."""

    status: str  # "pass" | "fail" | "timeout" | "error"
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    detail: str


def run_python(
    source: str,
    *,
    stdin: str = "",
    limits: Limits = DEFAULT_LIMITS,
    python: str = sys.executable,
) -> Outcome:
    """Run ``source`` as ``main.py`` with ``python -I`` inside the sandbox and report how it ended.

    ``stdin`` is written to the program's standard input, which is then closed. Never raises for
    anything the program does; a sandbox that fails to set up gives status ``"error"``. Raises
    :class:`SandboxUnavailable` when this machine cannot contain the program at all (and
    ``LEAFBENCH_UNSAFE_NO_SANDBOX=1`` is not set).
    """
    return _run(source, stdin, limits, python)[0]


@contextlib.contextmanager
def unsandboxed_permitted(how: str) -> Iterator[None]:
    """Within this block, run generated code without containment where none can be had.

    ``how`` names the opt-in (the flag or field the user set) for the results and the warning.
    A process-wide permission rather than a parameter: the code tasks run their samples on a
    thread pool several calls below the CLI, and an opt-in must reach every one of them.
    """
    _PERMITS.append(how)
    try:
        yield
    finally:
        _PERMITS.remove(how)


def _unsafe_opt_in() -> str | None:
    """Which opt-in (if any) allows running unprotected: an in-process one, else the variable."""
    if _PERMITS:
        return _PERMITS[-1]
    return f"{UNSAFE_OPT_IN}=1" if os.environ.get(UNSAFE_OPT_IN) == "1" else None


def isolation(python: str = sys.executable) -> frozenset[str]:
    """The containment mechanisms that actually take effect on this machine.

    Found once (per interpreter and opt-in) by running an empty program, so callers (and tests)
    can assert what is and is not contained here instead of assuming it.
    """
    return _isolation(python, _unsafe_opt_in(), _FORCE_NO_CONTAINMENT, _FORCE_REMOUNT,
                      _FORCE_USERNS)


@functools.cache
def _isolation(python: str, *_cache_key: object) -> frozenset[str]:
    outcome, mechanisms = _run("", "", DEFAULT_LIMITS, python)
    if outcome.status != "pass":
        raise RuntimeError(f"the sandbox cannot run a trivial program: {outcome.detail}")
    return frozenset(mechanisms)


# --------------------------------------------------------------------------------------------
# Parent side: prepare the directory, start the launcher, supervise, clean up.


def _run(source: str, stdin: str, limits: Limits, python: str) -> tuple[Outcome, list[str]]:
    """Run one program; also return the isolation mechanisms that took effect."""
    start = time.monotonic()
    executable = os.path.abspath(shutil.which(python) or python)
    workdir = tempfile.mkdtemp(prefix="leafbench-sandbox-")
    try:
        with _claim_uid() as uid:
            with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8") as handle:
                handle.write(source)
            if uid is not None:
                os.chown(workdir, uid, uid)  # the only place the program may write
            try:
                out, err, timed_out, overflow, lingering, reports = _execute(
                    executable, workdir, uid, stdin, limits, start
                )
            except OSError as exc:
                detail = f"could not start the sandbox: {exc}"
                return Outcome("error", None, "", "", time.monotonic() - start, detail), []
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    refused = next((r["refused"] for r in reports if "refused" in r), None)
    if refused is not None:
        raise SandboxUnavailable(refused)
    # The launcher reports the namespaces; init reports again once the filesystem view is built.
    mechanisms: list[str] = ([r["isolation"] for r in reports if "isolation" in r] or [[]])[-1]
    status, returncode, reason = _classify(reports, timed_out, overflow, limits, err)
    notes = [reason, f"isolation={','.join(mechanisms) or 'none'}"]
    if _UNSAFE in mechanisms:
        notes.append(f"UNPROTECTED: run without a sandbox because of {_unsafe_opt_in()}")
    if uid is not None:
        notes.append(f"uid={uid}")
    if lingering:
        notes.append("a leftover process kept the output pipes open")
    outcome = Outcome(
        status,
        returncode,
        out.decode("utf-8", errors="replace"),
        err.decode("utf-8", errors="replace"),
        time.monotonic() - start,
        "; ".join(notes),
    )
    return outcome, mechanisms


def _execute(
    executable: str, workdir: str, uid: int | None, stdin: str, limits: Limits, start: float
) -> tuple[bytes, bytes, bool, bool, bool, list[dict]]:
    """Start the launcher in its own session with a scrubbed environment and supervise it.

    The launcher reports on a private pipe (JSON lines) what isolation it achieved and how the
    program ended, so the exit status of the program is never confused with the launcher's.
    """
    env = {"PATH": _CHILD_PATH, "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
    read_fd, write_fd = os.pipe()
    config = {
        "python": executable,
        "workdir": workdir,
        "keep": [workdir, *_python_dirs(executable)],
        "uid": uid,
        "caller_uid": os.getuid(),
        "caller_gid": os.getgid(),
        "home": os.path.realpath(os.path.expanduser("~")),
        "force_weak": _FORCE_NO_CONTAINMENT,
        "force_remount": _FORCE_REMOUNT,
        "force_userns": _FORCE_USERNS,
        "unsafe_opt_in": _unsafe_opt_in() is not None,
        "env": env,
        "limits": limits.__dict__,
        "status_fd": write_fd,
    }
    try:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(write_fd,),
                start_new_session=True,
                env=env,
                cwd=workdir,
            )
        finally:
            os.close(write_fd)
        supervised = _supervise(proc, stdin, limits, uid, start)
        return (*supervised, _read_reports(read_fd))
    finally:
        os.close(read_fd)


@functools.cache
def _python_dirs(executable: str) -> tuple[str, ...]:
    """Directories the interpreter needs: its own and its (base) prefixes, symlinks resolved."""
    if executable == os.path.abspath(sys.executable):
        prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    else:
        code = (
            "import sys; "
            "print(sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, sep='\\n')"
        )
        result = subprocess.run(
            [executable, "-I", "-S", "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        prefixes = result.stdout.split("\n")[:4] if result.returncode == 0 else []
    dirs = [os.path.dirname(executable), os.path.dirname(os.path.realpath(executable))]
    dirs += [os.path.realpath(p) for p in prefixes if p]
    return tuple(dict.fromkeys(dirs))


_next_slot = 0
_slot_lock = threading.Lock()


@contextlib.contextmanager
def _claim_uid() -> Iterator[int | None]:
    """Hold one sandbox uid for the duration of a run (None when not root: no uid switch).

    The lock is an ``flock`` on a root-only file, so it is exclusive across threads and across
    processes (several evaluators on one machine). Slots rotate, and a slot's leftovers from a
    crashed run are swept before it is used.
    """
    global _next_slot
    if os.geteuid() != 0 or _FORCE_NO_CONTAINMENT or _FORCE_USERNS:
        yield None
        return
    lockdir = os.path.join(tempfile.gettempdir(), "leafbench-sandbox-uids")
    os.makedirs(lockdir, mode=0o700, exist_ok=True)
    info = os.lstat(lockdir)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o077:
        raise RuntimeError(f"{lockdir} must be a directory owned by root with mode 0700")
    with _slot_lock:
        first = _next_slot
        _next_slot = (_next_slot + 1) % UID_SLOTS
    for offset in range(UID_SLOTS):
        slot = (first + offset) % UID_SLOTS
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(os.path.join(lockdir, f"uid-{slot}.lock"), flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            _sweep_uid(UID_BASE + slot)
            yield UID_BASE + slot
        finally:
            os.close(fd)
        return
    raise RuntimeError(f"all {UID_SLOTS} sandbox uids are in use")


def _supervise(
    proc: subprocess.Popen, data: str, limits: Limits, uid: int | None, start: float
) -> tuple[bytes, bytes, bool, bool, bool]:
    """Feed stdin, read stdout/stderr incrementally under the cap, enforce the wall limit.

    Returns (stdout, stderr, timed_out, overflow, lingering). Whatever way the run ends, the
    whole process group and every process of the sandbox uid are killed before returning.
    """
    feeder = threading.Thread(target=_feed, args=(proc.stdin, data.encode()), daemon=True)
    feeder.start()
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    buffers = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    selector = selectors.DefaultSelector()
    for fd in buffers:
        selector.register(fd, selectors.EVENT_READ)
    cap = limits.max_output_bytes
    deadline = start + limits.wall_seconds
    timed_out = overflow = False
    total = 0

    def read_ready(timeout: float) -> None:
        nonlocal total, overflow
        for key, _ in selector.select(timeout):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fd)
                continue
            buffers[key.fd] += chunk[: max(0, cap - total)]
            total += len(chunk)
            overflow = overflow or total > cap

    while not _has_exited(proc.pid) and not overflow:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        if selector.get_map():
            read_ready(min(remaining, 0.05))
        else:  # the program closed its output but is still running
            time.sleep(min(remaining, 0.01))
    # The launcher has exited (as a zombie it still holds the process group id, so killpg
    # cannot hit a recycled group) or we are stopping it: kill everything that is left.
    _kill_tree(proc.pid, uid)
    proc.wait()
    grace = time.monotonic() + _DRAIN_GRACE_SECONDS
    while selector.get_map() and not overflow and time.monotonic() < grace:
        read_ready(0.05)
    lingering = bool(selector.get_map()) and not overflow
    selector.close()
    proc.stdout.close()
    proc.stderr.close()
    feeder.join(timeout=1.0)
    return bytes(out), bytes(err), timed_out, overflow, lingering


def _feed(pipe, data: bytes) -> None:
    """Write the program's input and close stdin; a program that exits early is fine."""
    with contextlib.suppress(OSError):
        if data:
            pipe.write(data)
        pipe.close()


def _has_exited(pid: int) -> bool:
    """True once the launcher has exited, without reaping it (WNOWAIT keeps the pgid alive)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_tree(pgid: int, uid: int | None) -> None:
    """SIGKILL the run's process group, then every remaining process of the sandbox uid."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    if uid is not None:
        _sweep_uid(uid)


def _processes_of(uid: int) -> list[int]:
    """Live (non-zombie) processes whose real or effective uid is ``uid``, from /proc."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", encoding="ascii", errors="replace") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
        except OSError:
            continue
        uids = fields.get("Uid", "").split()
        if (
            uids[:2]
            and str(uid) in uids[:2]
            and not fields.get("State", "").strip().startswith("Z")
        ):
            found.append(int(name))
    return found


def _sweep_uid(uid: int, budget_seconds: float = 5.0) -> bool:
    """Kill every process of ``uid`` until none is left; a process that escaped the process
    group (``setsid``) is found here when there is no PID namespace to tear it down.

    Converges even against a fork bomb: RLIMIT_NPROC bounds how many there are, and a process
    with a pending SIGKILL can no longer fork.
    """
    stop = time.monotonic() + budget_seconds
    while time.monotonic() < stop:
        pids = _processes_of(uid)
        if not pids:
            return True
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.005)
    return not _processes_of(uid)


def _read_reports(fd: int) -> list[dict]:
    """The launcher's JSON lines: isolation achieved, setup errors, the program's exit status."""
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            data += chunk
    reports = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            reports.append(json.loads(line))
    return reports


def _classify(
    reports: list[dict], timed_out: bool, overflow: bool, limits: Limits, err: bytes
) -> tuple[str, int | None, str]:
    """Map how the run ended to (status, returncode, reason); see the module docstring."""
    ended = next((r for r in reports if "exit" in r or "signal" in r), None)
    returncode = None
    if ended is not None:
        returncode = ended["exit"] if "exit" in ended else -ended["signal"]
    errors = [r["error"] for r in reports if "error" in r]
    if timed_out:
        return "timeout", None, f"wall time limit of {limits.wall_seconds:g}s exceeded"
    if overflow:
        return "error", returncode, f"output exceeded {limits.max_output_bytes} bytes (truncated)"
    if errors:
        return "error", returncode, "sandbox error: " + "; ".join(errors)
    if ended is None:
        return "error", None, "the sandbox ended without reporting the program's status"
    if "signal" in ended:
        sig = ended["signal"]
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and ended["cpu"] >= limits.cpu_seconds):
            return (
                "timeout",
                returncode,
                f"CPU time limit of {limits.cpu_seconds}s exceeded ({name})",
            )
        return "error", returncode, f"killed by {name}"
    if ended["exit"] == 0:
        return "pass", 0, "exited with code 0"
    last = err.decode("utf-8", errors="replace").strip().rsplit("\n", 1)[-1][:200]
    return "fail", returncode, f"exited with code {ended['exit']}" + (f": {last}" if last else "")


# --------------------------------------------------------------------------------------------
# Launcher side: runs as ``python -I -S sandbox.py CONFIG`` (as root when we are root), builds
# the namespaces, forks the init process, which forks the program.


def _launch(config: dict) -> None:
    """Outer launcher: build the strongest containment available, fork init, wait for it.

    As root: a sandbox uid (dropped to in the program) and the four namespaces. Otherwise: a
    user namespace first (in which we are root, so the other namespaces and the mounts become
    possible without privileges on the host), then the four namespaces. When any piece is
    missing the launcher refuses, before the program exists, unless the user opted in.
    """
    fd = config["status_fd"]
    try:
        mechanisms = ["rlimits", "no_new_privs"]
        missing = []
        libc = _libc()
        if config["force_weak"]:
            missing.append("all namespaces (switched off by the test hook)")
        elif os.geteuid() == 0 and not config["force_userns"]:
            mechanisms.append("setuid")
        else:
            problem = _enter_user_namespace()
            if problem is None:
                mechanisms.append("userns")
                config["userns"] = True
            else:
                missing.append(problem)
        if not missing:
            for name, flag in _NAMESPACES:
                if libc.unshare(flag) == 0:
                    mechanisms.append(name)
                else:
                    missing.append(f"{name} ({os.strerror(ctypes.get_errno())})")
        if missing:
            if not config["unsafe_opt_in"]:
                _report(fd, refused=_refusal(missing))
                sys.exit(127)
            mechanisms.append(_UNSAFE)
        _report(fd, isolation=mechanisms)
        pid = os.fork()
        if pid == 0:
            try:
                _init(config, fd, mechanisms)
            except BaseException as exc:  # report anything; never run unprotected
                _report(fd, error=f"sandbox init failed: {exc!r}")
            os._exit(127)
        os.waitpid(pid, 0)
    except Exception as exc:
        _report(fd, error=f"sandbox launcher failed: {exc!r}")
        sys.exit(127)


_UNSAFE = "UNSAFE_no_sandbox"


def _refusal(missing: list[str]) -> str:
    """The one line that says what is missing and how to get it."""
    return (
        "refusing to run generated code: no strong sandbox can be built here (missing: "
        + "; ".join(missing)
        + "). Run as root, or allow unprivileged user namespaces (sysctl "
        "user.max_user_namespaces>0, kernel.unprivileged_userns_clone=1 where it exists, "
        "kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu 23.10+; in a container, "
        "allow unshare/mount in its seccomp and AppArmor profiles). To run the code with "
        "resource limits only, unprotected: leafbench eval "
        "--unsafe-run-generated-code-unsandboxed, the experiment field "
        "evaluate.unsafe_run_generated_code_unsandboxed: true, or "
        f"{UNSAFE_OPT_IN}=1."
    )


def _enter_user_namespace() -> str | None:
    """Become root of a new user namespace, mapped to the caller's own uid and gid.

    Returns what went wrong, or None. Afterwards the launcher is made non-dumpable so that the
    program (the same uid on the host) can neither ptrace init nor reach it through /proc.
    """
    uid, gid = os.geteuid(), os.getegid()
    if _libc().unshare(_CLONE_NEWUSER) != 0:
        return f"user namespace ({os.strerror(ctypes.get_errno())})"
    try:
        _map_ids(0, uid, 0, gid)
    except OSError as exc:
        return f"user namespace id mapping ({exc.strerror})"
    _libc().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    return None


def _map_ids(inside_uid: int, outside_uid: int, inside_gid: int, outside_gid: int) -> None:
    """Write this process's one-id uid and gid maps (setgroups must be denied first)."""
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", f"{inside_uid} {outside_uid} 1"),
        ("gid_map", f"{inside_gid} {outside_gid} 1"),
    ):
        with open(f"/proc/self/{name}", "w", encoding="ascii") as handle:
            handle.write(text)


def _init(config: dict, fd: int, mechanisms: list[str]) -> None:
    """Set up mounts, fork the program, reap until it exits, report its status.

    In a PID namespace this is pid 1: its exit makes the kernel kill everything left in it.
    In a user namespace the whole tree is made read-only except the working directory and the
    private tmpfs mounts, and the homes are hidden: as root the sandbox uid owns nothing, but
    here the program runs as the caller's uid, which owns the caller's files.
    """
    libc = _libc()
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.umask(0o022)
    if "mountns" in mechanisms:
        _mount(None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing propagates back to the host
        userns = "userns" in mechanisms
        hidden = [config["home"], *_HIDDEN_HOMES] if userns else []
        writable = _mask_directories(config["keep"], hidden)
        if userns:
            workdir = config["workdir"]
            _mount(workdir, workdir, None, _MS_BIND)  # a mount of its own, to stay writable
            _make_read_only(config, [*writable, workdir], mechanisms)
            _report(fd, isolation=mechanisms)
        if "pidns" in mechanisms:
            _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    child = os.fork()
    if child == 0:
        _exec_program(config, fd)
    while True:
        pid, status, usage = os.wait4(-1, 0)
        if pid == child:
            break
    cpu = usage.ru_utime + usage.ru_stime
    if os.WIFSIGNALED(status):
        _report(fd, signal=os.WTERMSIG(status), cpu=cpu)
    else:
        _report(fd, exit=os.WEXITSTATUS(status), cpu=cpu)
    os._exit(0)


def _make_read_only(config: dict, writable: list[str], mechanisms: list[str]) -> None:
    """Every mount read-only except ``writable``: one recursive ``mount_setattr`` (5.12+), or
    on older kernels a read-only bind remount of each mount point, writable ones skipped."""
    if not config["force_remount"]:
        try:
            _mount_setattr("/", _AT_RECURSIVE, set_flags=_MOUNT_ATTR_RDONLY)
        except OSError as exc:
            if exc.errno != errno_module.ENOSYS:
                raise
        else:
            for path in writable:
                _mount_setattr(path, 0, clear_flags=_MOUNT_ATTR_RDONLY)
            mechanisms.append("readonly_setattr")
            return
    for point, flags in _mount_points():
        if point in writable or flags & _MS_RDONLY:
            continue
        try:
            _mount(None, point, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | flags)
        except OSError as exc:
            # A mount stacked under another at the same point cannot be reached by its path,
            # so the program cannot reach it either; anything else is a real failure.
            if exc.errno not in (errno_module.EINVAL, errno_module.ENOENT):
                raise
    mechanisms.append("readonly_remount")


# Per-mount options of /proc/self/mountinfo that a remount must repeat: in a user namespace the
# kernel locks them on mounts inherited from the host, and dropping one is refused (EPERM).
_LOCKED_OPTIONS = {"ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024,
                   "nodiratime": 2048, "relatime": 1 << 21, "strictatime": 1 << 24}
_MS_RDONLY, _MS_REMOUNT = 1, 32


def _mount_points() -> list[tuple[str, int]]:
    """(mount point, flags to keep) for every mount, from /proc/self/mountinfo."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")  # octal escapes: \040 etc.
            flags = 0
            for option in fields[5].split(","):
                flags |= _LOCKED_OPTIONS.get(option, 0)
            points.append((point, flags))
    return points


def _mask_directories(keep: list[str], hidden: list[str]) -> list[str]:
    """Cover world-writable, untraversable and ``hidden`` directories with tmpfs, re-exposing
    ``keep``; return the tmpfs mount points.

    Each kept path is opened (O_PATH) before its covering directory is hidden, then
    bind-mounted back at the same path, so the interpreter and the working directory stay
    where the program expects them.
    """
    candidates = [*_MASKED_DIRS, *(h for h in hidden if h != "/")]
    masks = [d for d in candidates if os.path.isdir(d) and not os.path.islink(d)]
    for path in keep:
        parts = path.strip("/").split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            ancestor = "/" + "/".join(parts[:depth])
            if not os.stat(ancestor).st_mode & stat.S_IXOTH:
                masks.append(ancestor)
                break
    masks = sorted(set(masks), key=len)
    masks = [m for m in masks if not any(_inside(m, other) for other in masks if other != m)]
    keep = [k for k in keep if not any(_inside(k, other) for other in keep if other != k)]
    for mask in masks:
        exposed = [(k, os.open(k, os.O_PATH | os.O_CLOEXEC)) for k in keep if _inside(k, mask)]
        mode = stat.S_IMODE(os.stat(mask).st_mode) | 0o755
        options = _TMPFS_OPTIONS + f",mode={mode:o}".encode()
        _mount("tmpfs", mask, "tmpfs", _MS_NOSUID | _MS_NODEV, options)
        for path, handle in exposed:
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{handle}", path, None, _MS_BIND | _MS_REC)
            os.close(handle)
    return masks


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _exec_program(config: dict, fd: int) -> None:
    """In the program's process: limits, drop privileges, exec ``python -I main.py``."""
    try:
        os.set_inheritable(fd, False)  # the program itself never sees the status pipe
        limits = config["limits"]
        cpu = limits["cpu_seconds"]
        for which, value in (
            (resource.RLIMIT_AS, limits["memory_bytes"]),
            (resource.RLIMIT_CPU, (cpu, cpu + 1)),
            (resource.RLIMIT_FSIZE, limits["file_size_bytes"]),
            (resource.RLIMIT_NPROC, limits["max_processes"]),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(which, value if isinstance(value, tuple) else (value, value))
        if config.get("userns"):
            # A nested user namespace in which the program is the caller's uid, not root: it has
            # no capability over the mounts built above, so it cannot undo them.
            _libc().prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)  # /proc/self/*_map writable again
            if _libc().unshare(_CLONE_NEWUSER) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER) for the program")
            _map_ids(config["caller_uid"], 0, config["caller_gid"], 0)
        uid = config["uid"]
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        if _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        os.chdir(config["workdir"])
        python = config["python"]
        os.execve(python, [python, "-I", "-X", "utf8", "main.py"], config["env"])
    except BaseException as exc:
        _report(fd, error=f"could not start the program: {exc!r}")
    os._exit(127)


def _report(fd: int, **fields: object) -> None:
    os.write(fd, (json.dumps(fields) + "\n").encode())


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    libc.unshare.argtypes = [ctypes.c_int]
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    libc.syscall.restype = ctypes.c_long
    return libc


class _MountAttr(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("set", "clear", "propagation", "userns")]


def _mount_setattr(path: str, flags: int, set_flags: int = 0, clear_flags: int = 0) -> None:
    """mount_setattr(2): change mount attributes, with ``_AT_RECURSIVE`` for a whole subtree
    in one call (remounting mount by mount would miss mounts hidden under others)."""
    attr = _MountAttr(set_flags, clear_flags, 0, 0)
    result = _libc().syscall(
        ctypes.c_long(_SYS_MOUNT_SETATTR),
        ctypes.c_int(_AT_FDCWD),
        ctypes.c_char_p(path.encode()),
        ctypes.c_uint(flags),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount_setattr {path}: {os.strerror(errno)}")


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: bytes | None = None
) -> None:
    def encode(value: str | None) -> bytes | None:
        return value.encode() if value is not None else None

    if _libc().mount(encode(source), encode(target), encode(fstype), flags, data) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {target}: {os.strerror(errno)}")


if __name__ == "__main__":
    _launch(json.loads(sys.argv[1]))
