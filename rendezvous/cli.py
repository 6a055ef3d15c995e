"""The `rendezvous` command: a thin layer over `rendezvous.service`, `runner` and `status`.

    rendezvous serve LOG --config FILE [--host 127.0.0.1] [--port 8700] [--decoy-only]
    rendezvous model LOG --model MODULE:FACTORY [--role ROLE] [--group NAME]
        (either with --kafka SERVERS --registry URL: inputs and scores on Kafka, rendezvous.kafka_transport)
    rendezvous status LOG [--config FILE]
    rendezvous deploy|ramp|promote|retire LOG --model M ...   (rendezvous.deploy: control records)
    rendezvous history LOG
    rendezvous swap LOG --model M --to VERSION   (rendezvous.swap: the hot-swap token)

User mistakes (a bad config, a missing log) print one line to stderr with a hint and exit 2;
never a traceback (set LOGSTORE_DEBUG=1 to see one). `serve` and `model` run until SIGINT or
SIGTERM, then finish what is in flight and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence

from logstore.cli import add_command, add_completion, add_version, run

from . import deploy, runner, swap, transport
from .commits import MODES
from .config import ConfigError, Topics, load_config

PROG = "rendezvous"

EXAMPLES = {
    "serve": "rendezvous serve ./log --config rendezvous.toml --port 8700",
    "model": "rendezvous model ./log --model replay.demo:make_challenger --role shadow",
    "status": "rendezvous status ./log",
}


def cmd_serve(args: argparse.Namespace) -> int:
    import logstore

    from .service import describe, serve

    config = load_config(args.config, decoy_only=args.decoy_only)
    _logging()
    log = logstore.open(args.log)
    streams = transport.from_args(args, log)

    def ready(url: str) -> None:
        where = f"; inputs and scores on Kafka at {args.kafka}" if args.kafka else ""
        print(f"{PROG}: serving {url} on log {args.log}: {describe(config, args.decoy_only)}{where}", flush=True)

    asyncio.run(
        serve(
            log,
            config,
            host=args.host,
            port=args.port,
            decoy_only=args.decoy_only,
            commit_mode=args.commit_in,
            ready=ready,
            transport=streams,
        )
    )
    log.close()
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    _logging()
    return runner.run_from_args(args)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)


def cmd_status(args: argparse.Namespace) -> int:
    import logstore
    from logstore.errors import LogNotFoundError

    from .status import status

    if not os.path.isdir(args.log):
        raise LogNotFoundError(f"no log at {args.log}")
    topics = load_config(args.config, decoy_only=True).topics if args.config else Topics()
    with logstore.open(args.log, readonly=True) as log:
        st = status(log, topics, window=args.window)
    if args.json:
        print(
            json.dumps(
                {"inputs": st.inputs, "models": st.models, "decisions": st.decisions, "canaries": st.canaries},
                default=str,
                indent=2,
            )
        )
    else:
        print(st.format())
    return 0


def cmd_swap(args: argparse.Namespace) -> int:
    """``rendezvous swap``: the tokens into the log's inputs, or with ``--kafka`` into Kafka's."""
    transport.check_args(args)
    if not args.kafka:
        return swap.cmd_swap(args)
    from .deploy import _config, _open

    with _open(args) as log:
        streams = transport.kafka_from_args(args, log)
        try:
            done = transport.kafka_swap(streams, args.model, args.to, config=_config(args), why=args.why)
        finally:
            streams.close()
    cut = ", ".join(f"{p}:{o}" for p, o in sorted(done.tokens.items()))
    print(
        f"control offset {done.offset}: swap {args.model} to {args.to} (token {done.token}); Kafka inputs cut at {cut}"
    )
    print(done.state.describe())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The live side: a front door that archives, waits for model scores and answers within "
        "its SLA; model runners that tail the inputs; a status screen, all on one log.",
        epilog="example:\n  " + "\n  ".join(EXAMPLES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = add_command(sub, "serve", cmd_serve, "serve POST /v1/score, /v1/outcome, /healthz, /metrics", EXAMPLES["serve"])
    p.add_argument("--config", required=True, help="the TOML config (SLA, default answer, schedule, selection)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=8700, help="port (default %(default)s; 0 picks a free one)")
    p.add_argument(
        "--decoy-only", action="store_true", help="archive each request and answer the config's default at once"
    )
    p.add_argument(
        "--commit-in",
        choices=MODES,
        default=None,
        help="where commits run: on the event loop or a committer thread (default: thread; benchmarks/RENDEZVOUS.md)",
    )
    transport.add_arguments(p, service=True)

    what = "run a model on the inputs, appending its scores"
    p = sub.add_parser(
        "model",
        help=what,
        description=what,
        epilog=f"example:\n  {EXAMPLES['model']}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    runner.add_arguments(p)
    p.set_defaults(func=cmd_model)

    p = add_command(
        sub, "status", cmd_status, "per model: scored, lag, latency, served share; canary PSI", EXAMPLES["status"]
    )
    p.add_argument("--config", help="a service config, for its topic names (default: the standard names)")
    p.add_argument("--window", type=int, default=500, help="canary scores per PSI window (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    deploy.add_commands(sub, add_command)
    what = "switch a model's version at a token in every inputs partition (a consistent cut)"
    example = "rendezvous swap ./log --model m1 --to 2 --config rendezvous.toml --why 'hotfix'"
    p = add_command(sub, "swap", cmd_swap, what, example)
    p.add_argument("--model", required=True, help="the model id (its runners switch)")
    p.add_argument("--to", required=True, metavar="VERSION", help="the version every input after the token gets")
    p.add_argument("--why", default="", help="the reason, kept with the control record")
    p.add_argument("--config", help="the service's config (its schedule is generation 0 of the fold)")
    transport.add_arguments(p, service=False)
    add_completion(parser, sub)
    return parser


def _hint(err: BaseException) -> str:
    from logstore.errors import LogNotFoundError, TopicNotFoundError

    if isinstance(err, ConfigError):
        return " (hint: see the config format in `python -c 'import rendezvous.config; help(rendezvous.config)'`)"
    if isinstance(err, LogNotFoundError):
        return " (hint: check the path; `rendezvous serve` creates the log)"
    if isinstance(err, TopicNotFoundError):
        return " (hint: `logstore topics LOG` lists them)"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    return run(PROG, build_parser(), argv, _hint)


if __name__ == "__main__":
    sys.exit(main())
