"""The names a run records, checked before it writes anything.

A run id names a directory (``<log>/runs/<run_id>``) and the output topic a topic directory: both
follow the log's name rule (1-200 characters of ``[A-Za-z0-9._-]``, never ``..``,
`logstore.names`). A model's name becomes its ``model_id`` in every output row and part of the
manifest's stream keys ``topic/partition/model``, so it follows the same rule; its version is
free text without control characters (1-200 characters). Each check raises `ReplayNameError`
(`ModelNameError` for models) saying which name, what was found and what is allowed.
"""

from __future__ import annotations

from typing import Any

from logstore.errors import InvalidNameError
from logstore.names import validate_name

from .errors import ModelNameError, ReplayNameError

MAX_VERSION = 200


def run_id(value: Any) -> str:
    """`value` if it is a valid run id, else ReplayNameError."""
    return _log_name(value, "run", "run id")


def output_topic(value: Any) -> str:
    """`value` if it is a valid output topic name, else ReplayNameError."""
    return _log_name(value, "topic", "output topic")


def _log_name(value: Any, kind: str, what: str) -> str:
    try:
        return validate_name(value, kind)
    except InvalidNameError as e:
        raise ReplayNameError(f"{what} {value!r} is not a valid name: {e}") from None


def model_name(name: Any, label: str | None = None) -> str:
    """`name` if it can be a model_id, else ModelNameError naming the model (`label`) and why."""
    try:
        return validate_name(name, "model")
    except InvalidNameError as e:
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
        where = f"model {label} (name {shown})" if label else f"model {shown}"
        raise ModelNameError(
            f"{where}: {e}; a model's name is its model_id in the output and the manifest: "
            f"1-200 letters, digits, '.', '_' or '-'"
        ) from None


def model_version(version: Any, name: str) -> str:
    """`version` if it can be a model_version, else ModelNameError naming the model and why."""
    if not isinstance(version, str) or not version:
        raise ModelNameError(f"model {name!r}: `version` must be a non-empty string, found {version!r}")
    if len(version) > MAX_VERSION:
        raise ModelNameError(f"model {name!r}: version is {len(version)} characters long, the limit is {MAX_VERSION}")
    bad = sorted({c for c in version if not c.isprintable()})
    if bad:
        raise ModelNameError(f"model {name!r}: version {version!r} contains control characters {bad!r}")
    return version
