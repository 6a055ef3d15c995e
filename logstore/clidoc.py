"""Generate the CLI reference (docs/cli.md) from the commands' own --help texts.

python -m logstore.clidoc > docs/cli.md
"""

from __future__ import annotations

import argparse
import importlib
import sys


def render(module: str, prog: str) -> str:
    """Markdown with the --help of `prog` and of each of its subcommands."""
    parser: argparse.ArgumentParser = importlib.import_module(module).build_parser()
    out = [f"## `{prog}`", "", "```", parser.format_help().rstrip(), "```", ""]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += [f"### `{prog} {name}`", "", "```", sub.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def main() -> str:
    import os

    os.environ["COLUMNS"] = "100"
    text = "# CLI reference\n\nGenerated from `--help` by `python -m logstore.clidoc`; do not edit.\n\n"
    text += render("logstore.cli", "logstore")
    try:
        text += "\n" + render("replay.cli", "replay")
    except (ImportError, AttributeError):
        pass
    return text


if __name__ == "__main__":
    sys.stdout.write(main())
