"""The `replay` command: a thin layer over `replay.run`, `resume`, `runs`, `get` and `audit`.

User mistakes (and a model stopped for a time leak) print one line to stderr with a hint and exit
2; an audit that does not certify the run (violations, a failed or unfinished run) exits 1;
Ctrl-C exits 130 after marking the run incomplete. Never a traceback
(set LOGSTORE_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

PROG = "replay"


def _duration(text: str | None, what: str = "duration") -> Any:
    """'30s', '5m', '2h', '7d', '1h30m' -> timedelta (`logstore.durations`; a bare number is refused)."""
    if text is None:
        return None
    from logstore.durations import parse_duration

    return parse_duration(text, what)


def _lookups(values: list[str] | None) -> dict[str, str | None] | None:
    if not values:
        return None
    out: dict[str, str | None] = {}
    for v in values:
        topic, _, key = v.partition(":")
        out[topic] = key or None
    return out


def _open(path: str):
    import logstore
    from logstore.errors import LogNotFoundError

    if not os.path.isdir(path):
        raise LogNotFoundError(f"no log at {path}")
    return logstore.open(path)


def _print_run(run: Any) -> None:
    m = run.manifest
    rows = m.get("rows", {})
    print(
        f"run {run.id}: {run.status}, {rows.get('inputs', 0):,} inputs, {rows.get('outputs', 0):,} scores "
        f"-> topic {m['output']['topic']!r}"
    )
    if m.get("content_hash"):
        print(f"content hash {m['content_hash']}")


def _shell_resume(args: argparse.Namespace, err: BaseException) -> KeyboardInterrupt:
    """A run's interruption, saying how to finish it in the shell (not in Python)."""
    import shlex

    run_id = getattr(err, "run_id", None)
    if run_id is None:
        return KeyboardInterrupt(str(err))
    return KeyboardInterrupt(
        f"run {run_id} interrupted; finish it with: {shlex.join(['replay', 'resume', args.log, run_id])}"
    )


def cmd_run(args: argparse.Namespace) -> int:
    from .errors import RunInterrupted

    try:
        return _run(args)
    except RunInterrupted as err:
        raise _shell_resume(args, err) from None


def _run(args: argparse.Namespace) -> int:
    import replay
    from logstore.cli import parse_bound

    log = _open(args.log)
    run = replay.run(
        log,
        inputs=args.inputs,
        outcomes=args.outcomes,
        models=args.model,
        output=args.output,
        start=parse_bound(args.start),
        end=parse_bound(args.end),
        workers=args.workers,
        seed=args.seed,
        key=args.key,
        label=args.label,
        lookups=_lookups(args.lookup),
        order=args.order,
        lateness=_duration(args.lateness, "--lateness"),
        horizon=_duration(args.horizon, "--horizon"),
        run_id=args.run_id,
        progress=None if not args.no_progress else False,
        append=args.append,
        engine=args.engine,
        address=args.address,
    )
    _print_run(run)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    import replay

    from .errors import RunInterrupted, RunStateError

    try:
        run = replay.resume(
            _open(args.log),
            args.run,
            workers=args.workers,
            force=args.force,
            progress=None if not args.no_progress else False,
            engine=args.engine,
            address=args.address,
        )
    except RunInterrupted as err:
        raise _shell_resume(args, err) from None
    except RunStateError as err:  # the library's words name its keyword; the shell's, the option
        raise RunStateError(str(err).replace("resume with force=True (CLI: --force)", "add --force")) from None
    _print_run(run)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    import replay

    rows = []
    for r in replay.runs(_open(args.log)):
        m = r.manifest
        rows.append(
            {
                "run": r.id,
                "status": r.status,
                "inputs": m["inputs"]["topic"],
                "models": ",".join(x["name"] for x in m["models"]),
                "rows": m.get("rows", {}).get("outputs", 0),
                "output": m["output"]["topic"],
                "hash": (m.get("content_hash") or "-")[:19],
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no runs")
        return 0
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in cols))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import replay

    run = replay.get(_open(args.log), args.run)
    print(json.dumps(run.manifest, indent=2, sort_keys=True))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    import replay

    cert = replay.audit(_open(args.log), args.run)
    print(cert)
    return 0 if cert.certified else 1


EXAMPLES = {
    "run": "replay run ./log --inputs inputs --outcomes outcomes --model mypkg.models:make_candidate "
    "--output replay.scores --start 2026-11-01T00:00Z --end 2026-11-08T00:00Z --workers 2",
    "runs": "replay runs ./log",
    "show": "replay show ./log 20261108T120000Z-3fa9c1",
    "audit": "replay audit ./log 20261108T120000Z-3fa9c1",
    "resume": "replay resume ./log 20261108T120000Z-3fa9c1",
    "delete": "replay delete ./log 20261108T120000Z-3fa9c1 --with-output --yes",
}


def _command(sub: Any, name: str, func: Callable[..., Any], help_: str) -> argparse.ArgumentParser:
    from logstore.cli import add_command

    return add_command(sub, name, func, help_, EXAMPLES[name])


def _engine_options(p: argparse.ArgumentParser, default: str | None) -> None:
    """--engine and --address of `run` (default local) and `resume` (default: the run's own)."""
    p.add_argument(
        "--engine",
        choices=["local", "dask"],
        default=default,
        help="where models that do not learn replay: this machine's processes (--workers), or a task per "
        "input partition on Dask distributed (extra 'cluster'); "
        + ("default %(default)s" if default else "default: the engine the run recorded"),
    )
    p.add_argument(
        "--address",
        metavar="ADDRESS",
        help="--engine dask: the scheduler, e.g. tcp://127.0.0.1:8786 (default: a cluster of --workers "
        "processes on loopback for the run); the log directory must be visible to its workers",
    )


def build_parser() -> argparse.ArgumentParser:
    from logstore.cli import add_version
    from logstore.completion import add_completion

    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Replay recorded model inputs and outcomes into candidate models, with no time leaks.",
        epilog="examples:\n  " + "\n  ".join(EXAMPLES.values()),
    )
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "run", cmd_run, "replay a range of inputs (and outcomes) through models into a score topic")
    p.add_argument("--inputs", required=True, help="topic of the inputs to decide")
    p.add_argument("--outcomes", help="topic of outcomes (delayed labels) joined on --key")
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="PKG.MOD:FACTORY",
        help="a model factory to import and call; repeat for several models",
    )
    p.add_argument("--output", default="replay.scores", help="topic the scores are written to (default %(default)s)")
    p.add_argument("--start", help="first input: offset, 'partition:offset,...' or ISO time (append time)")
    p.add_argument("--end", help="end of inputs (exclusive): offset, 'partition:offset,...' or ISO time")
    p.add_argument("--workers", type=int, default=1, help="processes for models that do not learn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--key", default="request_id", help="join key of inputs and outcomes")
    p.add_argument("--label", default="label", help="label column of the outcomes")
    p.add_argument("--lookup", action="append", metavar="TOPIC[:KEY]", help="a topic models may look up")
    p.add_argument("--order", default="append_time", choices=["append_time", "event_time"])
    p.add_argument("--lateness", help="event-time order: allowed lateness, e.g. 30s")
    p.add_argument("--horizon", help="how long an input waits for its outcome, e.g. 7d")
    p.add_argument("--run-id", help="the run id (default: time + random)")
    p.add_argument("--append", action="store_true", help="add to an output topic that already holds other runs' scores")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    _engine_options(p, "local")

    p = _command(sub, "runs", cmd_runs, "list the runs recorded in a log")
    p.add_argument("--json", action="store_true")

    p = _command(sub, "show", cmd_show, "print a run's manifest (ranges, models, progress, content hash)")
    p.add_argument("run")

    p = _command(
        sub,
        "audit",
        cmd_audit,
        "check every score of a run against the log; print a certificate or the violations (exit 1)",
    )
    p.add_argument("run")

    p = _command(sub, "resume", cmd_resume, "finish an interrupted or failed run")
    p.add_argument("run")
    p.add_argument("--workers", type=int)
    p.add_argument("--force", action="store_true", help="resume a run marked running whose process is gone")
    p.add_argument("--no-progress", action="store_true")
    _engine_options(p, None)

    from .runner.delete import add_delete_parser

    add_delete_parser(sub, _command)

    from .report_cli import add_report_parser

    add_report_parser(sub)

    from .counterfactuals.cli import add_counterfactual_parser

    add_counterfactual_parser(sub)
    add_completion(parser, sub)
    return parser


def _hint(err: BaseException) -> str:
    from logstore.errors import TimeLeakError, TopicNotFoundError

    from .errors import RunInterrupted, RunNotFoundError

    if isinstance(err, TopicNotFoundError):
        return " (hint: `logstore topics LOG` lists them)"
    if isinstance(err, RunNotFoundError):
        return ""
    if isinstance(err, TimeLeakError):
        return " (the run is marked failed; `replay show LOG RUN_ID` has the details)"
    if isinstance(err, RunInterrupted):
        return ""
    if isinstance(err, FileNotFoundError):
        return " (hint: check the path)"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    from logstore.cli import run

    return run(PROG, build_parser(), argv, _hint, user_errors=(ImportError,))


if __name__ == "__main__":
    sys.exit(main())
