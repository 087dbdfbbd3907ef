"""Concurrent `leafbench leaderboard add`: 20 processes adding to one board at once.

Twenty real evaluations (replays scored by lm-eval on a GSM8K-format file written here, each
answering a different set of items) are added to one board by 20 `leafbench leaderboard add`
processes started together, and to a second board one after another. Printed: how many entries
each board holds and whether each is valid, and whether the two boards render to
byte-identical markdown and HTML.

Run: `nox -s bench` or `python -m leafbench.bench.board_adds [--processes 20]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_ITEMS = 100


def evaluations(root: Path, count: int) -> list[Path]:
    from leafbench.evaluation.replay import run_replay

    data = root / "data" / "gsm8k"
    data.mkdir(parents=True)
    (data / "test.jsonl").write_text("".join(
        json.dumps({"question": f"Item {i}: what is {i} plus {i + 5}?",
                    "answer": f"#### {2 * i + 5}"}) + "\n" for i in range(N_ITEMS)))
    folders = []
    for k in range(count):
        responses = root / f"responses-{k}.jsonl"
        responses.write_text("".join(
            json.dumps({"task": "leaf_gsm8k", "doc_id": i,
                        "response": f"#### {2 * i + 5 if (i * (k + 3)) % 7 else -1}"}) + "\n"
            for i in range(N_ITEMS)))
        folder = root / f"eval-{k}"
        run_replay(responses, ["leaf_gsm8k"], folder, data_dir=root / "data")
        folders.append(folder)
    return folders


def add_command(folder: Path, board: Path, k: int) -> list[str]:
    return [sys.executable, "-m", "leafbench.cli", "leaderboard", "add", str(folder),
            "--board", str(board), "--model", f"student-{k:02d}"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=20)
    args = parser.parse_args(argv)
    from leafbench.leaderboard import board as boards
    from leafbench.leaderboard.render import render

    with tempfile.TemporaryDirectory(prefix="leafbench-bench-board-") as tmp:
        root = Path(tmp)
        folders = evaluations(root, args.processes)
        # same folder name: the page's title is the board's name
        together, one_by_one = root / "concurrent" / "board", root / "sequential" / "board"
        start = time.perf_counter()
        procs = [subprocess.Popen(add_command(f, together, k), stdout=subprocess.DEVNULL)
                 for k, f in enumerate(folders)]
        codes = [p.wait() for p in procs]
        print(f"{args.processes} concurrent adds: exit codes {sorted(set(codes))}, "
              f"{time.perf_counter() - start:.1f} s")
        for k, folder in enumerate(folders):
            subprocess.run(add_command(folder, one_by_one, k), check=True,
                           stdout=subprocess.DEVNULL)
        for name, board in (("concurrent", together), ("sequential", one_by_one)):
            entries = boards.entries(board)  # each one validated on reading
            leftovers = list((board / "entries").glob(".*"))
            print(f"{name}: {len(entries)} valid entries, {len(leftovers)} temporary files left")
        pages = [render(b) for b in (together, one_by_one)]
        same = all(a.read_bytes() == b.read_bytes() for a, b in zip(*pages, strict=True))
        print("render after concurrent adds == render after sequential adds: "
              + ("byte-identical (markdown and HTML)" if same else "DIFFERENT"))


if __name__ == "__main__":
    main()
