"""A real PostgreSQL server for the tests marked ``postgres``, started and stopped by the tests.

Why a real server: several sweep workers sharing one Optuna study need row locks (SQLite has
none), and the behaviours under test — heartbeats, stale trials failed by another worker, a
shared MLflow store — only happen against PostgreSQL.

Where it comes from: the server binaries of Debian's ``postgresql`` package
(``/usr/lib/postgresql/<version>/bin``; ``initdb`` and ``pg_ctl`` are not on Debian's PATH),
or the ``pg_ctl`` on PATH, or the folder named by ``LEAFBENCH_PG_BIN``. When none is found the
fixtures fail and say to ``apt-get install postgresql``: a ``postgres`` test that skipped
quietly would pass CI without testing anything. Those tests are outside the default run
(pyproject's addopts); ``nox -s postgres`` runs them.

How it runs: the server refuses to run as root, so as root the data folder is made in the
system temp folder, owned by the ``nobody`` account, and ``initdb``/``pg_ctl`` run through
``setpriv``; as anyone else they run directly. It listens on 127.0.0.1 only (no Unix socket:
Debian's default socket folder is not writable by ``nobody``), on a free port, with trust
authentication and durability off (a test server holds nothing worth an fsync). It is stopped
with ``pg_ctl stop -m fast`` and its folder removed afterwards, also when a test failed.

Use in a test module::

    from postgres_server import fresh_database, postgres_url  # noqa: F401

    def test_something(postgres_url):
        url = fresh_database(postgres_url)   # a database of this test's own

One server serves the whole session, however many modules import the fixture.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCOUNT = 65534  # nobody: owns no file of the caller, exists on every Debian system
BIN_VARIABLE = "LEAFBENCH_PG_BIN"
DEBIAN_BINARIES = "/usr/lib/postgresql/*/bin"
SUPERUSER = "postgres"
DATABASE = "leafbench"
INSTALL_HINT = ("install the PostgreSQL server binaries: `apt-get install postgresql` on Debian "
                f"or Ubuntu (or set {BIN_VARIABLE} to a folder holding initdb and pg_ctl)")
# Durability is pointless for a throwaway server, and fsync is most of its start-up time.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "200",  # several workers, each with a connection pool, plus MLflow
    "shared_buffers": "64MB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
START_ATTEMPTS = 3  # a free port can be taken between choosing it and the server binding it


class PostgresUnavailable(RuntimeError):
    """The server cannot be started here; the message says why and what to install."""


@dataclass(frozen=True)
class Server:
    """A running server: where it listens, where its files are, and how to reach it."""

    bin_dir: Path
    root: Path  # holds data/ and server.log; removed when the server stops
    port: int
    driver: str  # SQLAlchemy dialect+driver, e.g. postgresql+psycopg2
    host: str = "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = DATABASE) -> str:
        """SQLAlchemy URL of one database on this server (trust auth: no password)."""
        return f"{self.driver}://{SUPERUSER}@{self.host}:{self.port}/{database}"


def find_binaries(search: list[str] | None = None) -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: $LEAFBENCH_PG_BIN, else the
    folder of the ``pg_ctl`` on PATH, else the newest ``/usr/lib/postgresql/<version>/bin``.
    ``search`` replaces that list of candidates (the tests of this message use it)."""
    candidates = search if search is not None else _candidate_folders()
    for folder in candidates:
        if all((Path(folder) / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    looked = ", ".join(candidates) or "nowhere"
    raise PostgresUnavailable(f"no PostgreSQL server binaries (looked in {looked}): "
                              f"{INSTALL_HINT}")


def _candidate_folders() -> list[str]:
    folders = []
    if os.environ.get(BIN_VARIABLE):
        folders.append(os.environ[BIN_VARIABLE])
    on_path = shutil.which("pg_ctl")
    if on_path:
        folders.append(os.path.dirname(os.path.realpath(on_path)))
    debian = Path("/usr/lib/postgresql")
    versions = sorted((p for p in debian.glob("*/bin")), key=_version_key, reverse=True)
    folders.extend(str(p) for p in versions)
    return folders


def _version_key(folder: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", folder.parent.name)) or (0,)


def sqlalchemy_driver() -> str:
    """The dialect+driver for the installed PostgreSQL client library (psycopg2, else psycopg 3)."""
    if importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2"
    if importlib.util.find_spec("psycopg") is not None:
        return "postgresql+psycopg"
    raise PostgresUnavailable("no PostgreSQL driver for SQLAlchemy: "
                              "`pip install -e .[postgres]` (psycopg2-binary)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def start_postgres(parent: Path | None = None) -> Iterator[Server]:
    """Start a fresh server in a new folder under ``parent`` (default: the system temp folder),
    yield it, then stop it and remove the folder, whatever happened in between.

    As root, ``parent`` must be reachable by the ``nobody`` account: pytest's ``tmp_path`` is
    not (``/tmp/pytest-of-root`` is private), so the fixtures leave it at the default."""
    bin_dir, driver = find_binaries(), sqlalchemy_driver()
    root = _make_root(parent)
    try:
        _run(bin_dir, root, "initdb", "-D", str(root / "data"), "-U", SUPERUSER,
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
        server = _start(bin_dir, root, driver)
        try:
            _create_database(server.url("postgres"), DATABASE)
            yield server
        finally:
            _stop(server)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(url: str) -> str:
    """Create an empty database on the server ``url`` points at; its URL. Each test that writes
    gets one, so tests sharing the session's server never see each other's studies or runs."""
    from sqlalchemy.engine import make_url

    name = f"t_{uuid.uuid4().hex[:16]}"
    server = make_url(url)
    _create_database(server.set(database="postgres").render_as_string(hide_password=False), name)
    return server.set(database=name).render_as_string(hide_password=False)


def _as_root() -> bool:
    return os.geteuid() == 0


def _make_root(parent: Path | None) -> Path:
    """The server's folder, private to the account that runs the server."""
    if _as_root() and parent is not None:
        _check_reachable(parent)
    root = Path(tempfile.mkdtemp(prefix="leafbench-pg-", dir=parent))
    if _as_root():
        os.chown(root, ACCOUNT, ACCOUNT)
    return root


def _check_reachable(folder: Path) -> None:
    """Every ancestor of ``folder`` must be traversable by others, or ``nobody`` cannot reach
    the data folder and initdb fails with a bare 'Permission denied'."""
    resolved = folder.resolve()
    for ancestor in [*reversed(resolved.parents), resolved]:
        if not os.stat(ancestor).st_mode & stat.S_IXOTH:
            raise PostgresUnavailable(
                f"{ancestor} is not traversable by the nobody account that runs the server "
                "as root: choose a parent folder under /tmp")


def _run(bin_dir: Path, root: Path, tool: str, *args: str) -> None:
    """Run one server tool, as ``nobody`` when we are root; its output joins the error."""
    argv = [str(bin_dir / tool), *args]
    if _as_root():
        argv = ["setpriv", f"--reuid={ACCOUNT}", f"--regid={ACCOUNT}", "--clear-groups", *argv]
    # The tools resolve paths against the working directory, which must be reachable by the
    # account; the environment must not point them at another cluster.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")
    try:
        done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True,
                              timeout=120, check=False)
    except FileNotFoundError as missing:
        raise PostgresUnavailable(f"{missing.filename} not found: setpriv comes with util-linux"
                                  ) from missing
    if done.returncode != 0:
        raise PostgresUnavailable(f"{tool} {' '.join(args)} failed ({done.returncode}):\n"
                                  f"{done.stdout}{done.stderr}{_log_tail(root)}")


def _start(bin_dir: Path, root: Path, driver: str) -> Server:
    """Configure and start the server on a free port, retrying when the port was taken."""
    conf = root / "data" / "postgresql.conf"
    base = conf.read_text()
    for attempt in range(1, START_ATTEMPTS + 1):
        server = Server(bin_dir=bin_dir, root=root, port=free_port(), driver=driver)
        settings = {**SETTINGS, "port": str(server.port)}
        conf.write_text(base + "\n# leafbench tests\n"
                        + "".join(f"{k} = {v}\n" for k, v in settings.items()))
        try:
            _run(bin_dir, root, "pg_ctl", "start", "-D", str(server.data_dir),
                 "-l", str(server.log), "-w", "-t", "60")
            return server
        except PostgresUnavailable:
            if attempt == START_ATTEMPTS or "could not bind" not in _log_tail(root):
                raise
    raise AssertionError("unreachable")


def _stop(server: Server) -> None:
    """``pg_ctl stop -m fast`` (rolls back open transactions, closes connections); if that
    fails, kill the postmaster so that no server outlives the tests."""
    try:
        _run(server.bin_dir, server.root, "pg_ctl", "stop", "-D", str(server.data_dir),
             "-m", "fast", "-w", "-t", "30")
    except PostgresUnavailable:
        pid_file = server.data_dir / "postmaster.pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError, ProcessLookupError, IndexError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        raise


def _create_database(maintenance_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(maintenance_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()


def _log_tail(root: Path, chars: int = 3000) -> str:
    log = root / "server.log"
    if not log.exists():
        return ""
    return f"--- server.log ---\n{log.read_text(errors='replace')[-chars:]}"


# One server per session, however many test modules import the fixture: each import makes a
# fixture definition of its own, so the server is shared by reference count, not by pytest.
_session = contextlib.ExitStack()
_shared: Server | None = None
_users = 0


@contextlib.contextmanager
def shared_server() -> Iterator[Server]:
    """The session's server, started by its first user and stopped after its last."""
    global _shared, _users
    if _shared is None:
        try:
            _shared = _session.enter_context(start_postgres())
        except PostgresUnavailable as unavailable:
            pytest.fail(str(unavailable), pytrace=False)
    _users += 1
    try:
        yield _shared
    finally:
        _users -= 1
        if _users == 0:
            _shared = None
            _session.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """The session's running server (its binaries, folder, log and port)."""
    with shared_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of the session server's ``leafbench`` database; a test that writes
    should take ``fresh_database(postgres_url)`` instead."""
    with shared_server() as server:
        yield server.url()
