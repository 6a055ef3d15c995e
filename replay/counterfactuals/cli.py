"""`replay counterfactual`: a thin layer over `replay.counterfactual`; registered in `replay/cli.py`
with ``add_counterfactual_parser(sub)``. Mistakes (a bad schedule, a config key, a missing topic)
are ValueErrors or `LogstoreError`s, which the `replay` command prints as one line, exit 2."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from typing import Any

from ..errors import ReplayValueError
from .arrivals import CLOCKS
from .scenario import SCHEDULE_FORM

EXAMPLE = "replay counterfactual ./log --config rendezvous.toml --schedule 'm3,m2@20,m1@35' --sla-ms 80 --json"


def _cutoff(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ReplayValueError(f"--cutoff {text!r} is not an ISO time (e.g. 2026-11-08T00:00Z)") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def counterfactual_command(args: argparse.Namespace) -> int:
    """Compute the counterfactual, print its summary (text, or JSON with --json)."""
    import logstore
    from logstore.cli import parse_bound
    from logstore.errors import LogNotFoundError

    from .compute import counterfactual

    if not os.path.isdir(args.log):
        raise LogNotFoundError(f"no log at {args.log}")
    with logstore.open(args.log, readonly=True) as log:
        cf = counterfactual(
            log,
            schedule=args.schedule,
            sla_ms=args.sla_ms,
            default=args.default_score,
            config=args.config,
            overhead_ms=args.overhead_ms,
            selection=args.selection,
            start=parse_bound(args.start),
            end=parse_bound(args.end),
            cutoff=_cutoff(args.cutoff),
            clock=args.clock,
            task=args.task,
            threshold=args.threshold,
            decisions=args.decisions,
            scores=args.scores,
            outcomes=args.outcomes,
            inputs=args.inputs,
        )
    if args.json:
        print(json.dumps(cf.to_dict(changes=args.changes), indent=2, default=str))
    else:
        print(cf.to_text(changes=args.changes))
    return 0


def add_counterfactual_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `counterfactual` command to the `replay` CLI's subparsers."""
    help_ = "answer the recorded requests again under another schedule, SLA or default; compare with what was served"
    description = (
        "What each recorded request would have been answered with under another rendezvous schedule, SLA,\n"
        "overhead, default or selection, beside what was served: model shares, answer times, quality\n"
        "against the outcomes known by the cut-off. Unspecified parameters are the recorded ones, per request."
    )
    p = subparsers.add_parser(
        "counterfactual",
        help=help_,
        description=description,
        epilog=f"example:\n  {EXAMPLE}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=counterfactual_command)
    p.add_argument("log", help="path of the log directory")
    p.add_argument("--config", metavar="TOML", help="a rendezvous config: schedule, SLA, default, selection, topics")
    p.add_argument("--schedule", metavar="STEPS", help=f"the schedule, {SCHEDULE_FORM}")
    p.add_argument("--sla-ms", type=float, help="the service level (default: as recorded)")
    p.add_argument("--overhead-ms", type=float, help="the overhead allowance; H = SLA - overhead (default: recorded)")
    p.add_argument("--default-score", type=float, help="the default answer's score (default: as recorded)")
    p.add_argument("--selection", choices=["schedule", "thompson", "epsilon"], help="the selection policy")
    p.add_argument("--start", help="first decision: offset, 'partition:offset,...' or ISO time (append time)")
    p.add_argument("--end", help="end of decisions (exclusive): offset, 'partition:offset,...' or ISO time")
    p.add_argument("--cutoff", metavar="ISO_TIME", help="count only outcomes appended by then (default: now)")
    p.add_argument(
        "--clock",
        default="append_time",
        choices=list(CLOCKS),
        help="the clock arrivals after a decision are reconstructed on (default %(default)s)",
    )
    p.add_argument("--task", default="auto", choices=["auto", "classification", "regression"])
    p.add_argument("--threshold", type=float, default=0.5, help="classification threshold")
    for role in ("decisions", "scores", "outcomes", "inputs"):
        p.add_argument(f"--{role}", metavar="TOPIC", help=f"the {role} topic (default: the config's, else {role})")
    p.add_argument("--changes", type=int, default=10, help="how many changed answers to list (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the parameters, summary and changes as JSON")
    return p
