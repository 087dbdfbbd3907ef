"""Run a command as an ordinary account, with this interpreter and project reachable.

Used by the tests and the sandbox benchmark to check, when they run as root (CI), what a
researcher's non-root account gets: the user-namespace sandbox. The difficulty is reach, not
privilege: the virtualenv and its base Python often live under ``/root`` (pyenv), which the
account cannot traverse. So the command runs in a private mount namespace in which each
untraversable ancestor of the paths it needs is covered with an empty tmpfs and those paths are
bound back at the same places — the account then sees the same interpreter at the same path as
the caller, and nothing else of ``/root``. Then ``setpriv`` drops to the account, through a
shell, so that the final exec happens with no capabilities left.

Needs root and util-linux (``unshare``, ``mount``, ``setpriv``), as on Debian and in CI.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

NOBODY = 65534  # owns no file of the caller
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def interpreter_paths() -> list[str]:
    """What running this interpreter with the project needs: the environment, its base Python
    and the project itself (an editable install points there)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable)), str(PROJECT_ROOT)}
    return sorted(os.path.realpath(p) for p in paths)


def account_home(account: int = NOBODY) -> Path:
    """A fresh home owned by the account (the caller removes it)."""
    home = Path(tempfile.mkdtemp(prefix="leafbench-account-home-"))
    os.chown(home, account, account)
    return home


def run_as_account(
    argv: list[str],
    *,
    home: Path,
    env: Mapping[str, str] = {},
    expose: Iterable[str] = (),
    account: int = NOBODY,
    timeout: float = 900,
    cwd: Path = PROJECT_ROOT,
) -> subprocess.CompletedProcess:
    """Run ``argv`` as ``account`` with ``HOME=home``; ``expose`` (plus this interpreter and the
    project) made reachable. Output is captured as text; the exit status is not checked."""
    if os.geteuid() != 0:
        raise PermissionError("switching to another account needs root")
    paths = sorted({*interpreter_paths(), *(os.path.realpath(p) for p in expose)})
    setup = _mount_script(paths, _untraversable(paths))
    drop = (f"exec setpriv --reuid={account} --regid={account} --clear-groups "
            '/bin/sh -c \'exec "$@"\' sh "$@"')
    command = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
               f"set -e\n{setup}\ncd {shlex.quote(str(cwd))}\n{drop}", "sh", *argv]
    environment = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin",
                   "HOME": str(home), "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", **env}
    return subprocess.run(command, env=environment, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _untraversable(paths: list[str]) -> list[str]:
    """The first ancestor of each path that others cannot traverse (mode lacks o+x)."""
    masks = set()
    for path in paths:
        parts = Path(path).parts
        for depth in range(2, len(parts) + 1):
            ancestor = str(Path(*parts[:depth]))
            if not os.stat(ancestor).st_mode & stat.S_IXOTH:
                masks.add(ancestor)
                break
    return sorted(m for m in masks if not any(m.startswith(o + "/") for o in masks))


def _mount_script(paths: list[str], masks: list[str]) -> str:
    """Shell lines: stage each needed path under a bind mount, cover the masks, bind back."""
    if not masks:
        return ":"
    needed = [p for p in paths if any(p == m or p.startswith(m + "/") for m in masks)]
    stage = tempfile.mkdtemp(prefix="leafbench-expose-")
    lines = []
    for index, path in enumerate(needed):
        lines.append(f"mkdir -p {stage}/{index} && mount --bind {shlex.quote(path)} {stage}/{index}")
    for mask in masks:
        lines.append(f"mount -t tmpfs -o mode=755,size=1m tmpfs {shlex.quote(mask)}")
    for index, path in enumerate(needed):
        lines.append(f"mkdir -p {shlex.quote(path)} && mount --bind {stage}/{index} "
                     f"{shlex.quote(path)} && umount -l {stage}/{index}")
    lines.append(f"rm -rf {stage}")
    return "\n".join(lines)
