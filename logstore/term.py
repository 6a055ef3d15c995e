"""Terminal niceties of the command-line tools: colour only on a terminal, plain text when piped.

Colour is on when the stream is a TTY, ``NO_COLOR`` is unset (https://no-color.org) and ``TERM``
is not ``dumb``; ``FORCE_COLOR`` (any value) turns it on for a pipe too. Styles are ANSI SGR codes
around the text, nothing else, so a line's content is the same with and without them.
"""

from __future__ import annotations

import os
import sys
from typing import IO

from .errors import ArgumentError

__all__ = ["STYLES", "color_enabled", "confirm", "style"]

STYLES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


def color_enabled(stream: IO[str]) -> bool:
    """Whether text written to `stream` may carry colour."""
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def style(text: str, name: str, enabled: bool) -> str:
    """`text` in the style `name` (a key of `STYLES`) when `enabled`, else as it is."""
    return f"\x1b[{STYLES[name]}m{text}\x1b[0m" if enabled and text else text


def confirm(question: str, yes: bool) -> bool:
    """True if the user agrees to `question` (``--yes`` agrees without asking). On a terminal the
    question is asked on stderr and answered on stdin; without one, ArgumentError says to pass --yes."""
    if yes:
        return True
    stdin = sys.stdin
    if stdin is None or not stdin.isatty():
        raise ArgumentError(f"{question.rstrip('?')}: stdin is not a terminal to confirm on; pass --yes to go ahead")
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    return stdin.readline().strip().lower() in ("y", "yes")
