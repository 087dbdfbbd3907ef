"""`leafbench claims EXP.yaml [--seeds N] [--vary pipeline|testbed] [--json PATH]`.

Runs the conditions the claims need over N seeds (every stage already computed comes from the
workspace's cache), prints one row per claim — effect, 95% interval, test, Holm-adjusted p and
verdict — then the diagnostics, writes the JSON report if asked, and logs both to MLflow
(one run named `claims-<experiment>`). Exit 0 when it ran (whatever the verdicts), 2 on a
usage error, before any stage runs.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from leafbench.claims.claims import ALPHA, ClaimResult, judge
from leafbench.claims.collect import collect
from leafbench.claims.conditions import VARIES, seed_overrides
from leafbench.config import load_experiment
from leafbench.determinism import cpu_class
from leafbench.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("claims", help="test the paper's claims over seeds on the testbed")
    p.add_argument("experiment", type=Path)
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--vary", default="pipeline", choices=VARIES,
                   help="what a seed varies: pipeline (pruning and distillation; the default) "
                        "or testbed (also the testbed's data and models)")
    p.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the experiment (repeatable)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the report")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap draws (default 2000)")
    p.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")


def run(args: argparse.Namespace) -> int:
    if args.seeds < 1:
        raise ConfigError("--seeds", "--seeds", args.seeds, "an integer >= 1")
    if args.resamples < 100:
        raise ConfigError("--resamples", "--resamples", args.resamples, "an integer >= 100")
    seed_overrides(0, args.vary)  # a bad --vary fails here, before anything runs
    base = load_experiment(args.experiment, list(args.set))
    started = time.perf_counter()
    ev, diagnostics = collect(args.experiment, list(args.set), list(range(args.seeds)),
                              args.vary, resamples=args.resamples)
    results = judge(ev)
    report = to_report(base.name, args.vary, ev.seeds, results, diagnostics,
                       time.perf_counter() - started)
    print(render_table(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    if not args.no_tracking:
        log_to_mlflow(base, report)
    return 0


SEED_MEANING = {
    "pipeline": "Experiment.seed (pruning's random baseline, distillation's order); the "
                "testbed's data and models fixed",
    "testbed": "Experiment.seed and synthetic.seed: the testbed's data and models rebuilt per seed",
}


def to_report(name: str, vary: str, seeds: list[int], results: list[ClaimResult],
              diagnostics: dict[str, Any], seconds: float) -> dict[str, Any]:
    claims = []
    for r in results:
        row = {k: v for k, v in asdict(r).items() if k != "effects"}
        row["effects"] = {k: asdict(e) for k, e in r.effects.items()}
        claims.append(row)
    return {"experiment": name, "seeds": seeds, "seed_varies": SEED_MEANING[vary],
            "cpu_class": cpu_class(), "alpha": ALPHA,
            "multiplicity": "Holm across the claims measured",
            "claims": claims, "diagnostics": diagnostics, "wall_seconds": round(seconds, 1)}


def render_table(report: dict[str, Any]) -> str:
    lines = [f"claims on {report['experiment']}: seeds {report['seeds']} "
             f"(a seed varies {report['seed_varies']}; CPU class {report['cpu_class']})",
             "| claim | measure | effect | 95% CI | Holm p | verdict |",
             "|---|---|---|---|---|---|"]
    for c in report["claims"]:
        if not c["effects"]:
            lines.append(f"| ({c['claim']}) {c['statement']} | — | — | — | — | "
                         f"{c['verdict']}: {c['reason']} |")
            continue
        for i, (part, e) in enumerate(c["effects"].items()):
            head = f"({c['claim']}) {c['statement']}" if i == 0 else ""
            verdict = (f"**{c['verdict']}**" + (f" (margin {c['margin']:g})" if c["margin"] else "")
                       if i == 0 else "")
            p = f"{c['p_holds_holm']:.3g}" if i == 0 else ""
            lines.append(f"| {head} | {part} | {e['estimate']:+.4f} | "
                         f"[{e['ci'][0]:+.4f}, {e['ci'][1]:+.4f}] | {p} | {verdict} |")
    lines.append("")
    lines.append("test: " + _test_line(report))
    d = report["diagnostics"].get("summary", {})
    if d:
        lines.append(f"mean accuracy: {json.dumps(d['accuracy'])}")
        lines.append(f"LeaF vs KD flips (all seeds): {json.dumps(d['flips'])}")
        lines.append(f"answers on the test split: {json.dumps(d['answers'])}")
    for c in report["claims"]:
        if c["extra"]:
            lines.append(f"({c['claim']}) {json.dumps(c['extra'])}")
    lines.append(f"wall time: {report['wall_seconds']} s "
                 f"({json.dumps(report['diagnostics'].get('wall_seconds', {}))})")
    return "\n".join(lines)


def _test_line(report: dict[str, Any]) -> str:
    for c in report["claims"]:
        if c["effects"]:
            e = next(iter(c["effects"].values()))
            return (f"{e['design']} two-way bootstrap over {e['seeds']} seeds × items "
                    f"({e['resamples']} draws: seeds and items both resampled), one-sided "
                    f"percentile p-values, Holm across claims, α = {report['alpha']}")
    return "no claim measured"


def log_to_mlflow(exp: Any, report: dict[str, Any]) -> str:
    import mlflow

    from leafbench.tracking.mlflow_run import ensure_experiment, tracking_uri

    ensure_experiment(exp, tracking_uri(exp))
    mlflow.set_experiment(exp.tracking.experiment)
    with mlflow.start_run(run_name=f"claims-{exp.name}") as run:
        mlflow.log_params({"seeds": len(report["seeds"]), "seed_varies": report["seed_varies"][:250]})
        mlflow.set_tag("cpu_class", report["cpu_class"])
        for c in report["claims"]:
            mlflow.set_tag(f"claim_{c['claim']}", c["verdict"])
            for part, e in c["effects"].items():
                mlflow.log_metrics({f"claim_{c['claim']}.{part}.effect": e["estimate"],
                                    f"claim_{c['claim']}.{part}.ci_low": e["ci"][0],
                                    f"claim_{c['claim']}.{part}.ci_high": e["ci"][1]})
            if c["p_holds_holm"] is not None:
                mlflow.log_metric(f"claim_{c['claim']}.p_holm", c["p_holds_holm"])
        mlflow.log_dict(report, "claims.json")
        mlflow.log_text(render_table(report), "claims.md")
        return run.info.run_id
