"""JSON forms of Arrow values, both ways: what `cat`, `sql` and `export` write as JSON, and what
`import` reads back from JSON lines, so that an exported file re-imports to the same records.

===============================  =================================  ================================
Arrow type                       written as                         read back from
===============================  =================================  ================================
timestamp with a time zone       ISO 8601 with offset (``+00:00``)  ISO 8601 (no offset: UTC) or int
timestamp without a time zone    ISO 8601 without offset            ISO 8601 without offset, or int
date32                           ``"2026-11-20"``                   the same, or days since 1970
time32, time64                   ``"12:30:00.250000"``              the same, or int in the unit
binary, fixed_size_binary        base64 string                      base64 string (else refused)
decimal128/256                   string (``"12.500"``)              string or number
map<string, V>                   object                             object (or [key, value] pairs)
list, struct                     array, object                      array, object
enum (dictionary)                its symbol                         its symbol
dense union (an Avro union)      its branch's value, as above       by the branch rules (`_union`)
===============================  =================================  ================================

Reading only turns text into the Python value Arrow wants; whether the value fits the schema is
`schemas.conform`'s call, so a value of the wrong JSON type passes through untouched to be
refused there with the record and field named. A value that claims to be one of the text forms
above but is not (``"yesterday"`` for a timestamp, ``"%%"`` for bytes) raises `JsonValueError`
with the field path (``a.b``, ``a[2]``, ``m['k']``: the paths `schemas.validate` uses).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from schemas import unions
from schemas.validate import choose

from .errors import ArgumentError, ArgumentTypeError

Convert = Callable[[Any], Any]
Decode = Callable[[Any, str], Any]


class JsonValueError(ArgumentError):
    """A JSON value that is not the text form its field's type takes (`field` is the path)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"field {field!r}: {reason}")


def json_default(value: Any) -> Any:
    """JSON for values the json module does not know: ISO times, base64 bytes, decimals as strings."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise ArgumentTypeError(f"cannot write {type(value).__name__} as JSON")


# --------------------------------------------------------------------------- Arrow -> JSON
def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _writer(t: pa.DataType) -> Convert | None:
    """What turns `to_pylist`'s value of type `t` into its JSON form, or None when it already is.

    Only maps need it: `to_pylist` gives them as lists of (key, value) tuples; and unions, whose
    values come tagged (`schemas.unions.tagged_pylist`): written as the branch's plain value."""
    if pa.types.is_dictionary(t) or pa.types.is_run_end_encoded(t):
        return _writer(t.value_type)
    if pa.types.is_union(t):
        subs = {f.name: _writer(f.type) for f in t}
        return lambda v: None if v is None else (v[1] if (sub := subs[v[0]]) is None else sub(v[1]))
    if pa.types.is_map(t):
        sub = _writer(t.item_type)
        if not _is_text(t.key_type):  # JSON object keys are strings: other keys stay pairs
            return None if sub is None else (lambda v: None if v is None else [(k, sub(x)) for k, x in v])
        if sub is None:
            return lambda v: None if v is None else dict(v)
        return lambda v: None if v is None else {k: sub(x) for k, x in v}
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        item = _writer(t.value_type)
        return None if item is None else (lambda v: None if v is None else [item(x) for x in v])
    if pa.types.is_struct(t):
        fix = _fields([(f.name, _pathless(s)) for f in t if (s := _writer(f.type)) is not None])
        return None if fix is None else (lambda v: fix(v, ""))
    return None


def _pathless(convert: Convert) -> Decode:
    return lambda v, _path: convert(v)


def _fields(subs: list[tuple[str, Decode]]) -> Decode | None:
    """Applies each (field name, function) of `subs` to a record's non-null values, or None."""
    if not subs:
        return None

    def fix(v: Any, path: str) -> Any:
        if not isinstance(v, dict):
            return v  # not a record: the schema check says so
        v = dict(v)
        for name, sub in subs:
            if v.get(name) is not None:
                v[name] = sub(v[name], f"{path}.{name}" if path else name)
        return v

    return fix


def json_rows(batch: pa.RecordBatch | pa.Table) -> list[dict[str, Any]]:
    """The rows of `batch` as dicts ready for `json.dumps(default=json_default)`: maps as objects."""
    rows = unions.tagged_rows(batch)
    fix = _writer(pa.struct(list(batch.schema)))
    return rows if fix is None else [fix(r) for r in rows]


# --------------------------------------------------------------------------- JSON -> Arrow
def _time_of(text: str, path: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise JsonValueError(path, f"{text!r} is not an ISO-8601 time") from None


def _timestamp(zoned: bool) -> Decode:
    def decode(v: Any, path: str) -> Any:
        if not isinstance(v, str):
            return v
        t = _time_of(v, path)
        if zoned:
            return t if t.tzinfo else t.replace(tzinfo=dt.UTC)
        if t.tzinfo is not None:
            raise JsonValueError(path, f"{v!r} has a UTC offset but the field is a local time (no time zone)")
        return t

    return decode


def _parsed(parse: Callable[[str], Any], what: str) -> Decode:
    def decode(v: Any, path: str) -> Any:
        if not isinstance(v, str):
            return v
        try:
            return parse(v)
        except (ValueError, ArithmeticError):
            raise JsonValueError(path, f"{v!r} is not {what}") from None

    return decode


def _base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError(text) from None


def _decimal(v: Any, path: str) -> Any:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        return v
    try:
        d = decimal.Decimal(v if isinstance(v, str) else repr(v))
    except decimal.InvalidOperation:
        raise JsonValueError(path, f"{v!r} is not a decimal number") from None
    if not d.is_finite():
        raise JsonValueError(path, f"{v!r} is not a finite decimal number")
    return d


def _reader(t: pa.DataType) -> Decode | None:
    """What turns the JSON value of a field of type `t` into the Python value Arrow takes, or None."""
    if pa.types.is_dictionary(t) or pa.types.is_run_end_encoded(t):
        return _reader(t.value_type)
    if pa.types.is_timestamp(t):
        return _timestamp(t.tz is not None)
    if pa.types.is_date(t):
        return _parsed(dt.date.fromisoformat, "an ISO-8601 date")
    if pa.types.is_time(t):
        return _parsed(dt.time.fromisoformat, "an ISO-8601 time of day")
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return _parsed(_base64, "base64")
    if pa.types.is_decimal(t):
        return _decimal
    if pa.types.is_map(t):
        return _map(_reader(t.item_type))
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        item = _reader(t.value_type)
        if item is None:
            return None
        each = item
        return lambda v, path: [each(x, f"{path}[{i}]") for i, x in enumerate(v)] if isinstance(v, list) else v
    if pa.types.is_struct(t):
        return _fields([(f.name, s) for f in t if (s := _reader(f.type)) is not None])
    if pa.types.is_union(t):
        return _union(t)
    return None


def _union(t: pa.DataType) -> Decode:
    """A union value from its plain JSON value: as is when the branch rules (`schemas.validate.choose`)
    take it and that branch has no text form; else the first branch, that one first, whose text
    form decodes it into a value it takes, as ``(branch, value)``; Avro's ``{"branch": value}``
    too. ``"aGk="`` is thus a string in ``["string", "bytes"]`` and bytes in ``["null", "bytes"]``."""
    branches = unions.avro_branches(t)
    names = [f.name for f in t]
    decoders = [_reader(f.type) for f in t]

    def decode(v: Any, path: str) -> Any:
        if v is None:
            return None
        i, x, _ = choose(v, branches, path)
        if i is not None and (decoders[i] is None and x is v):
            return v
        order = ([i] if i is not None else []) + [j for j in range(len(names)) if j != i]
        for j in order:
            dec = decoders[j]
            given = x if j == i else v
            try:
                value = given if dec is None else dec(given, path)
            except JsonValueError:
                continue
            if choose((names[j], value), branches, path)[0] == j:
                return (names[j], value)
        return v

    return decode


def _map(value: Decode | None) -> Decode:
    """A map from an object, or from [key, value] pairs (made tuples, as Arrow takes pairs)."""

    def sub(x: Any, path: str) -> Any:
        return x if value is None else value(x, path)

    def decode(v: Any, path: str) -> Any:
        if isinstance(v, dict):
            return v if value is None else {k: sub(x, f"{path}[{k!r}]") for k, x in v.items()}
        if isinstance(v, list) and all(isinstance(p, list) and len(p) == 2 for p in v):
            return [(k, sub(x, f"{path}[{k!r}]")) for k, x in v]
        return v

    return decode


def record_reader(schema: pa.Schema) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A function turning one parsed JSON object into a record for `schemas.conform` (a new dict
    when anything changes); raises `JsonValueError` naming the field path."""
    fix = _fields([(f.name, s) for f in schema if (s := _reader(f.type)) is not None])
    if fix is None:
        return lambda rec: rec
    return lambda rec: dict(fix(rec, ""))
