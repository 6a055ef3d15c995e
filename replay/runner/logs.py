"""The log a replay call was given: a `logstore.Log`, or a path to open."""

from __future__ import annotations

import os
from typing import Any

import logstore

from ..errors import ReplayTypeError


def open_log(log: Any) -> logstore.Log:
    """`log` itself if it is a Log (anything with `reader` and `path`), else the log at that path."""
    if isinstance(log, (str, os.PathLike)):
        return logstore.open(log)
    if not hasattr(log, "reader") or not hasattr(log, "path"):
        raise ReplayTypeError(f"log must be a logstore.Log or a path, found {type(log).__name__}")
    return log
