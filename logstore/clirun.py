"""The command-line runner shared by `logstore`, `replay` and `rendezvous`: subcommands that take
the log directory first, ``--version``, shell completion, and `run`, which turns every error into
one line and an exit status (2: the user's mistake, 70: the tool's fault, 130: Ctrl-C).

On a terminal (`logstore.term.color_enabled`) "error:" is red; piped, the text is plain.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .term import color_enabled, style

# shtab's "complete a directory" action, per shell (`logstore.completion`)
DIRECTORY = {"bash": "_shtab_compgen_dirs", "zsh": "_files -/", "tcsh": "d"}


def add_command(sub: Any, name: str, func: Callable[..., Any], help: str, example: str) -> argparse.ArgumentParser:
    """A subcommand taking the log directory first, its help with an example (logstore and replay)."""
    p = sub.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    assert isinstance(p, argparse.ArgumentParser)
    log = p.add_argument("log", help="path of the log directory")
    log.complete = DIRECTORY  # type: ignore[attr-defined]
    p.set_defaults(func=func)
    return p


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: the program's name and the package's version (logstore, replay, rendezvous)."""
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError, KeyError)
INTERNAL_ERROR = 70  # EX_SOFTWARE: a fault of the tool, not of its user


def run(
    prog: str,
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    hint: Callable[[BaseException], str],
    user_errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Parse `argv` and run the chosen command (none given to a parser of commands: print the
    help, return 0).
    User mistakes (LogstoreError, `USER_ERRORS`, then `user_errors`) print one line and return 2;
    Ctrl-C returns 130 (printing what the interrupt says, if anything, e.g. how to resume a run);
    a closed pipe returns 0. Set LOGSTORE_DEBUG=1 to get the traceback instead."""
    from .errors import LogstoreError

    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv and parser._subparsers is not None:  # the bare command: what it can do, not a usage error
        parser.print_help()
        return 0
    args, extra = parser.parse_known_args(argv)
    late = getattr(args, "late_positional", None)  # an optional positional given after options
    if extra and late is not None and getattr(args, late) is None and len(extra) == 1 and extra[0][:1] != "-":
        setattr(args, late, extra.pop())
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    caught: tuple[type[BaseException], ...] = (LogstoreError, *USER_ERRORS, *user_errors)
    try:
        return int(args.func(args))
    except KeyboardInterrupt as err:
        if str(err):
            print(f"{prog}: {err}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except caught as err:
        if os.environ.get("LOGSTORE_DEBUG"):
            raise
        return print_error(prog, err, hint(err))
    except Exception as err:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        if os.environ.get("LOGSTORE_DEBUG"):
            raise
        if _is_query_error(err):
            return print_error(prog, err)
        print_error(prog, err, f" ({type(err).__name__}; set LOGSTORE_DEBUG=1 for the traceback)")
        return INTERNAL_ERROR


def _is_query_error(err: BaseException) -> bool:
    """A DuckDB error (bad SQL, a type mismatch): the user's query, not the tool."""
    return type(err).__module__.split(".")[0] in ("duckdb", "_duckdb")


def print_error(prog: str, err: BaseException, hint: str = "") -> int:
    """Print a user mistake as one line on stderr (then its listed reasons, if any); returns 2."""
    lines = str(err).splitlines() or [type(err).__name__]
    error = style("error:", "red", color_enabled(sys.stderr))
    print(f"{prog}: {error} {lines[0]}{hint}", file=sys.stderr)
    for line in lines[1:21]:
        print(f"{prog}:   {line.strip()}", file=sys.stderr)
    return 2
