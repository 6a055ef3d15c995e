"""Parsing a topic schema from anything a user may hand over, into a normalized Avro record.

`parse` accepts a dict, Avro JSON text, a ``.avsc`` path, the name of a shipped record type or a
``pyarrow.Schema``; it checks the schema with fastavro, refuses what Arrow cannot store, and returns
the normalized form the registry keeps (see `schemas.avro`). `load` gives a shipped record type.
It sits above both `schemas.avro` and `schemas.arrow`, which it joins.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
from typing import Any

import fastavro
import pyarrow as pa

from logstore.errors import SchemaError
from schemas.arrow import from_arrow, tree_to_arrow
from schemas.avro import SHIPPED_DIR, _check_defaults, _strip, check_nesting, expand, names

_SHIPPED_CACHE: dict[str, dict[str, Any]] = {}


def parse(schema: Any, name: str | None = None, *, arrow: bool = True) -> dict[str, Any]:
    """A normalized Avro record schema from a dict, JSON text, a .avsc path, a shipped name or a pyarrow.Schema.

    `name` is the record name used when converting a pyarrow.Schema (default ``"record"``).
    Raises SchemaError for anything invalid or (with `arrow`, the default) that cannot be stored
    in Arrow; ``arrow=False`` checks the Avro alone (recursive types, any nesting: what the
    compatibility checks take).
    """
    if isinstance(schema, pa.Schema):
        return parse(from_arrow(schema, name or "record"))
    if isinstance(schema, pathlib.Path):
        schema = _read_json_file(schema)
    elif isinstance(schema, str):
        text = schema.strip()
        if text in names():
            return load(text)
        if text[:1] in ("{", "[", '"'):
            try:
                schema = json.loads(text)
            except ValueError as e:
                raise SchemaError(f"schema JSON does not parse: {e}") from None
        elif text.endswith(".avsc") or os.path.sep in text or os.path.exists(text):
            schema = _read_json_file(pathlib.Path(text))
        else:
            raise SchemaError(
                f"{text!r} is neither a shipped schema ({', '.join(names())}), a .avsc path nor Avro JSON"
            )
    if not isinstance(schema, dict):
        raise SchemaError(
            f"expected an Avro record schema (a JSON object), found {type(schema).__name__} {schema!r:.80}"
        )
    if schema.get("type") not in ("record", "error"):
        raise SchemaError(f"a topic schema must be an Avro record, found type {schema.get('type')!r}")
    if arrow:
        check_nesting(schema)  # before fastavro and expand, which recurse per level

    try:
        fastavro.parse_schema(copy.deepcopy(schema), _write_hint=False)
    except Exception as e:  # fastavro raises SchemaParseException, UnknownType, KeyError, TypeError...
        raise SchemaError(f"invalid Avro schema: {type(e).__name__}: {e}") from None
    normalized = _strip(copy.deepcopy(schema))
    tree = expand(normalized, recursive=not arrow)
    _check_defaults(tree)
    if arrow:
        tree_to_arrow(tree)  # refuses what Arrow cannot hold, at parse time
    assert isinstance(normalized, dict)
    return normalized


def _read_json_file(path: pathlib.Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SchemaError(f"cannot read schema file {path}: {e.strerror or e}") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise SchemaError(f"schema file {path} is not valid JSON: {e}") from None


def load(name: str) -> dict[str, Any]:
    """One of the shipped record types, parsed (a fresh copy each call)."""
    if name not in _SHIPPED_CACHE:
        path = SHIPPED_DIR / f"{name}.avsc"
        if name not in names():
            raise SchemaError(f"no shipped schema named {name!r}; expected one of {', '.join(names())}")
        _SHIPPED_CACHE[name] = parse(_read_json_file(path))
    return copy.deepcopy(_SHIPPED_CACHE[name])


# --------------------------------------------------------------------------- canonical forms
_PCF_KEYS = ("name", "type", "fields", "symbols", "items", "values", "size")
