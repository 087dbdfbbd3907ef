"""`leafbench leaderboard add | add-reference | check | render`.

Exit status: 0 done (check: passed), 1 check found a regression, 2 a usage error (a bad entry,
data that does not line up, a label that is not on the board), with one line naming the file
and the field, before any statistic is computed.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import yaml

from leafbench.errors import ConfigError
from leafbench.leaderboard import board as boards
from leafbench.leaderboard.entry import Entry, check_label, from_results, load_entry, reference
from leafbench.leaderboard.gate import GateSettings, check, table


def add_parser(sub: argparse._SubParsersAction) -> None:
    lb = sub.add_parser("leaderboard", help="keep a board of evaluations; gate a candidate")
    cmds = lb.add_subparsers(dest="leaderboard_command", required=True)

    add = cmds.add_parser("add", help="add an evaluation directory to a board as an entry")
    add.add_argument("results", type=Path, help="a folder holding results.json")
    add.add_argument("--board", type=Path, required=True, help="the board's folder")
    add.add_argument("--model", required=True, metavar="LABEL", help="the entry's label")

    ref = cmds.add_parser("add-reference", help="add published numbers (score and n per task)")
    ref.add_argument("spec", type=Path, help="YAML: label, source, date, tasks: {task: {score, n}}")
    ref.add_argument("--board", type=Path, required=True)

    chk = cmds.add_parser("check", help="gate a candidate against a baseline on the board")
    chk.add_argument("--board", type=Path, required=True)
    chk.add_argument("--baseline", required=True, metavar="LABEL")
    chk.add_argument("--candidate", required=True, metavar="RESULTS|LABEL",
                     help="an evaluation directory, or the label of an entry on the board")
    chk.add_argument("--label", default=None,
                     help="the candidate's name when it is a directory (default: its name)")
    chk.add_argument("--margin", type=float, default=0.0,
                     help="drops up to this (score units, 0.02 = 2 points) never fail")
    chk.add_argument("--alpha", type=float, default=0.05)
    chk.add_argument("--rule", default="significant-drop",
                     help="significant-drop (default) or non-inferiority")
    chk.add_argument("--intersect", action="store_true",
                     help="compare only the items (and tasks) both sides have")
    chk.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the report")
    chk.add_argument("--no-record", action="store_true",
                     help="do not keep the verdict on the board (the page shows the latest)")

    ren = cmds.add_parser("render", help="write the board's markdown table and HTML page")
    ren.add_argument("--board", type=Path, required=True)


def run(args: argparse.Namespace) -> int:
    return COMMANDS[args.leaderboard_command](args)


def _add(args: argparse.Namespace) -> int:
    label = _label(args.model, "--model")
    path = boards.add(args.board, from_results(args.results, label))
    print(f"added {label!r} to {args.board}: {path.name}")
    return 0


def _add_reference(args: argparse.Namespace) -> int:
    spec = yaml.safe_load(args.spec.read_text())
    fields = {"label", "source", "date", "tasks"}
    if not isinstance(spec, dict) or set(spec) != fields:
        raise ConfigError(str(args.spec), "<root>", sorted(spec) if isinstance(spec, dict)
                          else spec, f"expected exactly the fields {sorted(fields)}")
    for name, task in (spec["tasks"] or {}).items():
        if not isinstance(task, dict) or not {"score", "n"} <= set(task) <= {
                "score", "n", "metric", "options"}:
            raise ConfigError(str(args.spec), f"tasks.{name}", task,
                              "expected {score, n} and optionally metric and options")
    entry = reference(_label(str(spec["label"]), "label"), str(spec["source"]),
                      str(spec["date"]), spec["tasks"])
    path = boards.add(args.board, entry)
    print(f"added reference {entry.label!r} to {args.board}: {path.name}")
    return 0


def _check(args: argparse.Namespace) -> int:
    settings = GateSettings(alpha=args.alpha, margin=args.margin, rule=args.rule,
                            intersect=args.intersect)
    baseline = boards.find(args.board, _label(args.baseline, "--baseline"))
    candidate = _candidate(args)
    report = check(baseline, candidate, settings)
    for line in table(report):
        print(line)
    text = report.to_json()
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    if not args.no_record:
        boards.record_verdict(args.board, candidate.label, json.loads(text))
    return 0 if report.passed else 1


def _candidate(args: argparse.Namespace) -> Entry:
    """A directory is evaluated results; anything else names an entry on the board."""
    path = Path(args.candidate)
    if path.is_dir():
        name = args.label or "candidate-" + (re.sub(r"[/\\]", "_", path.resolve().name) or "dir")
        return from_results(path, _label(name, "--label"))
    if path.suffix == ".json" and path.is_file():
        return load_entry(path)
    return boards.find(args.board, _label(args.candidate, "--candidate"))


def _render(args: argparse.Namespace) -> int:
    from leafbench.leaderboard.render import render

    markdown, page = render(args.board)
    print(f"wrote {markdown} and {page}")
    return 0


def report(args: argparse.Namespace) -> int:
    """`leafbench report`: a reproduction report, not a gate (exit 0 whatever it shows)."""
    from leafbench.leaderboard.reproduction import compare, render_report, summary

    for flag, folder in (("--published", args.published), ("--reproduced", args.reproduced)):
        if not (folder / boards.ENTRIES).is_dir():
            raise ConfigError(str(folder), flag, str(folder), "expected a board folder with "
                              "entries/ (leafbench leaderboard add / add-reference)")
    pairs = None
    if args.pair:
        bad = [p for p in args.pair if "=" not in p]
        if bad:
            raise ConfigError("report", "--pair", bad[0], "expected REPRODUCED=PUBLISHED")
        pairs = dict(p.rsplit("=", 1) for p in args.pair)
    published, reproduced = boards.entries(args.published), boards.entries(args.reproduced)
    rows = compare(published, reproduced, pairs)
    matched = {r.reproduced_label for r in rows}
    skipped = [e.label for e in reproduced if e.label not in matched]
    markdown, page = render_report(rows, args.out, title=args.title)
    print(summary(rows))
    if skipped:
        print(f"not in the report (no published row matches): {skipped}")
    print(f"wrote {markdown} and {page}")
    return 0


def _label(label: str, flag: str) -> str:
    try:
        return check_label(label)
    except ValueError as err:
        raise ConfigError("leaderboard", flag, label, str(err)) from None


COMMANDS = {"add": _add, "add-reference": _add_reference, "check": _check, "render": _render}
