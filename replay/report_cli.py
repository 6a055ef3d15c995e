"""`replay report`: evaluate recorded scores and print the summary (and write the HTML report).

A thin layer over `replay.evaluate` (`replay.evaluation`) and `replay.report`; registered in `replay/cli.py` with
``add_report_parser(sub)``. Errors from the evaluation (`EvaluationError`, a missing topic) are
`LogstoreError`s, which the `replay` command prints as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import os
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
    """Evaluate, print the summary; write the HTML report when --html is given."""
    import logstore
    import replay.report
    from logstore.errors import LogNotFoundError
    from replay.evaluation import evaluate

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
            threshold=args.threshold,
            task=args.task,
            bootstrap=args.bootstrap,
            seed=args.seed,
        )
    print(replay.report.summary(ev))
    if args.html:
        path = replay.report.write_html(ev, args.html)
        print(f"\nHTML report: {path}")
    return 0


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
    p.add_argument("--threshold", type=float, default=0.5, help="classification threshold")
    p.add_argument("--task", default="auto", choices=["auto", "classification", "regression"])
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--html", metavar="PATH", help="also write the self-contained HTML report here")
    return p
