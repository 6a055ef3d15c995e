"""``logstore completion SHELL`` (and ``replay``/``rendezvous``): a shell completion script for the
command, generated from its own argument parser by `shtab`, so it can never fall behind the
commands and options it completes. Install, e.g.::

    logstore completion bash > ~/.local/share/bash-completion/completions/logstore
    logstore completion zsh > "${fpath[1]}/_logstore"
"""

from __future__ import annotations

import argparse
from typing import Any

SHELLS = ("bash", "zsh", "tcsh")


def add_completion(parser: argparse.ArgumentParser, sub: Any) -> None:
    """Register the ``completion`` command of `parser` (its subcommands are `sub`)."""
    prog = parser.prog
    p = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description="print a completion script for bash, zsh or tcsh (generated from this command's options)",
        epilog=f"example:\n  {prog} completion bash > ~/.local/share/bash-completion/completions/{prog}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", choices=SHELLS)

    def run(args: argparse.Namespace) -> int:
        import shtab

        print(shtab.complete(parser, shell=args.shell))
        return 0

    p.set_defaults(func=run)
