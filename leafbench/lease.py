"""Leases: one process at a time computes a workspace artifact; a crashed holder never blocks.

Several `leafbench run` processes, and later sweep workers on several machines, share one
workspace. Each stage key (and each per-model evaluation, and the synthetic testbed) is computed
by whoever holds its lease; the others wait, then reuse the finished artifact. `flock` alone is
not enough: it is advisory and unreliable on network filesystems, and a lock held by a machine
that died is never released. A lease is a plain file that works on any filesystem with atomic
`link` or `O_EXCL` create (local disks, tmpfs, NFSv3+):

* **Create.** The holder writes `{"token", "host", "pid", "acquired", ...}` to a private
  temporary file and hard-links it to `<name>.lease`; the link either creates the lease or fails,
  so exactly one contender wins. On NFS a retransmitted `link` can report EEXIST although it
  worked, so a failed link counts as a win when the temporary file's link count is 2 (the
  classic NFS-safe recipe). Filesystems without hard links fall back to `O_CREAT|O_EXCL`.
* **Heartbeat.** A daemon thread re-reads the lease every `heartbeat` seconds and, if it still
  names the holder's token, bumps the file's mtime through the open descriptor (so it can only
  ever touch the file it just read). If the lease is gone or names another token, the holder
  has lost it: the thread flags it and, when the lease was taken on the main thread, interrupts
  that thread, so a holder that stalled past the TTL stops writing into a directory that a new
  holder now owns. (The interruption is a simulated SIGINT, which does nothing in a process
  started with SIGINT ignored — a shell's `cmd &` without job control; such a holder learns of
  the loss only at the commit check.) `Lease.ensure_held()` is the last check before the
  commit (the rename of the finished directory).
* **Stale.** A waiter judges staleness by what it *observes*, never by comparing clocks: a lease
  whose (token, inode, mtime, size) has not changed for `ttl` seconds of the waiter's own
  monotonic clock is stale, whatever the holder's clock says (machines on a shared filesystem
  disagree about time). On the holder's own host (same hostname, boot and pid namespace) a lease
  whose pid is dead or a zombie is stale at once.
* **Break.** A waiter renames the stale lease to a name only it uses, then checks that the file
  it moved is the one it judged (same token and inode). If two waiters race, one rename fails
  (the file is gone) and that waiter simply tries again. If a new holder created a fresh lease
  between the judgement and the rename, the breaker moved a live lease: it links it back when the
  name is still free; otherwise the displaced holder sees the loss at its next heartbeat.
  Release uses the same rename-and-verify, so a holder never deletes someone else's lease.

Defaults: heartbeat 10 s, TTL 120 s (NFS clients may cache attributes for up to 60 s; a TTL
well above that and twelve heartbeats means a live holder is never judged stale), waiters poll
every 1 s. Environment variables override them (the tests shorten them):
LEAFBENCH_LEASE_TTL, LEAFBENCH_LEASE_HEARTBEAT, LEAFBENCH_LEASE_POLL (seconds).
"""

from __future__ import annotations

import _thread
import contextlib
import datetime
import errno
import json
import os
import random
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUFFIX = ".lease"
DEFAULTS = {"ttl": 120.0, "heartbeat": 10.0, "poll": 1.0}
ENV = {"ttl": "LEAFBENCH_LEASE_TTL", "heartbeat": "LEAFBENCH_LEASE_HEARTBEAT",
       "poll": "LEAFBENCH_LEASE_POLL"}


class LeaseLost(RuntimeError):
    """The lease was broken by another process (this one stalled past the TTL): its work is
    not committed, and the caller should wait for the new holder instead."""


@dataclass(frozen=True)
class LeaseSettings:
    """Seconds: `ttl` without a visible heartbeat before a lease counts as abandoned,
    `heartbeat` between a holder's refreshes, `poll` between a waiter's looks."""

    ttl: float = DEFAULTS["ttl"]
    heartbeat: float = DEFAULTS["heartbeat"]
    poll: float = DEFAULTS["poll"]

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat * 2 <= self.ttl:
            raise ValueError(
                f"lease heartbeat {self.heartbeat} s and TTL {self.ttl} s: the heartbeat must be "
                f"positive and at most half the TTL (set {ENV['heartbeat']} / {ENV['ttl']})")
        if self.poll <= 0:
            raise ValueError(f"lease poll interval {self.poll} s must be positive "
                             f"(set {ENV['poll']})")

    @classmethod
    def from_env(cls) -> LeaseSettings:
        values = {}
        for name, var in ENV.items():
            raw = os.environ.get(var)
            if raw is None:
                values[name] = DEFAULTS[name]
                continue
            try:
                values[name] = float(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r}: expected a number of seconds") from None
        return cls(**values)


def lease_path(artifact: Path) -> Path:
    """Where the lease guarding `artifact` (a directory that appears when finished) lives."""
    return artifact.with_name(artifact.name + SUFFIX)


def host_id() -> str:
    """Hostname, boot and pid namespace: a pid is only meaningful where all three match."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return "/".join(parts)


@dataclass(frozen=True)
class Seen:
    """What a waiter read of a lease file: its content and the signature a heartbeat changes."""

    token: str | None
    info: dict[str, Any]
    inode: int
    signature: tuple[int, int, int]  # (inode, mtime_ns, size)


def read_lease(path: Path) -> Seen | None:
    """The lease at `path`, or None when there is none. Content still being written (the
    O_EXCL fallback) reads as token None; staleness then rests on the signature alone."""
    try:
        with open(path, "rb") as fh:  # open + fstat: NFS revalidates attributes on open
            raw = fh.read()
            st = os.fstat(fh.fileno())
    except FileNotFoundError:
        return None
    try:
        info = json.loads(raw)
        token = info.get("token") if isinstance(info, dict) else None
    except ValueError:
        info, token = {}, None
    return Seen(token, info if isinstance(info, dict) else {}, st.st_ino,
                (st.st_ino, st.st_mtime_ns, st.st_size))


class Lease:
    """A held lease; a context manager that keeps it alive and releases it on exit."""

    def __init__(self, path: Path, token: str, settings: LeaseSettings) -> None:
        self.path = path
        self.token = token
        self.settings = settings
        self.lost = False
        self._stop = threading.Event()
        self._guard = threading.Lock()  # orders "interrupt the holder" against "holder is done"
        self._interrupt = threading.current_thread() is threading.main_thread()
        self._thread = threading.Thread(target=self._beat, name=f"lease {path.name}",
                                        daemon=True)
        self._thread.start()

    def still_held(self) -> bool:
        seen = read_lease(self.path)
        return seen is not None and seen.token == self.token

    def ensure_held(self) -> None:
        """Raise LeaseLost unless the lease file still names this holder (call before commit)."""
        if self.lost or not self.still_held():
            with self._guard:
                self.lost = True
            raise LeaseLost(f"lease {self.path} was taken over by another process")

    def release(self) -> None:
        with self._guard:
            self._stop.set()
        self._thread.join()
        if not self.lost:
            _take_away(self.path, self.token, None, tag="released")

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.release()
        except KeyboardInterrupt:  # our own interrupt, delivered as the holder finished
            if not self.lost:
                raise
        if self.lost and (exc_type is None or issubclass(exc_type, KeyboardInterrupt)):
            raise LeaseLost(f"lease {self.path} was taken over by another process "
                            "(this one stalled past the TTL); its work was not committed") from exc

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.heartbeat):
            try:
                alive = self._touch()
            except OSError as err:  # a transient filesystem error: try again at the next beat
                print(f"leafbench: lease heartbeat on {self.path} failed ({err}); retrying",
                      file=sys.stderr, flush=True)
                continue
            if not alive:
                with self._guard:
                    if self._stop.is_set() or self.lost:
                        return
                    self.lost = True
                    if self._interrupt:
                        _thread.interrupt_main()
                return

    def _touch(self) -> bool:
        try:
            with open(self.path, "rb") as fh:
                if _token_of(fh.read()) != self.token:
                    return False
                os.utime(fh.fileno())
                return True
        except FileNotFoundError:
            return False


def acquire(path: Path, done: Callable[[], bool] | None = None,
            settings: LeaseSettings | None = None, label: str | None = None) -> Lease | None:
    """Wait for the lease at `path`; return it held, or None as soon as `done()` says the
    artifact it guards is finished (by whoever held it while we waited).

    `done` is checked before every attempt and again right after winning the lease, so a holder
    never recomputes what another process committed a moment before. `label` names the wait in
    the one line printed to stderr when this process has to wait.
    """
    settings = settings or LeaseSettings.from_env()
    path.parent.mkdir(parents=True, exist_ok=True)
    host = host_id()
    judged: tuple[tuple[Any, ...], float] | None = None  # (signature, first seen unchanged at)
    announced = False
    while True:
        if done is not None and done():
            return None
        token = uuid.uuid4().hex
        if _create(path, token, host):
            lease = Lease(path, token, settings)
            if done is not None and done():
                lease.release()
                return None
            return lease
        seen = read_lease(path)
        if seen is None:
            continue  # released between our attempt and our look: try again at once
        observed = (seen.token, *seen.signature)
        if judged is None or judged[0] != observed:
            judged = (observed, time.monotonic())
        if _dead_here(seen, host) or time.monotonic() - judged[1] >= settings.ttl:
            _take_away(path, seen.token, seen.inode, tag="broken")
            judged = None
            continue
        if not announced:
            holder = f"{seen.info.get('host', '?')} pid {seen.info.get('pid', '?')}"
            print(f"leafbench: waiting for {label or path.name} (held by {holder})",
                  file=sys.stderr, flush=True)
            announced = True
        time.sleep(settings.poll * random.uniform(0.8, 1.2))  # jitter: waiters do not march


def _create(path: Path, token: str, host: str) -> bool:
    """Create the lease file atomically with its content; True when this call created it."""
    content = json.dumps({
        "token": token, "host": host.split("/")[0], "host_id": host, "pid": os.getpid(),
        "acquired": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }).encode()
    tmp = path.with_name(f".{path.name}.{token}.tmp")
    tmp.write_bytes(content)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return os.stat(tmp).st_nlink == 2  # NFS: a retried link that had in fact succeeded
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
            raise
        return _create_exclusive(path, content)
    finally:
        tmp.unlink(missing_ok=True)


def _create_exclusive(path: Path, content: bytes) -> bool:
    """For filesystems without hard links: O_CREAT|O_EXCL, then the content."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
    return True


def _dead_here(seen: Seen, host: str) -> bool:
    """True when the lease was taken on this host by a process that no longer runs."""
    pid = seen.info.get("pid")
    if seen.info.get("host_id") != host or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    with contextlib.suppress(OSError, IndexError):  # killed but not yet reaped
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return False


def _take_away(path: Path, token: str | None, inode: int | None, tag: str) -> bool:
    """Remove the lease at `path` if it is the one expected (token, and inode when given).

    The file is first renamed to a name unique to this call, so of several processes removing
    the same lease exactly one moves it; the mover then checks what it moved and, if it was a
    newer lease, puts it back (a hard link fails rather than overwrite a lease made meanwhile).
    """
    aside = path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    seen = read_lease(aside)
    if seen is not None and seen.token == token and inode in (None, seen.inode):
        aside.unlink(missing_ok=True)
        return True
    with contextlib.suppress(OSError):
        os.link(aside, path)  # the name is still free: the live lease returns unharmed
    aside.unlink(missing_ok=True)
    return False


def _token_of(raw: bytes) -> str | None:
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    return info.get("token") if isinstance(info, dict) else None


def compute_once(artifact: Path, done: Callable[[], bool], compute: Callable[[Lease], Any],
                 label: str, force: bool = False, attempts: int = 3) -> bool:
    """Make sure the artifact `done()` looks for exists, computing it here only if no other
    process did: True when this process computed it, False when it was reused.

    `compute(lease)` runs while holding the lease on `artifact`; it should call
    `lease.ensure_held()` right before committing. `force` computes even when `done()` already
    holds (the caller deletes the old artifact under the lease). A holder that loses its lease
    waits for the new holder, then reuses its result.
    """
    for _ in range(attempts):
        lease = acquire(lease_path(artifact), done=None if force else done, label=label)
        if lease is None:
            return False
        try:
            with lease:
                compute(lease)
            return True
        except LeaseLost as err:
            print(f"leafbench: {err}; waiting for the new holder", file=sys.stderr, flush=True)
            force = False  # the new holder recomputes it from the same inputs
    raise LeaseLost(f"{label}: lost the lease {attempts} times; is the lease TTL "
                    f"({ENV['ttl']}) shorter than this machine's stalls?")
