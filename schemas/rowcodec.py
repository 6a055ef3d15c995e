"""Avro binary rows: the body of a row frame (see `logstore.frame`, ``FLAG_ROWS``).

A row frame holds a few records (a live commit: one request, one score) as their Avro binary
encodings, back to back, in the schema version its header names: no schema, no system columns
(the header gives every record's offset and the append time), so a one-record frame costs its
record's Avro bytes plus the frame header. Large commits stay Arrow frames (columnar, zero-copy).

`RowCodec.encode` takes rows only when it is *certain* the batch path (`schemas.conform`) would
accept them and store the same values: every value of exactly the Python type the field takes
(``str`` for string, ``int`` in range for int/long, ``float`` or a small ``int`` for float/double,
``bool`` for boolean, ``bytes`` for bytes, an enum's symbol, an aware or naive (taken as UTC)
``datetime`` or an ``int`` for a timestamp, ``list`` for arrays, ``dict`` with ``str`` keys for
maps, ``None`` for a nullable field or a missing key; a missing key of a non-nullable field with a
default takes the default, as in the batch path), no unknown keys. Anything else returns
None and the writer takes the batch path, which either stores the rows (it is more lenient: numpy
scalars, bytes for strings, ...) or names the record, field and reason it refuses. So the two
paths never disagree on what is accepted, and a record reads back the same whichever path
stored it (tested).

Unions (other than ``["null", T]``) of such types and of records of them: a value takes the branch
`schemas.validate.choose` picks (the batch path's rule), written as that branch (Avro binary: the
branch index, then the value); declined when the value as decoded would pick another branch, or
is given in an explicit form (``(branch, value)``, ``{"branch": value}``), which the batch path
stores. A ``["null", record]`` field's record is taken as a union branch is. Schemas with types
outside that set (records other than those, fixed, decimal, uuid, date, time) have no row codec
(`RowCodec.supported` is False): their commits are always Arrow frames.

Encoding: a schema of the common types only (no general union) is encoded by a function generated
for it (`schemas.rowencode`: the same checks, the bytes fastavro writes, a quarter of the time);
others convert each value (`_converter`) and hand the record to ``fastavro.schemaless_writer``.

`RowCodec.rows` and `RowCodec.batch` turn a row frame's body back into a record batch of the version's Arrow schema
(``RecordBatch.from_pylist``, or `schemas.unions.rows_batch` with union columns: the conversion the
batch path makes).
"""

from __future__ import annotations

import copy
import functools
import io
import json
from collections.abc import Callable, Sequence
from typing import Any

import fastavro
import pyarrow as pa

from schemas import rowencode, unions
from schemas.avro import branch_name, expand, is_union
from schemas.unions import untag
from schemas.validate import choose

_INT32, _INT64, _EXACT_FLOAT_INT = rowencode.INT32, rowencode.INT64, rowencode.EXACT_FLOAT_INT
_STRIPPED = {"timestamp-micros", "timestamp-millis"}  # encoded as the integers they are
_Decline = rowencode.Decline  # a value the row path is not certain of: the batch path decides
_micros, _millis = rowencode.micros, rowencode.millis

Convert = Callable[[Any], Any]


def _converter(t: Any, records: bool = False) -> Convert | None:
    """A function returning the Avro-writable value of `t` for a value, or raising _Decline;
    None when the type is outside the row path. `records`: inside a union (nested records are
    row-path types only there)."""
    if is_union(t):
        return _union(t)
    if isinstance(t, list):
        branches = [b for b in t if b != "null"]
        if len(t) != 2 or len(branches) != 1:
            return None
        inner = _converter(branches[0], True)  # a nullable record is a union branch too
        if inner is None:
            return None
        return lambda v: None if v is None else inner(v)
    if isinstance(t, str):
        t = {"type": t}
    kind, logical = t.get("type"), t.get("logicalType")
    if logical is not None:
        if kind == "long" and logical == "timestamp-micros":
            return _micros
        if kind == "long" and logical == "timestamp-millis":
            return _millis
        return None
    return _PLAIN.get(kind) or _complex(kind, t, records)


def _exact(py: type) -> Convert:
    def convert(v: Any) -> Any:
        if type(v) is not py:
            raise _Decline
        return v

    return convert


def _int_in(lo: int, hi: int) -> Convert:
    def convert(v: Any) -> Any:
        if type(v) is not int or not lo <= v <= hi:
            raise _Decline
        return v

    return convert


def _real(v: Any) -> Any:
    t = type(v)
    if t is float:
        return v
    if t is int and -_EXACT_FLOAT_INT <= v <= _EXACT_FLOAT_INT:
        return float(v)
    raise _Decline


_PLAIN: dict[str, Convert] = {
    "string": _exact(str),
    "bytes": _exact(bytes),
    "boolean": _exact(bool),
    "int": _int_in(*_INT32),
    "long": _int_in(*_INT64),
    "float": _real,
    "double": _real,
}


def _union(t: list[Any]) -> Convert | None:
    """A union's converter: the branch `schemas.validate.choose` picks, as fastavro's ``(branch
    name, value)`` (so the row holds that branch), declined unless the converted value, as it will
    be decoded (tags removed), picks the same branch again: decoding rebuilds the column with the
    same rules, so both paths store the same branch."""
    convs: list[Convert | None] = []
    for b in t:
        if b == "null":
            convs.append(None)
            continue
        conv = _converter(b, records=True)
        if conv is None:
            return None
        convs.append(conv)
    names = [branch_name(b) for b in t]

    def union(v: Any) -> Any:
        if type(v) is tuple:
            raise _Decline  # the explicit form: the batch path stores it
        i, x, _ = choose(v, t, "")
        if i is None:
            raise _Decline
        conv = convs[i]
        if conv is None:
            return None
        c = conv(x)
        if choose(untag(c), t, "")[0] != i:
            raise _Decline
        return (names[i], c)

    return union


def _record(t: dict[str, Any]) -> Convert | None:
    fields: list[tuple[str, Convert]] = []
    for f in t["fields"]:
        conv = _converter(f["type"], records=True)
        if conv is None:
            return None
        fields.append((f["name"], conv))
    names = frozenset(name for name, _ in fields)

    def record(v: Any) -> Any:
        if type(v) is not dict or not names.issuperset(v):
            raise _Decline
        get = v.get
        return {name: conv(get(name)) for name, conv in fields}

    return record


def _complex(kind: Any, t: dict[str, Any], records: bool = False) -> Convert | None:
    if kind == "record":
        return _record(t) if records else None
    if kind == "enum":
        symbols = frozenset(t["symbols"])

        def enum(v: Any) -> Any:
            if type(v) is not str or v not in symbols:
                raise _Decline
            return v

        return enum
    if kind == "array":
        item = _converter(t["items"], records)
        if item is None:
            return None

        def array(v: Any) -> Any:
            if type(v) is not list:
                raise _Decline
            return [item(x) for x in v]

        return array
    if kind == "map":
        value = _converter(t["values"], records)
        if value is None:
            return None

        def mapping(v: Any) -> Any:
            if type(v) is not dict:
                raise _Decline
            out = {}
            for k, x in v.items():
                if type(k) is not str:
                    raise _Decline
                out[k] = value(x)
            return out

        return mapping
    return None


def _strip(s: Any) -> Any:
    """`s` with the timestamp logical types removed (their values travel as plain longs)."""
    if isinstance(s, list):
        return [_strip(b) for b in s]
    if isinstance(s, dict):
        out = {k: _strip(v) for k, v in s.items()}
        if out.get("logicalType") in _STRIPPED and out.get("type") == "long":
            del out["logicalType"]
        return out
    return s


def _missing(f: dict[str, Any]) -> Any:
    """What a row lacking field `f` holds: its default for a non-nullable field that has one (as
    `schemas.conform` fills it in), else None (null, or refused when the field is required)."""
    if "default" not in f or isinstance(f["type"], list):
        return None
    kind = f["type"].get("type") if isinstance(f["type"], dict) else f["type"]
    return None if kind in ("bytes", "fixed") else copy.deepcopy(f["default"])


class RowCodec:
    """Encodes rows of one schema version as Avro binary and decodes them into Arrow (see module)."""

    def __init__(self, schema: dict[str, Any], arrow_schema: pa.Schema, event_field: str | None = None) -> None:
        self.arrow_schema = arrow_schema
        self.event_field = event_field
        tree = expand(schema)
        fields: list[tuple[str, Convert, Any]] = []
        supported = isinstance(tree, dict) and tree.get("type") == "record"
        for f in tree.get("fields", []) if supported else []:
            conv = _converter(f["type"])
            if conv is None:
                supported = False
                break
            fields.append((f["name"], conv, _missing(f)))
        self.supported = supported
        self._fields = fields
        self._names = frozenset(name for name, _, _ in fields)
        self._event = event_field if event_field in self._names else None
        self._schema = fastavro.parse_schema(_strip(copy.deepcopy(schema))) if supported else None
        types = [f["type"] for f in tree.get("fields", [])] if supported else []
        # the generated encoder of the common types (`schemas.rowencode`): same rules, same bytes
        self._row = (
            rowencode.compile_row([(n, t, m) for (n, _, m), t in zip(fields, types)], self._event)
            if supported
            else None
        )
        self._tree = tree
        self._unions = any(unions.contains_union(f.type) for f in arrow_schema)
        self._timestamps = {i for i, f in enumerate(arrow_schema) if pa.types.is_timestamp(f.type)}
        self._int_schema = (
            pa.schema(
                [
                    pa.field(f.name, pa.int64(), f.nullable, f.metadata) if i in self._timestamps else f
                    for i, f in enumerate(arrow_schema)
                ],
                arrow_schema.metadata,
            )
            if self._timestamps
            else None
        )

    def encode(self, rows: Sequence[Any]) -> tuple[list[bytes], list[int] | None] | None:
        """Each row's Avro bytes and (with an event-time field) event time in microseconds, or
        None if any row is not certainly valid (see module docstring)."""
        if not self.supported:
            return None
        encode = self._row
        if encode is not None:  # the generated encoder (`schemas.rowencode`): same rules, same bytes
            try:
                if self._event is None:
                    return [encode(row) for row in rows], None
                out, events = [], []
                for row in rows:
                    body, when = encode(row)
                    out.append(body)
                    events.append(when)
            except (_Decline, ValueError, TypeError, OverflowError, UnicodeError):
                return None
            return out, events
        return self._encode_converted(rows)

    def _encode_converted(self, rows: Sequence[Any]) -> tuple[list[bytes], list[int] | None] | None:
        """`encode` by the converters and fastavro (schemas the generated encoder does not cover)."""
        out: list[bytes] = []
        events: list[int] | None = [] if self._event is not None else None
        names, event = self._names, self._event or ""
        write = fastavro.schemaless_writer
        schema = self._schema
        assert schema is not None
        buf = io.BytesIO()
        try:
            for row in rows:
                if type(row) is not dict or not names.issuperset(row):
                    return None
                get = row.get
                record = {name: conv(get(name, missing)) for name, conv, missing in self._fields}
                if events is not None:
                    when = record[event]
                    if when is None:
                        return None
                    events.append(when)
                buf.seek(0)
                buf.truncate()
                write(buf, schema, record)
                out.append(buf.getvalue())
        except (_Decline, ValueError, TypeError, OverflowError, UnicodeError):
            return None  # fastavro refused (e.g. a null in a required field): the batch path names it
        return out, events

    def rows(self, body: bytes | memoryview, count: int) -> list[dict[str, Any]]:
        """The `count` records of a row frame's body as dicts (timestamps as integers). Raises
        ValueError if the body does not hold exactly `count` records."""
        assert self._schema is not None, "a row frame of a schema without a row codec"
        buf = io.BytesIO(body)
        read = fastavro.schemaless_reader
        schema = self._schema
        try:
            rows = [read(buf, schema, None) for _ in range(count)]
        except (EOFError, StopIteration, IndexError, KeyError, TypeError, UnicodeError, OverflowError) as e:
            raise ValueError(f"row frame body does not decode: {e!r}") from e
        if buf.tell() != len(body):
            raise ValueError(f"row frame body has {len(body) - buf.tell()} bytes past its {count} records")
        return rows  # type: ignore[return-value]

    def batch(self, rows: list[dict[str, Any]], names: Sequence[str] | None = None) -> pa.RecordBatch:
        """Decoded rows as a batch of the version's Arrow schema (only the fields `names`, in
        schema order, when given: building a column costs several microseconds). Top-level
        timestamps are built as the integers they are and viewed as timestamps (pyarrow's
        conversion of Python values into a zoned timestamp imports pandas: a third of a second on
        a tailer's first record)."""
        keep = range(len(self.arrow_schema)) if names is None else self._indices(tuple(names))
        target = pa.schema([self.arrow_schema.field(i) for i in keep], self.arrow_schema.metadata)
        build = self._build(keep)
        ints = self._int_schema
        if ints is None:
            return build(rows, target)
        raw = build(rows, pa.schema([ints.field(i) for i in keep], ints.metadata))
        cols = [
            c.view(target.field(k).type) if i in self._timestamps else c
            for k, (i, c) in enumerate(zip(keep, raw.columns))
        ]
        return pa.RecordBatch.from_arrays(cols, schema=target)

    def _build(self, keep: Sequence[int]) -> Callable[[list[dict[str, Any]], pa.Schema], pa.RecordBatch]:
        """How rows become a batch of the fields `keep`: ``from_pylist``, or `schemas.unions`
        (the batch path's own conversion) when a union column is among them."""
        if not self._unions:
            return lambda rows, schema: pa.RecordBatch.from_pylist(rows, schema=schema)
        tree = {"fields": [self._tree["fields"][i] for i in keep]}
        return lambda rows, schema: unions.rows_batch(rows, tree, schema)

    @functools.lru_cache(maxsize=64)  # noqa: B019 - codecs are few and long-lived (see `codec`)
    def _indices(self, names: tuple[str, ...]) -> list[int]:
        wanted = set(names)
        return [i for i, f in enumerate(self.arrow_schema) if f.name in wanted]


@functools.lru_cache(maxsize=256)
def _cached(schema_json: str, arrow: pa.Schema, event_field: str | None) -> RowCodec:
    return RowCodec(json.loads(schema_json), arrow, event_field)


def codec(schema: dict[str, Any], arrow_schema: pa.Schema, event_field: str | None = None) -> RowCodec:
    """The (cached) row codec of a schema version."""
    return _cached(json.dumps(schema, sort_keys=True), arrow_schema, event_field)
