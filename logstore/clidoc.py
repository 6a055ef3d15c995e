"""Generate the CLI reference (docs/cli.md) from the commands' own --help texts.

python -m logstore.clidoc > docs/cli.md
"""

from __future__ import annotations

import argparse
import importlib
import sys


def _sections(parser: argparse.ArgumentParser, prog: str, level: int) -> list[str]:
    """The --help of `parser`, then of each of its subcommands, nested ones included."""
    out = [f"{'#' * level} `{prog}`", "", "```", parser.format_help().rstrip(), "```", ""]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _sections(sub, f"{prog} {name}", min(level + 1, 4))
    return out


def render(module: str, prog: str) -> str:
    """Markdown with the --help of `prog` and of each of its subcommands (at every depth)."""
    parser: argparse.ArgumentParser = importlib.import_module(module).build_parser()
    return "\n".join(_sections(parser, prog, 2))


def main() -> str:
    import os

    os.environ["COLUMNS"] = "100"
    text = "# CLI reference\n\nGenerated from `--help` by `python -m logstore.clidoc`; do not edit.\n\n"
    text += render("logstore.cli", "logstore")
    for module, prog in (("replay.cli", "replay"), ("rendezvous.cli", "rendezvous")):
        text += "\n" + render(module, prog)
    return text


if __name__ == "__main__":
    sys.stdout.write(main())
