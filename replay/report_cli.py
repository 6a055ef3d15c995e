"""`replay report`: evaluate recorded scores and print the summary (and write the HTML report).

`--json` prints the same numbers as one JSON document instead (`replay.report_json`);
`--fail-on RULE` (repeatable, grammar in `replay.report_gate`) exits 1 after printing when a rule
holds, so a CI job can gate on "challenger worse than champion", drift-alert or "auc<0.7".
Without `--threshold` the confusion matrices are at each model's max-F1 threshold and the
threshold metrics of the tables at 0.5; with it, both are at the given threshold.

A thin layer over `replay.evaluate` (`replay.evaluation`) and `replay.report`; registered in `replay/cli.py` with
``add_report_parser(sub)``. Errors from the evaluation (`EvaluationError`, a missing topic) are
`LogstoreError`s, which the `replay` command prints as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any

from .errors import ReplayValueError

EXAMPLE = (
    "replay report ./log --scores scores --scores replay.scores --outcomes outcomes "
    "--inputs inputs --champion champion --canary canary --window '1 day' --html report.html"
)


def _cutoff(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ReplayValueError(f"--cutoff {text!r} is not an ISO time (e.g. 2026-11-08T00:00Z)") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def report_command(args: argparse.Namespace) -> int:
    """Evaluate, print the summary (or the JSON document); write the HTML report when --html is
    given; 1 when a --fail-on rule holds, else 0."""
    import logstore
    import replay.report
    from logstore.errors import LogNotFoundError
    from replay.evaluation import evaluate
    from replay.report_gate import check, gate_lines, parse_rule

    rules = [parse_rule(text) for text in args.fail_on or []]  # a rule that does not parse fails first
    confusion_at = "max_f1" if args.threshold is None else "given"
    if not os.path.isdir(args.log):
        raise LogNotFoundError(f"no log at {args.log}")
    with logstore.open(args.log, readonly=True) as log:
        ev = evaluate(
            log,
            scores=args.scores or ["scores"],
            outcomes=args.outcomes,
            inputs=args.inputs,
            champion=args.champion,
            canary=args.canary,
            window=args.window,
            cutoff=_cutoff(args.cutoff),
            threshold=0.5 if args.threshold is None else args.threshold,
            task=args.task,
            bootstrap=args.bootstrap,
            seed=args.seed,
        )
        live = _live(log, args) if args.html else {}
    gate = check(ev, rules, confusion_at) if rules else None
    if args.json:
        from replay.report_json import dumps

        print(dumps(ev, confusion_at=confusion_at, gate=gate))
    else:
        print(replay.report.summary(ev, confusion_at=confusion_at))
    if args.html:
        path = replay.report.write_html(ev, args.html, confusion_at=confusion_at, **live)
        # stdout stays one JSON document under --json
        print(f"\nHTML report: {path}", file=sys.stderr if args.json else sys.stdout)
    if gate is None:
        return 0
    if not args.json:
        print("Gate (--fail-on)", *gate_lines(gate), sep="\n")
    return 1 if any(r.held for r in gate) else 0


def _live(log: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The HTML report's live-side sections: the deployment timeline when the log has a control
    topic, the counterfactual of --counterfactual/--sla-ms/--config, off-policy values of --ope."""
    from replay.report_sections import deployment_events

    out: dict[str, Any] = {}
    if args.control in log.topics():
        out["deployment"] = deployment_events(log, args.control)
    if args.counterfactual or args.sla_ms is not None:
        from replay.counterfactuals.compute import counterfactual

        out["counterfactual"] = counterfactual(
            log, schedule=args.counterfactual, sla_ms=args.sla_ms, config=args.config, cutoff=_cutoff(args.cutoff)
        )
    if args.ope:
        from rendezvous.config import load_config
        from replay.ope import evaluate_policy

        results = {}
        for path in args.ope:
            target = load_config(path, decoy_only=True)
            results[os.path.basename(path)] = evaluate_policy(log, target, cutoff=_cutoff(args.cutoff), intervals=True)
        out["ope"] = results
    return out


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `report` command to the `replay` CLI's subparsers."""
    help_ = (
        "evaluate every model in score topics against outcomes (quality, paired deltas, drift, "
        "latency); print the summary, optionally write the HTML report"
    )
    p = subparsers.add_parser(
        "report",
        help=help_,
        description=help_,
        epilog=f"example:\n  {EXAMPLE}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=report_command)
    p.add_argument("log", help="path of the log directory")
    p.add_argument(
        "--scores",
        action="append",
        metavar="TOPIC",
        help="a topic of model_score records; repeat for several (default: scores)",
    )
    p.add_argument("--outcomes", metavar="TOPIC", help="topic of outcomes joined by request_id")
    p.add_argument("--inputs", metavar="TOPIC", help="topic of inputs: the coverage denominator")
    p.add_argument("--champion", metavar="MODEL", help="model_id (or model_id@topic) to pair with")
    p.add_argument("--canary", metavar="MODEL", help="the frozen reference model")
    p.add_argument("--window", default="1 day", help="time window of the per-window tables (default %(default)r)")
    p.add_argument("--cutoff", metavar="ISO_TIME", help="count only outcomes appended by then (default: now)")
    p.add_argument(
        "--threshold",
        type=float,
        help="classification threshold of accuracy/precision/recall and the confusion matrices "
        "(default: 0.5 for the metrics, each model's max-F1 threshold for the matrices)",
    )
    p.add_argument("--task", default="auto", choices=["auto", "classification", "regression"])
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--html", metavar="PATH", help="also write the self-contained HTML report here")
    p.add_argument("--json", action="store_true", help="print the report's numbers as one JSON document")
    p.add_argument(
        "--fail-on",
        action="append",
        metavar="RULE",
        help="exit 1 (after printing) when RULE holds; repeatable. RULE is [MODEL:]METRIC OP NUMBER[%%] "
        "(e.g. 'auc<0.7', 'challenger:latency_p99>50'), 'challenger|MODEL worse than champion|canary "
        "[on auc|log_loss|brier|mae|rmse]' (a paired delta whose 95%% interval is entirely worse), "
        "drift-alert, drift-shift or threshold-warning",
    )
    live = p.add_argument_group("live-side sections of the HTML report")
    live.add_argument("--control", default="control", help="control topic of the deployment timeline (%(default)s)")
    live.add_argument("--counterfactual", metavar="SCHEDULE", help="e.g. 'm2,m1@20': the counterfactual rendezvous")
    live.add_argument("--sla-ms", type=float, help="the counterfactual's SLA (default: as recorded)")
    live.add_argument("--config", metavar="TOML", help="the service config the counterfactual starts from")
    live.add_argument(
        "--ope", action="append", metavar="TOML", help="a target policy config to value off-policy (repeatable)"
    )
    return p
