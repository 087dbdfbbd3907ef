"""A board: a folder of entry files, one per label, and the gate's latest verdicts.

    leaderboards/NAME/
        entries/<slug>-<hash>.json     one `Entry` each (`entry.file_name(label)`)
        verdicts/<slug>-<hash>.json    the latest `check` of each candidate label
        board.md, board.html           what `render` writes

One file per entry is what lets concurrent `add`s on one machine and entries merged from many
branches never collide: an entry is written to a temporary file in the same folder and then
hard-linked to its final name, which the file system does atomically and refuses when the name
exists, so two processes adding the same label cannot both succeed and a reader never sees half
a file. Nothing here deletes or rewrites an entry.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from leafbench.errors import ConfigError
from leafbench.leaderboard.entry import Entry, file_name, load_entry

ENTRIES = "entries"
VERDICTS = "verdicts"


def entries(board: Path) -> list[Entry]:
    """Every entry of `board`, each checked (`load_entry`), sorted by label."""
    folder = board / ENTRIES
    found = []
    for path in sorted(folder.glob("[!.]*.json")) if folder.is_dir() else []:  # not temporaries
        entry = load_entry(path)
        if path.name != file_name(entry.label):  # a renamed file could shadow another label
            raise ConfigError(str(path), "label", entry.label,
                              f"an entry labelled so lives in {file_name(entry.label)}")
        found.append(entry)
    return sorted(found, key=lambda e: e.label)


def find(board: Path, label: str) -> Entry:
    path = board / ENTRIES / file_name(label)
    if not path.is_file():
        known = [e.label for e in entries(board)]
        raise ConfigError(str(board), "--baseline/--candidate", label,
                          f"no entry with this label; the board has {known}")
    return load_entry(path)


def add(board: Path, entry: Entry) -> Path:
    """Write `entry` into `board` (created if missing); refuse a label already there, or the
    same evaluation (model fingerprint and item verdicts) under another label."""
    folder = board / ENTRIES
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / file_name(entry.label)
    if final.exists():
        raise ConfigError(str(final), "label", entry.label, "the board already has this label")
    twin = _same_evaluation(board, entry)
    if twin is not None:
        raise ConfigError(str(board / ENTRIES / file_name(twin)), "label", twin,
                          f"this evaluation is already on the board as {twin!r}; "
                          f"not adding it again as {entry.label!r}")
    _publish(final, entry.to_json())
    return final


def _same_evaluation(board: Path, entry: Entry) -> str | None:
    """An entry of the same model (its fingerprint; a replay's responses file, which has none)
    with the very same verdicts is the same evaluation added twice."""
    if entry.kind != "evaluation":
        return None
    for other in entries(board):
        if (other.kind == "evaluation" and other.tasks == entry.tasks
                and (other.model_fingerprint or other.model) == (entry.model_fingerprint
                                                                 or entry.model)):
            return other.label
    return None


def _publish(final: Path, text: str) -> None:
    """Write `text` to `final` atomically, failing if `final` exists (the module docstring)."""
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".adding-", suffix=".json")
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared board's entries from the team
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, final)
        except FileExistsError:
            raise ConfigError(str(final), "label", final.name,
                              "the board already has this label (added concurrently)") from None
    finally:
        os.unlink(tmp)


def record_verdict(board: Path, label: str, report: dict[str, Any]) -> Path:
    """Keep `report` as the latest verdict on `label` (replaced atomically)."""
    folder = board / VERDICTS
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / file_name(label)
    replace_file(final, json.dumps(report, indent=1, sort_keys=True) + "\n")
    return final


def replace_file(final: Path, text: str) -> None:
    """Write `text` to `final` through a temporary file and a rename: a reader (or a second
    render of the same board) sees the old file or the new one, never half of either."""
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".writing-", suffix=final.suffix)
    os.chmod(tmp, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, final)
    except BaseException:
        os.unlink(tmp)
        raise
